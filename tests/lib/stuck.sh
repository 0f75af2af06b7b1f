# Sourced by the suites that wait on Linux guests (tests/snapshot-*.sh): waiting for a guest's
# line without waiting past its end, and, when one is stuck, where its vCPUs are.
#   alive PID                          a child of ours that ended stays a zombie until waited for
#   wait_for FILE PATTERN SECONDS [PID]  until PATTERN is in FILE; with PID, not past its end
#   look_stuck NAME DIR                lkvm debug and lkvm stat of VM NAME twice, 3 s apart ($LKVM)
#   where NAME DIR SYMS                one line: the rip and the kernel addresses on the stack
#                                      top at each look, named by SYMS (nm or /proc/kallsyms
#                                      format; the guest must run without KASLR), and the
#                                      counters that moved between the looks
alive() { [ -r "/proc/$1/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

wait_for() {
	_i=0
	while [ $_i -lt $(($3 * 10)) ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		[ -z "${4:-}" ] || alive "$4" || { grep -q "$2" "$1" 2>/dev/null; return; }
		sleep 0.1; _i=$((_i + 1))
	done
	return 1
}

# gone PID SECS: true once PID has ended (within SECS); its status is then `wait PID`'s.
gone() {
	_i=0
	while alive "$1"; do
		[ $_i -lt $(($2 * 10)) ] || return 1
		sleep 0.1; _i=$((_i + 1))
	done
}

# stop PID: SIGTERM, and SIGKILL if it is still there 10 s later (a VMM whose vCPU the nested
# machine froze may never get back from KVM_RUN), then reap it: a bare `wait` could wait for ever.
stop() {
	kill "$1" 2>/dev/null
	gone "$1" 10 || kill -9 "$1" 2>/dev/null
	wait "$1"
}

look_stuck() {
	for _n in 1 2; do
		"$LKVM" debug "$1" > "$2/$1.debug$_n" 2>&1
		"$LKVM" stat "$1" 2>&1 | tr ',' '\n' > "$2/$1.stat$_n"
		[ $_n = 2 ] || sleep 3
	done
}

where() {
	for _n in 1 2; do
		printf 'look %s: ' $_n
		tr -d '\r' < "$2/$1.debug$_n" | grep -o -E '(rip [0-9a-f]{16}|ffffffff8[0-9a-f]{7})' | sed 's/rip //' |
			python3 -c 'import sys, bisect
syms = []
for l in open(sys.argv[1]):
    f = l.split()
    if len(f) >= 3 and f[1] in "tTwW":
        syms.append((int(f[0], 16), f[2]))
syms.sort()
keys = [a for a, _ in syms]
words = sys.stdin.read().split()
for w in words:
    v = int(w, 16)
    i = bisect.bisect_right(keys, v) - 1 if keys else -1
    if i >= 0 and v - keys[i] < 0x10000:	# past the text: data, not code
        print("%s+0x%x" % (syms[i][1], v - keys[i]), end=" ")
    elif i < 0 or w == words[0]:
        print(w, end=" ")' "${3:-/dev/null}"
	done
	_moved=$(diff "$2/$1.stat1" "$2/$1.stat2" | sed -n 's/^> //p' | tr '\n' ' ' | cut -c1-400)
	echo "; counters that moved in 3 s: ${_moved:-none}"
}
