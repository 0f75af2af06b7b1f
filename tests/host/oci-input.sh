#!/bin/sh
# lkvm oci's errors and its state folder's safety, without a guest: each bad
# case exits non-zero with one clear line on stderr (and nothing left behind);
# hostile bundles (symlinked root, '..' in mounts, the host's /) and a state
# folder another user could write are refused before anything is shared.
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
OCIBIN=$(pwd)/$BUILD/lkvm-oci
T=$(mktemp -d)
sleeper=
trap '[ -n "$sleeper" ] && kill $sleeper 2>/dev/null; rm -rf "$T"' EXIT
. tests/lib/suite.sh
suite_init oci-input
S=$T/state
OCI="$OCIBIN --root $S"
export LKVM_KERNEL=$T/kernel
printf 'not a kernel' > "$T/kernel"
# case NAME PATTERN ARGS...: non-zero status, one stderr line matching PATTERN
case_() {
	name=$1 pat=$2; shift 2
	$OCI "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
	lines=$(wc -l < "$T/err")
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$T/err"; then
		pass "$name: $(cat "$T/err")"
	else
		fail "$name" "status $rc, $lines stderr lines: $(head -c 300 "$T/err")"
	fi
}
mk() {	# mk NAME CONFIG_JSON: a bundle with a rootfs folder
	mkdir -p "$T/$1/rootfs"
	printf '%s' "$2" > "$T/$1/config.json"
}
ok='{"process":{"args":["/bin/sh"],"cwd":"/"},"root":{"path":"rootfs"}}'
mk good "$ok"
mkdir -p "$T/nocfg/rootfs"
mk badjson '{"process":{"args":["/bin/sh"]},"root":{"path":"rootfs"}'
mk noargs '{"process":{"cwd":"/"},"root":{"path":"rootfs"}}'
mk symroot '{"process":{"args":["sh"]},"root":{"path":"link"}}'
ln -s / "$T/symroot/link"
mk hostroot '{"process":{"args":["sh"]},"root":{"path":"/"}}'
mk dotdot '{"process":{"args":["sh"]},"root":{"path":"rootfs/../../.."}}'
mk mntdest '{"process":{"args":["sh"]},"root":{"path":"rootfs"},"mounts":[{"destination":"/data/../../x","type":"tmpfs","source":"tmpfs"}]}'
mk mntsrc '{"process":{"args":["sh"]},"root":{"path":"rootfs"},"mounts":[{"destination":"/data","type":"bind","source":"/tmp/../etc","options":["rbind"]}]}'
mk hugeuid '{"process":{"args":["sh"],"user":{"uid":99999999999,"gid":0}},"root":{"path":"rootfs"}}'
mk badenv '{"process":{"args":["sh"],"env":["NOEQUALS"]},"root":{"path":"rootfs"}}'
mk deep "$(python3 -c 'print("["*5000 + "]"*5000)' 2>/dev/null || echo '[[[')"

LKVM_KERNEL= case_ no-kernel "no kernel: set the annotation org.lkvm.kernel, \$LKVM_KERNEL, or kernel=PATH" create --bundle "$T/good" k1
case_ bundle-without-config "no config.json in the bundle" create --bundle "$T/nocfg" c1
case_ bad-json "config.json: bad JSON: offset" create --bundle "$T/badjson" c1
case_ deep-json "config.json: bad JSON" create --bundle "$T/deep" c1
case_ missing-args "process.args: missing" create --bundle "$T/noargs" c1
case_ symlinked-root "goes through a symlink" create --bundle "$T/symroot" c1
case_ host-root "the host's / cannot be a container's root" create --bundle "$T/hostroot" c1
case_ root-dotdot "root.path.*no '..'" create --bundle "$T/dotdot" c1
case_ mount-dest-dotdot "destination '/data/../../x' must be an absolute path without '..'" create --bundle "$T/mntdest" c1
case_ bind-src-dotdot "bind source '/tmp/../etc' must be a path without '..'" create --bundle "$T/mntsrc" c1
case_ huge-uid "process.user.uid: a number from 0 to 4294967295" create --bundle "$T/hugeuid" c1
case_ env-not-name-value "process.env: 'NOEQUALS' is not NAME=VALUE" create --bundle "$T/badenv" c1
for id in ../x a/b .hidden -x "$(printf 'x%.0s' $(seq 70))" ""; do
	case_ "bad-id '$id'" "bad container id\|needs a container id\|unknown option" create --bundle "$T/good" "$id"
