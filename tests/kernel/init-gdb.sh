# /etc/lkvm-init of the gdb tests' initramfs (tests/gdb-tests.sh, linux set): say init
# runs, then call sync(2) every half second (gdb breaks in ksys_sync) and print the
# kernel's panic timeout, which gdb changes in the kernel's memory.
echo "GDB-INIT-READY"
while :; do
	echo "PANIC=$(cat /proc/sys/kernel/panic)"
	sync
	sleep 0.5
done
