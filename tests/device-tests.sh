#!/bin/sh
# Devices in a real guest: user-mode networking (DHCP, ping, 10 MiB each way,
# hostfwd), a 9p shared folder, the balloon, and `lkvm sandbox`. Our test
# kernel and the busybox initramfs (tests/kernel/init-basic.sh reads the
# lkvm_* words of its command line). Needs /dev/kvm where Linux user space
# runs (see tests/run-all.sh).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init device
LKVM=$(pwd)/$BUILD/lkvm
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage	# absolute: the sandbox runs elsewhere
INITRD=.cache/test-images/init-basic.cpio.gz
T=$(mktemp -d)
MP=$(mktemp -d "$(pwd)/$BUILD/9p-mapped.XXXXXX")	# user xattrs: tmpfs lacks them before Linux 6.6
U=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$T" "$MP" "$U"' EXIT
val() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1; }
took() { val net "$1" | awk -F'[.][.]' '{ printf "%.1f s", $2 - $1 }'; }	# "START..END" in guest seconds
tailof() { tail -n 4 "$T/$1.out" | tr '\n' '|'; }
wait_for() { i=0; while [ $i -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i + 1)); done; return 1; }
if [ ! -f "$K" ] || [ ! -f "$INITRD" ]; then
	fail "device tests" "no test kernel or initramfs (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi

# 1. User-mode network: DHCP address, ping to the gateway, 10 MiB from and to a host server.
# In the nested machine (QEMU TCG emulating SVM) heavy guest I/O sometimes breaks the nesting
# itself: the L2 guest triple-faults or stops, and QEMU's own guests stop there too
# (docs/kvm-hosts.md). There, and only for those two signatures, up to three attempts, each
# failed one printed with where its time went.
net_test() {
	# After the upload (so after the download), while the guest waits for the MD5: the stack's
	# counters, among them the GSO frames it sent the guest (Linux's virtio_net takes them).
	rm -f "$T/net.up.stat"
	python3 tests/net-server.py --on-upload "'$LKVM' stat net > '$T/net.up.stat'" > "$T/port" 2> "$T/srv.log" & srv=$!
	wait_for "$T/port" . 60
	port=$(cut -d' ' -f1 "$T/port"); up=$(cut -d' ' -f2 "$T/port")
	# The stack's counters every 10 s (retransmits, drops): a failure shows them.
	rm -f "$T/net.stat"
	(while sleep 10; do "$LKVM" stat net > "$T/net.stat.new" 2>/dev/null && mv "$T/net.stat.new" "$T/net.stat"; done) &
	sampler=$!
	timeout -k 10 150 "$LKVM" run --name net -k "$K" -i "$INITRD" -m 256 --network mode=user \
		-p "quiet ip=dhcp lkvm_net=$port lkvm_up=$up" < /dev/null > "$T/net.out" 2>&1
	rc=$?
	kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
	kill $srv 2>/dev/null; wait $srv 2>/dev/null; srv=
	want=$(python3 tests/net-server.py md5)
	a=$(val net NET-ADDR); p=$(val net NET-PING); g=$(val net NET-GET); u=$(val net NET-UP-MD5); s=$(val net NET-POST)
	gso=$(grep -o '"net0_tcp_gso_sent":[0-9]*' "$T/net.up.stat" 2>/dev/null | cut -d: -f2)
	[ $rc = 0 ] && [ "$a" = 10.0.2.15 ] && [ "$p" = ok ] && [ "$g" = "$want" ] && [ -n "$u" ] && [ "$u" = "$s" ] &&
		[ "${gso:-0}" -gt 0 ]
}
# Sections 1 and 2 need python3 for the host ends.
if need_tool python3 python3 "user-mode network" hostfwd; then
	attempt=1
	net_test; good=$?
	while [ $good != 0 ] && [ -n "$LKVM_ENV_NESTED" ] && [ $attempt -lt 3 ] &&
		{ [ $rc = 124 ] || [ $rc = 137 ] || grep -q "triple fault" "$T/net.out"; }; do
		attempt=$((attempt + 1))
		echo "note: the nested machine lost the guest (rc=$rc: $(grep -m1 "^lkvm:" "$T/net.out" | tr -d "\r"); guest times: get $(val net NET-GET-TIME), up $(val net NET-UP-TIME); host server: $(tail -n 2 "$T/srv.log" | tr '\n' '|')); attempt $attempt of 3"
		net_test; good=$?
	done
	if [ $good = 0 ]; then
		pass "user-mode network$([ $attempt -gt 1 ] && echo " (attempt $attempt)"): DHCP gave $a, gateway answers ping, 10 MiB down ($(took NET-GET-TIME), $gso GSO frames to the guest) and 10 MiB up ($(took NET-UP-TIME)) intact"
	else
		fail "user-mode network" "rc=$rc addr='$a' ping='$p' get='$g' (want $want) up='$u' host saw '$s' gso frames='$gso'; guest times: get $(val net NET-GET-TIME), up $(val net NET-UP-TIME); host server: $(tail -n 3 "$T/srv.log" | tr '\n' '|') lkvm stat: $(grep -o '"net0_[a-z_]*":[0-9]*' "$T/net.stat" 2>/dev/null | tr '\n' ' ') $(tailof net)"
	fi

	# 2. hostfwd: a host port reaches the guest's httpd.
	hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	"$LKVM" run --name fwd -k "$K" -i "$INITRD" -m 256 --network "mode=user,hostfwd=tcp:$hp-:8080" \
		-p "quiet ip=dhcp lkvm_httpd=8080" < /dev/null > "$T/fwd.out" 2>&1 &
	vm=$!
	got=
	if wait_for "$T/fwd.out" HTTPD-READY 240; then
		got=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$hp/hello', timeout=20).read().decode().strip())" 2>&1)
	fi
	"$LKVM" stop fwd > /dev/null 2>&1; wait $vm
	[ "$got" = "served-by-the-guest" ] && pass "hostfwd tcp:$hp-:8080 reaches the guest's httpd" || fail hostfwd "got '$got': $(tailof fwd)"
