#!/bin/sh
# The sanitized build (make SANITIZE=1) stops at its first report. Two small
# programs with a deliberate bug, built by make with the project's SANITIZE
# flags: each must exit non-zero with the sanitizer's report and never reach
# the line after the bug, both with make check's UBSAN_OPTIONS/ASAN_OPTIONS
# and with none (the flags alone must be enough).
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/suite.sh
suite_init sanitizers
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
SAN=build-san	# SANITIZE=1's build directory, whatever this run's BUILD is
if ! make -s -B SANITIZE=1 $SAN/tests/host/ub_probe $SAN/tests/host/asan_probe > "$T/make" 2>&1; then
	fail "sanitizer probes" "do not build: $(tail -n 3 "$T/make" | tr '\n' '|')"
	suite_end; exit
fi
# probe NAME BINARY REPORT ENV...: non-zero status, REPORT on stderr, nothing after the bug.
probe() {
	name=$1 bin=$2 report=$3; shift 3
	env "$@" "$bin" > "$T/out" 2> "$T/err"; rc=$?
	if [ $rc != 0 ] && grep -q "$report" "$T/err" && ! grep -q "went on" "$T/out"; then
		pass "$name: status $rc at the first report ($(grep -m1 -o "$report.*" "$T/err" | cut -c1-60))"
	else
		fail "$name" "status $rc, stdout '$(head -c 100 "$T/out")', stderr '$(head -c 200 "$T/err" | tr '\n' '|')'"
	fi
}
probe "UBSan stops (make check's options)" $SAN/tests/host/ub_probe "runtime error: signed integer overflow" \
	UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
probe "UBSan stops (flags alone)" $SAN/tests/host/ub_probe "runtime error: signed integer overflow" \
	-u UBSAN_OPTIONS UBSAN_OPTIONS=halt_on_error=0
probe "ASan stops" $SAN/tests/host/asan_probe "heap-buffer-overflow" -u ASAN_OPTIONS
suite_end
