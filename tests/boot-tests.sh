#!/bin/sh
# Real kernels under lkvm, end to end (needs /dev/kvm: run through tests/kvm-env.sh).
# Uses what tests/prepare-kernels.sh made on the host: Debian's kernel
# (.cache/debian), our test kernel (.cache/kernel) and a busybox initramfs.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init boot
LKVM=$BUILD/lkvm
IMG=.cache/test-images
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
now() { cut -d' ' -f1 /proc/uptime; }

DEB=$(cat .cache/debian/current 2>/dev/null)
KDIR=$(cat .cache/kernel/current 2>/dev/null)
INITRD=$IMG/init-basic.cpio.gz
[ -f "$INITRD" ] || fail "initramfs" "$INITRD missing (tests/prepare-kernels.sh)"

# run NAME TIMEOUT LKVM-ARGS...: output in $T/NAME.out, status in $rc, seconds in $secs
run() {
	name=$1 to=$2; shift 2
	t0=$(now)
	timeout "$to" $LKVM run "$@" < /dev/null > "$T/$name.out" 2>&1; rc=$?
	secs=$(echo "$(now) $t0" | awk '{printf "%.1f", $1 - $2}')
}
val() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1; }

# check_init NAME CPUS MIB: the initramfs reached userspace with the right facts.
check_init() {
	name=$1 cpus=$2 mib=$3
	if [ $rc -ne 0 ]; then fail "$name" "lkvm exited $rc after ${secs}s: $(tail -n 5 "$T/$name.out" | tr '\n' '|')"; return; fi
	grep -q LKVM-INIT-MARKER "$T/$name.out" || { fail "$name" "no init marker: $(tail -n 5 "$T/$name.out" | tr '\n' '|')"; return; }
	c=$(val "$name" CPUS); m=$(val "$name" MEMKB); d=$(val "$name" DATE)
	[ "$c" = "$cpus" ] || { fail "$name" "guest sees $c CPUs, expected $cpus"; return; }
	# MemTotal is RAM minus what the kernel keeps: between half and all of -m.
	[ -n "$m" ] && [ "$m" -le $((mib * 1024)) ] && [ "$m" -ge $((mib * 512)) ] || { fail "$name" "MemTotal $m kB for -m $mib"; return; }
	host=$(date -u +%Y-%m-%d); ystd=$(date -u -d @$(($(date +%s) - 120)) +%Y-%m-%d)
	[ "$d" = "$host" ] || [ "$d" = "$ystd" ] || { fail "$name" "guest date $d, host $host"; return; }
	pass "$name (init after $(val "$name" UPTIME)s guest time, ${secs}s wall, cpus=$c, MemTotal=${m}kB, date $d)"
}

# check_power NAME poweroff|reboot: the guest's `poweroff -f` / `reboot -f` ended lkvm with
# status 0. The kernel's own last words must be there, and for poweroff the kernel must have
# found S5 in lkvm's ACPI tables: without an S5 handler it halts, and lkvm would not end.
check_power() {
	name=$1 act=$2 o=$T/$1.out
	want="reboot: Power down"; [ $act = reboot ] && want="reboot: Restarting system"
	s5=$(val "$name" ACPI-S5)
	if [ $rc = 0 ] && [ "$(val "$name" POWER-ACTION)" = $act ] && grep -q "$want" "$o" && ! grep -q "$act returned" "$o" &&
	   { [ $act = reboot ] || [ "${s5:-0}" -ge 1 ]; }; then
		pass "$act in Debian's kernel ends lkvm with status 0 ($([ $act = poweroff ] && echo "ACPI S5" || echo "reboot=k: i8042 reset"))"
	else
		fail "$act ($name)" "rc=$rc action='$(val "$name" POWER-ACTION)' S5 in dmesg: '$s5': $(tail -n 4 "$o" | tr '\n' '|')"
	fi
}

# 1. Debian's distribution kernel.
if [ -n "$DEB" ] && [ -f "$DEB/boot/vmlinuz" ]; then
	for fmt in bzimage vmlinux; do
		k=$DEB/boot/vmlinuz; [ $fmt = vmlinux ] && k=$DEB/vmlinux
		name=debian-$fmt-earlyprintk
		run $name 120 -k "$k" -m 256 -p "earlyprintk=ttyS0 panic=-1 lkvm_marker=4242"
		o=$T/$name.out
		if grep -q "Linux version" "$o" && grep -q "BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable" "$o" \
			&& grep -q "Command line:.*lkvm_marker=4242" "$o"; then
			pass "$name (banner, e820 map and command line on ttyS0; ran ${secs}s)"
		else
			fail "$name" "rc=$rc: $(grep -m3 -E 'Linux version|e820|Command line' "$o" | tr '\n' '|') $(tail -n 3 "$o" | tr '\n' '|')"
		fi
		# Its init leaves through the kernel: ACPI S5 for one format, a reboot for the other.
		act=poweroff; [ $fmt = vmlinux ] && act=reboot
		run debian-$fmt-init 180 -k "$k" -i "$INITRD" -m 512 -c 2 -p "quiet lkvm_power=$act"
		check_init debian-$fmt-init 2 512
		check_power debian-$fmt-init $act
	done
