#!/bin/sh
# lkvm jailed (lib/jail.c), read from the host's /proc while it runs: started
# as root, a running lkvm has a uid other than 0, no capabilities (effective,
# permitted, bounding), NoNewPrivs 1, Seccomp 2, its own mount, IPC and UTS
# namespaces and an empty / ; its control socket still answers and is removed
# when it ends. Its supervisor (lib/supervise.c): the VM's process is PID 1 of
# a PID namespace of its own (NSpid), in a cgroup lkvm-NAME-PID whose
# memory.max and pids.max are set (a cgroup2 mount of the test's own at
# /sys/fs/cgroup when there is none), gone after the VM ends, also after
# kill -9 of the VM's process; kill -9 of the supervisor ends the VM too;
# SIGTERM to the supervisor ends the VM with the status an unjailed lkvm gives. --no-jail keeps root (the test can tell);
# --jail with --gdb, or as an ordinary user, fails naming why. The counter
# test guest (--flat). The test confines itself: a private mount namespace
# with a fresh /tmp.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init jail
if [ "$(id -u)" != 0 ]; then
	skip jail "needs root (the jail is what lkvm started as root does)"
	suite_end; exit 0
fi
if [ -z "${LKVM_CONFINED:-}" ]; then
	exec env LKVM_CONFINED=1 unshare -m --propagation private sh "$0" "$@"
fi
mount -t tmpfs tmp /tmp || { fail jail "cannot mount a fresh /tmp"; suite_end; exit 1; }
LKVM=$(pwd)/$BUILD/lkvm
G=$(pwd)/$BUILD/tests/guests/counter.bin
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
vm=
trap '[ -n "$vm" ] && kill $vm 2>/dev/null; rm -rf "$T"' EXIT
field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s '\t ' ' '; }
# The cgroups: the host's cgroup2 at /sys/fs/cgroup, else one mounted here (this namespace only).
cg=
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] || mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null; then
	grep -qw memory /sys/fs/cgroup/cgroup.controllers && grep -qw pids /sys/fs/cgroup/cgroup.controllers && cg=1
fi
# The VM's process: lkvm list's pid ($vm is its supervisor).
vmpid() { "$LKVM" list | awk -v n="$1" '$1 == n { print $2 }'; }

# start NAME [options]: lkvm in the background ($vm) until its control socket answers
start() {
	n=$1; shift
	"$LKVM" run --flat --name "$n" -k "$G" "$@" < /dev/null > "$T/$n.out" 2> "$T/$n.err" &
	vm=$!
	i=0; while [ $i -lt 300 ]; do "$LKVM" stat "$n" > "$T/$n.stat" 2>/dev/null && return 0; kill -0 $vm 2>/dev/null || return 1; sleep 0.1; i=$((i + 1)); done
	return 1
}
finish() { "$LKVM" stop "$1" > /dev/null 2>&1; wait $vm; vm=; }

