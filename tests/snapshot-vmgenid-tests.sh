#!/bin/sh
# The VM generation ID (x86/acpi.c's vmgenid device) in a kernel that has ACPI and
# Linux's vmgenid driver built in: Debian's. The driver must bind lkvm's device with
# no ACPI error; two clones of one snapshot must each get a new ID and its SCI, so
# that their kernels reseed their CRNGs by themselves (the kernel says so) and their
# random bytes differ. Needs /dev/kvm where Linux user space runs (kvm-env).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
LKVM=$(pwd)/$BUILD/lkvm
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
pids=
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
val() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1; }
tailof() { tr -d '\r' < "$T/$1.out" | tail -n 6 | tr '\n' '|'; }
wait_for() { i=0; while [ $i -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done; return 1; }

DEB=$(cat .cache/debian/current 2>/dev/null)
if [ -f "$DEB/boot/vmlinuz" ] && sh tests/kernel/mkinitramfs.sh "$T/gen.cpio.gz" tests/kernel/init-vmgenid.sh; then
	"$LKVM" run --name g -k "$DEB/boot/vmlinuz" -i "$T/gen.cpio.gz" -m 256 --network mode=none -p quiet \
		< /dev/null > "$T/g.out" 2>&1 & g=$!; pids="$pids $g"
	if wait_for "$T/g.out" GEN-READY 300; then
		"$LKVM" snapshot g "$T/gsnap" --stop > "$T/gsnap.out" 2>&1; gs=$?
		wait $g
		for c in 1 2; do
			timeout 300 "$LKVM" run --restore "$T/gsnap" --clone --name g$c < /dev/null > "$T/g$c.out" 2>&1 &
			eval g${c}pid=\$!
		done
		wait $g1pid; s1=$?; wait $g2pid; s2=$?
		r1=$(val g1 GEN-RAND); r2=$(val g2 GEN-RAND)
		if [ $gs = 0 ] && [ "$(val g GEN-DRIVER)" = 1 ] && [ "$(val g GEN-ACPI-ERRORS)" = 0 ] && [ $s1 = 0 ] && [ $s2 = 0 ] &&
		   [ "$(val g1 GEN-FORK)" = seen ] && [ "$(val g2 GEN-FORK)" = seen ] && [ ${#r1} = 32 ] && [ "$r1" != "$r2" ]; then
			ok "vmgenid (Debian's kernel): the driver bound lkvm's device; each clone got a new generation ID and its kernel reseeded its CRNG ($r1 / $r2)"
		else ko "vmgenid" "snapshot $gs, driver '$(val g GEN-DRIVER)' acpi errors '$(val g GEN-ACPI-ERRORS)', clones $s1/$s2 fork '$(val g1 GEN-FORK)'/'$(val g2 GEN-FORK)' rand '$r1'/'$r2': $(tailof g1)"; fi
	else
		kill $g 2>/dev/null
		ko "vmgenid" "Debian's kernel did not reach GEN-READY: $(tailof g)"
	fi
else
	ko "vmgenid" "no Debian kernel (tests/prepare-kernels.sh) or no initramfs"
fi

echo "vmgenid: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
