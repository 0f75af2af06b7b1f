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
has_device() { $LKVM version | grep '^devices:' | grep -qw "$1"; }
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
		run debian-$fmt-init 180 -k "$k" -i "$INITRD" -m 512 -c 2 -p quiet
		check_init debian-$fmt-init 2 512
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

	# 3. Devices in a real guest, once they exist.
	if has_device virtio-blk; then
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
	else
		skip virtio-blk "lkvm has no virtio-blk device yet (lkvm version lists the devices)"
	fi
	if has_device virtio-console; then
		run virtio-console 180 -k "$KDIR/bzImage" -i "$INITRD" -m 256 --console virtio -p quiet
		check_init virtio-console 1 256
	else
		skip virtio-console "lkvm has no virtio-console device yet"
	fi
	if has_device virtio-rng; then
		run virtio-rng 180 -k "$KDIR/bzImage" -i "$INITRD" --rng -p "quiet lkvm_rng"
		r=$(val virtio-rng RNG); v=$(val virtio-rng HWRNG)
		[ ${#r} = 32 ] && [ "$r" != 00000000000000000000000000000000 ] && pass "virtio-rng (/dev/hwrng gave $r)" || fail virtio-rng "rc=$rc /dev/hwrng in the guest: '$v' RNG='$r'"
	else
		skip virtio-rng "lkvm has no virtio-rng device yet"
	fi
else
	fail "test kernel" "not built (.cache/kernel; tests/kernel/build.sh)"
fi

suite_end