fi

# 3. A 9p shared folder: the guest reads, creates, renames, deletes, links; the host sees it.
# And 8 MiB read and copied in 128 KiB requests: the guest's checksum of what it read, and the
# host's of the copy it wrote, against the host's own.
# Started as root, lkvm is jailed (docs/jail.md): it then reaches the share as its jail user,
# which the folder is given to (as a user would give it to the user lkvm runs as).
mkdir "$T/share"
echo "from-the-host" > "$T/share/from-host"
echo x > "$T/share/delete-me"
head -c 8388608 /dev/urandom > "$T/share/big"
sum=$(md5sum < "$T/share/big")
[ "$(id -u)" = 0 ] && chown -R 65534:65534 "$T/share"
timeout -k 10 300 "$LKVM" run -k "$K" -i "$INITRD" -m 256 --network mode=none --jail-user 65534:65534 --9p "$T/share,hostshare" \
	-p "quiet lkvm_9p=hostshare" < /dev/null > "$T/9p.out" 2>&1
rc=$?
r=$(val 9p 9P-READ)
if [ $rc = 0 ] && [ "$(val 9p 9P-MOUNT)" = ok ] && [ "$r" = from-the-host ] &&
   [ "$(cat "$T/share/dir/renamed" 2>/dev/null)" = from-the-guest ] && [ ! -e "$T/share/dir/new" ] &&
   [ ! -e "$T/share/delete-me" ] && [ "$(readlink "$T/share/link")" = target ] &&
   [ "$(val 9p 9P-SUM)" = "$sum" ] && [ "$(val 9p 9P-COPY)" = ok ] && [ "$(md5sum < "$T/share/copy")" = "$sum" ]; then
	pass "9p: the guest mounted the host folder, read it, created, renamed, deleted and linked ($(val 9p 9P-LS)); 8 MiB read and copied back in 128 KiB requests, checksums equal on both sides"
else
	fail 9p "rc=$rc read='$r' ls='$(val 9p 9P-LS)' sum guest='$(val 9p 9P-SUM)' host='$sum' copy='$(val 9p 9P-COPY)' host's sum of it='$(md5sum < "$T/share/copy" 2>&1)' host: $(ls -R "$T/share" | tr '\n' ' ') $(tailof 9p)"
fi

# 4. The balloon: inflating 64 MiB reaches the guest's driver and the host gets the pages back.
"$LKVM" run --name bal -k "$K" -i "$INITRD" -m 256 --network mode=none --balloon -p "quiet lkvm_balloon" \
	< /dev/null > "$T/bal.out" 2>&1 &
