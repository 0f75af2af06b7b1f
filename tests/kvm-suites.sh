#!/bin/sh
# The suites that need a working /dev/kvm; run by run-all.sh through kvm-env.
#   kvm-suites.sh BUILD [all|small|linux]
# small: our test guests and the control plane; linux: real kernels booted to
# user space (boot, durability, device and vsock tests); all: both.
BUILD=${1:-build}
SET=${2:-all}
cd "$(dirname "$0")/.." || exit 1
# A suite is a script, or SCRIPT:PART for a script that has parts in both sets.
small="tests/guest-tests.sh tests/control-tests.sh tests/lifecycle-tests.sh tests/gdb-tests.sh:small tests/snapshot-tests.sh"
linux="tests/boot-tests.sh tests/durability-tests.sh tests/device-tests.sh tests/vsock-tests.sh tests/gdb-tests.sh:linux tests/snapshot-linux-tests.sh tests/snapshot-vmgenid-tests.sh"
case $SET in
small) suites=$small ;;
linux) suites=$linux ;;
all) suites="$small $linux" ;;
*) echo "kvm-suites: unknown set '$SET'"; exit 2 ;;
esac
ok=1
for s in $suites; do
	part=${s#*:}; s=${s%%:*}; [ "$part" = "$s" ] && part=
	[ -f "$s" ] || { echo "missing suite $s"; ok=0; continue; }
	sh "$s" "$BUILD" $part || ok=0
done
[ $ok = 1 ] && echo KVM-SUITES-OK
[ $ok = 1 ]
