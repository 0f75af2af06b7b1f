#!/bin/sh
# lkvm sandbox's confinement in a real guest (issue 22), lkvm started as root.
# What the guest can read: /etc/shadow, /root/.ssh, another user's home,
# /var/lib, the host's /proc and a file of the working tree the invoking user
# (SUDO_UID 65534 here) cannot read all fail, a readable one works; the same
# job with --host-root reads them (the test can tell). Where it can connect
# (policy=sandbox): listeners on the host's 127.0.0.1, a private and a
# link-local address are refused (at once: RST, and counted by lkvm stat),
# a public address connects; --host-loopback opens 127.0.0.1 only,
# --net-allow HOST:PORT that one port only.
# The test confines itself first: a private mount namespace (tmpfs over /tmp,
# /root, /home, /var/lib, holding its planted secrets) and a private network
# namespace whose lo carries the test's addresses.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init sandbox-confine
if [ -z "${LKVM_CONFINED:-}" ]; then
	if [ "$(id -u)" != 0 ]; then
		skip "sandbox confinement" "needs root (lkvm started as root; private namespaces)"
		suite_end; exit 0
	fi
	exec env LKVM_CONFINED=1 unshare -m -n --propagation private sh "$0" "$@"
fi
PY=/usr/bin/python3	# not a shim under /root: the test hides /root
LKVM=$(pwd)/$BUILD/lkvm
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
if [ ! -f "$K" ] || [ ! -x "$PY" ] || ! command -v ip > /dev/null; then
	fail "sandbox confinement" "needs the test kernel (tests/prepare-kernels.sh), $PY and ip (iproute2)"
	suite_end; exit 1
fi
mount -t tmpfs tmp /tmp && mount -t tmpfs root /root && mount -t tmpfs home /home && mount -t tmpfs varlib /var/lib || {
	fail "sandbox confinement" "cannot mount the test's tmpfs folders"; suite_end; exit 1; }
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
mkdir -p /root/.ssh /home/other && echo SECRET > /root/.ssh/id_test && echo SECRET > /home/other/secret && echo SECRET > /var/lib/secret
chmod 0755 /home/other
# The working tree: in the checkout (not under /tmp, which is the guest's scratch).
W=$(mktemp -d "$(pwd)/$BUILD/confine.XXXXXX")
trap 'rm -rf "$T" "$W"' EXIT
chmod 0755 "$W"
cp tests/sandbox/probe.py "$W/probe.py" && chmod 0644 "$W/probe.py"
echo tree-ok > "$W/readable" && chmod 0644 "$W/readable"
echo SECRET > "$W/unreadable" && chmod 0600 "$W/unreadable"

# The network: lo, with a private, a link-local and a public address of the test's.
ip link set lo up && ip addr add 10.77.0.1/32 dev lo && ip addr add 169.254.77.1/32 dev lo && ip addr add 203.0.113.7/32 dev lo || {
	fail "sandbox network" "cannot set up the test's network namespace"; suite_end; exit 1; }
$PY -c '
import socket, sys, threading
def serve(addr, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(("hello-%s:%d\n" % (addr, port)).encode()); c.close()
for a, p in (("127.0.0.1", 7001), ("10.77.0.1", 7002), ("10.77.0.1", 7003), ("169.254.77.1", 7002), ("203.0.113.7", 7002)):
    threading.Thread(target=serve, args=(a, p), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()' > "$T/srv.out" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null; rm -rf "$T" "$W"' EXIT
i=0; while [ $i -lt 100 ] && ! grep -q ready "$T/srv.out"; do sleep 0.1; i=$((i + 1)); done
TARGETS="10.0.2.2:7001 10.77.0.1:7002 10.77.0.1:7003 169.254.77.1:7002 203.0.113.7:7002"

# run NAME [sandbox options]: the probe as the sandbox's job, as root for SUDO_UID 65534.
# In the nested machine only, a guest lost there (it triple-faulted, or said nothing in 300 s
# where it takes seconds) gets up to three attempts, each printed; any other failure is ours.
run() {
	n=$1; shift
	_a=1
	while :; do
		(cd "$W" && SUDO_UID=65534 SUDO_GID=65534 LKVM_TEST_HOST_SECRET=1 timeout -k 10 300 "$LKVM" sandbox -k "$K" -m 384 --console-log "$T/$n.console" "$@" -- \
			python3 probe.py $TARGETS < /dev/null > "$T/$n.out" 2> "$T/$n.err")
		echo $? > "$T/$n.rc"
		[ -n "${LKVM_ENV_NESTED:-}" ] && [ $_a -lt 3 ] && { grep -q "triple fault" "$T/$n.err" ||
			{ grep -qx "124\|137" "$T/$n.rc" && [ ! -s "$T/$n.out" ]; }; } || break
		_a=$((_a + 1))
		echo "note: the nested machine lost the sandbox guest ($(why $n | cut -c1-400)); attempt $_a of 3"
	done
}
v() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1 | cut -d' ' -f1; }
secs() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1 | cut -d' ' -f2 | tr -d s; }
why() { echo "rc=$(cat "$T/$1.rc" 2>/dev/null) out: $(tr -d '\r' < "$T/$1.out" | tail -n 14 | tr '\n' '|') err: $(head -n 2 "$T/$1.err" | tr '\n' '|') ... $(tail -n 2 "$T/$1.err" | tr '\n' '|')$(
	[ "$(cat "$T/$1.rc" 2>/dev/null)" = 0 ] || echo " kernel's last words: $(tr -d '\r' < "$T/$1.console" 2>/dev/null | tail -n 4 | tr '\n' '|')")"; }

