#!/bin/sh
# Control plane end to end (needs /dev/kvm): list/pause/resume/debug/stat/stop
# against the counter test guest, stale-socket cleaning, garbage requests.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init control
LKVM=$BUILD/lkvm
G=$BUILD/tests/guests/counter.bin
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
dots() { tr -cd . < "$1" | wc -c; }
wait_for() {	# file pattern seconds
	i=0; while [ $i -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done; return 1
}
cleanup() { kill -9 $P1 $P2 $P3 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

# c1 unjailed: killed, it leaves its socket for list to clean (as root, a jailed lkvm's
# reaper removes its socket however it ends: docs/jail.md)
$LKVM run --flat --no-jail --name c1 -k "$G" > "$T/c1.out" 2> "$T/c1.err" & P1=$!
$LKVM run --flat --name c2 -k "$G" > "$T/c2.out" 2> "$T/c2.err" & P2=$!
if wait_for "$T/c1.out" '\.\.' 60 && wait_for "$T/c2.out" '\.' 60; then pass "two VMs start"; else fail "two VMs start" "no output: $(cat $T/c1.err)"; fi

out=$($LKVM list)
if echo "$out" | grep -q "^c1 .* running" && echo "$out" | grep -q "^c2 "; then pass "list shows two VMs"; else fail "list shows two VMs" "$out"; fi

$LKVM pause c1 >/dev/null && sleep 0.5
a=$(dots "$T/c1.out"); sleep 1.5; b=$(dots "$T/c1.out")
# The delay loop's counter (rcx) must stand still too: dots alone are slow where real mode is emulated.
rcx() { $LKVM debug c1 | sed -n 's/.* rcx \([0-9a-f]*\) .*/\1/p' | head -1; }
r1=$(rcx); sleep 1; r2=$(rcx)
[ "$a" = "$b" ] && [ "$a" -gt 0 ] && [ -n "$r1" ] && [ "$r1" = "$r2" ] && pass "pause stops the count ($a, rcx $r1)" ||
	fail "pause stops the count" "$a -> $b, rcx $r1 -> $r2"
$LKVM list | grep -q "^c1 .* paused" && pass "list shows paused" || fail "list shows paused" "$($LKVM list)"

st=$($LKVM stat c1)
w=$(echo "$st" | sed -n 's/.*"pio_writes":\([0-9]*\).*/\1/p')
[ "$w" = "$((1005 + b))" ] && pass "stat counts port writes exactly ($w)" || fail "stat counts port writes exactly" "pio_writes=$w, expected $((1005 + b)): $st"

# The boot timer: c1 never wrote it (0); a guest that marks it gets a time between 0 and the
# host's own wall time from its start to the stat (tests/guests/boottimer.S).
t_bt0=$(date +%s%N)
# bt also runs with --no-thp (and unjailed, so that P3 is the VM itself): its RAM asks for no huge
# pages, c1's (the default) for them; the mapping's VmFlags say so (hg, nh), whatever the host's
# own THP setting.
ram_vmflags() { awk -v kb="$2" '/^[0-9a-f]+-[0-9a-f]+ / { s = 0 } $1 == "Size:" && $2 == kb { s = 1 } s && $1 == "VmFlags:" { print; exit }' /proc/"$1"/smaps; }
$LKVM run --flat --no-jail --no-thp --name bt -k $BUILD/tests/guests/boottimer.bin > "$T/bt.out" 2> "$T/bt.err" & P3=$!
if wait_for "$T/bt.out" marked 60; then
	f1=$(ram_vmflags $P1 262144); f3=$(ram_vmflags $P3 262144)
	case "$f1/$f3" in
	*" hg"*/*" nh"*) pass "guest RAM: huge pages asked for by default, not with --no-thp ($(echo "$f1" | grep -o ' hg') / $(echo "$f3" | grep -o ' nh'))" ;;
	*) fail "guest RAM: huge pages asked for by default, not with --no-thp" "c1: ${f1:-no 256 MiB mapping}; bt: ${f3:-no 256 MiB mapping}" ;;
	esac
	bt=$($LKVM stat bt | sed -n 's/.*"boot_timer_us":\([0-9]*\).*/\1/p')
	lim=$(( ($(date +%s%N) - t_bt0) / 1000 ))
	c1bt=$(echo "$st" | sed -n 's/.*"boot_timer_us":\([0-9]*\).*/\1/p')
	if [ "$c1bt" = 0 ] && [ -n "$bt" ] && [ "$bt" -gt 0 ] && [ "$bt" -le "$lim" ]; then
		pass "boot timer: the guest's mark at ${bt} us (host saw ${lim} us to the stat), none for a guest without one"
	else fail "boot timer" "marked guest ${bt:-none} us (at most $lim), unmarked guest ${c1bt:-none}: $($LKVM stat bt)"; fi
else fail "boot timer" "the guest did not start: $(cat "$T/bt.err")"; fi
$LKVM stop bt > /dev/null 2>&1; wait $P3 2>/dev/null

dbg=$($LKVM debug c1)
rip=$(echo "$dbg" | sed -n 's/^ *rip \([0-9a-f]*\).*/\1/p' | head -1)
cs=$(echo "$dbg" | sed -n 's/^ *cs *\([0-9a-f]*\) .*/\1/p' | head -1)
size=$(stat -c %s "$G")
if [ -n "$rip" ] && [ "$cs" = "1000" ] && [ $((0x$rip)) -lt "$size" ]; then pass "debug shows RIP in the guest (1000:$rip)"; else fail "debug shows RIP in the guest" "cs=$cs rip=$rip: $dbg"; fi
$LKVM list | grep -q "^c1 .* paused" && pass "debug keeps a paused VM paused" || fail "debug keeps a paused VM paused" "$($LKVM list)"

# A dot takes ~0.02 s under hardware KVM, ~2 s where KVM emulates real mode (kvm_pvm).
$LKVM resume c1 >/dev/null
for i in $(seq 40); do sleep 0.5; c=$(dots "$T/c1.out"); [ "$c" -gt "$b" ] && break; done
r3=$(rcx)
[ "$c" -gt "$b" ] && [ "$r3" != "$r2" ] && pass "resume continues the count ($b -> $c)" || fail "resume continues the count" "$b -> $c, rcx $r2 -> $r3"

# Garbage and oversized messages: refused, VM unharmed.
if need_tool python3 python3 "garbage requests"; then
	r=$(python3 - "$T/lkvm/c1.sock" <<'PY'
import socket, sys
def req(data):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass    # the VM stops reading an oversized request; its reply is still there
    r = s.recv(65536); s.close(); return r
out = []
out.append(req(b"garbage\n"))
out.append(req(b'{"cmd":"nonsense"}\n'))
out.append(req(b'{"cmd": 5}\n'))
out.append(req(b"x" * 100000))
out.append(req(b'{"v":99,"cmd":"info"}\n'))
out.append(req(b'{"cmd":"info"}\n'))
print(" | ".join(o.decode().strip() for o in out))
PY
)
	n_err=$(echo "$r" | grep -o '"ok":false' | wc -l)
	if [ "$n_err" = 5 ] && echo "$r" | grep -q '"ok":true,"v":1,"name":"c1"'; then pass "garbage requests refused, VM answers after"; else fail "garbage requests refused" "$r"; fi
fi

# What stop, exit and list leave behind: each check first sees the thing it expects gone
# (a socket that never existed, or a list that failed, proves nothing).
[ -S "$T/lkvm/c2.sock" ] && had_c2=1 || had_c2=0
before=$($LKVM list); lrc=$?
$LKVM stop c2 >/dev/null; wait $P2; rc=$?
[ $rc = 0 ] && pass "stop ends the VM with status 0" || fail "stop ends the VM with status 0" "rc=$rc $(cat $T/c2.err)"
after=$($LKVM list); lrc2=$?
if [ $lrc = 0 ] && [ $lrc2 = 0 ] && echo "$before" | grep -q "^c2 " && echo "$after" | grep -q "^c1 " &&
   ! echo "$after" | grep -q "^c2 "; then
	pass "stopped VM not listed (c1 still is)"
else
	fail "stopped VM not listed" "list before (status $lrc): $(echo "$before" | tr '\n' '|') after (status $lrc2): $(echo "$after" | tr '\n' '|')"
fi
if [ $had_c2 = 1 ] && [ ! -e "$T/lkvm/c2.sock" ]; then pass "socket removed on exit"
else fail "socket removed on exit" "$([ $had_c2 = 1 ] && echo "still there" || echo "c2.sock never existed")"; fi

kill -9 $P1; wait $P1 2>/dev/null
if [ -S "$T/lkvm/c1.sock" ]; then
	out=$($LKVM list); lrc=$?
	if [ $lrc = 0 ] && [ ! -e "$T/lkvm/c1.sock" ] && ! echo "$out" | grep -q "^c1 "; then pass "list cleans a stale socket"
	else fail "list cleans a stale socket" "list status $lrc, socket $([ -e "$T/lkvm/c1.sock" ] && echo "still there" || echo gone), list: $out"; fi
else
	fail "list cleans a stale socket" "the killed VM left no socket to clean"
fi
$LKVM pause nosuchvm 2>"$T/e"; rc=$?
[ $rc != 0 ] && grep -q "no VM named 'nosuchvm'" "$T/e" && pass "unknown VM: clear error" || fail "unknown VM: clear error" "rc=$rc $(cat $T/e)"

suite_end
