#!/bin/sh
# FLUSH from a real guest, end to end (needs /dev/kvm: kvm-env). The guest
# (tests/kernel/init-durability.sh) writes N blocks through virtio-blk, each
# followed by fsync (a FLUSH), and prints a line after each. lkvm runs under
# strace, which delays every fdatasync by DELAY seconds and timestamps the
# image's writes, their completions, the fdatasyncs and the guest's console:
# tests/flush-trace.py checks that each FLUSH became an fdatasync after the
# writes it covers and before the guest learnt it was done (a FLUSH answered
# early shows as the guest's line inside the delay). Then lkvm gets SIGKILL and
# the host finds every flushed block in the image (that alone proves no FLUSH:
# the data is still in the host's page cache, hence the trace). The disk runs
# aio=native: the trace must see each write as a syscall (io_submit), which
# io_uring's, handed over in the ring's memory, are not. The FLUSH path that
# waits for the queue's writes before the fdatasync is the same for every
# engine (virtio/blk.c).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init durability
K=$(cat .cache/kernel/current 2>/dev/null)
N=4 DELAY=3
T=$(mktemp -d)
spid=
trap '[ -n "$spid" ] && kill -9 $spid 2>/dev/null; rm -rf "$T"' EXIT
if [ -z "$K" ] || [ ! -f "$K/bzImage" ]; then
	fail durability "no test kernel (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi
need_tool strace strace "flush order" "flushed data after kill -9" || { suite_end; exit; }
need_tool python3 python3 "flush order" "flushed data after kill -9" || { suite_end; exit; }
sh tests/kernel/mkinitramfs.sh "$T/init.cpio.gz" tests/kernel/init-durability.sh
dd if=/dev/zero of="$T/disk.img" bs=1M count=4 2>/dev/null
strace -f --seccomp-bpf -ttt -T -y -x -s 65536 -o "$T/trace" \
	-e trace=fdatasync,io_submit,io_getevents,pwritev,pwritev2,pwrite64,write \
	-e inject=fdatasync:delay_exit=$((DELAY * 1000000)) \
	"$BUILD/lkvm" run -k "$K/bzImage" -i "$T/init.cpio.gz" -d "$T/disk.img,aio=native" -p "quiet lkvm_flushes=$N" \
	< /dev/null > "$T/out" 2>&1 &
spid=$!
i=0
while [ $i -lt 1800 ] && kill -0 $spid 2>/dev/null && ! grep -q LKVM-FLUSHED-ALL "$T/out"; do sleep 0.1; i=$((i + 1)); done
lpid=$(ps -o pid= --ppid $spid | tr -d ' ')
[ -n "$lpid" ] && kill -9 $lpid
wait $spid 2>/dev/null; spid=
tr -d '\r' < "$T/out" | grep -q "^LKVM-FLUSHED-ALL $N$" || fail "guest flushes" "the guest did not finish its $N flushes: $(tail -n 5 "$T/out" | tr '\n' '|')"

# 1. The order of each FLUSH, from the trace.
python3 tests/flush-trace.py "$T/trace" "$T/disk.img" $N $DELAY > "$T/order"; rc=$?
sed 's/^/  /' "$T/order"
if [ $rc = 0 ] && [ "$(grep -c '^PASS' "$T/order")" = $N ]; then
	pass "flush order: $N FLUSHes from the guest each became an fdatasync of the image after the writes they cover and before the guest saw them done"
else
	fail "flush order" "$(grep -v '^PASS' "$T/order" | sed 's/^FAIL //' | head -n 3 | tr '\n' '|')"
fi

# 2. After kill -9, the image holds every block the guest was told is flushed.
i=0; while [ $i -lt $N ]; do j=0; while [ $j -lt 128 ]; do printf 'durable-block-%03d-line-%03d.....\n' $i $j; j=$((j + 1)); done; i=$((i + 1)); done > "$T/pattern"
if head -c $((N * 4096)) "$T/disk.img" | cmp -s - "$T/pattern"; then
	pass "flushed data after kill -9: the $N blocks are in the image"
else
	fail "flushed data after kill -9" "the image differs from what the guest wrote: $(head -c 64 "$T/disk.img" | tr -c '[:print:]' .)"
fi
suite_end
