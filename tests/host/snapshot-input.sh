#!/bin/sh
# Bad snapshots and bad restore requests (no /dev/kvm needed: all of this is
# checked before it is opened): each exits non-zero with one clear line on
# stderr naming the file or option and the problem. State files are made here
# by a small writer of the format (lib/snapshot.c), so every case is exact.
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
LKVM=$BUILD/lkvm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export XDG_RUNTIME_DIR=$T/run
mkdir -p "$T/run"
pass=0; fail=0
case_() {	# NAME PATTERN ARGS...: non-zero status, one stderr line matching PATTERN
	name=$1 pat=$2; shift 2
	"$LKVM" "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
	lines=$(wc -l < "$T/err")
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$T/err"; then
		echo "PASS $name: $(cat "$T/err")"; pass=$((pass + 1))
	else
		echo "FAIL $name: status $rc, $lines stderr lines: $(head -c 400 "$T/err")"; fail=$((fail + 1))
	fi
}
# mkstate DIR [format-version] [config-version] [DISK...]: a state file whose disks record
# describes each DISK as it is now (writable raw images), and whose options name them.
mkstate() {
	python3 - "$@" <<'PY'
import os, struct, sys, zlib
d, fmt, cver, disks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def rec(name, ver, payload):
    n = name.encode()
    body = struct.pack('<H', len(n)) + n + struct.pack('<IQ', ver, len(payload)) + payload
    return body + struct.pack('<I', zlib.crc32(body))
def s(x):
    b = x.encode()
    return struct.pack('<H', len(b)) + b
args = ['--mem=64', '--flat'] + ['--disk=' + p for p in disks]
config = struct.pack('<QII', 64 << 20, 1, len(args)) + b''.join(s(a) for a in args)
dr = struct.pack('<I', len(disks))
for p in disks:
    st = os.stat(p)
    with open(p, 'rb') as f:
        head = f.read(65536)
    dr += s(p) + s('raw') + b'\0' + struct.pack('<QQqqI', st.st_size, st.st_size, st.st_mtime_ns // 10**9,
                                                  st.st_mtime_ns % 10**9, zlib.crc32(head))
recs = [rec('lkvm', 1, s('0.1') + struct.pack('<Q', 0) + s('x') + struct.pack('<Q', 0)),
        rec('config', cver, config), rec('disks', 1, dr)]
out = b'LKVMSNAP' + struct.pack('<II', fmt, 0) + b''.join(recs) + rec('end', 1, struct.pack('<I', len(recs)))
os.makedirs(d, exist_ok=True)
open(d + '/state', 'wb').write(out)
PY
}

case_ restore-missing-dir "$T/nope: No such file or directory" run --restore "$T/nope"
mkdir "$T/empty"
case_ restore-no-state "empty/state: No such file or directory" run --restore "$T/empty"
mkdir "$T/garbage" && head -c 4096 /dev/urandom > "$T/garbage/state"
case_ restore-garbage "garbage/state: not an lkvm snapshot" run --restore "$T/garbage"
mkstate "$T/v2" 2 1
case_ restore-other-format "v2/state: snapshot format version 2; this lkvm reads version 1 only" run --restore "$T/v2"
mkstate "$T/cut" 1 1 && size=$(stat -c %s "$T/cut/state") && truncate -s $((size - 9)) "$T/cut/state"
case_ restore-truncated "cut/state: .*truncated" run --restore "$T/cut"
mkstate "$T/flip" 1 1 && printf 'X' | dd of="$T/flip/state" bs=1 seek=40 conv=notrunc 2>/dev/null
case_ restore-corrupt "flip/state: record [0-9] ([a-z]*) fails its checksum (the file is corrupt)" run --restore "$T/flip"
mkstate "$T/cver" 1 7
case_ restore-record-version "record config has version 7; this lkvm reads version 1" run --restore "$T/cver"
mkstate "$T/ok" 1 1
case_ restore-given-mem "\-\-mem comes from the snapshot and cannot be given again" run --restore "$T/ok" -m 512
case_ restore-given-kernel "\-\-kernel comes from the snapshot" run --restore "$T/ok" -k /bin/sh
case_ clone-alone "\-\-clone goes with --restore DIR" run --clone -k x
# A disk image that changed since the snapshot (written after it, or gone) is refused.
head -c 1048576 /dev/zero > "$T/disk.img"
mkstate "$T/d" 1 1 "$T/disk.img"
printf 'written-after' | dd of="$T/disk.img" bs=1 seek=512 conv=notrunc 2>/dev/null
case_ restore-disk-changed "disk 0: $T/disk.img changed since the snapshot" run --restore "$T/d"
head -c 1048576 /dev/zero > "$T/disk2.img"
mkstate "$T/d2" 1 1 "$T/disk2.img"
truncate -s 2M "$T/disk2.img"
case_ restore-disk-resized "disk 0: $T/disk2.img changed since the snapshot (2097152 bytes, then 1048576)" run --restore "$T/d2"
head -c 1048576 /dev/zero > "$T/disk3.img"
mkstate "$T/d3" 1 1 "$T/disk3.img"
rm "$T/disk3.img"
case_ restore-disk-gone "disk 0: the snapshot's image $T/disk3.img: No such file or directory" run --restore "$T/d3"
# A restore that fails leaves no overlay behind; one a restored VM wrote to refuses a second plain restore.
head -c 1048576 /dev/zero > "$T/disk4.img"
mkstate "$T/d4" 1 1 "$T/disk4.img"
"$LKVM" run --restore "$T/d4" < /dev/null > /dev/null 2>&1	# fails later: no KVM here, or no vCPU records
if [ -e "$T/d4/disk0.qcow2" ]; then
	echo "FAIL restore-failed-cleans: d4/disk0.qcow2 left behind"; fail=$((fail + 1))
else
	echo "PASS restore-failed-cleans: a restore that failed left no overlay"; pass=$((pass + 1))
fi
head -c 300000 /dev/urandom > "$T/d4/disk0.qcow2"
case_ restore-used-overlay "d4/disk0.qcow2 holds what the VM restored from this snapshot wrote: restore it again with --clone" run --restore "$T/d4"
case_ snapshot-no-vm "no VM named 'nosuchvm'" snapshot nosuchvm "$T/snapdir"
[ -e "$T/snapdir" ] && { echo "FAIL snapshot-no-vm left $T/snapdir behind"; fail=$((fail + 1)); }
case_ snapshot-bad-option "unknown option '--frob'" snapshot vm "$T/x" --frob
echo "snapshot-input: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
