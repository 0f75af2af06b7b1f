#!/bin/sh
# lkvm sandbox --snapshot-cache figures (bench/README.md, "Sandbox"): Linux user space in the
# guest, so on our machines it runs in the nested machine:
#   sh tests/kvm-env.sh sh bench/sandbox-cache.sh
# `lkvm sandbox -- true` end to end, RUNS times each, interleaved in the same run: without a
# cache (a boot), cold (an empty cache: a boot, then the snapshot saved), warm (restored from
# the entry the first cold run made). Medians and the ratio warm / no cache. Then where a warm
# run's time goes: strace -f -c of one warm run (syscall time of lkvm and its VM process).
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
LKVM=$(pwd)/build/lkvm
K=$(cd "$(cat .cache/kernel/current)" && pwd)/bzImage
RUNS=${RUNS:-5}
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
trap 'rm -rf "$T"' EXIT
SB="$LKVM sandbox -k $K -m 512 --network mode=none"
median_of_runs() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"; }
echo "where: $(if [ -n "$LKVM_ENV_NESTED" ]; then echo "nested machine (QEMU TCG + SVM), KVM there"; else echo "this host's KVM"; fi); $(nproc) CPUs"
$SB --snapshot-cache="$T/warm" -- true < /dev/null || { echo "the first cold run failed"; exit 1; }
plain= cold= warm=
i=0
while [ $i -lt "$RUNS" ]; do
	t0=$(ms); $SB -- true < /dev/null; t1=$(ms); plain="$plain $((t1 - t0))"
	rm -rf "$T/cold"
	t0=$(ms); $SB --snapshot-cache="$T/cold" -- true < /dev/null; t1=$(ms); cold="$cold $((t1 - t0))"
	t0=$(ms); $SB --snapshot-cache="$T/warm" -- true < /dev/null; t1=$(ms); warm="$warm $((t1 - t0))"
	i=$((i + 1))
done
p=$(median_of_runs $plain); c=$(median_of_runs $cold); w=$(median_of_runs $warm)
echo "lkvm sandbox -- true, end to end ms, $RUNS runs each:"
echo "  no cache (boot):          $plain (median $p)"
echo "  cold (boot + save):       $cold (median $c)"
echo "  warm (restore):           $warm (median $w)"
echo "  ratio warm / no cache: $(awk "BEGIN { printf \"%.2f\", $w / $p }"); cold / no cache: $(awk "BEGIN { printf \"%.2f\", $c / $p }")"
echo "entry: $(du -sh "$T/warm"/* | cut -f1) on disk (RAM file with holes), RAM of the VM 512 MiB"
if command -v strace > /dev/null; then
	echo "strace -f -c of one warm run (seconds of syscall time, top 12):"
	strace -f -c -o "$T/strace" $SB --snapshot-cache="$T/warm" -- true < /dev/null
	sed -n '1,16p' "$T/strace"
fi