# 1. Jailed by default as root.
if start j1; then
	sup=$vm vp=$(vmpid j1)
	[ -n "$vp" ] && [ "$vp" != "$sup" ] && [ "$(ps -o ppid= -p "$vp" | tr -d ' ')" = "$sup" ] &&
		pass "lkvm list gives the VM's process ($vp), its supervisor's ($sup) child" ||
		fail "the VM's process" "lkvm list says '$vp', supervisor $sup: $("$LKVM" list | tr '\n' '|')"
	vp=${vp:-$sup}
	uid=$(field $vp Uid) capeff=$(field $vp CapEff) capprm=$(field $vp CapPrm) capbnd=$(field $vp CapBnd)
	nnp=$(field $vp NoNewPrivs) sec=$(field $vp Seccomp)
	ns=; for k in mnt ipc uts pid; do [ "$(readlink /proc/$vp/ns/$k)" != "$(readlink /proc/self/ns/$k)" ] && ns="$ns $k"; done
	root=$(ls -A /proc/$vp/root/ 2>&1 | tr '\n' ' ')
	passwd=$(cat /proc/$vp/root/etc/passwd 2>/dev/null | head -c 10)
	if [ "$uid" = "65534 65534 65534 65534" ] && [ "$capeff" = 0000000000000000 ] && [ "$capprm" = 0000000000000000 ] &&
	   [ "$capbnd" = 0000000000000000 ] && [ "$nnp" = 1 ] && [ "$sec" = 2 ] && [ "$ns" = " mnt ipc uts pid" ] &&
	   [ -z "$root" ] && [ -z "$passwd" ] && grep -q '"pio_writes"' "$T/j1.stat"; then
		pass "a running lkvm started as root: uid 65534, CapEff/CapPrm/CapBnd 0, NoNewPrivs 1, Seccomp 2, own mnt/ipc/uts/pid namespaces, an empty /; lkvm stat answers"
	else
		fail "jailed lkvm" "Uid='$uid' CapEff=$capeff CapPrm=$capprm CapBnd=$capbnd NoNewPrivs=$nnp Seccomp=$sec namespaces:'$ns' root:'$root' passwd:'$passwd' stat: $(head -c 200 "$T/j1.stat") err: $(tail -n 3 "$T/j1.err" | tr '\n' '|')"
	fi
	nspid=$(field $vp NSpid)
	[ "$nspid" = "$vp 1" ] && pass "the VM's process is PID 1 of its PID namespace (NSpid: $nspid)" ||
		fail "PID namespace" "NSpid '$nspid' of $vp"
	# its cgroup: default -m 256, 1 vCPU: 256 MiB + the jail's 2 GiB + 16 MiB per vCPU
	cgpath=$(sed -n 's/^0:://p' /proc/$vp/cgroup)
	if [ -n "$cg" ]; then
		mem=$(cat "/sys/fs/cgroup$cgpath/memory.max" 2>&1) pids=$(cat "/sys/fs/cgroup$cgpath/pids.max" 2>&1)
		[ "${cgpath##*/}" = "lkvm-j1-$sup" ] && [ "$mem" = $((256 * 1048576 + 2147483648 + 16777216)) ] && [ "$pids" = 4096 ] &&
			pass "its cgroup $cgpath: memory.max $mem (guest RAM + 2 GiB + 16 MiB), pids.max $pids" ||
			fail "cgroup" "'$cgpath' memory.max '$mem' pids.max '$pids'"
	else
		skip "cgroup" "no cgroup2 with the memory and pids controllers here (nor mountable)"
	fi
	sock=$T/lkvm/j1.sock
	[ -S "$sock" ] && had=1 || had=0
	finish j1
	if [ $had = 1 ] && [ ! -e "$sock" ]; then pass "the jailed lkvm's control socket is removed when it ends"
	else fail "control socket removal" "$([ $had = 1 ] && echo "still there" || echo "never there: $sock")"; fi
	if [ -n "$cg" ]; then
		[ -n "$cgpath" ] && [ "$cgpath" != / ] && [ ! -e "/sys/fs/cgroup$cgpath" ] &&
			pass "the cgroup is removed when the VM ends" || fail "cgroup removal" "'$cgpath' still there"
	fi
else
	fail "jailed lkvm" "did not start: $(tail -n 3 "$T/j1.err" | tr '\n' '|')"
	vm=
fi

# 1b. kill -9 of the VM's process: the supervisor still removes its socket and cgroup, status 137.
if start j4; then
	sup=$vm vp=$(vmpid j4); cgpath=$(sed -n 's/^0:://p' /proc/${vp:-$sup}/cgroup)
	[ -n "$vp" ] && kill -9 "$vp"
	wait $vm; rc=$?; vm=
	gone=1; [ -n "$cg" ] && [ -e "/sys/fs/cgroup$cgpath" ] && gone=0
	[ -n "$vp" ] && [ $rc = 137 ] && [ ! -e "$T/lkvm/j4.sock" ] && [ $gone = 1 ] &&
		pass "kill -9 of the VM's process: status 137, its socket$([ -n "$cg" ] && echo " and cgroup") removed by the supervisor" ||
		fail "kill -9 of the VM" "pid '$vp' rc=$rc socket $([ -e "$T/lkvm/j4.sock" ] && echo left || echo gone) cgroup '$cgpath' gone=$gone"
else
	fail "kill -9 of the VM" "did not start: $(tail -n 3 "$T/j4.err" | tr '\n' '|')"; vm=
fi