vm=$!
st=
if wait_for "$T/bal.out" BALLOON-READY 240; then
	"$LKVM" balloon bal inflate 64 > /dev/null
	i=0; while [ $i -lt 300 ]; do
		st=$("$LKVM" stat bal); echo "$st" | grep -q '"balloon_actual_pages":16384' && break; sleep 0.2; i=$((i + 1))
	done
	inf=$(echo "$st" | sed -n 's/.*"balloon_inflated_pages":\([0-9]*\).*/\1/p')
	kicks=$(echo "$st" | sed -n 's/.*"ioeventfd_kicks":\([0-9]*\).*/\1/p')
	msis=$(echo "$st" | sed -n 's/.*"irqfd_msis":\([0-9]*\).*/\1/p')
	"$LKVM" balloon bal deflate 64 > /dev/null
	i=0; while [ $i -lt 300 ]; do
		st2=$("$LKVM" stat bal); echo "$st2" | grep -q '"balloon_actual_pages":0,' && break; sleep 0.2; i=$((i + 1))
	done
fi
"$LKVM" stop bal > /dev/null 2>&1; wait $vm
if echo "$st" | grep -q '"balloon_actual_pages":16384' && [ "${inf:-0}" -ge 16384 ] && echo "$st2" | grep -q '"balloon_actual_pages":0,' &&
   [ "${kicks:-0}" -gt 0 ] && [ "${msis:-0}" -gt 0 ]; then
	pass "balloon: inflate 64 MiB -> the guest gave 16384 pages (released to the host), deflate -> 0; $kicks kicks by ioeventfd, $msis MSI-X by irqfd"
else
	fail balloon "after inflate: $st; after deflate: $st2; $(tailof bal)"
fi

# 4b. Multi-queue virtio-blk: queues=2 on 2 vCPUs; each CPU writes 4 MiB of its own
# pattern at once (O_DIRECT, so on its own queue) and reads 1 MiB the host put there; the host
# checks its file and lkvm's per-queue counters. The initramfs is made from this checkout's
# init script (the shared cache's may be another branch's). The VM is bounded (timeout -k):
# a guest the nested machine lost must not hold the suite; that one signature, there only,
# gets up to three attempts as the network's does. Twice: with the default I/O engine, which
# must be io_uring here (jailed, under seccomp: no fallback), and with aio=threads.
mqpat() { yes "$1" | head -c "$2"; }
mq_test() {
	img=$T/mq.img
	rm -f "$img"; truncate -s 16M "$img"
	mqpat lkvm-mq-host 1048576 | dd of="$img" bs=64k seek=128 conv=notrunc 2>/dev/null
	st=
	timeout -k 10 240 "$LKVM" run --name mq -k "$K" -i "$T/mq.cpio.gz" -m 256 -c 2 --network mode=none -d "$img,queues=2$aioopt" \
		-p "quiet lkvm_mq" < /dev/null > "$T/mq.out" 2>&1 &
	vm=$!
	wait_for "$T/mq.out" MQ-READY 200 && st=$("$LKVM" stat mq)
	"$LKVM" stop mq > /dev/null 2>&1; wait $vm; rc=$?
	[ -n "$st" ]
}
if ! sh tests/kernel/mkinitramfs.sh "$T/mq.cpio.gz" tests/kernel/init-basic.sh > "$T/mkinit.log" 2>&1; then
	fail "blk queues" "cannot make the initramfs: $(tail -n 2 "$T/mkinit.log" | tr '\n' '|')"
