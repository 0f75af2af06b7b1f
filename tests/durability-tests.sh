#!/bin/sh
# A guest's acknowledged writes survive lkvm being killed: the guest writes
# through virtio-blk and fsyncs (FLUSH, answered only after fdatasync), then
# lkvm gets SIGKILL and the host checks the image. Needs /dev/kvm (kvm-env).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init durability
K=$(cat .cache/kernel/current 2>/dev/null)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ -z "$K" ] || [ ! -f "$K/bzImage" ]; then
	fail durability "no test kernel (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi
sh tests/kernel/mkinitramfs.sh "$T/init.cpio.gz" tests/kernel/init-durability.sh
dd if=/dev/zero of="$T/disk.img" bs=1M count=4 2>/dev/null
"$BUILD/lkvm" run -k "$K/bzImage" -i "$T/init.cpio.gz" -d "$T/disk.img" -p quiet < /dev/null > "$T/out" 2>&1 &
pid=$!
i=0
while [ $i -lt 1200 ] && ! grep -q LKVM-FLUSHED "$T/out"; do sleep 0.1; i=$((i + 1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
n=$(sed -n 's/.*LKVM-FLUSHED \([0-9]*\).*/\1/p' "$T/out" | tr -d '\r')
i=0; while [ $i -lt 64 ]; do echo "durable-block-$i"; i=$((i + 1)); done > "$T/pattern"
if [ -n "$n" ] && head -c "$n" "$T/disk.img" | cmp -s - "$T/pattern"; then
	pass "durability: $n bytes the guest flushed are in the image after kill -9"
else
	fail durability "flushed='$n'; output: $(tail -n 5 "$T/out" | tr '\n' '|')"
fi
suite_end
