#!/bin/sh
# Build every libFuzzer target with clang (ASan+UBSan) and run each for a while.
# usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]   (make fuzz; CI uses a short smoke time)
# A crash leaves its input in tests/fuzz/crashes/; turn it into a regression test.
# Reports with tests/lib/suite.sh as suite $FUZZ_SUITE (default "fuzz").
SECS=${1:-60}
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/suite.sh
suite_init "${FUZZ_SUITE:-fuzz}"
OUT=build-fuzz
mkdir -p "$OUT" tests/fuzz/crashes
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { fail fuzz "$CC not installed (apt-get install clang libclang-rt-14-dev)"; suite_end; exit 1; }
make -s build/gen/syscall_names.h build/bios/bios_blob.o || { fail fuzz "cannot build the generated headers and the BIOS"; suite_end; exit 1; }
FLAGS="-g -O1 -std=gnu11 -Iinclude -Ibuild/gen -D_GNU_SOURCE -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
# target: sources it needs beyond its own file (and link flags: libraries, -Wl,--wrap of a
# function its stubs replace)
targets="boot:x86/boot.c x86/e820.c x86/bios.c kvm/util.c kvm/guest_mem.c build/bios/bios_blob.o
9p:virtio/p9_server.c kvm/util.c
net_user:net/checksum.c net/user.c net/user_dhcp.c net/user_udp.c net/user_tcp.c kvm/util.c
control:kvm/control.c kvm/json.c kvm/util.c kvm/guest_mem.c tests/fuzz/vm_stubs.c
virtq:virtio/virtqueue.c kvm/guest_mem.c kvm/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn
blk:virtio/blk.c virtio/virtqueue.c virtio/pci.c hw/pci_host.c disk/disk.c disk/raw.c disk/qcow2.c kvm/bus.c kvm/irq.c kvm/guest_mem.c kvm/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn -laio -lz
qcow2:disk/disk.c disk/raw.c disk/qcow2.c kvm/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=pr_warn -lz
devices:hw/serial.c hw/i8042.c hw/rtc.c hw/pit.c hw/pci_host.c hw/debug_ports.c kvm/bus.c kvm/irq.c kvm/util.c tests/fuzz/dev_stubs.c -Wl,--wrap=xcalloc,--wrap=pr_warn"
for extra in tests/fuzz/targets.d/*.txt; do
	[ -f "$extra" ] && targets="$targets
$(cat "$extra")"
done
while IFS=: read -r name deps; do
	[ -n "$name" ] || continue
	# shellcheck disable=SC2086
	if ! $CC $FLAGS -o "$OUT/fuzz_$name" "tests/fuzz/fuzz_$name.c" $deps < /dev/null 2> "$OUT/fuzz_$name.log"; then
		fail "fuzz_$name" "does not build: $(tail -5 "$OUT/fuzz_$name.log" | tr '\n' '|')"; continue
	fi
	mkdir -p "tests/fuzz/corpus/$name" "$OUT/corpus-$name"
	log="$OUT/fuzz_$name.run"
	if "$OUT/fuzz_$name" -max_total_time="$SECS" -rss_limit_mb=1024 -artifact_prefix=tests/fuzz/crashes/"$name"- \
		"$OUT/corpus-$name" "tests/fuzz/corpus/$name" < /dev/null > "$log" 2>&1; then
		runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
		if [ "${runs:-0}" -gt 0 ]; then pass "fuzz_$name: $runs executions in ${SECS}s, no crash"
		else fail "fuzz_$name" "ran no input: $(tail -3 "$log" | tr '\n' '|')"; fi
	else
		fail "fuzz_$name" "crash, see $log and tests/fuzz/crashes/"; tail -20 "$log"
	fi
done <<TARGETS
$targets
TARGETS
suite_end
