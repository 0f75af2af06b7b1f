#!/bin/sh
# make check's own handling of the nested machine's stalls (tests/run-all.sh), against a stub
# of tests/kvm-env.sh that runs each trip here: a stall that comes after a suite ended but
# before that machine's cache=loose writeback (its status file reached this host empty, as in
# a rehearsal of 2026-12-04) must run that suite again, not fail it; a stall inside a suite
# runs it again too; a suite that fails on its own stays failed; a suite that hangs is ended by
# its watchdog, which names and ends what still ran (its descendants in sessions of their own too),
# and the suites after it in the trip still run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/suite.sh
suite_init nested-stall
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/tests/lib"
cp tests/run-all.sh "$T/tests/" && cp tests/lib/suite.sh "$T/tests/lib/"
for n in first second broken; do
	printf 'cd "$(dirname "$0")/.." || exit 1\n. tests/lib/suite.sh\nsuite_init %s\n' $n > "$T/tests/$n.sh"
	if [ $n = broken ]; then echo 'fail "broken fails" "on purpose"' >> "$T/tests/$n.sh"
	else echo "pass \"$n works\"" >> "$T/tests/$n.sh"; fi
	echo suite_end >> "$T/tests/$n.sh"
done
# The stub machine: STALL_AFTER=NAME empties NAME's results once and reports a stall.
cat > "$T/tests/kvm-env.sh" <<'STUB'
"$@"
if [ -n "$STALL_AFTER" ] && [ ! -f "$STALL_MARK" ]; then
	: > "$STALL_MARK"
	d=$(dirname "$2")
	: > "$d/$STALL_AFTER.rc"; : > "$d/$STALL_AFTER.out"
	echo "kvm-env: STALL: simulated after $STALL_AFTER ended"
	exit 75
fi
STUB
printf 'first kvm tests/first.sh\nsecond kvm tests/second.sh\nbroken kvm tests/broken.sh\n' > "$T/tests/suites.txt"
# (make check's own LKVM_CHECK_* choices are the outer run's, not this one's)
run() { (cd "$T" && env -u LKVM_CHECK_NESTED -u LKVM_CHECK_ONLY -u LKVM_CHECK_BATCH STALL_AFTER="$1" \
	STALL_MARK="$T/mark-$1" sh tests/run-all.sh build > "$T/out-$1" 2>&1); }

run first
tail=$(tail -n 1 "$T/out-first")
if [ "$tail" = "all tests: 2 passed, 1 failed, 0 skipped (0 checks in unit tests)" ] &&
	grep -q "^  first: the nested machine failed on trip 1 (simulated after first ended)" "$T/out-first" &&
	grep -q '^  broken/broken fails' "$T/out-first" &&
	! grep -q 'ended without its closing line' "$T/out-first"; then
	pass "a stall that lost a finished suite's status: that suite ran again and passed, the failing one stayed failed"
else
	fail "a stall that lost a finished suite's status" "$(tr '\n' '|' < "$T/out-first" | tail -c 600)"
fi
run ""
if [ "$(tail -n 1 "$T/out-")" = "all tests: 2 passed, 1 failed, 0 skipped (0 checks in unit tests)" ] &&
	! grep -q 'run again' "$T/out-"; then
	pass "no stall: each suite ran once, the failing one counted"
else
	fail "no stall" "$(tr '\n' '|' < "$T/out-" | tail -c 600)"
fi

# A hung suite: its watchdog (after 2 s here) lists its processes, kills them, and the next runs.
printf 'cd "$(dirname "$0")/.." || exit 1\nsetsid sleep 4243 &\nsleep 4242\n' > "$T/tests/hangs.sh"
printf 'hangs kvm tests/hangs.sh\nfirst kvm tests/first.sh\n' > "$T/tests/suites.txt"
(cd "$T" && env -u LKVM_CHECK_NESTED -u LKVM_CHECK_ONLY -u LKVM_CHECK_BATCH STALL_AFTER= LKVM_SUITE_TIMEOUT=2 \
	sh tests/run-all.sh build > "$T/out-hangs" 2>&1)
if [ "$(tail -n 1 "$T/out-hangs")" = "all tests: 1 passed, 1 failed, 0 skipped (0 checks in unit tests)" ] &&
	grep -q '^hung: still running after 2 s, killed; its processes:' "$T/out-hangs" &&
	grep -q '^  *[0-9]* *[0-9]* S.* sleep 4242$' "$T/out-hangs" && grep -q '^  *[0-9]* *[0-9]* S.* sleep 4243$' "$T/out-hangs" &&
	! pgrep -af 'sleep 424[23]' > "$T/left"; then
	pass "a hung suite: its watchdog named and ended what still ran (a descendant in a session of its own too), the next suite ran"
else
	pkill -f 'sleep 424[23]'
	fail "a hung suite" "still running: $(tr '\n' '|' < "$T/left"); $(tr '\n' '|' < "$T/out-hangs" | tail -c 600)"
fi

# What a suite built in the checkout before a stall may reach this host empty, yet newer than
# its inputs (a rehearsal's vsock rerun booted such an initramfs): the builders redo it.
if command -v busybox > /dev/null && command -v cc > /dev/null; then
	sh tests/kernel/mkinitramfs.sh "$T/i.cpio.gz" tests/kernel/init-basic.sh && : > "$T/i.cpio.gz" &&
		sh tests/kernel/mkinitramfs.sh "$T/i.cpio.gz" tests/kernel/init-basic.sh
	sh tests/kernel/vsock-peer.sh "$T/peer" && head -c 1000 "$T/peer" > "$T/cut" && cat "$T/cut" > "$T/peer" &&
		sh tests/kernel/vsock-peer.sh "$T/peer"
	rc=0; "$T/peer" > /dev/null 2>&1 || rc=$?
	if gzip -t "$T/i.cpio.gz" && [ $rc = 2 ]; then
		pass "an empty initramfs and a cut vsock-peer left by a stall are built again"
	else
		fail "artifacts left by a stall" "initramfs $(wc -c < "$T/i.cpio.gz") bytes, peer exits $rc"
	fi
else
	skip "artifacts left by a stall" "needs busybox-static and cc"
fi
suite_end