# 1c. kill -9 of the supervisor: the VM's process does not outlive it (its PDEATHSIG, set again after the jail).
if start j6; then
	sup=$vm vp=$(vmpid j6); cgpath=$(sed -n 's/^0:://p' /proc/${vp:-$sup}/cgroup)
	kill -9 $sup; wait $sup 2>/dev/null; vm=
	alive() { case "$(field "$1" State)" in ""|Z*) return 1;; esac; }	# a zombie (no one reaps it here) is dead
	i=0; while [ $i -lt 100 ] && [ -n "$vp" ] && alive "$vp"; do sleep 0.1; i=$((i + 1)); done
	[ -n "$vp" ] && ! alive "$vp" && pass "kill -9 of the supervisor: the VM's process ends with it" ||
		fail "kill -9 of the supervisor" "the VM's process '$vp' is still there: $(field "$vp" State)"
	rm -f "$T/lkvm/j6.sock"; [ -n "$cg" ] && [ "$cgpath" != / ] && rmdir "/sys/fs/cgroup$cgpath" 2>/dev/null	# what only the supervisor removes
else
	fail "kill -9 of the supervisor" "did not start: $(tail -n 3 "$T/j6.err" | tr '\n' '|')"; vm=
fi

# 1d. SIGTERM to the supervisor ends the VM as SIGTERM to an unjailed lkvm does.
rcs=
for j in --jail --no-jail; do
	if start j5 $j; then kill -TERM $vm; wait $vm; rcs="$rcs $?"; vm=; else rcs="$rcs none"; vm=; fi
done
[ "$rcs" = " 143 143" ] && pass "SIGTERM to the supervisor: the VM ends with status 143, as unjailed" ||
	fail "SIGTERM" "jailed and unjailed statuses:$rcs: $(tail -n 3 "$T/j5.err" | tr '\n' '|')"

# 2. --jail-user picks the user.
if start j2 --jail-user 12345:23456; then
	vp=$(vmpid j2); uid=$(field ${vp:-$vm} Uid) gid=$(field ${vp:-$vm} Gid)
	[ "$uid" = "12345 12345 12345 12345" ] && [ "$gid" = "23456 23456 23456 23456" ] &&
		pass "--jail-user 12345:23456: the running lkvm is uid 12345 gid 23456" ||
		fail "--jail-user" "Uid='$uid' Gid='$gid'"
	finish j2
else
	fail "--jail-user" "did not start: $(tail -n 3 "$T/j2.err" | tr '\n' '|')"; vm=
fi

# 3. The control: --no-jail keeps root and the host's /.
if start j3 --no-jail; then
	uid=$(field $vm Uid) capeff=$(field $vm CapEff)
	[ "$uid" = "0 0 0 0" ] && [ "$capeff" != 0000000000000000 ] && [ "$(readlink /proc/$vm/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] &&
		pass "--no-jail: uid 0 with capabilities, the host's mount namespace (what the checks above tell apart)" ||
		fail "--no-jail" "Uid='$uid' CapEff=$capeff"
	finish j3
else
	fail "--no-jail" "did not start: $(tail -n 3 "$T/j3.err" | tr '\n' '|')"; vm=
fi

# 4. What cannot be jailed is refused, never run unjailed.
out=$(timeout -k 10 60 "$LKVM" run --flat --jail --gdb tcp:127.0.0.1:0 -k "$G" < /dev/null 2>&1); rc=$?
if [ $rc != 0 ] && echo "$out" | grep -q -- "--jail cannot go with --gdb"; then
	pass "--jail --gdb: refused ($(echo "$out" | tail -n 1))"
else
	fail "--jail --gdb" "rc=$rc: $out"
fi
if [ -n "${LKVM_ENV_NESTED:-}" ] && command -v setpriv > /dev/null && chmod o+rw /dev/kvm 2>/dev/null; then
	chmod 0755 "$T" && mkdir -p "$T/u" && chown 65534:65534 "$T/u"	# its control socket's folder
	out=$(cd "$T/u" && setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_RUNTIME_DIR="$T/u" \
		timeout -k 10 60 "$LKVM" run --flat --jail -k "$G" < /dev/null 2>&1); rc=$?
	chmod o-rw /dev/kvm
	if [ $rc != 0 ] && echo "$out" | grep -q "jail: pid namespace: unshare(CLONE_NEWPID)"; then
		pass "--jail as an ordinary user: the step that cannot be done is named and lkvm ends ($(echo "$out" | tail -n 1))"
	else
		fail "--jail as an ordinary user" "rc=$rc: $out"
	fi
else
	skip "--jail as an ordinary user" "only in the nested machine (it opens /dev/kvm to uid 65534 there)"
fi
suite_end
