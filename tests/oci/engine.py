#!/usr/bin/env python3
"""What an engine does with an OCI runtime, for tests/oci-tests.sh.

  engine.py OCI ID BUNDLE OUT [--console]

OCI is the runtime command (words split on spaces). As a child subreaper
(as conmon and containerd's shim are), it runs `create --bundle BUNDLE
--pid-file OUT/pid ID` with the container's stdout and stderr going to
OUT/stdout and OUT/stderr, saves `state ID` as OUT/state.created, runs
`start ID`, saves OUT/state.started, then waits for the container's
process (a child of ours now, reparented to us) and writes how it ended
to OUT/status ("exit N" or "signal N"), then `state` again as
OUT/state.stopped. With --console it listens on a socket in a new folder
under $TMPDIR, passes
--console-socket, takes the terminal's master fd over SCM_RIGHTS and
copies what the terminal shows to OUT/console.
"""
import array, ctypes, os, socket, subprocess, sys, tempfile, threading

PR_SET_CHILD_SUBREAPER = 36


def main():
    oci, cid, bundle, out = sys.argv[1].split(), sys.argv[2], sys.argv[3], sys.argv[4]
    console = '--console' in sys.argv[5:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit('engine.py: cannot become a child subreaper')
    extra, reader, path = [], None, None
    if console:
        # a socket wants a local file system (OUT may be a 9p share)
        path = os.path.join(tempfile.mkdtemp(), 'console.sock')
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        extra = ['--console-socket', path]

        def take():
            conn, _ = srv.accept()
            fds = array.array('i')
            msg, anc, _, _ = conn.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
            conn.close()
            if not fds:
                open(os.path.join(out, 'console'), 'w').write('NO-FD-RECEIVED')
                return
            with open(os.path.join(out, 'console'), 'wb') as f:
                while True:
                    try:
                        b = os.read(fds[0], 4096)
                    except OSError:  # EIO: the other side closed
                        break
                    if not b:
                        break
                    f.write(b)
                    f.flush()
        reader = threading.Thread(target=take, daemon=True)
        reader.start()
    so = open(os.path.join(out, 'stdout'), 'wb')
    se = open(os.path.join(out, 'stderr'), 'wb')
    pidfile = os.path.join(out, 'pid')
    r = subprocess.run(oci + ['create', '--bundle', bundle, '--pid-file', pidfile] + extra + [cid],
                       stdin=subprocess.DEVNULL, stdout=so, stderr=se)
    if r.returncode != 0:
        open(os.path.join(out, 'status'), 'w').write('create-failed %d' % r.returncode)
        return
    pid = int(open(pidfile).read())

    def state(name):
        s = subprocess.run(oci + ['state', cid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        open(os.path.join(out, name), 'wb').write(s.stdout)
    state('state.created')
    r = subprocess.run(oci + ['start', cid], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    open(os.path.join(out, 'start.out'), 'wb').write(r.stdout)
    state('state.started')
    open(os.path.join(out, 'started'), 'w').write('%d\n' % r.returncode)
    _, st = os.waitpid(pid, 0)
    how = 'exit %d' % os.WEXITSTATUS(st) if os.WIFEXITED(st) else 'signal %d' % os.WTERMSIG(st)
    if reader:
        reader.join(10)
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    state('state.stopped')
    open(os.path.join(out, 'status'), 'w').write(how)


main()
