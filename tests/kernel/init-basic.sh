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
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
# lkvm_mq: virtio-blk's queues as blk-mq sees them; then each CPU at once writes 4 MiB of
# its own pattern (O_DIRECT: a request leaves from the CPU that made it, on that CPU's queue)
# and reads back 1 MiB the host put at 8 MiB. The host checks its file and lkvm's counters
# by queue, then stops the VM.
if grep -q lkvm_mq /proc/cmdline; then
	echo "MQ-QUEUES=$(ls /sys/block/vda/mq | wc -l)"
	for c in 0 1; do yes "lkvm-mq-cpu$c" | head -c 4194304 > /tmp/p$c; done
	pids=
	for c in 0 1; do
		taskset -c $c dd if=/tmp/p$c of=/dev/vda bs=64k seek=$((c * 64)) oflag=direct conv=notrunc 2>/dev/null &
		pids="$pids $!"
	done
	st=ok
	for p in $pids; do wait $p || st=failed; done
	echo "MQ-WRITE=$st"
	for c in 0 1; do
		echo "MQ-READ$c=$(taskset -c $c dd if=/dev/vda bs=64k skip=128 count=16 iflag=direct 2>/dev/null | md5sum | cut -c1-32)"
	done
	echo MQ-READY
	sleep 120
fi
# lkvm_rng: 64 KiB from /dev/hwrng, which must be virtio-rng; random bytes do not compress
# and take every byte value.
if grep -q lkvm_rng /proc/cmdline; then
	[ -c /dev/hwrng ] && echo HWRNG=yes || echo HWRNG=no
	echo "RNG-CURRENT=$(cat /sys/class/misc/hw_random/rng_current 2>&1)"
	head -c 65536 /dev/hwrng > /tmp/rng 2>/dev/null
	echo "RNG-BYTES=$(wc -c < /tmp/rng)"
	echo "RNG-GZIP=$(gzip -c /tmp/rng | wc -c)"
	echo "RNG-VALUES=$(od -An -v -tx1 /tmp/rng | tr ' ' '\n' | grep . | sort -u | wc -l)"
fi
# lkvm_hvc=NONCE: the console is hvc0 (--console virtio); the host checks this line's hash of
# its nonce, and ttyS0's transmit count says nothing went out through the UART.
if grep -q lkvm_hvc= /proc/cmdline; then
	echo "CONSOLE-ACTIVE=$(cat /sys/class/tty/console/active)"
	echo "HVC-MD5=$(printf %s "$(arg lkvm_hvc)" | md5sum | cut -c1-32)"
	echo "TTYS0-TX=$(sed -n 's/^0: .* tx:\([0-9]*\).*/\1/p' /proc/tty/driver/serial)"
fi
# lkvm_net=PORT lkvm_up=PORT2 [lkvm_peer=ADDR]: the kernel took an address (ip=);
# fetch 10 MiB from the host's HTTP server on ADDR:PORT (default 10.0.2.2, the
# user-mode network's host), send 10 MiB to PORT2. A tap's peer may come up
# after the guest: the ping is tried for up to 30 s.
if grep -q lkvm_net= /proc/cmdline; then
	port=$(arg lkvm_net)
	peer=$(arg lkvm_peer)
	[ -n "$peer" ] || peer=10.0.2.2
	echo "NET-ADDR=$(ip -4 addr show eth0 2>/dev/null | sed -n 's/.*inet \([0-9.]*\).*/\1/p')"
	i=0; r=fail
	while [ $i -lt 30 ]; do ping -c 1 -W 1 "$peer" > /dev/null 2>&1 && { r=ok; break; }; i=$((i + 1)); done
	echo "NET-PING=$r"
	t0=$(cut -d' ' -f1 /proc/uptime)
	echo "NET-GET=$(wget -q -O - http://$peer:$port/blob | md5sum | cut -c1-32)"
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "NET-GET-TIME=$t0..$t1"
	dd if=/dev/urandom of=/tmp/up bs=1M count=10 2>/dev/null
	echo "NET-UP-MD5=$(md5sum < /tmp/up | cut -c1-32)"
	t0=$(cut -d' ' -f1 /proc/uptime)
	echo "NET-POST=$(nc "$peer" "$(arg lkvm_up)" < /tmp/up)"
	echo "NET-UP-TIME=$t0..$(cut -d' ' -f1 /proc/uptime)"
fi
# lkvm_httpd=PORT: serve /tmp/www on PORT (for hostfwd); the host stops the VM.
if grep -q lkvm_httpd= /proc/cmdline; then
	mkdir -p /tmp/www && echo "served-by-the-guest" > /tmp/www/hello
	httpd -p "$(arg lkvm_httpd)" -h /tmp/www && echo HTTPD-READY
	sleep 120
fi
# lkvm_9p=TAG: mount the host folder, read what the host put there, write back.
if grep -q lkvm_9p= /proc/cmdline; then
	mkdir -p /mnt/h && mount -t 9p -o trans=virtio,version=9p2000.L "$(arg lkvm_9p)" /mnt/h && echo 9P-MOUNT=ok
	echo "9P-READ=$(cat /mnt/h/from-host 2>&1)"
	# 8 MiB one 128 KiB request after the other, both ways (the device's ring watch and kick suppression)
	echo "9P-SUM=$(md5sum < /mnt/h/big 2>&1)"
	dd if=/mnt/h/big of=/mnt/h/copy bs=128k 2>/dev/null && echo 9P-COPY=ok
	mkdir /mnt/h/dir && echo "from-the-guest" > /mnt/h/dir/new && mv /mnt/h/dir/new /mnt/h/dir/renamed && sync
	rm -f /mnt/h/delete-me
	ln -s target /mnt/h/link
	echo "9P-LS=$(ls /mnt/h | tr '\n' ,)"
fi
# lkvm_balloon: stay up while the host inflates and deflates; the host stops the VM.
if grep -q lkvm_balloon /proc/cmdline; then
	echo BALLOON-READY
	sleep 120
fi
# lkvm_power=poweroff|reboot: leave through the kernel's own power-off (ACPI S5) or reboot
# (reboot=k: the i8042), never the debug-exit port; ACPI-S5 is what the kernel made of the
# tables. Should the kernel come back, say so and end with status 99: a failure, at once.
if grep -q lkvm_power= /proc/cmdline; then
	echo "ACPI-S5=$(dmesg | grep -c 'ACPI: PM: (supports S0.* S5)')"
	echo "POWER-ACTION=$(arg lkvm_power)"
	sync
	case $(arg lkvm_power) in poweroff) poweroff -f ;; reboot) reboot -f ;; esac
	sleep 5
	echo "LKVM-INIT: $(arg lkvm_power) returned"
	printf '\143' | dd of=/dev/port bs=1 seek=244 2>/dev/null
	sleep 1000
fi
# End the VM with status 0 through lkvm's debug-exit port (0xf4 = 244); if
# that does not work, reboot=k resets through the i8042, which also ends lkvm.
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo "LKVM-INIT: debug-exit port did not end the VM; rebooting"
reboot -f
