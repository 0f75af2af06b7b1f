#!/bin/sh
# Build every libFuzzer target with clang (ASan+UBSan) and run each for a while.
# usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]   (make fuzz; CI uses a short smoke time)
# A crash leaves its input in tests/fuzz/crashes/; turn it into a regression test.
SECS=${1:-60}
cd "$(dirname "$0")/../.." || exit 1
OUT=build-fuzz
mkdir -p "$OUT" tests/fuzz/crashes
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not installed (apt-get install clang libclang-rt-14-dev)"; exit 1; }
make -s build/gen/syscall_names.h build/bios/bios_blob.o || exit 1
FLAGS="-g -O1 -std=gnu11 -Iinclude -Itests/lib -Ibuild/gen -D_GNU_SOURCE -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# target: sources it needs beyond its own file (and link flags: libraries, -Wl,--wrap of a
# function its stubs replace)
targets="boot:x86/boot.c x86/e820.c x86/bios.c lib/util.c kvm/guest_mem.c build/bios/bios_blob.o
9p:virtio/p9_server.c lib/util.c
net_user:net/checksum.c net/user.c net/user_dhcp.c net/user_udp.c net/user_tcp.c lib/util.c
control:kvm/control.c lib/json.c lib/util.c kvm/guest_mem.c tests/fuzz/vm_stubs.c
virtq:virtio/virtqueue.c kvm/guest_mem.c lib/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn
blk:virtio/blk.c virtio/virtqueue.c virtio/pci.c hw/pci_host.c disk/disk.c disk/raw.c disk/qcow2.c kvm/bus.c kvm/irq.c kvm/guest_mem.c lib/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn -laio -lz
qcow2:disk/disk.c disk/raw.c disk/qcow2.c lib/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn -lz
devices:hw/serial.c hw/i8042.c hw/rtc.c hw/pit.c hw/pci_host.c hw/debug_ports.c kvm/bus.c kvm/irq.c lib/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=xcalloc,--wrap=pr_warn"
for extra in tests/fuzz/targets.d/*.txt; do
	[ -f "$extra" ] && targets="$targets
$(cat "$extra")"
done
pass=0; fail=0
echo "$targets" | while IFS=: read -r name deps; do
	[ -n "$name" ] || continue
	# shellcheck disable=SC2086
	if ! $CC $FLAGS -o "$OUT/fuzz_$name" "tests/fuzz/fuzz_$name.c" $deps 2> "$OUT/fuzz_$name.log"; then
		echo "FAIL fuzz_$name: does not build"; tail -5 "$OUT/fuzz_$name.log"; echo x >> "$OUT/failed"; continue
	fi
	mkdir -p "tests/fuzz/corpus/$name" "$OUT/corpus-$name"
	log="$OUT/fuzz_$name.run"
	if "$OUT/fuzz_$name" -max_total_time="$SECS" -rss_limit_mb=1024 -artifact_prefix=tests/fuzz/crashes/"$name"- \
		"$OUT/corpus-$name" "tests/fuzz/corpus/$name" > "$log" 2>&1; then
		runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
		echo "PASS fuzz_$name: $runs executions in ${SECS}s, no crash"
	else
		echo "FAIL fuzz_$name: crash, see $log and tests/fuzz/crashes/"; tail -20 "$log"; echo x >> "$OUT/failed"
	fi
done
n=$(cat "$OUT/failed" 2>/dev/null | wc -l); rm -f "$OUT/failed"
total=$(echo "$targets" | grep -c .)
echo "fuzz: $((total - n)) passed, $n failed"
[ "$n" = 0 ]
