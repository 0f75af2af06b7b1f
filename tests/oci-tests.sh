#!/bin/sh
# lkvm oci in real guests: bundles made here (a busybox rootfs), driven as an engine drives
# runc (tests/oci/engine.py: a child subreaper that creates, starts and waits for the
# container's process). Proves the create/start/state/delete cycle, the exit status reaching
# the engine as a child's exit, env, cwd, uid/gid, a bind mount both ways, a read-only root, a
# writable one, kill, exec (args and --process), and a terminal over --console-socket.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init oci
need_tool python3 python3 "oci tests" || { suite_end; exit 0; }
OCIBIN=$(pwd)/$BUILD/lkvm-oci
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
D=$(mktemp -d "$(pwd)/$BUILD/oci-test.XXXXXX")	# bundles: the guest's 9p shares come from here
R=$(mktemp -d)					# the state folder (its sockets want a local file system)
export XDG_RUNTIME_DIR=$R LKVM_KERNEL=$K
OCI="$OCIBIN --root $R/state"
trap 'for c in $($OCI list -q 2>/dev/null); do $OCI delete --force $c; done; rm -rf "$D" "$R"' EXIT
if [ ! -f "$K" ]; then
	fail "oci tests" "no test kernel (tests/prepare-kernels.sh)"; suite_end; exit 1
fi
if [ ! -x /bin/busybox ] || readelf -l /bin/busybox | grep -q "program interpreter"; then	# a dynamic one
	skip "oci tests" "no static /bin/busybox (install busybox-static)"; suite_end; exit 0
fi
tok=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
# A rootfs: /bin/busybox and its applets as symlinks.
mkrootfs() {
	mkdir -p "$1/bin" "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/etc"
	cp /bin/busybox "$1/bin/busybox"
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
}
mkrootfs "$D/rootfs"
cp -a "$D/rootfs" "$D/rootfs-rw"
# bundle NAME ARGS_JSON [EXTRA_JSON]: a config with the usual mounts
bundle() {
	mkdir -p "$D/$1"
	root=${ROOTPATH:-$D/rootfs}
	gj=; [ -n "$GROUPS_" ] && gj=",\"additionalGids\":[$GROUPS_]"
	cat > "$D/$1/config.json" <<EOF2
{"ociVersion":"1.0.2",
 "process":{"terminal":${TERM_ON:-false},"user":{"uid":${UID_:-0},"gid":${GID_:-0}$gj},
  "args":$2,"env":["PATH=/bin","A=x y","TOK=$tok"],"cwd":"${CWD_:-/}",
  "rlimits":[{"type":"RLIMIT_NOFILE","hard":1234,"soft":1000}]},
 "root":{"path":"$root","readonly":${RO:-true}},
 "hostname":"c-$tok",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
  {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
  {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},
  {"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777","size=65536k"]},
  {"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}${3:+,$3}],
 "linux":{"resources":{"memory":{"limit":268435456}},"namespaces":[{"type":"pid"},{"type":"mount"}]},
 "annotations":{"org.test.tok":"$tok"}}
EOF2
}
err1() { tr '\n' '|' < "$1" 2>/dev/null | cut -c1-400; }
# run NAME: engine.py's whole cycle; its files in $D/NAME.out
run() {
	mkdir -p "$D/$1.out"
	timeout -k 10 600 python3 tests/oci/engine.py "$OCI" "$1" "$D/$1" "$D/$1.out" $2
	cat "$D/$1.out/status" 2>/dev/null
}
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

# 1. The whole cycle: exit status 3, stdout and stderr apart, env, cwd, hostname, uid/gid, rlimits.
UID_=1234 GID_=5678 GROUPS_=42 CWD_=/work/here bundle c1 '["sh","-c","echo out-$TOK \"$A\" $(pwd) $(hostname) $(id -u) $(id -g) $(id -G) $(ulimit -n); echo err-$TOK >&2; exit 3"]'
st=$(run c1)
o=$D/c1.out
want="out-$tok x y /work/here c-$tok 1234 5678 5678 42 1000"
[ "$st" = "exit 3" ] && pass "exit status 3 reached the engine as its child's exit (the pid in --pid-file)" ||
	fail "exit status" "got '$st' stderr: $(err1 $o/stderr) start: $(err1 $o/start.out)"
[ "$(cat $o/stdout 2>/dev/null)" = "$want" ] && pass "stdout: env (A with a space), cwd made, hostname, uid 1234 gid 5678 groups 5678 42, RLIMIT_NOFILE 1000" ||
	fail "process settings" "stdout '$(err1 $o/stdout)' want '$want'; stderr $(err1 $o/stderr)"
[ "$(cat $o/stderr 2>/dev/null)" = "err-$tok" ] && pass "stderr apart from stdout" || fail stderr "'$(err1 $o/stderr)'"
s1=$(jget $o/state.created status) s2=$(jget $o/state.started status) s3=$(jget $o/state.stopped status)
p1=$(jget $o/state.created pid)
a1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["annotations"]["org.test.tok"])' $o/state.created 2>/dev/null)
b1=$(jget $o/state.created bundle)
# started: running, or already stopped if the command was that quick
if [ "$s1" = created ] && { [ "$s2" = running ] || [ "$s2" = stopped ]; } && [ "$s3" = stopped ] &&
   [ "$p1" = "$(cat $o/pid)" ] && [ "$a1" = "$tok" ] && [ "$b1" = "$D/c1" ]; then
	pass "state: created (pid = the pid file's, bundle, annotations) -> $s2 -> stopped"
