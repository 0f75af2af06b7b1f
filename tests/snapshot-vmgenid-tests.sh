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
. tests/lib/stuck.sh

DEB=$(cat .cache/debian/current 2>/dev/null)
if [ -f "$DEB/boot/vmlinuz" ] && sh tests/kernel/mkinitramfs.sh "$T/gen.cpio.gz" tests/kernel/init-vmgenid.sh; then
	"$LKVM" run --name g -k "$DEB/boot/vmlinuz" -i "$T/gen.cpio.gz" -m 256 --network mode=none -p "quiet nokaslr" \
		< /dev/null > "$T/g.out" 2>&1 & g=$!; pids="$pids $g"
	if wait_for "$T/g.out" GEN-READY 300; then
		"$LKVM" snapshot g "$T/gsnap" --stop > "$T/gsnap.out" 2>&1; gs=$?
		wait $g
		# Debian's System.map is a stub: the symbols tests/kvm-env.sh kept of the same kernel (nokaslr too).
		syms=.cache/l1/kallsyms-$(cksum < "$DEB/boot/vmlinuz" | cut -d' ' -f1)
		clone() { "$LKVM" run --restore "$T/gsnap" --clone --name g$1 < /dev/null > "$T/g$1.out" 2>&1 & eval g$1pid=$!; pids="$pids $!"; }
		clone 1; clone 2
		# A clone without its new random bytes in 120 s (they take seconds): where its vCPUs are
		# and what its counters did (tests/lib/stuck.sh), then it is stopped. In the nested
		# machine only, a clone stuck so or one that triple-faulted (it loses L2 guests so, QEMU's
		# own too: docs/kvm-hosts.md) is restored again, up to three attempts, each one printed.
		: > "$T/stuck"
		for c in 1 2; do
			attempt=1
			while :; do
				p=$(eval echo \$g${c}pid)
				# Its random bytes, then its end (it powers off at once): every wait is bounded.
				if wait_for "$T/g$c.out" GEN-RAND= 120 $p && gone $p 30; then
					wait $p; eval s$c=$?; break
				fi
				lost=
				if alive $p; then
					look_stuck g$c "$T"; stop $p
					lost="$(grep -q GEN-RAND= "$T/g$c.out" && echo "no end 30 s after its result" || echo stuck), $(where g$c "$T" "$syms")"
				elif grep -q "triple fault" "$T/g$c.out"; then
					wait $p
					lost="triple fault: $(tailof g$c)"
				fi
				[ -n "$lost" ] || { wait $p; eval s$c=$?; break; }
				if [ -z "${LKVM_ENV_NESTED:-}" ] || [ $attempt = 3 ]; then
					eval s$c=1
					echo "  g$c (attempt $attempt): $lost" >> "$T/stuck"; break
				fi
				attempt=$((attempt + 1))
				echo "note: the nested machine lost clone g$c ($lost); attempt $attempt of 3"
				clone $c
			done
		done
		r1=$(val g1 GEN-RAND); r2=$(val g2 GEN-RAND)
		if [ $gs = 0 ] && [ "$(val g GEN-DRIVER)" = 1 ] && [ "$(val g GEN-ACPI-ERRORS)" = 0 ] && [ $s1 = 0 ] && [ $s2 = 0 ] &&
		   [ "$(val g1 GEN-FORK)" = seen ] && [ "$(val g2 GEN-FORK)" = seen ] && [ ${#r1} = 32 ] && [ "$r1" != "$r2" ]; then
			ok "vmgenid (Debian's kernel): the driver bound lkvm's device; each clone got a new generation ID and its kernel reseeded its CRNG ($r1 / $r2)"
		else
			ko "vmgenid" "snapshot $gs, driver '$(val g GEN-DRIVER)' acpi errors '$(val g GEN-ACPI-ERRORS)', clones $s1/$s2 fork '$(val g1 GEN-FORK)'/'$(val g2 GEN-FORK)' rand '$r1'/'$r2'; g1: $(tailof g1) g2: $(tailof g2)"
			cat "$T/stuck"
		fi
	else
		kill $g 2>/dev/null
		ko "vmgenid" "Debian's kernel did not reach GEN-READY: $(tailof g)"
	fi
else
	ko "vmgenid" "no Debian kernel (tests/prepare-kernels.sh) or no initramfs"
fi

echo "vmgenid: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