else
	fail "debian kernel" "not prepared (.cache/debian)"
fi

# 2. Our test kernel: bzImage (64-bit boot protocol), the 16-bit path through the BIOS, and PVH.
if [ -n "$KDIR" ] && [ -f "$KDIR/bzImage" ]; then
	run testkernel-bzimage-c1 180 -k "$KDIR/bzImage" -i "$INITRD" -m 256 -c 1 -p quiet
	check_init testkernel-bzimage-c1 1 256
	run testkernel-bzimage-c2 180 -k "$KDIR/bzImage" -i "$INITRD" -m 256 -c 2 -p quiet
	check_init testkernel-bzimage-c2 2 256
	run testkernel-bios16-c1 120 --bios-boot -k "$KDIR/bzImage" -i "$INITRD" -m 256 -c 1 -p quiet
	check_init testkernel-bios16-c1 1 256
	run testkernel-pvh-c2 180 -k "$KDIR/vmlinux" -i "$INITRD" -m 256 -c 2 -p quiet
	check_init testkernel-pvh-c2 2 256
	run testkernel-6g 180 -k "$KDIR/bzImage" -i "$INITRD" -m 6G -c 1 -p quiet
	check_init testkernel-6g 1 6144

	# 3. Devices in a real guest; each is tested whatever lkvm says it has.
	img=$T/disk.img
	dd if=/dev/zero of="$img" bs=1M count=8 2>/dev/null
	printf 'host-wrote-this' | dd of="$img" conv=notrunc 2>/dev/null
	run virtio-blk 180 -k "$KDIR/bzImage" -i "$INITRD" -d "$img" -p "quiet lkvm_blk"
	r=$(val virtio-blk BLK-READ); s=$(val virtio-blk BLK-SIZE); v=$(val virtio-blk VDA)
	w=$(dd if="$img" bs=512 skip=1 count=1 2>/dev/null | head -c 20)
	if [ "$r" = "host-wrote-this" ] && [ "$w" = "guest-wrote-sector-1" ] && [ "$s" = 16384 ]; then
		pass "virtio-blk (guest read the host's bytes, host reads the guest's, 16384 sectors)"
	else
		fail virtio-blk "rc=$rc /dev/vda in the guest: '$v' read='$r' wrote='$w' size='$s': $(tail -n 3 "$T/virtio-blk.out" | tr '\n' '|')"
	fi

	# The console on hvc0: init's output (a hash of a nonce only this run knows) arrives, and
	# the guest's UART sent nothing at all.
	nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	run virtio-console 180 -k "$KDIR/bzImage" -i "$INITRD" -m 256 --console virtio -p "quiet lkvm_hvc=$nonce"
	check_init virtio-console 1 256
	md5=$(val virtio-console HVC-MD5); act=$(val virtio-console CONSOLE-ACTIVE); tx=$(val virtio-console TTYS0-TX)
	if [ $rc = 0 ] && [ "$md5" = "$(printf %s "$nonce" | md5sum | cut -c1-32)" ] && [ "$act" = hvc0 ] && [ "$tx" = 0 ]; then
		pass "virtio-console: init's output came through hvc0 (the kernel's only console), ttyS0 sent 0 bytes"
	else
		fail "virtio-console output through hvc0" "rc=$rc console='$act' nonce hash '$md5' ttyS0 tx='$tx': $(tail -n 3 "$T/virtio-console.out" | tr '\n' '|')"
	fi

	# virtio-rng: 64 KiB from /dev/hwrng, served by virtio-rng, with the marks of random bytes.
	run virtio-rng 180 -k "$KDIR/bzImage" -i "$INITRD" --rng -p "quiet lkvm_rng"
	cur=$(val virtio-rng RNG-CURRENT); n=$(val virtio-rng RNG-BYTES); z=$(val virtio-rng RNG-GZIP); nv=$(val virtio-rng RNG-VALUES)
	if [ $rc = 0 ] && [ "${cur#virtio_rng}" != "$cur" ] && [ "$n" = 65536 ] && [ "${z:-0}" -ge 65536 ] && [ "$nv" = 256 ]; then
		pass "virtio-rng ($cur gave 64 KiB: all 256 byte values, gzip cannot shrink it: $z bytes)"
	else
		fail virtio-rng "rc=$rc rng_current='$cur' bytes='$n' gzipped='$z' byte values='$nv': $(tail -n 3 "$T/virtio-rng.out" | tr '\n' '|')"
	fi
else
	fail "test kernel" "not built (.cache/kernel; tests/kernel/build.sh)"
fi

suite_end
