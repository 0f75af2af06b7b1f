#!/bin/sh
# lkvm sandbox figures (bench/README.md, "Sandbox"): needs Linux user space in the guest,
# so on our machines it runs in the nested machine:
#   sh tests/kvm-env.sh sh bench/sandbox.sh
# Prints: start to the command's first output byte and `lkvm sandbox -- true` end to end
# (RUNS each, median), then N MiB of stdout through cat against the host's own pipe, both
# in this same run. LKVM_BENCH_MIB sets N (default 64: the nested machine moves a few MiB/s).
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
O=build/bench; mkdir -p $O
LKVM=$(pwd)/build/lkvm
K=$(cd "$(cat .cache/kernel/current)" && pwd)/bzImage
RUNS=${RUNS:-5}
MIB=${LKVM_BENCH_MIB:-64}
[ -x $O/timeit ] || cc -O2 -o $O/timeit bench/timeit.c || exit 1
export XDG_RUNTIME_DIR=$(mktemp -d)
SB="$LKVM sandbox -k $K -m 512 --network mode=none"
echo "where: $(if [ -n "$LKVM_ENV_NESTED" ]; then echo "nested machine (QEMU TCG + SVM), KVM there"; else echo "this host's KVM"; fi); $(nproc) CPUs"
echo "first byte (start to the command's output) and exit, $RUNS runs of: lkvm sandbox -- echo x"
$O/timeit "$RUNS" $SB -- echo x < /dev/null
i=0; all=
while [ $i -lt "$RUNS" ]; do
	t0=$(ms); $SB -- true < /dev/null; t1=$(ms); all="$all $((t1 - t0))"; i=$((i + 1))
done
echo "lkvm sandbox -- true, end to end ms:$all (median $(echo $all | tr ' ' '\n' | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"))"
bytes=$((MIB * 1048576))
t0=$(ms); head -c $bytes /dev/zero | cat | cat > /dev/null; t1=$(ms); host=$((t1 - t0))
t0=$(ms); n=$($SB -- head -c $bytes /dev/zero < /dev/null | cat | wc -c); t1=$(ms); guest=$((t1 - t0))
t0=$(ms); $SB -- true < /dev/null; t1=$(ms); boot=$((t1 - t0))
[ "$n" = $bytes ] || echo "WRONG: got $n bytes of $bytes"
xfer=$((guest - boot)); [ $xfer -gt 0 ] || xfer=1
echo "$MIB MiB of stdout: host pipe (head | cat | cat) ${host} ms = $((MIB * 1000 / (host > 0 ? host : 1))) MiB/s;" \
	"lkvm sandbox -- head (| cat) ${guest} ms, minus a 'true' run's ${boot} ms = ${xfer} ms = $((MIB * 1000 / xfer)) MiB/s;" \
	"ratio guest/host time $(awk "BEGIN { printf \"%.1f\", $xfer / ($host > 0 ? $host : 1) }")"