else
	fail "state" "created='$s1' started='$s2' stopped='$s3' pid $p1 vs $(cat $o/pid 2>/dev/null) ann '$a1' bundle '$b1': $(err1 $o/state.created)"
fi
$OCI delete c1 && ! $OCI state c1 2>/dev/null && [ ! -e "$R/state/c1" ] &&
	pass "delete of a stopped container removes its state" || fail "delete" "state folder: $(ls $R/state 2>&1)"

# 2. A bind mount both ways; a writable root whose writes reach the host's folder.
mkdir -p "$D/shared"; chmod 777 "$D/shared"
head -c 65536 /dev/urandom > "$D/shared/in.bin"
RO=false ROOTPATH=$D/rootfs-rw bundle c2 '["sh","-c","cat /data/in.bin > /data/back.bin && echo from-guest-$TOK > /data/out.txt && echo rw-$TOK > /rootfile && sha256sum /data/in.bin"]' \
	"{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"$D/shared\",\"options\":[\"rbind\",\"rw\"]}"
st=$(run c2)
gsha=$(cut -d' ' -f1 "$D/c2.out/stdout" 2>/dev/null)
hsha=$(sha256sum < "$D/shared/in.bin" | cut -d' ' -f1)
[ "$st" = "exit 0" ] && cmp -s "$D/shared/in.bin" "$D/shared/back.bin" && [ "$(cat "$D/shared/out.txt" 2>/dev/null)" = "from-guest-$tok" ] &&
	[ "$gsha" = "$hsha" ] && pass "bind mount: the guest read the host's 64 KiB (sha256 agrees) and wrote files the host reads back" ||
	fail "bind mount" "st '$st' guest sha '$gsha' host '$hsha', out.txt '$(cat "$D/shared/out.txt" 2>/dev/null)': $(err1 "$D/c2.out/stderr")"
[ "$(cat "$D/rootfs-rw/rootfile" 2>/dev/null)" = "rw-$tok" ] && pass "root.readonly false: a write to / reached the bundle's rootfs" ||
	fail "rw root" "rootfile: '$(cat "$D/rootfs-rw/rootfile" 2>&1)'"
$OCI delete c2

