# /etc/lkvm-init for the durability test (tests/durability-tests.sh): lkvm_flushes=N rounds
# of: write 4 KiB block i through virtio-blk, fsync it (the kernel sends a FLUSH after the
# write), then print "LKVM-FLUSHED i". Then wait to be killed.
n=$(sed -n 's/.*lkvm_flushes=\([0-9]*\).*/\1/p' /proc/cmdline)
i=0
while [ $i -lt "${n:-4}" ]; do
	j=0
	while [ $j -lt 128 ]; do printf 'durable-block-%03d-line-%03d.....\n' $i $j; j=$((j + 1)); done > /tmp/block
	dd if=/tmp/block of=/dev/vda bs=4096 seek=$i conv=fsync,notrunc 2>/dev/null && echo "LKVM-FLUSHED $i"
	i=$((i + 1))
done
echo "LKVM-FLUSHED-ALL $i"
while :; do sleep 10; done
