#!/bin/sh
# VMs made and destroyed in one process (tests/kvm/lifecycle.c): needs /dev/kvm.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
pass=0; fail=0
if timeout 600 "$BUILD/tests/kvm/lifecycle" "$BUILD/tests/guests/hello16.bin" 100 > "$out" 2>&1 &&
   grep -q '^PASS lifecycle' "$out"; then
	grep '^PASS' "$out"; pass=1
else
	echo "FAIL lifecycle: $(grep -v '^hello' "$out" | tr -d '\r' | tail -n 5 | tr '\n' '|')"; fail=1
fi
echo "lifecycle: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
