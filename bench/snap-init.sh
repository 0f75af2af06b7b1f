# /etc/lkvm-init of bench/snapshot.sh's guests (our test kernel, busybox). The kernel runs
# with "quiet loglevel=0", so the first byte on the console is init's. With bench_dots it
# prints dots without pause (the latency runs: the first byte after a restore comes at once);
# otherwise READY, then a line a second (the memory runs: idle guests doing a little).
if grep -q bench_dots /proc/cmdline; then
	printf R
	while :; do printf .; done
fi
echo READY
while :; do sleep 1; echo tick; done
