#!/bin/sh
# How often the nested machine (tests/kvm-env.sh) stalls on its own.
#   tests/nested-stall-rate.sh N [SUITE...]
# N trips, each running the suites given (default: the three real-kernel suites
# in one trip, as CI's single trip did), with the machine's shape taken from
# LKVM_ENV_SMP, LKVM_ENV_ACCEL and LKVM_ENV_KPARAMS. One line per trip: done
# (with the suites' totals), stalled (where the vCPUs were), or ended otherwise;
# then the rate. BUILD names the lkvm build (default build). See docs/kvm-hosts.md.
N=${1:-10}
[ $# -gt 0 ] && shift
BUILD=${BUILD:-build}
suites=${*:-tests/boot-tests.sh tests/durability-tests.sh tests/device-tests.sh}
cd "$(dirname "$0")/.." || exit 1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
done=0 stalls=0 other=0 i=0 total=0
while [ $i -lt "$N" ]; do
	i=$((i + 1))
	t0=$(date +%s)
	LKVM_ENV_FORCE_L1=1 sh tests/kvm-env.sh sh -c "for s in $suites; do sh \$s $BUILD; done" > "$T/out" 2>&1
	rc=$?
	# The machine's own time (kvm-env's log), not the wait for another engineer's trip.
	secs=$(tail -n 1 .cache/l1/trips.log 2>/dev/null | sed -n 's/^[^ ]* [^ ]* \([0-9]*\)s .*/\1/p')
	secs=${secs:-$(( $(date +%s) - t0 ))}
	total=$((total + secs))
	tr -d '\r' < "$T/out" > "$T/o"
	totals=$(sed -n 's/^\([a-z-]*\): \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2+\3/p' "$T/o" | tr '\n' ' ')
	if grep -q '^kvm-env: STALL' "$T/o"; then
		stalls=$((stalls + 1))
		echo "trip $i: STALL after ${secs}s (suites done: ${totals:-none}): $(sed -n 's/^kvm-env: STALL: //p' "$T/o")"
	elif [ $rc = 0 ] || [ -n "$totals" ]; then
		done=$((done + 1))
		echo "trip $i: done in ${secs}s, status $rc: $totals$(grep '^FAIL' "$T/o" | head -n 3 | tr '\n' ' ')"
	else
		other=$((other + 1))
		echo "trip $i: ended in ${secs}s with status $rc: $(tail -n 3 "$T/o" | tr '\n' '|')"
	fi
done
echo "nested stall rate: $stalls of $N trips stalled, $done done, $other ended otherwise; $total s in all" \
	"(smp=${LKVM_ENV_SMP:-2} accel=${LKVM_ENV_ACCEL:-tcg} kparams='${LKVM_ENV_KPARAMS:-}')"