# 1. The default view and policy; lkvm stat read while the job waits.
(cd "$W" && SUDO_UID=65534 SUDO_GID=65534 LKVM_TEST_HOST_SECRET=1 PROBE_WAIT=1 timeout -k 10 300 "$LKVM" sandbox -k "$K" -m 384 --console-log "$T/def.console" --name sbx-confine -- \
	env PROBE_WAIT=1 python3 probe.py $TARGETS < /dev/null > "$T/def.out" 2> "$T/def.err"; echo $? > "$T/def.rc") &
job=$!
i=0; while [ $i -lt 2400 ] && ! grep -q NET-DONE "$T/def.out" 2>/dev/null && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
st=$("$LKVM" stat sbx-confine 2>&1)
touch "$W/stat-done"
wait $job
refused=$(echo "$st" | sed -n 's/.*"net0_refused":\([0-9]*\).*/\1/p')
reads="shadow=$(v def READ-shadow) rootssh=$(v def READ-rootssh) home=$(v def READ-home) varlib=$(v def READ-varlib) unreadable=$(v def READ-unreadable) hostenv=$(v def READ-hostenv)"
if [ "$(cat "$T/def.rc")" = 0 ] && [ "$reads" = "shadow=no rootssh=no home=no varlib=no unreadable=no hostenv=no" ] &&
   [ "$(v def READ-readable)" = yes ] && [ "$(v def PROC1)" = guest ]; then
	pass "sandbox view: /etc/shadow, /root/.ssh, another home, /var/lib, the host's /proc and the tree's 0600 file are not readable; the tree's readable file is"
else
	fail "sandbox view" "$reads readable=$(v def READ-readable) proc1=$(v def PROC1); $(why def)"
fi
lo=$(v def NET-10.0.2.2:7001) pr=$(v def NET-10.77.0.1:7002) ll=$(v def NET-169.254.77.1:7002) pub=$(v def NET-203.0.113.7:7002)
slow=$(for t in 10.0.2.2:7001 10.77.0.1:7002 169.254.77.1:7002; do secs def "NET-$t"; done | awk '$1 > 2 { print }')
if [ "$lo $pr $ll" = "refused refused refused" ] && [ "$pub" = "ok:hello-203.0.113.7:7002" ] && [ -z "$slow" ]; then
	pass "sandbox network policy: host loopback, private and link-local refused at once; a public address connects"
else
	fail "sandbox network policy" "loopback=$lo private=$pr link-local=$ll public=$pub slow:$slow; $(why def)"
fi
if [ -n "$refused" ] && [ "$refused" -ge 4 ]; then
	pass "lkvm stat counts the refused connections (net0_refused=$refused)"
else
	fail "lkvm stat refused count" "stat: $st"
fi

# 2. --host-loopback: 10.0.2.2 reaches 127.0.0.1; the private ranges stay closed.
run hl --host-loopback
if [ "$(v hl NET-10.0.2.2:7001)" = ok:hello-127.0.0.1:7001 ] && [ "$(v hl NET-10.77.0.1:7002)" = refused ] &&
   [ "$(v hl NET-169.254.77.1:7002)" = refused ]; then
	pass "--host-loopback: the host's 127.0.0.1 answers; private and link-local still refused"
else
	fail "--host-loopback" "$(why hl)"
fi

# 3. --net-allow 10.77.0.1:7002: that port only.
run na --net-allow 10.77.0.1:7002
if [ "$(v na NET-10.77.0.1:7002)" = ok:hello-10.77.0.1:7002 ] && [ "$(v na NET-10.77.0.1:7003)" = refused ] &&
   [ "$(v na NET-169.254.77.1:7002)" = refused ] && [ "$(v na NET-10.0.2.2:7001)" = refused ]; then
	pass "--net-allow 10.77.0.1:7002: only that address and port connect"
else
	fail "--net-allow" "$(why na)"
fi

# 4. The control: --host-root and lkvm run's open policy let the same job read and reach it all.
run open --host-root --network mode=user,policy=open
if [ "$(v open READ-rootssh)" = yes ] && [ "$(v open READ-home)" = yes ] && [ "$(v open READ-varlib)" = yes ] &&
   [ "$(v open NET-10.77.0.1:7002)" = ok:hello-10.77.0.1:7002 ] && [ "$(v open NET-10.0.2.2:7001)" = ok:hello-127.0.0.1:7001 ] &&
   grep -q "host-root" "$T/open.err"; then
	pass "control: with --host-root and policy=open the same job reads /root/.ssh, /home and /var/lib and reaches 127.0.0.1 and 10.77.0.1 (--host-root said so on stderr)"
else
	fail "control run (--host-root, policy=open)" "$(why open)"
fi
suite_end
