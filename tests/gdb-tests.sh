#!/bin/sh
# The gdb stub end to end (needs /dev/kvm: run through tests/kvm-env.sh).
#   gdb-tests.sh BUILD small|linux|all
# small: Debian's gdb in batch mode and a raw protocol client against the gdb test guest
# (tests/guests/gdbguest.S, two vCPUs), and gdb attached through 'lkvm gdb' to a running VM;
# linux: gdb with the test kernel's vmlinux and its scripts/gdb, from the entry to init.
# gdb's results are checked in its output; what gdb changed, in the guest's.
BUILD=${1:-build}
SET=${2:-all}
cd "$(dirname "$0")/.." || exit 1
LKVM=$PWD/$BUILD/lkvm
G=$PWD/$BUILD/tests/guests
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
pids=
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0; skip=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
sk() { echo "SKIP $1: $2"; skip=$((skip + 1)); }
finish() { echo "gdb-$SET: $pass passed, $fail failed, $skip skipped"; [ $fail = 0 ]; exit; }
# section FILE NAME: gdb's output between "@@NAME" and the next "@@".
section() { tr -d '\r' < "$1" | awk -v s="@@$2" '$0 == s { on = 1; next } /^@@/ { on = 0 } on'; }
flat() { tr -d '\r' | tr '\n' '|' | head -c 400; }
g() { printf '%s\n' "$*"; }	# a line of a gdb script, backslashes as they are (dash's echo would expand them)
# wait_for FILE PATTERN SECONDS
wait_for() {
	i=0; while [ $i -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done; return 1
}
# exited PID SECONDS: wait for it; its status in $rc (124 when it had to be killed).
exited() {
	i=0; while [ $i -lt $(($2 * 10)) ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
	if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1" 2>/dev/null; rc=124; else wait "$1"; rc=$?; fi
}
# The gdb guest's symbols at their addresses (it is linked at 0 and loaded at 0x10000).
nm "$G/gdbguest.elf" | while read -r a _ n; do printf '%s %x\n' "$n" $((0x10000 + 0x$a)); done > "$T/syms"
# guest NAME ARGS...: the gdb guest with a stub on $T/NAME.sock, waiting for the debugger; pid in $lp.
guest() {
	name=$1; shift
	"$LKVM" run --flat -k "$G/gdbguest.bin" --network mode=none --gdb "unix:$T/$name.sock" --gdb-wait "$@" \
		< /dev/null > "$T/$name.out" 2> "$T/$name.err" &
	lp=$!; pids="$pids $lp"
	wait_for "$T/$name.err" "gdb: listening" 30 || ko "$name: the stub listens" "$(head -c 300 "$T/$name.err")"
}

command -v gdb > /dev/null || { sk "gdb stub" "gdb is not installed (apt-get install gdb)"; finish; }

# Can this host's KVM debug guests at all? lkvm says so in one line, and so do we.
timeout -k 10 60 "$LKVM" run --flat -k "$G/hello16.bin" --gdb "unix:$T/probe.sock" < /dev/null > "$T/probe.out" 2> "$T/probe.err"
rc=$?
if grep -q "cannot debug guests\|lacks guest debug" "$T/probe.err"; then
	sk "gdb stub" "this host's KVM cannot debug guests: $(grep -m1 'gdb' "$T/probe.err")"
	finish
fi
[ $rc = 0 ] && grep -q "hello from real mode" "$T/probe.out" && ok "--gdb: the stub listens, the guest runs to its end" ||
	ko "--gdb" "status $rc: $(head -c 300 "$T/probe.err" | flat)"

# What stops a guest on this host: debug-register breakpoints (hw), watchpoints, int3 (sw)?
# Where one does not, for a reason known and named here, its tests are skipped by that name;
# anywhere else they run, and fail.
#  - The nested machine (tests/kvm-env.sh): QEMU's TCG (7.2; fixed for DR7 in 9.1) loads DR7
#    from the VMCB at VMRUN without arming its breakpoints, so no breakpoint or watchpoint in a
#    debug register fires in its SVM guest; and it delivers int3 there as a software interrupt
#    (it checks the INTn intercept, not the #BP exception intercept KVM sets), so the guest gets
#    its own #BP and KVM never sees one. Single-stepping (TF, #DB) works.
#  - kvm_pvm: guest ring 0 runs in KVM's instruction emulator, which checks no data breakpoints.
probe() {
	hw_ok=0; watch_ok=0; sw_ok=0; why_hw=; why_watch=; why_sw=
	guest probe
	timeout 150 python3 tests/gdb-proto.py "$T/probe.sock" "$T/syms" probe > "$T/probe.log" 2>&1
	exited $lp 30
	grep -q '^hwbreak yes' "$T/probe.log" && hw_ok=1
	grep -q '^watch yes' "$T/probe.log" && watch_ok=1
	grep -q '^swbreak yes' "$T/probe.log" && sw_ok=1
	if [ -n "${LKVM_ENV_NESTED:-}" ]; then
		why_hw="the nested machine's QEMU (TCG 7.2) does not arm DR7 breakpoints in its SVM guest (fixed in QEMU 9.1)"
		why_watch=$why_hw
		why_sw="the nested machine's QEMU (TCG) delivers int3 in its SVM guest as a software interrupt, so KVM never sees the #BP"
	elif [ -d /sys/module/kvm_pvm ]; then
		why_watch="kvm_pvm: KVM's instruction emulator, which runs guest ring 0 here, checks no data breakpoints"
	fi
	echo "on this host: debug-register breakpoints $([ $hw_ok = 1 ] && echo stop || echo 'do not stop'),"\
		"watchpoints $([ $watch_ok = 1 ] && echo stop || echo 'do not stop'), int3 $([ $sw_ok = 1 ] && echo stops || echo 'does not stop')"
}
# works KIND (hw, watch, sw): 0 when it works here; 1 when it does not, for a reason named here
# (its tests become a named skip); 0 too when it does not work without a reason: then its tests run and fail.
works() { eval "[ \$${1}_ok = 1 ] || [ -z \"\$why_$1\" ]"; }
why() { eval "echo \"\$why_$1\""; }

small() {
	probe
	# 1. gdb in batch mode: the entry (--gdb-wait), threads, breakpoints, a watchpoint, Ctrl-C,
	# registers, a step, guest memory, the other vCPU, monitor commands, detach.
	{
		g "set pagination off"; g "set confirm off"; g "set width 0"
		g "symbol-file -o 0x10000 $G/gdbguest.elf"
		g "target remote $T/g.sock"
		g 'echo @@threads\n'; g "info threads"
		g 'echo @@entry\n'; g 'p/x $cs'; g 'p/x $pc'
		g "set var {int}&ticks = 100000"
		if works hw; then
			g "hbreak *main64"; g "continue"; g 'echo @@hbreak\n'; g 'info symbol $pc'; g "delete"
		fi
		if works sw; then
			g "break *tick"; g "continue"; g 'echo @@break\n'; g 'info symbol $pc'
			g "p {int}&counter"; g 'p/x $rbx'; g 'set var $rbx = 0xfeedface'; g "delete"
		fi
		if works watch; then
			g "watch {int}&counter"; g "continue"; g 'echo @@watch\n'; g 'info symbol $pc'
			g "p {int}&counter"; g "delete"
		fi
		g 'echo @@running\n'; g "continue"
		g 'echo @@interrupted\n'; g "info threads"
		g 'p {int}&ap_count'; g 'shell sleep 1'; g 'p {int}&ap_count'
		# Into the delay loop (where Ctrl-C nearly always lands), then off to tick as if called from there.
		g 'set $n = 0'
		g 'while ($pc < (unsigned long)&delay || $pc >= (unsigned long)&banner) && $n < 2000'
		g 'stepi'; g 'set $n = $n + 1'; g 'end'
		g 'echo @@indelay\n'; g 'info symbol $pc'; g 'p {int}&counter'
		g 'set var $pc = (unsigned long)&tick'; g 'stepi'
		g 'echo @@step\n'; g 'info symbol $pc'
		# The guest prints msg, runs 3 more times (r12), ends with magic as its exit status.
		g "set var {char}&msg = 'C'"; g "set var {int}&magic = 42"; g 'set var $r12 = 3'
		g "thread 2"; g 'echo @@thread2\n'; g 'p/x $cs'
		g 'echo @@monitor\n'; g "monitor stat"; g "monitor debug"
		g 'echo @@end\n'; g "detach"
	} > "$T/small.gdb"
	guest g -c 2
	# Nothing may run before gdb lets it.
	sleep 1
	if grep -q . "$T/g.out"; then ko "--gdb-wait" "the guest ran before gdb attached: $(head -c 100 "$T/g.out")"
	else ok "--gdb-wait: no guest output before gdb attaches"; fi
	timeout 300 gdb -batch -nx -x "$T/small.gdb" > "$T/small.log" 2>&1 &
	gp=$!; pids="$pids $gp"
	# Ctrl-C once the guest runs on its own: gdb stops every vCPU.
	wait_for "$T/small.log" "@@running" 120 && wait_for "$T/g.out" "count 0" 60 && sleep 1 && kill -INT $gp
	exited $gp 300
	exited $lp 120
	s() { section "$T/small.log" "$1"; }
	n=$(s threads | grep -cE '^\*? +[12] +Thread [12] ')
	[ "$n" = 2 ] && ok "two vCPUs are two threads" || ko "two threads" "$(s threads | flat)"
	s entry | grep -q '= 0x1000$' && s entry | grep -q '= 0x0$' &&
		ok "--gdb-wait: stopped at the entry (real mode, CS 0x1000, IP 0)" || ko "stop at entry" "$(s entry | flat)"
	if ! works hw; then sk "hardware breakpoint (hbreak)" "$(why hw)"
	else s hbreak | grep -q '^main64 in section' && ok "hardware breakpoint (hbreak) at a symbol" ||
		ko "hbreak main64" "$(s hbreak | flat) $(tail -n 5 "$T/small.log" | flat)"; fi
	if ! works sw; then sk "software breakpoint (break)" "$(why sw)"
	else s break | grep -q '^tick in section' && s break | grep -q '^\$[0-9]* = 1$' && s break | grep -q '= 0x1234$' &&
		ok "software breakpoint at a symbol; gdb reads the counter the guest wrote (1) and rbx (0x1234)" ||
		ko "break tick" "$(s break | flat)"; fi
	if ! works watch; then sk "write watchpoint" "$(why watch)"
	else s watch | grep -q '^count_written in section' && grep -q '^Hardware watchpoint [0-9]*: {int}&counter' "$T/small.log" &&
		ok "write watchpoint: stops right after the writing instruction ($(s watch | grep -m1 '^\$' | sed 's/.*= /new value /'))" ||
		ko "watchpoint" "$(s watch | flat) $(grep -m2 -i 'watchpoint' "$T/small.log" | flat)"; fi
	if s interrupted | grep -qE '^\*? +2 +Thread 2 '; then
		a1=$(s interrupted | sed -n 's/^\$[0-9]* = //p' | sed -n 1p); a2=$(s interrupted | sed -n 's/^\$[0-9]* = //p' | sed -n 2p)
		[ -n "$a1" ] && [ "$a1" = "$a2" ] && ok "Ctrl-C stops every vCPU (the other one's count stays at $a1)" ||
			ko "Ctrl-C stops every vCPU" "ap_count $a1 then $a2"
	else ko "Ctrl-C" "$(s interrupted | flat) $(tail -n 5 "$T/small.log" | flat)"; fi
	s step | grep -q '^tick_2 in section' && ok "registers written (rip) and one instruction stepped: tick to tick_2" ||
		ko "stepi" "$(s indelay | flat) $(s step | flat)"
	s thread2 | grep -q '= 0x1100$' && ok "the second vCPU is thread 2 (real mode at CS 0x1100)" ||
		ko "thread 2" "$(s thread2 | flat)"
	s monitor | grep -q '"pio_writes":[1-9]' && s monitor | grep -q 'vCPU 1 registers' &&
		ok "monitor stat and monitor debug answer with lkvm's stat and debug output" || ko "monitor" "$(s monitor | flat)"
	# After detach: from the counter gdb read, two more ticks with gdb's msg, then magic.
	c=$(s indelay | sed -n 's/^\$[0-9]* = //p')
	tr -d '\r' < "$T/g.out" > "$T/g.txt"
	want=$(printf 'Count %08x\nrbx 00001234\nCount %08x\nrbx 00001234\nmagic 0000002a' $((c + 1)) $((c + 2)))
	if [ -n "$c" ] && [ $rc = 42 ] && [ "$(tail -n 5 "$T/g.txt")" = "$want" ]; then
		ok "the guest ran on after detach as gdb left it: msg 'Count', 3 ticks left (r12), magic 42 (its exit status)"
	else ko "guest output after gdb" "status $rc, counter '$c', tail: $(tail -n 6 "$T/g.txt" | flat)"; fi
	if works sw; then
		grep -q '^rbx feedface$' "$T/g.txt" && ok "the guest printed the rbx gdb set at the breakpoint" ||
			ko "rbx from gdb" "$(head -n 8 "$T/g.txt" | flat)"
	fi

	# 2. The protocol itself: bad checksums, malformed packets, a second client, Ctrl-C, k.
	guest p -c 2
	timeout 150 python3 tests/gdb-proto.py "$T/p.sock" "$T/syms" test $(works sw && echo sw) $(works watch && echo watch) \
		> "$T/proto.log" 2>&1
	prc=$?
	exited $lp 30
	sed -n 's/^skip \([^:]*\): \(.*\)/\1\t\2/p' "$T/proto.log" | while IFS='	' read -r what why; do echo "SKIP protocol: $what: $why"; done
	skip=$((skip + $(grep -c '^skip ' "$T/proto.log")))
	n_ok=$(grep -c '^ok ' "$T/proto.log")
	if [ $prc = 0 ] && [ "$n_ok" -ge 25 ]; then
		ok "protocol: $n_ok checks (checksums, malformed packets, X escapes, debug-register slots, second client refused, Ctrl-C)"
	else
		ko "protocol" "$(grep -v '^ok ' "$T/proto.log" | head -n 6 | flat)"
	fi
	[ $rc = 0 ] && grep -q "the debugger ended the VM" "$T/p.err" && ok "k ends the VM (status 0)" ||
		ko "k" "status $rc: $(tail -n 3 "$T/p.err" | flat)"
	grep -q "refused a second debugger" "$T/p.err" && ok "lkvm says it refused the second debugger" ||
		ko "second debugger" "$(head -c 300 "$T/p.err")"

	# 3. lkvm gdb NAME: a stub opened on a running VM; detach lets it run on. As root the VM
	# is jailed (docs/jail.md): no path to the host's folders, so lkvm gdb makes the socket
	# and hands it over with the request.
	jail=--no-jail; [ "$(id -u)" = 0 ] && jail=--jail
	"$LKVM" run --flat $jail --name gdbrun -k "$G/counter.bin" --network mode=none < /dev/null > "$T/run.out" 2> "$T/run.err" &
	lp=$!; pids="$pids $lp"
	wait_for "$T/run.out" "done" 60
	vp=$(ps -o pid= --ppid $lp | head -n 1 | tr -d ' ')	# jailed: the VM is its supervisor's child
	vuid=$(awk '/^Uid:/ { print $2 }' "/proc/${vp:-$lp}/status" 2>/dev/null)
	if [ $jail = --jail ]; then
		[ -n "$vuid" ] && [ "$vuid" != 0 ] && ok "the running VM is jailed (uid $vuid)" || ko "jailed VM" "uid '$vuid'"
	fi
	"$LKVM" gdb gdbrun "unix:$T/r.sock" > "$T/lg.out" 2>&1
	grep -q "listening on unix:$T/r.sock" "$T/lg.out" && ok "lkvm gdb NAME unix:PATH opens a stub on a running VM" ||
		ko "lkvm gdb" "$(cat "$T/lg.out")"
	mode=$(stat -c %a "$T/r.sock" 2>/dev/null)
	[ "$mode" = 600 ] && ok "the stub's unix socket is 0600" || ko "socket mode" "$mode"
	if "$LKVM" gdb gdbrun "unix:$T/r2.sock" > "$T/lg2.out" 2>&1; then ko "a second stub" "accepted: $(cat "$T/lg2.out")"
	else grep -q "already open" "$T/lg2.out" && ok "a second stub on the same VM is refused" || ko "a second stub" "$(cat "$T/lg2.out")"; fi
	printf 'set pagination off\ntarget remote %s\necho @@regs\\n\np/x $cs\np/x $rcx\necho @@end\\n\ndetach\n' "$T/r.sock" > "$T/run.gdb"
	timeout 60 gdb -batch -nx -x "$T/run.gdb" > "$T/run.log" 2>&1
	a=$(tr -cd . < "$T/run.out" | wc -c)
	c1=$(section "$T/run.log" regs | sed -n '2s/.*= //p')
	section "$T/run.log" regs | grep -q '= 0x1000$' && [ -n "$c1" ] && ok "attached to the running guest (CS 0x1000, rcx $c1)" ||
		ko "attach to a running VM" "$(head -c 300 "$T/run.log" | flat)"
	i=0; while [ $i -lt 60 ]; do sleep 1; b=$(tr -cd . < "$T/run.out" | wc -c); [ "$b" -gt "$a" ] && break; i=$((i + 1)); done
	[ "$b" -gt "$a" ] && ok "after detach the guest runs on ($a -> $b dots)" || ko "detach resumes" "$a -> $b dots"
	"$LKVM" stop gdbrun > /dev/null; exited $lp 30
	if [ $jail = --no-jail ]; then
		[ $rc = 0 ] && [ ! -e "$T/r.sock" ] && ok "the stub's socket is removed when the VM ends" || ko "socket removed" "status $rc, $(ls "$T")"
	else	# a jailed VM cannot remove it; nobody listens there any more, and the next stub there clears it
		python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$T/r.sock" 2> /dev/null &&
			ko "stub gone" "something still listens on $T/r.sock" || { [ $rc = 0 ] && ok "the jailed VM ended with status 0 and its stub with it (nothing listens on the socket)" || ko "stub gone" "status $rc"; }
	fi

	# 4. TCP: 127.0.0.1 and an ephemeral port (tcp:0); lkvm names the port it got.
	"$LKVM" run --flat -k "$G/gdbguest.bin" --network mode=none --gdb tcp:0 --gdb-wait < /dev/null > "$T/tcp.out" 2> "$T/tcp.err" &
	lp=$!; pids="$pids $lp"
	wait_for "$T/tcp.err" "gdb: listening" 30
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/tcp.err")
	timeout 60 gdb -batch -nx -ex "target remote 127.0.0.1:$port" -ex 'echo @@pc\n' -ex 'p/x $cs' -ex kill > "$T/tcp.log" 2>&1
	exited $lp 30
	section "$T/tcp.log" pc | grep -q '= 0x1000$' && [ $rc = 0 ] && ok "TCP on 127.0.0.1:$port; gdb's kill ends the VM" ||
		ko "tcp" "port '$port' status $rc: $(tail -n 3 "$T/tcp.log" | flat)"
}

linux() {
	K=$(cat .cache/kernel/current 2>/dev/null)
	INITRD=$PWD/.cache/test-images/init-gdb.cpio.gz
	# The kernel's gdb scripts are made in its build tree (tests/kernel/build.sh: make scripts_gdb).
	SCRIPTS=$PWD/.cache/linux-source-6.1/vmlinux-gdb.py
	VMLINUX=$K/vmlinux.debug	# with its debug info, where the booted vmlinux is stripped
	[ -f "$VMLINUX" ] || VMLINUX=$K/vmlinux
	if [ -z "$K" ] || [ ! -f "$K/vmlinux" ] || [ ! -f "$INITRD" ] || [ ! -f "$SCRIPTS" ]; then
		ko "gdb on the test kernel" "no test kernel, init-gdb.cpio.gz or $SCRIPTS (tests/prepare-kernels.sh)"; return
	fi
	probe
	# start_kernel: a hardware breakpoint (the kernel is not mapped where it will run yet); where
	# only int3 stops, one at its physical address: the PVH entry loads the kernel there, and the
	# stub knows its int3 when the CPU meets it at the kernel's own address later.
	brk=
	if works hw; then brk='hbreak start_kernel'
	elif works sw; then brk='break *((unsigned long)start_kernel - 0xffffffff80000000)'; fi
	{
		g "set pagination off"; g "set confirm off"; g "set width 0"
		g "source $SCRIPTS"
		g "target remote $T/k.sock"
		if [ -n "$brk" ]; then g "$brk"; g "continue"; g 'echo @@start_kernel\n'; g "bt"; g "delete"; fi
		g 'echo @@running\n'; g "continue"
		g 'echo @@interrupted\n'; g "info threads"; g "bt"
		g 'echo @@dmesg\n'; g "lx-dmesg"
		g 'echo @@current\n'; g 'p $lx_current().comm'
		g "set var panic_timeout = 4242"
		if works sw; then
			g "break ksys_sync"; g "continue"; g 'echo @@sync\n'; g "bt"
			g "finish"; g 'echo @@finished\n'; g "delete"
		fi
		g 'echo @@end\n'; g "detach"
	} > "$T/kernel.gdb"
	"$LKVM" run --name gdbk -k "$K/vmlinux" -i "$INITRD" -m 256 -c 2 -p quiet --network mode=none \
		--gdb "unix:$T/k.sock" --gdb-wait < /dev/null > "$T/k.out" 2> "$T/k.err" &
	lp=$!; pids="$pids $lp"
	wait_for "$T/k.err" "gdb: listening" 30
	timeout 900 gdb -batch -nx -x "$T/kernel.gdb" "$VMLINUX" > "$T/k.log" 2>&1 &
	gp=$!; pids="$pids $gp"
	# Ctrl-C once init runs: gdb stops every vCPU.
	wait_for "$T/k.out" "GDB-INIT-READY" 400 && wait_for "$T/k.log" "@@running" 10 && sleep 2 && kill -INT $gp
	exited $gp 300
	grc=$rc
	s() { section "$T/k.log" "$1"; }
	if [ -z "$brk" ]; then
		sk "hbreak start_kernel" "$(why hw)"
		sk "int3 at start_kernel" "$(why sw)"
	else
		how=$brk; works hw || { sk "hbreak start_kernel" "$(why hw)"; how="int3 at start_kernel's physical address"; }
		s start_kernel | grep -q '^#0 .*start_kernel ()' && s start_kernel | grep -q 'x86_64_start_kernel' &&
			ok "$how: hit; bt shows the boot path ($(s start_kernel | grep -c '^#') frames)" ||
			ko "$how" "$(s start_kernel | head -n 6 | flat) $(head -n 20 "$T/k.log" | flat)"
	fi
	s interrupted | grep -qE '^\*? +2 +Thread 2 ' && s interrupted | grep -q '^#0 ' &&
		ok "Ctrl-C at init stops both vCPUs; bt: $(s interrupted | grep -m1 '^#0' | sed 's/^#0 *\(0x[0-9a-f]* in \)\{0,1\}\([^ ]*\).*/\2/')" ||
		ko "Ctrl-C" "$(s interrupted | flat) $(tail -n 5 "$T/k.log" | flat)"
	s dmesg | grep -q 'Linux version 6\.1' && ok "lx-dmesg prints the kernel's log ('Linux version')" ||
		ko "lx-dmesg" "$(s dmesg | head -n 3 | flat) $(tail -n 3 "$T/k.log" | flat)"
	s current | grep -q '^\$[0-9]* = "[^"]' && ok "\$lx_current() names the task: $(s current | sed -n 's/.*= //p')" ||
		ko "\$lx_current()" "$(s current | flat)"
	if ! works sw; then
		sk "break ksys_sync, finish" "$(why sw)"
	else
		s sync | grep -q '^#0 .*ksys_sync' && ok "software breakpoint on ksys_sync, hit when init calls sync: $(s sync | grep -c '^#') frames" ||
			ko "break ksys_sync" "$(s sync | head -n 5 | flat)"
		s finished | grep -q "Run till exit" && s finished | grep -qE '(__x64_sys_sync|__do_sys_sync|do_syscall_64)' &&
			ok "finish returns to the caller: $(s finished | grep -m1 -oE '(__x64_sys_sync|__do_sys_sync|do_syscall_64)')" ||
			ko "finish" "$(s finished | head -n 5 | flat) gdb status $grc"
	fi
	# What gdb wrote through the guest's page tables, the guest reads back.
	if wait_for "$T/k.out" "PANIC=4242" 120; then ok "the guest sees panic_timeout = 4242 as gdb set it"
	else ko "gdb's write to the kernel" "$(tr -d '\r' < "$T/k.out" | grep PANIC= | tail -n 2 | flat) $(tail -n 3 "$T/k.log" | flat)"; fi
	"$LKVM" stop gdbk > /dev/null 2>&1; exited $lp 60
}

case $SET in
small) small ;;
linux) linux ;;
all) small; linux ;;
*) echo "gdb-tests: unknown set '$SET'"; exit 2 ;;
esac
finish