# 3. A read-only root refuses writes (and nothing reaches the host's folder).
bundle c3 '["sh","-c","echo x > /rofile; echo rc=$?"]'
st=$(run c3)
out=$(cat "$D/c3.out/stdout" 2>/dev/null)
[ "$st" = "exit 0" ] && [ "$out" != "rc=0" ] && [ -n "$out" ] && grep -qi "read-only" "$D/c3.out/stderr" && [ ! -e "$D/rootfs/rofile" ] &&
	pass "root.readonly: a write to / failed ($out, '$(err1 "$D/c3.out/stderr")'), nothing on the host" ||
	fail "read-only root" "st '$st' out '$out' err '$(err1 "$D/c3.out/stderr")' host file: $(ls "$D/rootfs/rofile" 2>&1)"
$OCI delete c3

# 4. A long-running container: state running, exec (args, then --process), kill TERM -> stopped.
bundle c4 '["sleep","1000"]'
mkdir -p "$D/c4.out"
timeout -k 10 600 python3 tests/oci/engine.py "$OCI" c4 "$D/c4" "$D/c4.out" &
eng=$!
i=0; while [ $i -lt 600 ] && [ ! -f "$D/c4.out/started" ]; do sleep 0.5; i=$((i + 1)); done
s=$($OCI state c4 | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
[ "$s" = running ] && pass "state of a started sleep 1000: running" || fail "running state" "'$s' $(err1 "$D/c4.out/stderr")"
eo=$(timeout -k 10 120 $OCI exec c4 sh -c 'echo exec-$0 $(hostname) $(id -u); exit 4' "$tok" < /dev/null 2> "$D/exec.err")
rc=$?
[ $rc = 4 ] && [ "$eo" = "exec-$tok c-$tok 0" ] && pass "exec ID ARGS: ran in the running container (its hostname), output and status 4" ||
	fail "exec" "rc=$rc out '$eo' err $(err1 "$D/exec.err")"
printf '{"args":["sh","-c","echo proc-$P $(id -u); exit 5"],"env":["P=%s"],"cwd":"/","user":{"uid":77,"gid":77}}' "$tok" > "$D/process.json"
eo=$(timeout -k 10 120 $OCI exec --process "$D/process.json" c4 < /dev/null 2> "$D/exec2.err")
rc=$?
[ $rc = 5 ] && [ "$eo" = "proc-$tok 77" ] && pass "exec --process FILE: its args, env and uid 77, status 5" ||
	fail "exec --process" "rc=$rc out '$eo' err $(err1 "$D/exec2.err")"
$OCI delete c4 2> "$D/del.err" && fail "delete of a running container" "it succeeded without --force" ||
	{ grep -q "running" "$D/del.err" && pass "delete of a running container without --force: refused ($(err1 "$D/del.err"))" ||
	  fail "delete running" "no clear error: $(err1 "$D/del.err")"; }
$OCI kill c4 TERM
wait $eng
st=$(cat "$D/c4.out/status" 2>/dev/null)
s=$(jget "$D/c4.out/state.stopped" status)
[ "$st" = "exit 143" ] && [ "$s" = stopped ] && pass "kill c4 TERM: sleep ended by SIGTERM in the guest (status 143), state stopped" ||
	fail "kill" "status '$st' state '$s'"
$OCI delete c4

# 5. terminal: true: the pty master reached the console socket and carried the output.
TERM_ON=true bundle c5 '["sh","-c","[ -t 0 ] && [ -t 1 ] && echo tty-yes-$TOK; tty"]'
st=$(run c5 --console)
c=$(tr -d '\r' < "$D/c5.out/console" 2>/dev/null)
echo "$c" | grep -q "^tty-yes-$tok$" && echo "$c" | grep -q "^/dev/pts/" && [ "$st" = "exit 0" ] &&
	pass "terminal: the engine took the pty master over --console-socket; the process had a terminal (stdin, stdout), output came through it" ||
	fail "terminal" "status '$st' console '$(echo "$c" | tr '\n' '|')' stderr $(err1 "$D/c5.out/stderr")"
$OCI delete c5
[ -z "$($OCI list -q)" ] && pass "list: empty after the deletes" || fail "list" "$($OCI list)"
suite_end
