#!/bin/sh
# The suites that need a working /dev/kvm; run by run-all.sh through kvm-env.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
ok=1
for s in tests/guest-tests.sh tests/control-tests.sh tests/boot-tests.sh tests/durability-tests.sh; do
	[ -f "$s" ] || { echo "missing suite $s"; ok=0; continue; }
	sh "$s" "$BUILD" || ok=0
done
[ $ok = 1 ] && echo KVM-SUITES-OK
[ $ok = 1 ]