else
  for aio in uring threads; do
	aioopt=; [ $aio = uring ] || aioopt=",aio=$aio"
	attempt=1
	mq_test
	while [ -z "$st" ] && [ -n "$LKVM_ENV_NESTED" ] && [ $attempt -lt 3 ] &&
		{ [ $rc = 124 ] || [ $rc = 137 ] || grep -q "triple fault" "$T/mq.out"; }; do
		attempt=$((attempt + 1))
		echo "note: the nested machine lost the multi-queue guest (rc=$rc: $(tailof mq)); attempt $attempt of 3"
		mq_test
	done
	qw() { echo "$st" | sed -n "s/.*\"blk0_q$1_writes\":\([0-9]*\).*/\1/p"; }
	w0=$(qw 0); w1=$(qw 1); eng=$(echo "$st" | sed -n 's/.*"blk0_aio":"\([a-z]*\)".*/\1/p'); hostmd5=$(mqpat lkvm-mq-host 1048576 | md5sum | cut -c1-32)
	mqbad=
	for c in 0 1; do
		[ "$(dd if="$img" bs=64k skip=$((c * 64)) count=64 2>/dev/null | md5sum)" = "$(mqpat lkvm-mq-cpu$c 4194304 | md5sum)" ] ||
			mqbad="$mqbad cpu$c's 4 MiB differ in the image;"
		[ "$(val mq MQ-READ$c)" = "$hostmd5" ] || mqbad="$mqbad cpu$c read '$(val mq MQ-READ$c)', not the host's bytes;"
	done
	if [ -z "$st" ]; then
		fail "blk queues, aio $aio" "no MQ-READY from the guest (rc=$rc, attempt $attempt): $(tailof mq)"
	elif [ "$(val mq MQ-QUEUES)" = 2 ] && [ "$(val mq MQ-WRITE)" = ok ] && [ -z "$mqbad" ] &&
	     [ "${w0:-0}" -gt 0 ] && [ "${w1:-0}" -gt 0 ] && [ "$eng" = $aio ]; then
		pass "blk queues, aio $aio: the guest sees 2 queues (queues=2, -c 2); 4 MiB from each CPU at once, in the image; writes by queue $w0 and $w1; lkvm ran $eng"
	else
		fail "blk queues, aio $aio" "engine '$eng', queues '$(val mq MQ-QUEUES)', write '$(val mq MQ-WRITE)', writes by queue '$w0' '$w1';$mqbad $(tailof mq)"
	fi
  done
fi

# 5. lkvm sandbox --no-overlay: the output and exit status pass through; / is read-only, /tmp writable.
# Its kernel's console is kept. A sandbox the nested machine lost (nothing in 120 s, where it
# takes seconds, or a triple fault) gets up to three attempts there, as the guests above do.
cwd=$(pwd)/tests	# the guest's /tmp is the scratch folder: $T is not visible there
sb_test() {
	rm -f "$T/sb.console"
	out=$(cd "$cwd" && timeout -k 10 120 "$LKVM" sandbox -k "$K" -m 256 --network mode=none --no-overlay --console-log "$T/sb.console" -- \
		sh -c 'echo "in the sandbox: $(pwd)"; touch /usr/x 2>/dev/null && echo rw; echo t > /tmp/t && cat /tmp/t; exit 7' \
		< /dev/null 2> "$T/sb.err")
	rc=$?
}
sb_console() { tr -d '\r' < "$T/sb.console" 2>/dev/null | grep . | tail -n 3 | tr '\n' '|' | cut -c1-300; }
attempt=1
sb_test
while [ $rc != 7 ] && [ -n "$LKVM_ENV_NESTED" ] && [ $attempt -lt 3 ] &&
	{ [ $rc = 124 ] || [ $rc = 137 ] || grep -q "triple fault" "$T/sb.err"; }; do
	attempt=$((attempt + 1))
	echo "note: the nested machine lost the sandbox guest (rc=$rc, stderr '$(tail -n 2 "$T/sb.err" | tr '\n' '|')', its console's last lines: $(sb_console)); attempt $attempt of 3"
	sb_test
done
if [ $rc = 7 ] && echo "$out" | grep -qx "in the sandbox: $cwd" && ! echo "$out" | grep -qx rw && echo "$out" | grep -qx t; then
	pass "lkvm sandbox: output passed through, exit status 7 returned, / read-only, /tmp writable, cwd kept$([ $attempt -gt 1 ] && echo " (attempt $attempt)")"
else
	fail sandbox "rc=$rc (attempt $attempt) out='$(echo "$out" | tr '\n' '|')' err='$(tail -n 3 "$T/sb.err" | tr '\n' '|')' console: $(sb_console)"
fi

