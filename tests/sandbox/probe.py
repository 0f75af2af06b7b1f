# Inside an lkvm sandbox guest (tests/sandbox-confine-tests.sh): bring the NIC
# up, then report what the guest could read and whom it could reach, one
# "KEY=VALUE" line each. Reads never print what they got, only whether.
import os, socket, subprocess, sys, time

def can_read(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return "yes"
    except OSError:
        return "no"

def can_list(path):
    try:
        os.listdir(path)
        return "yes"
    except OSError:
        return "no"

print("READ-shadow=" + can_read("/etc/shadow"))
print("READ-rootssh=" + ("yes" if can_read("/root/.ssh/id_test") == "yes" or can_list("/root/.ssh") == "yes" else "no"))
print("READ-home=" + can_read("/home/other/secret"))
print("READ-varlib=" + ("yes" if can_read("/var/lib/secret") == "yes" or can_list("/var/lib") == "yes" else "no"))
print("READ-unreadable=" + can_read("unreadable"))
print("READ-readable=" + can_read("readable"))
# The host's /proc is not there: every environ the guest finds is its own processes'.
leaked = "no"
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if b"LKVM_TEST_HOST_SECRET" in open("/proc/%s/environ" % pid, "rb").read():
                leaked = "yes"
        except OSError:
            pass
print("READ-hostenv=" + leaked)
print("PROC1=" + ("guest" if b"sandbox-init" in open("/proc/1/cmdline", "rb").read() else "other"))

targets = sys.argv[1:]
if targets:
    for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                ["ip", "addr", "add", "10.0.2.15/24", "dev", "eth0"],
                ["ip", "route", "add", "default", "via", "10.0.2.2"]):
        subprocess.run(cmd, check=False)
for t in targets:
    host, port = t.rsplit(":", 1)
    start = time.monotonic()
    try:
        s = socket.create_connection((host, int(port)), timeout=15)
        s.settimeout(15)
        got = s.recv(64).decode(errors="replace").strip()
        s.close()
        r = "ok:" + got
    except ConnectionRefusedError:
        r = "refused"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = "error:" + (e.strerror or str(e)).replace(" ", "_")
    print("NET-%s=%s %.1fs" % (t, r, time.monotonic() - start))
print("NET-DONE", flush=True)
# The host reads lkvm stat now; it says when by making a file here.
if os.environ.get("PROBE_WAIT"):
    end = time.monotonic() + 60
    while not os.path.exists("stat-done") and time.monotonic() < end:
        time.sleep(0.2)
