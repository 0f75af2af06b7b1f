#!/bin/sh
# lkvm run --agent in a real guest: the guest keeps its own init (a script here, PID 1 after
# lkvm's agent-init execs it) while lkvm's agent runs beside it, and lkvm exec runs commands in
# that VM through the VM's own vsock socket: output, status and PID 1's identity checked.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init agent-run
LKVM=$(pwd)/$BUILD/lkvm
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
D=$(mktemp -d "$(pwd)/$BUILD/agent-run.XXXXXX")	# the guest's root is this host's /: its init lives here
R=$(mktemp -d)
export XDG_RUNTIME_DIR=$R
vm=
trap '[ -n "$vm" ] && kill $vm 2>/dev/null; rm -rf "$D" "$R"' EXIT
if [ ! -f "$K" ]; then
	fail "agent-run" "no test kernel (tests/prepare-kernels.sh)"; suite_end; exit 1
fi
tok=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
cat > "$D/init.sh" <<EOF2
#!/bin/sh
mount -t proc proc /proc; mount -t devtmpfs dev /dev; mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
echo GUEST-INIT-RAN-$tok > /dev/console
while :; do sleep 1; done
EOF2
chmod +x "$D/init.sh"
"$LKVM" run --name agent-vm -k "$K" -m 256 --network mode=none --agent --9p /,/dev/root,ro,xdev \
	-p "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 ro quiet init=$D/init.sh" \
	< /dev/null > "$D/vm.out" 2>&1 &
vm=$!
i=0; while [ $i -lt 600 ] && ! grep -q "GUEST-INIT-RAN-$tok" "$D/vm.out"; do sleep 0.5; i=$((i + 1)); done
out=$(timeout -k 10 120 "$LKVM" exec agent-vm -e T=$tok -- sh -c 'echo "t=$T pid1=$(tr "\0" " " < /proc/1/cmdline)"; exit 5' < /dev/null 2> "$D/exec.err")
rc=$?
want="t=$tok pid1=/bin/sh $D/init.sh "
[ $rc = 5 ] && [ "$out" = "$want" ] &&
	pass "lkvm run --agent: the guest's own init is PID 1 ($D/init.sh) and lkvm exec ran a command beside it (its -e value, output, status 5)" ||
	fail "run --agent" "rc=$rc out='$out' want '$want' err: $(tr '\n' '|' < "$D/exec.err") vm: $(tail -n 3 "$D/vm.out" | tr '\n' '|')"
"$LKVM" stop agent-vm > /dev/null 2>&1; wait $vm; vm=
suite_end