# 6. lkvm setup: a busybox root folder, booted as the guest's root over 9p.
# The folder's init counts /bin in the guest; the test adds a random number of entries to
# that folder after setup, so only a guest that listed this folder over 9p gets the count right.
if HOME=$T "$LKVM" setup t > "$T/setup.out" 2>&1; then
	extra=$(( $(od -An -N1 -tu1 /dev/urandom) % 9 + 1 ))
	i=0; while [ $i -lt $extra ]; do : > "$T/.lkvm/t/bin/zz-test-$$-$i"; i=$((i + 1)); done
	want=$(ls "$T/.lkvm/t/bin" | wc -l)
	HOME=$T timeout -k 10 300 "$LKVM" run -k "$K" -m 256 --network mode=none --rootfs t -p "quiet lkvm_poweroff" \
		< /dev/null > "$T/rootfs.out" 2>&1
	rc=$?
	got=$(tr -d '\r' < "$T/rootfs.out" | sed -n 's/^LKVM-SETUP-ROOT-OK \([0-9]*\) applets$/\1/p' | head -n 1)
	[ $rc = 0 ] && [ "$got" = "$want" ] && pass "lkvm setup + --rootfs: booted to the folder's /init over 9p, which counted the $want entries of its /bin ($extra added by the test)" ||
		fail "lkvm setup + --rootfs" "rc=$rc, the guest counted '$got' entries in /bin, the host $want: $(tailof rootfs)"
else
	fail "lkvm setup" "$(cat "$T/setup.out")"
fi

# 7. tap in a network namespace made here: the tap is made first (as a user's admin would),
# with 10.9.0.1 and the test's HTTP/upload server on it; the guest fetches 10 MiB from it and
# sends 10 MiB back, MD5 compared on both ends. The guest's virtio_net sends without TSO and
# checksums itself (virtio_net.gso=0 csum=0), so its upload is MSS-sized segments that lkvm
# merges into GSO frames (net/tcp_merge.c): the server reads lkvm's count of merged segments
# after the upload, while the guest waits for its answer.
ns=lkvm-test-$$
if ip netns add "$ns" 2>/dev/null; then
	nsx() { ip netns exec "$ns" "$@"; }
	nsx ip link set lo up
	nsx ip tuntap add lkvmtap0 mode tap && nsx ip addr add 10.9.0.1/24 dev lkvmtap0 && nsx ip link set lkvmtap0 up
	rm -f "$T/tap.stat"
	nsx python3 tests/net-server.py --addr 10.9.0.1 --on-upload "'$LKVM' stat tap > '$T/tap.stat'" \
		> "$T/tap.ports" 2> "$T/tapsrv.log" & tsrv=$!
	wait_for "$T/tap.ports" . 10
	read tport tup < "$T/tap.ports"
	nsx timeout -k 10 300 "$LKVM" run --name tap -k "$K" -i "$INITRD" -m 256 --network mode=tap,tapif=lkvmtap0 \
		-p "quiet ip=10.9.0.2::10.9.0.1:255.255.255.0::eth0:off virtio_net.gso=0 virtio_net.csum=0 lkvm_net=$tport lkvm_up=$tup lkvm_peer=10.9.0.1" \
		< /dev/null > "$T/tap.out" 2>&1
	rc=$?
	kill $tsrv 2>/dev/null; wait $tsrv 2>/dev/null
	ip netns del "$ns"
	want=$(python3 tests/net-server.py md5)
	p=$(val tap NET-PING); g=$(val tap NET-GET); u=$(val tap NET-UP-MD5); s=$(val tap NET-POST)
	merged=$(grep -o '"net0_tx_merged":[0-9]*' "$T/tap.stat" 2>/dev/null | cut -d: -f2)
	if [ $rc = 0 ] && [ "$p" = ok ] && [ "$g" = "$want" ] && [ -n "$u" ] && [ "$u" = "$s" ] && [ "${merged:-0}" -gt 0 ]; then
		pass "tap: through lkvmtap0 in namespace $ns the guest pinged its peer, fetched 10 MiB and sent 10 MiB intact; $merged of its segments went merged"
	else
		fail tap "rc=$rc ping='$p' get='$g' (want $want) up='$u' host saw '$s' merged='$merged'; server: $(tail -n 3 "$T/tapsrv.log" | tr '\n' '|') $(tailof tap)"
	fi
else
	fail tap "cannot create a network namespace (needs root and iproute2)"
fi

