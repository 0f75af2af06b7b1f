# /etc/lkvm-init of the boot tests' initramfs: report facts, exercise devices
# the command line asks for, power off. Output is parsed by tests/boot-tests.sh.
echo "LKVM-INIT-MARKER"
echo "CPUS=$(grep -c ^processor /proc/cpuinfo)"
echo "MEMKB=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
echo "DATE=$(date -u +%Y-%m-%d)"
echo "UPTIME=$(cut -d' ' -f1 /proc/uptime)"
if grep -q lkvm_blk /proc/cmdline; then
	[ -b /dev/vda ] && echo VDA=yes || echo VDA=no
	echo "BLK-READ=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 15)"
	echo "guest-wrote-sector-1" | dd of=/dev/vda bs=512 seek=1 conv=sync,notrunc 2>/dev/null && sync
	echo "BLK-SIZE=$(cat /sys/block/vda/size 2>/dev/null)"
fi
if grep -q lkvm_rng /proc/cmdline; then
	[ -c /dev/hwrng ] && echo HWRNG=yes || echo HWRNG=no
	echo "RNG=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')"
fi
# End the VM with status 0 through lkvm's debug-exit port (0xf4 = 244); if
# that does not work, reboot=k resets through the i8042, which also ends lkvm.
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo "LKVM-INIT: debug-exit port did not end the VM; rebooting"
reboot -f
