# Shared by the shell test suites (sourced): one way to count tests and name skips.
#   . tests/lib/suite.sh; suite_init NAME
#   pass TEXT            a test held ("name" or "name: what it showed")
#   fail NAME WHY        a test failed, and why
#   skip NAME WHY        a test did not run, and why (counted, listed by run-all.sh)
#   need_tool TOOL PKG NAME...  0 when TOOL is on PATH; else each NAME is skipped, or
#                        fails when CI=true (CI installs PKG), and it returns 1
#   suite_end            prints "NAME: N passed, N failed, N skipped" (the closing line
#                        run-all.sh reads) and returns 1 if anything failed
SUITE_NAME=suite
SUITE_PASS=0 SUITE_FAIL=0 SUITE_SKIP=0

suite_init() { SUITE_NAME=$1; SUITE_PASS=0 SUITE_FAIL=0 SUITE_SKIP=0; }
pass() { echo "PASS $*"; SUITE_PASS=$((SUITE_PASS + 1)); }
# (Variables here start with _s: a suite's own names stay untouched.)
fail() { _sn=$1; shift; echo "FAIL $_sn: $*"; SUITE_FAIL=$((SUITE_FAIL + 1)); }
skip() { _sn=$1; shift; echo "SKIP $_sn: $*"; SUITE_SKIP=$((SUITE_SKIP + 1)); }

# The names suites used before suite.sh: a leftover call fails loudly instead of "not found".
ok() { fail "${1:-?}" "the suite called ok (suite.sh's name is pass)"; }
ko() { fail "${1:-?}" "the suite called ko (suite.sh's name is fail): ${2:-}"; }
sk() { fail "${1:-?}" "the suite called sk (suite.sh's name is skip): ${2:-}"; }

need_tool() {
	_st=$1 _sp=$2; shift 2
	command -v "$_st" > /dev/null 2>&1 && return 0
	for _sx in "$@"; do
		if [ "${CI:-}" = true ]; then fail "$_sx" "$_st is not installed, and CI installs it (Debian: $_sp)"
		else skip "$_sx" "$_st not installed (Debian: $_sp)"; fi
	done
	return 1
}

# wait_bounded PID SECS: PID's status, or 137 once it is SIGKILLed for still running after SECS s
# (a VM that stopped answering must fail its test, not hold the suite until the trip's end).
wait_bounded() {
	( sleep "$2" & _ws=$!; trap 'kill $_ws 2> /dev/null; exit 0' TERM; wait $_ws; kill -KILL "$1" 2> /dev/null ) &
	_wk=$!
	wait "$1"; _wr=$?
	kill "$_wk" 2> /dev/null; wait "$_wk" 2> /dev/null
	return $_wr
}

suite_end() {
	echo "$SUITE_NAME: $SUITE_PASS passed, $SUITE_FAIL failed, $SUITE_SKIP skipped"
	[ "$SUITE_FAIL" = 0 ]
}