# 8. A hostile guest root on writable shares (issue 21): setuid and setgid files, a setuid copy,
# chown, a setgid folder, device nodes. The host must find none of them: in passthrough (on the
# nested machine's tmpfs) nothing setuid, setgid or a device; in the mapped model the guest sees
# exactly what it set while every host file stays lkvm's own, 0600 or 0700. Data is checked both
# ways. The guest runs in lkvm sandbox (its / is the host's, read-only) with the shares added.
sec_script='
for t in pt mp; do
	mkdir -p /tmp/$t && mount -t 9p -o trans=virtio,version=9p2000.L $t /tmp/$t 2>/dev/null || continue
	cd /tmp/$t || continue
	echo "SEC-$t-READ=$(cat from-host)"
	echo from-the-guest > guest-wrote
	echo x > suid && chmod 4755 suid
	echo x > sgid && chmod 2755 sgid
	echo x > rootsuid && chmod 6755 rootsuid && chown 0:0 rootsuid && chmod 6755 rootsuid
	echo x > given && chown 1234:1234 given && chmod 4755 given
	cp /bin/sh shcopy && chmod 4755 shcopy
	su=$(command -v su) && cp -p "$su" su-copy && echo "SEC-$t-SUCOPY=made"
	mkdir d && chmod 3777 d
	mkdir -m 2775 d2
	mknod null c 1 3 2>/dev/null && echo "SEC-$t-MKNOD=made" || echo "SEC-$t-MKNOD=refused"
	mknod disk b 8 0 2>/dev/null
	ln -s /etc/passwd link && echo "SEC-$t-LINK=$(readlink link)"
	for f in suid sgid rootsuid given shcopy su-copy d d2 null link; do
		{ [ -e "$f" ] || [ -L "$f" ]; } && echo "SEC-$t-SEE-$f=$(stat -c "%f %u %g %t,%T" "$f")"
	done
	cd /
done
sync'
secv() { printf '%s\n' "$sec_out" | tr -d '\r' | sed -n "s/^SEC-$1=//p" | tail -n 1; }
# Host objects under $1 (but from-host) that are setuid, setgid or device nodes.
privileged() { find "$1" -mindepth 1 ! -name from-host \( -perm /6000 -o -type b -o -type c \) | tr '\n' ' '; }
mkdir "$T/pt"
echo host-pt > "$T/pt/from-host"
echo host-mp > "$MP/from-host"
if python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.probe", b"1")' "$MP/from-host" 2>/dev/null; then
	set -- --9p "$T/pt,pt" --9p "$MP,mp,security_model=mapped"
else
	set -- --9p "$T/pt,pt"
	skip "9p mapped model in a real guest" "no user xattrs on $MP"
fi
# --no-jail: this is lkvm as root reaching the shares (a jailed lkvm is its jail user; section 9
# covers an unprivileged lkvm).
sec_out=$(timeout -k 10 300 "$LKVM" sandbox -k "$K" -m 256 --no-jail --network mode=none "$@" -- sh -c "$sec_script" \
	< /dev/null 2> "$T/sec.err")
rc=$?
bad=$(privileged "$T/pt")
if [ $rc = 0 ] && [ "$(secv pt-READ)" = host-pt ] && [ "$(cat "$T/pt/guest-wrote" 2>/dev/null)" = from-the-guest ] &&
   [ "$(secv pt-MKNOD)" = refused ] && [ -f "$T/pt/rootsuid" ] && [ -f "$T/pt/shcopy" ] && [ -d "$T/pt/d" ] &&
   [ -z "$bad" ]; then
	pass "9p passthrough, hostile guest root: chmod 4755/2755/6755, chown 0, a setuid copy, a setgid folder and mknod left nothing setuid, setgid or a device on the host (guest saw $(secv pt-SEE-rootsuid | cut -d' ' -f1) for 06755)"
else
	fail "9p passthrough, hostile guest root" "rc=$rc read='$(secv pt-READ)' mknod='$(secv pt-MKNOD)' on the host: $bad $(ls -ln "$T/pt" | tr '\n' '|') err: $(tail -n 3 "$T/sec.err" | tr '\n' '|')"
