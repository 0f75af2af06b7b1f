#!/bin/sh
# make check after the build: every suite of tests/suites.txt where it can run
# (here, directly on this host's KVM, or in tests/kvm-env.sh's nested machine,
# several suites per trip), then one closing line that counts tests:
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
	# A guest the nested machine lost, run again by its suite (device, vsock, vmgenid, snapshot-linux).
	sed -n "s|^note: \(the nested machine lost .*\)|$name: \1|p" "$out.c" | cut -c1-300 >> "$T/retries"
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

# direct NAME SCRIPT: run a suite here, output in $T/NAME.out, status in $T/rc.
direct() {
	{ sh "$2" "$BUILD" $args; echo $? > "$T/rc"; } 2>&1 | tee "$T/$1.out"
	record "$1" "$T/$1.out" "$(cat "$T/rc")"
}
# Nested suites go to the nested machine together, up to BATCH per trip, each writing its
# output and status into the checkout (the one place that machine writes). When the machine
# stalls (it does, on its own: docs/kvm-hosts.md), the suites that finished keep their
# results; the one it stalled in runs again (up to three trips in all for it) and the ones
# not yet started go on the next trip. So too when the machine's own kernel crashed (every
# suite of that trip that failed or hung runs again) and when a suite's only failures are
# guests that triple-faulted. A trip that ends otherwise (a hung test: kvm-env's timeout)
# fails the suite it was in and any it never reached, by name.
BATCH=${LKVM_CHECK_BATCH:-6}
SUITE_T=${LKVM_SUITE_TIMEOUT:-600}	# seconds a nested suite may run (the longest takes 150-300 s here)
: > "$T/batch"
queue_nested() { echo "$1 $2 $3 $args" >> "$T/batch"; [ "$(wc -l < "$T/batch")" -lt "$BATCH" ] || run_batch; }
run_batch() {
	local name where script a	# the main loop's name and where stay its own
	[ -s "$T/batch" ] || return 0
	d=.l1-run/batch-$$
	# again NAME WHERE SCRIPT ARGS WHY HOW: the machine failed under NAME (WHY); run it on the
	# next trip, up to three trips in all, each said (HOW: what the suite had shown, if anything).
	again() {
		n=$(( $(cat "$T/trips-$1" 2>/dev/null || echo 0) + 1 )); echo $n > "$T/trips-$1"
		if [ "$n" -lt 3 ]; then
			echo "== $1: the nested machine failed on its own (not a test failure: $5)${6:+; the suite had: $6}; $1 runs again"
			echo "$1: the nested machine failed on trip $n ($5)${6:+, the suite had: $6}; the suite ran again, and only the last trip counts" >> "$T/retries"
			echo "$1 $2 $3 $4" >> "$T/batch.next"
		else
			group_fail "$1: the nested machine failed on all three trips; the suite did not run to its end ($5)${6:+; it had: $6}"
		fi
	}
	# only_lost OUTPUT: the suite failed, and every failure it names is a guest that
	# triple-faulted. The nested machine loses L2 guests so (docs/kvm-hosts.md; QEMU's own too);
	# a suite whose test failed any other way keeps its failure.
	# ended_failing NAME: the suite ran to its end with a non-zero status.
	ended_failing() { [ -s "$d/$1.rc" ] && [ "$(cat "$d/$1.rc")" != 0 ]; }
	only_lost() {
		tr -d '\r' < "$1" | grep -a '^FAIL ' > "$d/fails.tmp"
		[ -s "$d/fails.tmp" ] && ! grep -qv 'triple fault' "$d/fails.tmp"
	}
	while [ -s "$T/batch" ]; do
		rm -rf "$d" && mkdir -p "$d"
		# hang.sh PID SECS OUT: the suites' watchdog. Its processes are its session's and their
		# descendants in sessions of their own (a VM that setsid()s, under a subreaper: an OCI
		# container once hung unseen so); if there are none, every process, with its state.
		cat > "$d/hang.sh" <<-'HANG'
		# It ends with the suite: a suite done in milliseconds can be reaped before setsid has
		# run, so the trip's kill of this group can miss, and a watchdog left sleeping would hold
		# the trip's output pipe open (tests/host/nested-stall.sh once waited so for ever).
		i=0
		while kill -0 "$1" 2> /dev/null && [ $i -lt "$2" ]; do sleep 1; i=$((i + 1)); done
		kill -0 "$1" 2> /dev/null || exit 0
		{
			echo "hung: still running after $2 s, killed; its processes:"
			# "pid 1": in the session; "pid 2": a descendant outside it.
			ps -e -o pid=,ppid=,sid= | awk -v s="$1" '{ pp[$1] = $2; if ($3 == s) m[$1] = 1 }
				END { do { n = 0; for (p in pp) if (!(p in m) && (pp[p] in m)) { m[p] = 2; n++ } } while (n)
				for (p in m) print p, m[p] }' > "$3.pids"
			pids=$(cut -d' ' -f1 "$3.pids" | tr '\n' ',') others=$(sed -n 's/ 2$//p' "$3.pids")
			l=$( [ -n "$pids" ] && ps -o pid,sid,stat,wchan:24,etime,args -p "${pids%,}" | tail -n +2 | cut -c1-200)
			if [ -n "$l" ]; then echo "$l" | sed 's/^/  /'
			else echo "  none left in its session ($1); every process:"; ps -e -o pid,ppid,sid,stat,wchan:24,etime,args | cut -c1-200 | sed 's/^/  /'; fi
		} > "$3"
		# The others before the suite's own group: once that ends, the trip kills this watchdog.
		kill -TERM $others 2> /dev/null; kill -TERM -"$1" 2> /dev/null; sleep 10
		kill -9 $others 2> /dev/null; kill -9 -"$1" 2> /dev/null
		HANG
		while read -r name where script a; do
			printf 'echo "== %s (%s, nested)"; t0=$(date +%%s); : > %s/%s.started\n' "$name" "$where" "$d" "$name"
			# Its own session, killed whole when it ends: a process it left behind holding its
			# output would keep the trip from ever ending, and could disturb the next suite.
			# A watchdog (a session too) ends a suite that hangs after SUITE_T s, saying what still ran,
			# so the suites after it in the trip still run.
			printf 'setsid sh %s %s %s > %s/%s.out 2>&1 < /dev/null & p=$!\n' "$script" "$BUILD" "$a" "$d" "$name"
			printf 'setsid sh %s/hang.sh $p %s %s/%s.hung & w=$!\n' "$d" "$SUITE_T" "$d" "$name"
			# sync: the checkout is a cache=loose 9p mount there, whose writes reach this host only
			# at writeback; a stall after a suite ended lost its results so once (an empty .rc).
			printf 'wait $p; echo $? > %s/%s.rc; kill -9 -$w -$p 2> /dev/null; sync; cat %s/%s.out; cat %s/%s.hung 2> /dev/null\n' \
				"$d" "$name" "$d" "$name" "$d" "$name"
			printf 'echo "== %s: $(( $(date +%%s) - t0 )) s"\n' "$name"
		done < "$T/batch" > "$d/job.sh"
		# The trip's own limit only backs the suites' watchdogs up.
		LKVM_ENV_TIMEOUT=${LKVM_ENV_TIMEOUT:-$(( $(wc -l < "$T/batch") * (SUITE_T + 20) + 300 ))} \
			LKVM_ENV_FORCE_L1=1 sh tests/kvm-env.sh sh "$d/job.sh" 2>&1 | tee "$T/trip.out"
		why=$(sed -n 's/^kvm-env: STALL: //p' "$T/trip.out" | head -n 1)
		# The nested machine's own kernel (Debian's, -amd64) crashing is that machine failing too
		# (seen: a KVM vCPU thread whose GS base QEMU's emulated SVM left at 0): run again, as a stall.
		# Its crash report can come after the suite it broke has hung and been killed (seen: a
		# sandbox probe stuck in KVM_RUN for 600 s, then "TASK stack guard page was hit" in its vCPU
		# thread), so every suite of that trip that failed or hung runs again, not only the one
		# running when the report came; the ones that passed keep their results.
		crashed=
		[ -n "$why" ] || ! grep -aq 'Comm: .* [0-9.]*-[0-9]*-amd64 #1 ' "$T/trip.out" || {
			why="the nested machine's own kernel crashed: $(grep -a -m1 -E '(BUG:|Oops|Kernel panic)' "$T/trip.out" | tr -d '\r' | cut -c1-120)"
			crashed=yes; }
		ended=$(grep -a '^kvm-env: ' "$T/trip.out" | tail -n 1)
		: > "$T/batch.next"
		while read -r name where script a; do
			if [ -n "$crashed" ] && { [ -f "$d/$name.hung" ] || ended_failing "$name"; }; then
				again "$name" "$where" "$script" "$a" "$why" "$(head -n 1 "$d/$name.hung" 2>/dev/null || echo "status $(cat "$d/$name.rc")")"
			elif ended_failing "$name" && only_lost "$d/$name.out"; then
				again "$name" "$where" "$script" "$a" "a guest triple-faulted" "$(head -c 300 "$d/fails.tmp" | tr '\n' '|')"
			elif [ -f "$d/$name.hung" ]; then
				record "$name" "$d/$name.out" "$(head -n 1 "$d/$name.hung"; tail -n +2 "$d/$name.hung" | tr -s ' \n' ' ' | cut -c1-600)"
			elif [ -s "$d/$name.rc" ]; then	# empty: its status never reached this host (below)
				record "$name" "$d/$name.out" "$(cat "$d/$name.rc")"
			elif [ ! -f "$d/$name.started" ]; then
				if [ -n "$why" ]; then echo "$name $where $script $a" >> "$T/batch.next"
				else group_fail "$name: the nested trip ended before this suite started (${ended:-no reason given})"; fi
			elif [ -z "$why" ]; then
				record "$name" "$d/$name.out" "trip ended: ${ended:-no reason given}"
			else
				again "$name" "$where" "$script" "$a" "$why" ""
			fi
		done < "$T/batch"
		mv "$T/batch.next" "$T/batch"
	done
	rm -rf "$d"
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
	if [ -n "${LKVM_CHECK_ONLY:-}" ] && ! echo " $LKVM_CHECK_ONLY " | grep -q " $name "; then
		how="left:not in LKVM_CHECK_ONLY"
	elif [ "$how" = nested ] && [ "${LKVM_CHECK_NESTED:-1}" = 0 ]; then
		how="left:LKVM_CHECK_NESTED=0 leaves out the nested machine's trips (CI runs them in its unsanitized pass)"
	fi
	[ "$how" = nested ] || echo "== $name ($where, $(echo "$how" | cut -d: -f1))"
	[ "$how" != direct ] || run_batch
	# Only Linux guests need the test kernels: the small guests' suites run first, while CI's
	# early kernel build may still be going (the trip queued so far goes before that wait).
	case $how in
	direct)
		case $where in host|kvm) ;; *) prepare_kernels ;; esac
		direct "$name" "$script"
		echo "== $name: $(( $(date +%s) - t0 )) s" ;;
	nested)
		if [ $where != kvm ] && [ -z "$kernels" ]; then run_batch; prepare_kernels; fi
		queue_nested "$name" "$where" "$script" ;;
	skip:*) echo "SKIP $name: ${how#skip:}"; echo "$name: ${how#skip:}" >> "$T/skips"; skip=$((skip + 1)) ;;
	left:*) echo "$name: ${how#left:}"; echo "$name: ${how#left:}" >> "$T/left"; skip=$((skip + 1)) ;;
	fail:*) group_fail "$name: ${how#fail:}" ;;
	esac
done 9< tests/suites.txt
run_batch

list() {	# HEADING FILE
	[ -s "$2" ] || return 0
	echo "== $1 ($(wc -l < "$2")):"
	sed 's/^/  /' "$2"
}
echo
list "run again after the nested machine stalled or lost a guest" "$T/retries"
list "skipped" "$T/skips"
list "left out by choice" "$T/left"
list "failed" "$T/fails"
echo "all tests: $pass passed, $fail failed, $skip skipped ($checks checks in unit tests)"
[ $fail = 0 ]
