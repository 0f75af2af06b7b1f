#!/bin/sh
# Our test kernel on a host whose KVM emulates guest ring 0 (kvm_pvm), run
# directly: it must boot through lkvm's emulator to the exec of /init.
# User space cannot follow there: under kvm_pvm the guest's first `syscall`
# from ring 3 faults at the kernel's entry point (a #PF with the user bit, at
# LSTAR), a limit of PVM for guests not built for it (see the machine notes).
# So the check is the kernel's own "Run /init as init process", and the time.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init pvm-boot
K=$(cat .cache/kernel/current 2>/dev/null)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ -z "$K" ] || [ ! -f "$K/vmlinux" ]; then
	fail "pvm boot" "no test kernel (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi
# The PVH entry (no decompressor runs in emulated ring 0) and a 10 KB initramfs whose
# /init (tests/kernel/tiny-init.c) makes one write(2): it says whether user space runs.
mkdir "$T/root"
if ! cc -static -nostdlib -O2 -fno-stack-protector -o "$T/root/init" tests/kernel/tiny-init.c; then
	fail "pvm boot" "cannot build tests/kernel/tiny-init.c"
	suite_end; exit 1
fi
(cd "$T/root" && echo init | cpio -o -H newc 2>/dev/null) > "$T/init.cpio"
start=$(date +%s)
timeout -k 10 400 "$BUILD/lkvm" run -k "$K/vmlinux" -i "$T/init.cpio" -m 128 --network mode=none -p "printk.time=1" \
	< /dev/null > "$T/out" 2>&1 &
pid=$!
i=0
while [ $i -lt 3900 ] && kill -0 $pid 2>/dev/null && ! grep -q "Run /init as init process" "$T/out"; do
	sleep 0.1; i=$((i + 1))
done
sleep 3	# what user space does next, for the log
kill $pid 2>/dev/null; wait $pid 2>/dev/null
t=$(tr -d '\r' < "$T/out" | sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p')
if [ -n "$t" ]; then
	pass "kvm_pvm: the test kernel ran through lkvm's emulator to the exec of /init (${t}s guest time, $(( $(date +%s) - start ))s wall)"
	tr -d '\r' < "$T/out" | grep -m1 -E "init\[1\]: segfault|LKVM-USERSPACE-SYSCALL-OK" | sed 's/^/  then: /'
else
	fail "kvm_pvm boot" "no 'Run /init' in $(( $(date +%s) - start ))s: $(tail -n 4 "$T/out" | tr '\n' '|')"
fi
suite_end
