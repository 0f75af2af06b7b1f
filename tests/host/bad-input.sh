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
case_ bad-console "\-\-console tty" run -k x --console tty
case_ unknown-command "unknown command 'frob'" frob
suite_end
