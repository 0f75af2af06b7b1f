#!/bin/sh
# Bad input to lkvm: each case exits non-zero with exactly one clear line on
# stderr naming the problem. Needs no /dev/kvm: inputs are checked first.
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
LKVM=$BUILD/lkvm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. tests/lib/suite.sh
suite_init bad-input
# case NAME PATTERN ARGS...: non-zero status, one stderr line matching PATTERN
case_() {
	name=$1 pat=$2; shift 2
	"$LKVM" "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
	lines=$(wc -l < "$T/err")
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$T/err"; then
		pass "$name: $(cat "$T/err")"
	else
		fail "$name" "status $rc, $lines stderr lines: $(head -c 300 "$T/err")"
	fi
}
: > "$T/empty"
printf '\177ELF\002\001\001\000garbage-after-the-magic-garbage-garbage-garbage-garbage' > "$T/garbage.elf"
# A bzImage header that promises far more kernel than the file holds.
have_py=1
need_tool python3 python3 truncated-bzimage tiny-bzimage || have_py=0
[ $have_py = 1 ] && python3 - "$T" <<'PY'
import struct, sys
b = bytearray(4096)
b[0x1f1] = 4; struct.pack_into('<H', b, 0x1fe, 0xAA55); struct.pack_into('<I', b, 0x202, 0x53726448)
struct.pack_into('<H', b, 0x206, 0x20f); b[0x211] = 1; struct.pack_into('<I', b, 0x1f4, 0x100000)
open(sys.argv[1] + '/truncated.bzImage', 'wb').write(b)
open(sys.argv[1] + '/tiny.bzImage', 'wb').write(b[:600])
PY
mkdir "$T/dir"
case_ missing-kernel "$T/nope: No such file or directory" run -k "$T/nope"
case_ empty-kernel "empty" run -k "$T/empty"
case_ kernel-is-directory "is a directory" run -k "$T/dir"
if [ $have_py = 1 ]; then
	case_ truncated-bzimage "truncated bzImage" run -k "$T/truncated.bzImage"
	case_ tiny-bzimage "truncated bzImage" run -k "$T/tiny.bzImage"
