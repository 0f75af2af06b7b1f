#!/usr/bin/env python3
"""The host end of the user-mode network test: an HTTP server whose GET sends
10 MiB of a fixed pattern, and a raw TCP port that reads 10 MiB and answers
their MD5 (busybox wget --post-file crashes). Prints both ports.
  --addr A: listen on A (default 127.0.0.1: the user-mode network's host side)
  --on-upload CMD: run CMD (sh -c) after each upload is read, before the MD5 goes back,
    so a test can read lkvm's counters while the guest still waits for the answer."""
import hashlib, http.server, socket, subprocess, sys, threading, time

BLOB = (bytes(range(251)) * ((10 << 20) // 251 + 1))[:10 << 20]	# 251: no alignment with anything

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        log("get: sending %d bytes" % len(BLOB))
        self.wfile.write(BLOB)
        log("get: sent")

    def log_message(self, *a):
        pass

if sys.argv[1:] == ["md5"]:
    print(hashlib.md5(BLOB).hexdigest())
    sys.exit(0)
opts = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if len(sys.argv) % 2 == 0 or set(opts) - {"--addr", "--on-upload"}:
    sys.exit("usage: net-server.py [md5 | --addr A] [--on-upload CMD]")
ADDR = opts.get("--addr", "127.0.0.1")
def upload(lsock):
    while True:
        c, _ = lsock.accept()
        h, left = hashlib.md5(), 10 << 20
        t0, mib = time.monotonic(), 0
        log("upload: connected")
        while left:
            d = c.recv(min(left, 1 << 16))
            if not d:
                break
            h.update(d)
            left -= len(d)
            if ((10 << 20) - left) >> 20 > mib:	# progress, for telling slow from stuck
                mib = ((10 << 20) - left) >> 20
                log("upload: %d MiB after %.1f s" % (mib, time.monotonic() - t0))
        log("upload: %s after %.1f s" % ("done" if not left else "peer closed %d bytes short" % left,
                                          time.monotonic() - t0))
        if "--on-upload" in opts:
            log("upload: %s: status %d" % (opts["--on-upload"], subprocess.call(["sh", "-c", opts["--on-upload"]])))
        c.sendall((h.hexdigest() if not left else "short-by-%d" % left).encode() + b"\n")
        c.close()

up = socket.socket()
up.bind((ADDR, 0))
up.listen(4)
threading.Thread(target=upload, args=(up,), daemon=True).start()
srv = http.server.ThreadingHTTPServer((ADDR, 0), H)
print(srv.server_address[1], up.getsockname()[1], flush=True)
srv.serve_forever()
