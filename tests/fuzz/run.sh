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
FLAGS="-g -O1 -std=gnu11 -Iinclude -Itests/lib -Ibuild/gen -D_GNU_SOURCE -pthread -fno-sanitize-recover=all"
# All of lkvm's library code and the test library (tests/lib: fake VM, virtio driver), built
# once with the fuzzers' sanitizers; each target links against it and replaces, with
# -Wl,--wrap, only what must not run in a fuzzer.
LIBSRC=$(ls lib/*.c kvm/*.c control/*.c x86/*.c hw/*.c virtio/*.c p9/*.c disk/*.c net/*.c term/*.c gdb/*.c snapshot/*.c tests/lib/*.c 2>/dev/null)
mkdir -p "$OUT/lib"
objs= stale=
for src in $LIBSRC; do
	obj=$OUT/lib/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find include tests/lib -newer "$obj" -name '*.h' | head -n 1)" ]; then
		stale="$stale $src"
	fi
	objs="$objs $obj"
done
# One compiler per core: the sanitized library is most of the smoke run's time.
: > "$OUT/lib.log"
export CC FLAGS OUT
# shellcheck disable=SC2016,SC2086
if [ -n "$stale" ] && ! printf '%s\n' $stale | xargs -P "$(nproc)" -n 1 sh -c '
	obj=$OUT/lib/$(echo "$1" | tr / _ | sed "s/\.c\$/.o/")
	$CC $FLAGS -fsanitize=fuzzer-no-link,address,undefined -c -o "$obj" "$1" 2> "$obj.log" && exit 0
	{ echo "$1:"; cat "$obj.log"; } >> "$OUT/lib.log"; rm -f "$obj"; exit 1' sh; then
	fail fuzz "the library does not build: $(tail -5 "$OUT/lib.log" | tr '\n' '|')"; suite_end; exit 1
fi
rm -f "$OUT/liblkvm.a"
ar rcs "$OUT/liblkvm.a" $objs build/bios/bios_blob.o
FLAGS="$FLAGS -fsanitize=fuzzer,address,undefined"
LIBS="$OUT/liblkvm.a -laio -luring -lz"
# target: link flags beyond the library: -Wl,--wrap of a function its harness replaces
targets="boot:
9p:
net_user:
tcp_merge:
control:
virtq:-Wl,--wrap=pr_warn tests/fuzz/dev_stubs.c
blk:-Wl,--wrap=pr_warn tests/fuzz/dev_stubs.c
qcow2:-Wl,--wrap=pr_warn tests/fuzz/dev_stubs.c
devices:-Wl,--wrap=pr_warn,--wrap=term_output tests/fuzz/dev_stubs.c
vsock:-Wl,--wrap=pr_warn tests/fuzz/dev_stubs.c
gdb:-Wl,--wrap=ioctl,--wrap=pr_warn
snapshot:-Wl,--wrap=pr_warn,--wrap=term_output tests/fuzz/dev_stubs.c
agent:cmd/agent_host.c
oci_json:cmd/oci_config.c"
while IFS=: read -r name deps; do
	[ -n "$name" ] || continue
	# shellcheck disable=SC2086
	if ! $CC $FLAGS -o "$OUT/fuzz_$name" "tests/fuzz/fuzz_$name.c" $deps $LIBS < /dev/null 2> "$OUT/fuzz_$name.log"; then
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