fi
case_ garbage-elf "truncated ELF header" run -k "$T/garbage.elf"
head -c 200 /dev/urandom > "$T/junk" && printf '\177ELF\002\001\001' | cat - "$T/junk" > "$T/garbage2.elf"
case_ garbage-elf-2 "ELF" run -k "$T/garbage2.elf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$T/passwd"
case_ not-a-kernel "passwd: not a kernel" run -k "$T/passwd"
printf '\002\260\255\033\004\000\000\000\372\117\122\344' > "$T/mb-video"	# Multiboot, flags: video mode
# -p is repeatable; the joined command line once overflowed its buffer (seen under ASan)
case_ repeated-params "passwd: not a kernel" run -p "earlyprintk=ttyS0 panic=-1 lkvm_marker=4242" -p more -k "$T/passwd"
case_ multiboot-video "mb-video: the Multiboot header asks for a video mode" run -k "$T/mb-video"
case_ zero-memory "\-m 0" run -k "$T/garbage.elf" -m 0
case_ bad-memory "\-m lots" run -k x -m lots
case_ zero-cpus "\-c 0" run -k x -c 0
case_ too-many-cpus "\-c 999" run -k x -c 999
case_ unknown-option "unknown option '--frobnicate'" run --frobnicate
case_ missing-argument "needs an argument" run -k
case_ no-kernel "no kernel given" run
printf 'flat' > "$T/flat.bin"
case_ missing-initrd "$T/no-initrd: cannot read" run -k "$T/flat.bin" -i "$T/no-initrd" --flat
case_ missing-disk "$T/no-disk: cannot open" run -k "$T/flat.bin" --flat -d "$T/no-disk"
case_ disk-queues-zero "queues=0: a number of queues from 1 to 8" run -k "$T/flat.bin" --flat -d "$T/flat.bin,queues=0"
case_ disk-queues-nine "queues=9: a number of queues from 1 to 8" run -k "$T/flat.bin" --flat -d "$T/flat.bin,queues=9"
case_ disk-queues-word "queues=two: a number" run -k "$T/flat.bin" --flat -d "$T/flat.bin,queues=two"
case_ disk-aio-unknown "aio=libaio: not an I/O engine (uring, native or threads)" run -k "$T/flat.bin" --flat -d "$T/flat.bin,aio=libaio"
case_ disk-aio-empty "aio=: not an I/O engine (uring, native or threads)" run -k "$T/flat.bin" --flat -d "$T/flat.bin,aio="
case_ bad-console "\-\-console tty" run -k x --console tty
case_ net-merge-word "\-\-network mode=tap,merge=maybe: merge must be on or off" run -k x --network mode=tap,merge=maybe
case_ net-merge-user "\-\-network mode=user,merge=off: tapif= and merge= go with mode=tap" run -k x --network mode=user,merge=off
case_ gdb-bad-port "\-\-gdb tcp:1.2.3.4:99999: the port" run -k x --gdb tcp:1.2.3.4:99999
case_ gdb-host-name "\-\-gdb tcp:gdb.example:1234: 'gdb.example' is not a numeric" run -k x --gdb tcp:gdb.example:1234
case_ gdb-no-path "\-\-gdb unix:: unix: needs a path" run -k x --gdb unix:
case_ gdb-not-a-socket "\-\-gdb unix:$T/empty: $T/empty exists and is not a socket" run -k x --gdb "unix:$T/empty"
case_ gdb-wait-alone "\-\-gdb-wait needs \-\-gdb" run -k x --gdb-wait
case_ gdb-no-vm "no VM named 'nosuchvm'" gdb nosuchvm 1234
case_ unknown-command "unknown command 'frob'" frob
ln -s "$T/dir" "$T/dirlink"
case_ 9p-symlink "a symlink is not followed" run -k x --9p "$T/dirlink,tag"
case_ 9p-bad-option "\-\-9p .*unknown option 'frob' (ro, xdev" run -k x --9p "$T/dir,tag,frob"
mkdir "$T/opentmp" && chmod 0777 "$T/opentmp"
export TMPDIR="$T/opentmp"
case_ sandbox-unsafe-tmpdir "TMPDIR $T/opentmp: .* writable by others without the sticky bit" sandbox -k x -- true
unset TMPDIR
# --vsock: the CID, the option, the socket path (all checked before /dev/kvm is opened).
case_ vsock-cid-2 "\-\-vsock 2: the guest CID must be" run -k x --vsock 2
case_ vsock-cid-any "\-\-vsock 4294967295: the guest CID must be" run -k x --vsock 4294967295
case_ vsock-cid-text "\-\-vsock abc: the guest CID must be" run -k x --vsock abc
case_ vsock-cid-negative "\-\-vsock -3: the guest CID must be" run -k x --vsock -3
case_ vsock-option "\-\-vsock 3,path=x: unknown option 'path=x'" run -k x --vsock 3,path=x
case_ vsock-twice "given twice" run -k x --vsock 3 --vsock 4
: > "$T/plain-file"
case_ vsock-not-a-socket "$T/plain-file: exists and is not a socket" run -k "$T/truncated.bzImage" --flat --vsock "3,uds=$T/plain-file"
case_ vsock-no-folder "$T/none/v.sock: folder $T/none does not exist" run -k "$T/truncated.bzImage" --flat --vsock "3,uds=$T/none/v.sock"
case_ vsock-too-long "too long" run -k "$T/truncated.bzImage" --flat --vsock "3,uds=/$(printf '%0100d' 0)"
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); time.sleep(60)' "$T/busy.sock" &
busy=$!
i=0; while [ ! -S "$T/busy.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
case_ vsock-in-use "$T/busy.sock: in use" run -k "$T/truncated.bzImage" --flat --vsock "3,uds=$T/busy.sock"
kill $busy; wait $busy 2>/dev/null
# lkvm sandbox's own options: checked before any VM (no /dev/kvm needed).
case_ sandbox-missing-volume "no such folder $T/no-such" sandbox -k x -v "$T/no-such:/mnt" -- true
case_ sandbox-volume-not-folder "is not a folder" sandbox -k x -v "$T/empty" -- true
case_ sandbox-volume-relative-guest "guest path must be absolute" sandbox -k x -v "$T/dir:mnt" -- true
case_ sandbox-volume-mode "the mode is ro or rw" sandbox -k x -v "$T/dir:/mnt:rx" -- true
case_ sandbox-bad-env-name "bad variable name '1A'" sandbox -k x -e 1A=b -- true
case_ sandbox-bad-env-dash "bad variable name 'A-B'" sandbox -k x -e A-B -- true
printf 'GOOD=1\nBAD NAME=2\n' > "$T/envfile"
case_ sandbox-env-file-line "--env-file $T/envfile line 2: " sandbox -k x --env-file "$T/envfile" -- true
case_ sandbox-env-file-missing "--env-file $T/none" sandbox -k x --env-file "$T/none" -- true
case_ sandbox-bad-timeout "--timeout 0: a number of seconds" sandbox -k x --timeout 0 -- true
case_ sandbox-kdir-no-modules "--kdir $T/dir: no modules.order" sandbox -k x --kdir "$T/dir" -- true
if [ $have_py = 1 ]; then
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); print("up", flush=True); time.sleep(30)' "$T/inuse.sock" > "$T/lis" &
	lis=$!
	i=0; while [ $i -lt 100 ] && [ ! -s "$T/lis" ]; do sleep 0.1; i=$((i + 1)); done
	case_ sandbox-vsock-in-use "vsock socket $T/inuse.sock: in use" sandbox -k x --vsock "3,uds=$T/inuse.sock" -- true
	# A sandbox of that name is running (its agent link leads to a listening socket).
	mkdir -p "$T/rt/lkvm" && chmod 700 "$T/rt" "$T/rt/lkvm" && ln -s "$T/inuse.sock" "$T/rt/lkvm/busy.agent"
	XDG_RUNTIME_DIR=$T/rt case_ sandbox-name-in-use "a sandbox named busy is running" sandbox -k x --name busy -- true
	[ -L "$T/rt/lkvm/busy.agent" ] && pass "the running sandbox's agent link was left alone" || fail "sandbox-name-in-use" "the other sandbox's link is gone"
	kill $lis 2>/dev/null; wait $lis 2>/dev/null
fi
XDG_RUNTIME_DIR=$T case_ exec-no-such-sandbox "no sandbox named nosuch is running" exec nosuch -- true
case_ exec-bad-env "bad variable name" exec x -e 9=1 -- true
suite_end
