# /etc/lkvm-init of the generation-ID part of the snapshot test (tests/snapshot-linux-tests.sh),
# for Debian's kernel (ACPI and vmgenid built in): report that the driver bound lkvm's device
# and that ACPI found nothing wrong, say GEN-READY, then wait until the kernel says it reseeded
# its CRNG for a VM fork (a restored VM's new generation ID), and print fresh random bytes.
hex16() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
echo "GEN-DRIVER=$(ls /sys/bus/acpi/drivers/vmgenid 2>/dev/null | grep -c ':')"
echo "GEN-ACPI-ERRORS=$(dmesg | grep -c -i 'acpi.*error')"
echo "GEN-RAND0=$(hex16)"
echo GEN-READY
while ! dmesg | grep -q 'crng reseeded due to virtual machine fork'; do sleep 0.2; done
echo GEN-FORK=seen
echo "GEN-RAND=$(hex16)"
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
reboot -f
