# /etc/lkvm-init of the snapshot test (tests/snapshot-linux-tests.sh). Before the
# snapshot: the network (ip=dhcp), the 9p share with two of its files held open,
# a TCP connection to the host held open; then SNAP-READY. Then it waits for the
# file "go" in the share: a restored VM is given a share of its own, so each
# one reads its own name there, and reports what it must still have: its disk,
# the files it held, the network, and randomness of its own after a reseed.
# lkvm's agent runs beside this script (lkvm run --agent); a vsock listener
# here takes a connection the host holds across the snapshot (a restore's
# transport reset must end it), and the guest's CID is read again after the
# reset. Last, it waits for "done" in the share (the host runs lkvm exec first).
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
hex16() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
mkdir -p /mnt/h && mount -t 9p -o trans=virtio,version=9p2000.L share /mnt/h || echo SNAP-ERR=mount
exec 3< /mnt/h/keep
exec 4< /mnt/h/gone
hold=$(arg lkvm_hold)
mkfifo /tmp/hold && (sleep 100000 > /tmp/hold &)	# nc's input: open, and nothing ever comes
(nc 10.0.2.2 "$hold" < /tmp/hold > /dev/null 2>&1; echo $? > /tmp/nc.done) &
i=0; while [ $i -lt 100 ] && ! netstat -tn 2>/dev/null | grep -q "10.0.2.2:$hold .*ESTABLISHED"; do sleep 0.1; i=$((i + 1)); done
vport=$(arg lkvm_vport)
(/bin/vsock-peer vsock-recv "$vport" 1000000 9 > /tmp/vs.out 2>&1; echo $? > /tmp/vs.done) &
i=0; while [ $i -lt 100 ] && ! grep -q VSOCK-LISTENING /tmp/vs.out 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
echo "SNAP-HELD=$(netstat -tn 2>/dev/null | grep -c "10.0.2.2:$hold .*ESTABLISHED")"
echo SNAP-READY
while [ ! -e /mnt/h/go ]; do sleep 0.2; done
id=$(cat /mnt/h/go)
echo "SNAP-GO=$id"
echo "SNAP-RAND-BEFORE=$(hex16)"
/bin/reseed && echo SNAP-RESEED=ok
echo "SNAP-RAND=$(hex16)"
echo "SNAP-DISK=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 9)"
printf 'written-by-%s' "$id" | dd of=/dev/vda bs=512 seek=2 conv=sync,notrunc 2>/dev/null && sync
echo "SNAP-KEEP=$(cat <&3)"
cat <&4 > /dev/null 2>&1 && echo SNAP-GONE=readable || echo SNAP-GONE=error
echo "SNAP-NEW=$(cat /mnt/h/new 2>&1)"
i=0; while [ $i -lt 100 ] && [ ! -f /tmp/nc.done ]; do sleep 0.1; i=$((i + 1)); done
echo "SNAP-RST=$(cat /tmp/nc.done 2>/dev/null || echo still-open)"
echo "SNAP-ADDR=$(ip -4 addr show eth0 2>/dev/null | sed -n 's/.*inet \([0-9.]*\).*/\1/p')"
udhcpc -i eth0 -n -q -t 5 -s /bin/true > /dev/null 2>&1 && echo SNAP-DHCP=ok || echo SNAP-DHCP=fail
ping -c 1 -W 5 10.0.2.2 > /dev/null 2>&1 && echo SNAP-PING=ok || echo SNAP-PING=fail
echo "SNAP-GET=$(wget -q -O - "http://10.0.2.2:$(arg lkvm_net)/blob" | md5sum | cut -c1-32)"
i=0; while [ $i -lt 100 ] && [ ! -f /tmp/vs.done ]; do sleep 0.1; i=$((i + 1)); done
echo "SNAP-VRST=$(cat /tmp/vs.done 2>/dev/null || echo still-open) $(tr '\n' ' ' < /tmp/vs.out)"
echo "SNAP-CID=$(/bin/vsock-peer cid)"
echo SNAP-DONE
while [ ! -e /mnt/h/done ]; do sleep 0.2; done
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
reboot -f
