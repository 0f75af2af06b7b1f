# /etc/lkvm-init of the vsock test's initramfs (tests/vsock-tests.sh): the
# guest's ends of the transfers, through /vsock-peer; its lines are parsed by
# the test. lkvm_vsock_bytes=N: bytes each way.
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
n=$(arg lkvm_vsock_bytes)
echo "VSOCK-CID=$(/vsock-peer cid)"
/vsock-peer vsock-refused 2 5999	# no listener at PATH_5999: reset
/vsock-peer vsock-recv 6000 "$n" 2 &	# the host CONNECTs to 6000 once this says VSOCK-LISTENING
recv=$!
/vsock-peer vsock-send 2 5000 "$n" 1	# to the host's listener at PATH_5000
wait $recv
echo "VSOCK-GUEST-DONE"
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
reboot -f
