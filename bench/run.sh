#!/bin/sh
# make bench: build the benchmark guests and tools, measure inside the KVM
# environment (tests/kvm-env.sh), measure the device layer on the host
# (bench/devices.sh), and write the figures into bench/README.md.
set -e
cd "$(dirname "$0")/.."
B=${BUILD:-build}
O=$B/bench
mkdir -p $O
cc -O2 -o $O/timeit bench/timeit.c
cc -O2 -o $O/bare_kvm bench/bare_kvm.c
cc -O2 -o $O/floor_pvh bench/floor_pvh.c
for e in 0 1; do
	cc -m64 -DEXIT=$e -c -o $O/pvh$e.o bench/pvh.S
	ld -m elf_x86_64 -T bench/pvh.ld -o $O/pvh$e.elf $O/pvh$e.o
done
mv $O/pvh1.elf $O/pvh-exit.elf; mv $O/pvh0.elf $O/pvh-halt.elf
for kind in pio mmio; do
	for n in 0 5000; do
		m=0; [ $kind = mmio ] && m=1
		cc -m32 -DN=$n -DMMIO=$m -c -o $O/exits.o bench/exits.S
		ld -m elf_i386 -Ttext=0 --oformat binary -o $O/exits-$kind-$n.bin $O/exits.o
	done
done
# Device-layer benchmarks: on this host, no KVM needed (bench/devices.c). LKVM_BENCH_DEVICES=FILE
# takes that section from FILE instead (a run whose trip failed left it in $O/devices.md).
dev=$(mktemp)
if [ -n "${LKVM_BENCH_DEVICES:-}" ]; then
	cp "$LKVM_BENCH_DEVICES" "$dev"
elif ! sh bench/devices.sh > "$dev"; then
	printf '### Device layer\n\nNot measured in this run: bench/devices.sh failed (see the output of make bench).\n' > "$dev"
fi
out=$(mktemp)
# The nested machine (where /dev/kvm cannot run Linux user space) stalls or its own kernel
# crashes now and then (docs/kvm-hosts.md): such a trip is said and made once more. Any
# other failure, or a second one, ends make bench; the device section stays in $O/devices.md.
trip=1
while ! { LKVM_ENV_MEM=${LKVM_ENV_MEM:-8192} sh tests/kvm-env.sh sh bench/measure.sh "$B" > "$out" 2> "$out.err"; }; do	# room for two -m 4096 VMMs
	cat "$out.err" >&2
	why=$(cat "$out.err" "$out" | grep -a -m1 -E '^kvm-env: STALL|Kernel panic|BUG: ' | tr -d '\r' | cut -c1-160)
	if [ $trip = 2 ] || [ -z "$why" ] || ! cat "$out.err" "$out" | grep -aq -E '^kvm-env: STALL|Comm: .* [0-9.]*-[0-9]*-amd64 #1 '; then
		cp "$dev" "$O/devices.md"
		echo "bench: the measurement trip failed (trip $trip${why:+: $why}); the device section is in $O/devices.md" >&2
		exit 1
	fi
	echo "bench: the nested machine failed on its own ($why); the trip runs again" >&2
	trip=2
done
cat "$out.err" >&2
cat "$out" "$dev"
# Replace everything after the results marker in the README with this run.
{
	sed '/^<!-- results -->$/q' bench/README.md
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`make bench\` on $(nproc) cores, $(uname -r), $(qemu-system-x86_64 --version | head -n 1)."
	echo
	tr -d '\r' < "$out" | grep -v -e '^kvm-env:' -e 'Power down' -e '^bench: ' -e '^qemu-system' -e '^\[ '
	echo
	cat "$dev"
} > bench/README.md.new
mv bench/README.md.new bench/README.md
# The same ratios as a picture (bench/ratios.svg, linked from the README).
python3 bench/chart.py bench/README.md bench/ratios.svg
rm -f "$out" "$out.err" "$dev"
