#!/bin/sh
# make check, after the unit tests: host-side shell tests, then every test that
# needs a working /dev/kvm in one go through tests/kvm-env.sh (directly where
# /dev/kvm works, else inside a QEMU TCG guest with nested SVM).
# Each suite prints "<suite>: N passed, N failed"; we sum them at the end.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
UNITS=$(ls "$BUILD"/tests/unit/test_* 2>/dev/null | grep -v '\.d$')

echo "== unit tests"
sh tests/run-unit.sh $UNITS 2>&1 | tee -a "$log"
grep -q '^unit tests: [0-9]* passed, 0 failed' "$log" || status=1

for t in tests/host/*.sh; do	# (qcow2 interop runs as the test_qcow2 unit test)
	[ -f "$t" ] || continue
	echo "== $t"
	sh "$t" "$BUILD" 2>&1 | tee -a "$log"
	[ "$(tail -n 1 "$log" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')" = "0" ] || status=1
done

# Every libFuzzer target for a short smoke run (make fuzz runs them longer). They are
# always built with ASan and UBSan, so a SANITIZE=1 run has nothing to add.
if [ "$BUILD" != "${BUILD%-san}" ]; then
	echo "fuzz smoke: the targets are sanitized builds already; run by the plain make check"
elif command -v clang >/dev/null 2>&1; then
	echo "== fuzz smoke"
	sh tests/fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-10}" 2>&1 | tee -a "$log"
	tail -n 1 "$log" | grep -q ' 0 failed$' || status=1
else
	echo "fuzz: clang not installed, smoke run skipped (apt-get install clang libclang-rt-14-dev)"
fi

# Kernels and images are built on the host (at native speed), then one trip
# into the KVM environment runs the guest, control and boot suites.
echo "== preparing kernels"
if ! sh tests/prepare-kernels.sh; then
	echo "prepare kernels: 0 passed, 1 failed"
	status=1
fi
# Where KVM emulates guest ring 0 (kvm_pvm), our small guests and the control
# plane run directly, with one real kernel taken as far as such a host allows
# (the exec of /init); Linux user space needs the nested machine, so the
# real-kernel suites go there. Elsewhere one trip runs everything.
trips=1
if [ -d /sys/module/kvm_pvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then
	echo "== guest and control tests, directly on kvm_pvm"
	sh tests/kvm-env.sh sh tests/kvm-suites.sh "$BUILD" small 2>&1 | tee -a "$log"
	echo "== real kernel on kvm_pvm"
	sh tests/pvm-boot-test.sh "$BUILD" 2>&1 | tee -a "$log"
	if [ "${LKVM_CHECK_NESTED:-1}" = 0 ]; then
		echo "== real-kernel suites in the nested machine: skipped (LKVM_CHECK_NESTED=0)"
		trips=1
	else
		echo "== real-kernel suites, in the nested machine (user space does not run under kvm_pvm)"
		# That machine has been seen to stall for good (soft lockups in its kernel, see the
		# machine notes): a trip that does not finish in 10 minutes (3-5 is normal) is run once more, and only
		# the last attempt's results count.
		trip=$(mktemp)
		for attempt in 1 2; do
			LKVM_ENV_FORCE_L1=1 LKVM_ENV_TIMEOUT=${LKVM_ENV_TIMEOUT:-600} \
				sh tests/kvm-env.sh sh tests/kvm-suites.sh "$BUILD" linux 2>&1 | tee "$trip"
			tr -d '\r' < "$trip" | grep -q '^KVM-SUITES-OK$' && break
			grep -q 'without reporting' "$trip" || break	# a real failure (not a stall): no retry
			[ $attempt = 1 ] && echo "== the nested machine stalled; running its suites once more"
		done
		cat "$trip" >> "$log"
		rm -f "$trip"
		trips=2
	fi
else
	echo "== guest tests (needs /dev/kvm)"
	sh tests/kvm-env.sh sh tests/kvm-suites.sh "$BUILD" all 2>&1 | tee -a "$log"
fi
kvm_rc=$(tr -d '\r' < "$log" | grep -c '^KVM-SUITES-OK$')
if [ "$kvm_rc" -lt $trips ]; then	# a trip that never finished counts as a failure
	echo "kvm suites: 0 passed, 1 failed (a trip into the KVM environment did not complete)" | tee -a "$log"
	status=1
fi

pass=0; fail=0
for n in $(tr -d '\r' < "$log" | grep -v '^unit: ' | sed -n 's/^[a-z0-9 -]*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1:\2/p'); do
	pass=$((pass + ${n%%:*})); fail=$((fail + ${n##*:}))
done
[ "$fail" -eq 0 ] || status=1
echo "all tests: $pass passed, $fail failed"
exit $status
