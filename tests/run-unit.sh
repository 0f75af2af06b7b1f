#!/bin/sh
# Run unit-test binaries: tests/run-unit.sh BUILD (every BUILD/tests/unit/test_*)
# or tests/run-unit.sh BINARY... Each binary's SKIP lines are always shown (as
# "SKIP binary/test: why"), its whole output when it fails. A binary fails when
# it exits non-zero, prints no closing line, or ran no check; an empty list fails.
# Closing line: "unit: N passed, N failed, N skipped (M checks)", counting tests.
if [ $# = 1 ] && [ -d "$1" ]; then
	set -- $(ls "$1"/tests/unit/test_* 2>/dev/null | grep -v '\.d$')
fi
pass=0; fail=0; skip=0; checks=0
[ $# -gt 0 ] || { echo "FAIL unit: no unit-test binaries (make builds them)"; fail=1; }
for t in "$@"; do
	name=${t##*/}
	# A binary that hangs fails by name instead of holding make check (and CI) to its end.
	out=$(timeout -k 10 "${LKVM_UNIT_TIMEOUT:-600}" "$t" 2>&1); rc=$?
	line=$(printf '%s\n' "$out" | sed -n 's/^.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped (\([0-9]*\) checks)$/\1 \2 \3 \4/p' | tail -n 1)
	read -r p f s c <<-LINE
	$line
	LINE
	p=${p:-0} f=${f:-0} s=${s:-0} c=${c:-0}
	printf '%s\n' "$out" | sed -n "s|^SKIP |SKIP $name/|p"
	why=
	if [ $rc = 124 ] || [ $rc = 137 ]; then why="still running after ${LKVM_UNIT_TIMEOUT:-600} s: killed (status $rc)"
	elif [ -z "$line" ]; then why="no closing line (status $rc)"
	elif [ $rc -ne 0 ] && [ "$f" = 0 ]; then why="status $rc"
	elif [ "$c" = 0 ]; then why="ran no check"
	fi
	if [ -n "$why" ] || [ $rc -ne 0 ] || [ "$f" != 0 ]; then
		printf '%s\n' "$out" | grep -v '^SKIP '
		[ -n "$why" ] && { echo "FAIL $name: $why"; f=$((f + 1)); }
	fi
	echo "unit/$name: $p passed, $f failed, $s skipped ($c checks)"
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s)); checks=$((checks + c))
done
echo "unit: $pass passed, $fail failed, $skip skipped ($checks checks)"
[ $fail = 0 ]
