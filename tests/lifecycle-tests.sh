#!/bin/sh
# VMs made and destroyed in one process (tests/kvm/lifecycle.c): needs /dev/kvm.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
pass=0; fail=0
# 100 VMs on a real KVM. In the nested machine (QEMU TCG emulating SVM) KVM making and
# destroying VMs is what stalls that machine most (docs/kvm-hosts.md: 5 of 9 trips of 100
# VMs stalled there); 12 VMs still show any per-VM leak of a descriptor, a thread or memory.
n=100
[ -n "$LKVM_ENV_NESTED" ] && n=12
. tests/lib/stuck.sh
# Bounded well inside run-all's 600 s watchdog, so a hang is this suite's to report: a nested
# rehearsal's run once printed nothing for 600 s. Then each of its threads' kernel stacks (as
# root) say whether KVM itself was stuck there (the nested machine) or the test waited on itself.
"$BUILD/tests/kvm/lifecycle" "$BUILD/tests/guests/hello16.bin" $n > "$out" 2>&1 &
lc=$!
lim=${LKVM_LIFECYCLE_LIMIT:-300}
if gone $lc "$lim"; then
	wait $lc; rc=$?
	if [ $rc = 0 ] && grep -q '^PASS lifecycle' "$out"; then
		grep '^PASS' "$out"; pass=1
	else
		echo "FAIL lifecycle: status $rc: $(grep -v '^hello' "$out" | tr -d '\r' | tail -n 5 | tr '\n' '|')"; fail=1
	fi
else
	stacks=$(for t in /proc/$lc/task/*; do
		printf '%s %s: %s|' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" "$(head -n 4 "$t/stack" 2>/dev/null | sed 's/^\[<[0-9a-f]*>\] //' | tr '\n' ' ')"
	done)
	stop $lc > /dev/null 2>&1
	echo "FAIL lifecycle: still running after $lim s ($(grep -c '^hello' "$out") guests had said hello; ${LKVM_ENV_NESTED:+nested machine; }its threads' kernel stacks: ${stacks:-unreadable}): $(grep -v '^hello' "$out" | tr -d '\r' | tail -n 3 | tr '\n' '|')"
	fail=1
fi
echo "lifecycle: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