done
[ ! -e "$T/x" ] && pass "the id ../x made nothing outside the state folder" || fail "../x" "$(ls "$T")"
case_ unknown-id "container nope does not exist" state nope
case_ unknown-id-kill "container nope does not exist" kill nope KILL
case_ unknown-command "unknown command 'frobnicate'" frobnicate
case_ unknown-signal "unknown signal 'NOSUCH'" kill nope NOSUCH
case_ start-unknown "container nope does not exist" start nope
case_ exec-unknown "container nope does not exist" exec nope true
case_ ps-unknown "container nope does not exist" ps --format json nope
case_ ps-bad-format "ps: --format table or json, not 'yaml'" ps --format yaml nope

# A VM that cannot start (no KVM here, or a kernel that is not one): create fails in one
# line, and the container's folder is gone again; the state folder was made 0700.
case_ create-vm-fails "create v1: the VM ended" create --bundle "$T/good" v1
m=$(stat -c %a "$S" 2>/dev/null)
[ "$m" = 700 ] && [ -z "$(ls -A "$S")" ] && pass "--root made mode 700, the failed container's folder removed" ||
	fail "state folder" "mode '$m', left: $(ls -A "$S" 2>&1)"

# Duplicate id: the id's folder exists.
mkdir -m 700 "$S/dup"
case_ duplicate-id "container dup already exists" create --bundle "$T/good" dup
rmdir "$S/dup"

# A running container (its process: a sleep of ours, by pid and start time): delete refuses it
# without --force; delete --force ends it.
sleep 1000 & sleeper=$!
st=$(cut -d' ' -f22 /proc/$sleeper/stat)
mkdir -m 700 "$S/run1"
printf '{"id":"run1","pid":%d,"start":%s,"bundle":"%s","annotations":"{}"}' $sleeper $st "$T/good" > "$S/run1/state.json"
printf running > "$S/run1/status"
case_ delete-running "container run1 is running: stop it first" delete run1
s=$($OCI state run1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["pid"])')
[ "$s" = "running $sleeper" ] && pass "state of it: running, its pid" || fail "state running" "'$s'"
s=$($OCI ps --format json run1)
[ "$s" = "[$sleeper]" ] && pass "ps --format json: [$sleeper], the container's process (no VM child here)" || fail "ps running" "'$s'"
$OCI delete --force run1 && sleep 0.2 && ! kill -0 $sleeper 2>/dev/null && [ ! -e "$S/run1" ] &&
	pass "delete --force: the process ended (SIGKILL), the state removed" || fail "delete --force" "$(ls "$S" 2>&1)"
wait $sleeper 2>/dev/null; sleeper=
# A reused pid does not make a stopped container running: the start time must match.
mkdir -m 700 "$S/old1"
printf '{"id":"old1","pid":%d,"start":1,"bundle":"%s","annotations":"{}"}' $$ "$T/good" > "$S/old1/state.json"
printf running > "$S/old1/status"
s=$($OCI state old1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["pid"])')
[ "$s" = "stopped 0" ] && pass "a live pid with another start time: stopped (a reused pid is not the container)" || fail "pid reuse" "'$s'"
s=$($OCI ps --format json old1)
[ "$s" = "[]" ] && pass "ps of it: [] (the reused pid is not listed)" || fail "ps stopped" "'$s'"
$OCI delete old1 && kill -0 $$ && [ ! -e "$S/old1" ] && pass "delete of a stopped container never signals the pid it once had" ||
	fail "delete stopped" "$(ls "$S")"

# A state folder another user could write, or a symlink: refused.
mkdir -m 777 "$T/open"
OCI="$OCIBIN --root $T/open" case_ root-world-writable "not ours alone" create --bundle "$T/good" c9
ln -s "$S" "$T/linkroot"
OCI="$OCIBIN --root $T/linkroot" case_ root-symlink "not a folder (a symlink is refused)" create --bundle "$T/good" c9
[ -z "$(ls -A "$T/open")" ] && pass "nothing made in the refused folders" || fail "refused root" "$(ls -A "$T/open")"

# --log with --log-format json: the error as a JSON line engines parse.
$OCIBIN --root "$S" --log "$T/log.json" --log-format json state nope 2> /dev/null
python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); assert d["level"]=="error" and "nope" in d["msg"]' "$T/log.json" &&
	pass "--log-format json: {\"level\":\"error\",\"msg\":...} in --log" || fail "json log" "$(cat "$T/log.json")"
# Engines' global flags that do not apply are accepted.
$OCIBIN --root "$S" --systemd-cgroup --rootless false --criu /x --debug list > /dev/null &&
	pass "--systemd-cgroup --rootless --criu --debug accepted and ignored" || fail "ignored flags" "list failed"
$OCIBIN features | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ociVersionMax"]' &&
	pass "features: JSON with ociVersionMax" || fail features "not JSON"
v=$($OCIBIN --version | head -n1)
[ "${v#lkvm-oci version}" != "$v" ] && pass "--version: $v" || fail "--version" "'$v'"
suite_end