fi
if [ $# = 4 ]; then
	me=$(id -u)
	foreign=$(find "$MP" -mindepth 1 ! -name from-host \( ! -user "$me" -o \( -type f ! -perm 0600 \) -o \
		\( -type d ! -perm 0700 \) -o ! \( -type f -o -type d \) \) | tr '\n' ' ')
	want="suid=89ed 0 0 0,0|rootsuid=8ded 0 0 0,0|given=89ed 1234 1234 0,0|d=47ff 0 0 0,0|d2=45fd 0 0 0,0|null=21a4 0 0 1,3|link=a1ff 0 0 0,0"
	seen=
	for kv in $(echo "$want" | tr ' |' '_ '); do
		k=${kv%%=*}; v=$(echo "${kv#*=}" | tr _ ' ')
		[ "$(secv "mp-SEE-$k")" = "$v" ] || seen="$seen $k='$(secv "mp-SEE-$k")' (want '$v')"
	done
	if [ $rc = 0 ] && [ "$(secv mp-READ)" = host-mp ] && [ "$(cat "$MP/guest-wrote" 2>/dev/null)" = from-the-guest ] &&
	   [ "$(secv mp-MKNOD)" = made ] && [ "$(secv mp-LINK)" = /etc/passwd ] && [ -z "$seen" ] && [ -z "$foreign" ] &&
	   [ -z "$(privileged "$MP")" ]; then
		pass "9p mapped model: the guest root sees the 04755/06755 files, chown 1234, setgid folder, char device 1,3 and symlink it made, while every host file is uid $me, 0600 or 0700, a plain file or folder"
	else
		fail "9p mapped model" "rc=$rc read='$(secv mp-READ)' mknod='$(secv mp-MKNOD)' link='$(secv mp-LINK)' guest saw:$seen host: $foreign $(privileged "$MP")"
	fi
fi

# 9. The same as an ordinary user (uid 65534) running lkvm (the guest command --root, so it can mount): chown 0 fails, and nothing becomes
# setuid either. Only in the nested machine, where /dev/kvm may be opened to that user.
if [ -n "$LKVM_ENV_NESTED" ] && command -v setpriv > /dev/null && chmod o+rw /dev/kvm 2>/dev/null; then
	chmod 0755 "$U" && mkdir "$U/share" "$U/run" && echo host-u > "$U/share/from-host" && chown -R 65534:65534 "$U/share" "$U/run"
	user_script='mkdir -p /tmp/u && mount -t 9p -o trans=virtio,version=9p2000.L u /tmp/u && cd /tmp/u &&
		echo "SEC-u-READ=$(cat from-host)"; echo x > f; chown 0:0 f 2>/dev/null && echo SEC-u-CHOWN=done || echo SEC-u-CHOWN=refused
		chmod 4755 f; su=$(command -v su) && cp -p "$su" su-copy 2>/dev/null; cp /bin/sh shcopy && chmod 6755 shcopy
		mkdir d && chmod 2777 d; mknod null c 1 3 2>/dev/null; echo from-the-guest > guest-wrote; sync'
	sec_out=$(cd "$U" && setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_RUNTIME_DIR="$U/run" TMPDIR=/tmp \
		timeout -k 10 300 "$LKVM" sandbox -k "$K" -m 256 --network mode=none --root --9p "$U/share,u" --console-log "$U/run/console" -- sh -c "$user_script" \
		< /dev/null 2> "$T/secu.err")
	rc=$?
	notmine=$(find "$U/share" ! -user 65534 | tr '\n' ' ')
	bad=$(privileged "$U/share")
	if [ $rc = 0 ] && [ "$(secv u-READ)" = host-u ] && [ "$(secv u-CHOWN)" = refused ] && [ -z "$notmine" ] && [ -z "$bad" ] &&
	   [ "$(cat "$U/share/guest-wrote" 2>/dev/null)" = from-the-guest ] && [ -f "$U/share/shcopy" ]; then
		pass "9p passthrough with lkvm as uid 65534: the guest's chown 0 was refused, nothing on the host is setuid, setgid, a device or not the user's"
	else
		fail "9p passthrough as uid 65534" "rc=$rc read='$(secv u-READ)' chown='$(secv u-CHOWN)' not the user's: $notmine privileged: $bad err: $(tail -n 3 "$T/secu.err" | tr '\n' '|') console: $(tail -n 6 "$U/run/console" 2>&1 | tr '\n' '|' | cut -c1-500)"
	fi
	chmod o-rw /dev/kvm
else
	skip "9p passthrough with lkvm as an ordinary user" "only in the nested machine (it opens /dev/kvm to uid 65534 there)"
fi

suite_end
