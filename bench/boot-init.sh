#!/bin/sh
# Kernel start to init, lkvm against QEMU microvm: the same test kernel (its vmlinux through
# PVH for both; lkvm also with its bzImage), the same initramfs (bench/init-exit.c: one
# console byte, the boot-timer mark, exit through port 0xf4) and the same command line, in the
# same run. Fork to init's console byte and to the VM's exit. Needs /dev/kvm where Linux user
# space runs (bench/run.sh runs it through tests/kvm-env.sh, so the nested machine on hosts
# like ours, where every figure is QEMU TCG's time more than either VMM's). Prints markdown.
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
LKVM=$(pwd)/$B/lkvm
O=$B/bench
KD=$(cat .cache/kernel/current 2>/dev/null)
RUNS=${BENCH_BOOT_RUNS:-10}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
row() { echo "$2" | sed "s/first-byte ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\) | exit ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\)/| $1 | \1 \/ \2 \/ \3 | \4 \/ \5 \/ \6 |/"; }
[ -f "$KD/vmlinux" ] && [ -f "$KD/bzImage" ] || { echo "bench/boot-init.sh: no test kernel in .cache/kernel (sh tests/prepare-kernels.sh)" >&2; exit 1; }
[ -x $O/timeit ] || cc -O2 -o $O/timeit bench/timeit.c
cc -O2 -static -nostdlib -fno-stack-protector -o "$T/init" bench/init-exit.c || exit 1
mkdir -p "$T/root/dev" && cp "$T/init" "$T/root/init"
(cd "$T/root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$T/init.cpio.gz"
CMDLINE="console=ttyS0 quiet loglevel=0 panic=-1"
QCPU=host
[ -d /sys/module/kvm_pvm ] && QCPU=host,-arch-capabilities
step "boot to init: lkvm"
lp=$($O/timeit "$RUNS" timeout 120 $LKVM run -q -m 256 --network mode=none -k "$KD/vmlinux" -i "$T/init.cpio.gz" -p "$CMDLINE" < /dev/null) || exit 1
lb=$($O/timeit "$RUNS" timeout 120 $LKVM run -q -m 256 --network mode=none -k "$KD/bzImage" -i "$T/init.cpio.gz" -p "$CMDLINE" < /dev/null) || exit 1
step "boot to init: QEMU microvm"
qm=$($O/timeit "$RUNS" timeout 120 qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off -accel kvm -cpu $QCPU -m 256 \
	-nodefaults -no-user-config -display none -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4 \
	-kernel "$KD/vmlinux" -initrd "$T/init.cpio.gz" -append "$CMDLINE" < /dev/null) || exit 1
# lkvm's own reading of the mark: VM made to init's port write (-v prints it).
bt=$(for i in 1 2 3 4 5; do $LKVM run -v -m 256 --network mode=none -k "$KD/vmlinux" -i "$T/init.cpio.gz" -p "$CMDLINE" < /dev/null 2>&1 >/dev/null |
	sed -n 's/.*boot timer: the guest.s mark \([0-9.]*\) ms.*/\1/p'; done | sort -n | sed -n 3p)
echo "### Kernel start to init ($RUNS runs each; the test kernel, a one-syscall init, \`$CMDLINE\`)"
echo
echo "| VMM (kernel image) | fork to init's first byte (min / median / max ms) | fork to VM exit (min / median / max ms) |"
echo "|---|---|---|"
row "lkvm (vmlinux, PVH)" "$lp"
row "lkvm (bzImage)" "$lb"
row "QEMU -M microvm (vmlinux, PVH)" "$qm"
echo
echo "Median fork to init, lkvm / QEMU microvm, same vmlinux: **$(ratio "$(echo "$lp" | med first-byte)" "$(echo "$qm" | med first-byte)")**; lkvm's bzImage / QEMU's vmlinux: $(ratio "$(echo "$lb" | med first-byte)" "$(echo "$qm" | med first-byte)"). lkvm's boot-timer port (VM made to init's mark, median of 5): ${bt:-not read} ms."
