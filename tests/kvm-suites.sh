#!/bin/sh
# The suites that need a working /dev/kvm; run by run-all.sh through kvm-env.
#   kvm-suites.sh BUILD [all|small|linux]
# small: our test guests and the control plane; linux: real kernels booted to
# user space (boot and durability tests); all: both.
BUILD=${1:-build}
SET=${2:-all}
cd "$(dirname "$0")/.." || exit 1
case $SET in
small) suites="tests/guest-tests.sh tests/control-tests.sh tests/lifecycle-tests.sh tests/snapshot-tests.sh" ;;
linux) suites="tests/boot-tests.sh tests/durability-tests.sh tests/device-tests.sh tests/snapshot-linux-tests.sh tests/snapshot-vmgenid-tests.sh" ;;
all) suites="tests/guest-tests.sh tests/control-tests.sh tests/lifecycle-tests.sh tests/snapshot-tests.sh tests/boot-tests.sh tests/durability-tests.sh tests/device-tests.sh tests/snapshot-linux-tests.sh tests/snapshot-vmgenid-tests.sh" ;;
*) echo "kvm-suites: unknown set '$SET'"; exit 2 ;;
esac
ok=1
for s in $suites; do
	[ -f "$s" ] || { echo "missing suite $s"; ok=0; continue; }
	sh "$s" "$BUILD" || ok=0
done
[ $ok = 1 ] && echo KVM-SUITES-OK
[ $ok = 1 ]
