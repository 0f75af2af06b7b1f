#!/bin/sh
# make check after the build: every suite of tests/suites.txt where it can run
# (here, directly on this host's KVM, or in tests/kvm-env.sh's nested machine,
# one suite per trip), then one closing line that counts tests:
#   all tests: N passed, N failed, N skipped (M checks in unit tests)
# Above it, every skipped test or group is named with its reason. A suite that
# was meant to run and did not (a missing script, no closing line, a nested
# machine that stalled twice) is a failure, never a skip; one that is left out
# on purpose (LKVM_CHECK_NESTED=0) is listed as such, and counted as skipped.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
: > "$T/skips"; : > "$T/left"; : > "$T/fails"; : > "$T/retries"
pass=0 fail=0 skip=0 checks=0

# What this host's KVM runs: full (Linux user space too), pvm (guest ring 0 emulated), none.
kvm=none
if [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then
	kvm=full
	[ -d /sys/module/kvm_pvm ] && kvm=pvm
fi
echo "== KVM on this host: $kvm$([ "$kvm" != full ] && echo "; suites that need more run in the nested machine (tests/kvm-env.sh)")"

group_fail() { echo "$1" >> "$T/fails"; fail=$((fail + 1)); }

# record NAME OUTPUT STATUS: add the suite's closing line to the totals, keep its SKIP and FAIL lines.
record() {
	name=$1 out=$2 rc=$3
	tr -d '\r' < "$out" > "$out.c"
	line=$(sed -n "s/^$name: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped\(.*\)$/\1 \2 \3 \4/p" "$out.c" | tail -n 1)
	sed -n "s|^SKIP |$name/|p" "$out.c" >> "$T/skips"
	sed -n "s|^FAIL |$name/|p" "$out.c" >> "$T/fails"
	if [ -z "$line" ]; then
		group_fail "$name: ended without its closing line (status $rc): the suite did not run to its end"
		return
	fi
	read -r p f s rest <<-LINE
	$line
	LINE
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	c=$(echo "$rest" | sed -n 's/.*(\([0-9]*\) checks).*/\1/p')
	checks=$((checks + ${c:-0}))
	[ "$rc" = 0 ] || [ "$f" != 0 ] || group_fail "$name: status $rc, yet no test failed"
}

# direct NAME SCRIPT / nested NAME SCRIPT: run a suite, output in $T/NAME.out, status in $T/rc.
direct() {
	{ sh "$2" "$BUILD" $args; echo $? > "$T/rc"; } 2>&1 | tee "$T/$1.out"
	record "$1" "$T/$1.out" "$(cat "$T/rc")"
}
nested() {	# up to three trips: the nested machine stalls on its own in about one trip of six
	name=$1 script=$2
	for attempt in 1 2 3; do
		{ LKVM_ENV_FORCE_L1=1 sh tests/kvm-env.sh sh "$script" "$BUILD" $args; echo $? > "$T/rc"; } 2>&1 | tee "$T/$name.out"
		grep -q '^kvm-env: STALL' "$T/$name.out" || break
		why=$(sed -n 's/^kvm-env: STALL: //p' "$T/$name.out" | head -n 1)
		if [ $attempt -lt 3 ]; then
			echo "== $name: the nested machine stalled on its own (not a test failure: $why); running $name again"
			echo "$name: the nested machine stalled on trip $attempt ($why); the suite ran again, and only the last trip counts" >> "$T/retries"
		else
			group_fail "$name: the nested machine stalled on all three trips; the suite did not run ($why)"
			return
		fi
	done
	record "$name" "$T/$name.out" "$(cat "$T/rc")"
}

kernels=
prepare_kernels() {
	[ -z "$kernels" ] || return 0
	echo "== preparing kernels (tests/prepare-kernels.sh)"
	if sh tests/prepare-kernels.sh; then kernels=ok; else kernels=failed; group_fail "prepare-kernels: the test kernel, Debian's kernel or the initramfs could not be made"; fi
}

while read -r name where script args <&9; do	# (fd 9: suites may read stdin)
	case $name in ''|'#'*) continue ;; esac
	t0=$(date +%s)
	if [ ! -f "$script" ]; then
		echo "== $name: $script is missing"
		group_fail "$name: $script is missing"
		continue
	fi
	case $where in
	host) how=direct ;;
	kvm) how=direct; [ $kvm = none ] && how=nested ;;
	linux) how=nested; [ $kvm = full ] && how=direct ;;
	pvm) how=direct; [ $kvm = pvm ] || how="skip:this host's KVM is not kvm_pvm (the suite shows what such a host allows)" ;;
	*) how="fail:unknown place '$where' in tests/suites.txt" ;;
	esac
	if [ "$how" = nested ] && [ "${LKVM_CHECK_NESTED:-1}" = 0 ]; then
		how="left:LKVM_CHECK_NESTED=0 leaves out the nested machine's trips (CI runs them in its unsanitized pass)"
	fi
	echo "== $name ($where, $(echo "$how" | cut -d: -f1))"
	case $how in
	direct|nested)
		[ $where = host ] || prepare_kernels
		$how "$name" "$script"
		echo "== $name: $(( $(date +%s) - t0 )) s" ;;
	skip:*) echo "SKIP $name: ${how#skip:}"; echo "$name: ${how#skip:}" >> "$T/skips"; skip=$((skip + 1)) ;;
	left:*) echo "$name: ${how#left:}"; echo "$name: ${how#left:}" >> "$T/left"; skip=$((skip + 1)) ;;
	fail:*) group_fail "$name: ${how#fail:}" ;;
	esac
done 9< tests/suites.txt

list() {	# HEADING FILE
	[ -s "$2" ] || return 0
	echo "== $1 ($(wc -l < "$2")):"
	sed 's/^/  /' "$2"
}
echo
list "nested trips run again after a stall of that machine" "$T/retries"
list "skipped" "$T/skips"
list "left out by choice" "$T/left"
list "failed" "$T/fails"
echo "all tests: $pass passed, $fail failed, $skip skipped ($checks checks in unit tests)"
[ $fail = 0 ]
