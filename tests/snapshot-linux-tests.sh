#!/bin/sh
# Snapshots of a Linux guest (our test kernel, busybox, tests/kernel/init-snapshot.sh)
# with a qcow2 disk, a 9p share, user-mode networking and virtio-rng, taken after
# boot while it runs. Needs /dev/kvm where Linux user space runs (kvm-env).
#   - the snapshotted VM goes on, writing to the overlay made for it; the image stays
#   - two clones at once, each with a share of its own (--9p may differ): each reads
#     the disk and the 9p files it held (one deleted since: an error, nothing else
#     breaks), gets DHCP, ping and HTTP to the host, has its held TCP connection
#     reset, writes to its own overlay, and after a reseed from virtio-rng its own
#     randomness; the host checks each overlay and the image
#   - vsock (lkvm run --agent: lkvm's agent beside the script): a connection the host
#     holds into the guest across the snapshot stays open in the VM that goes on and is
#     reset in each clone (the transport reset event); clone 2 gets another CID, which
#     its guest reads again; lkvm exec into each clone runs a command: its output (256 KiB
#     whose MD5 the guest reports), its exit status and stdin (host bytes the guest hashes)
#   - a plain restore resumes once; a second plain restore is refused
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
LKVM=$(readlink -f "$BUILD/lkvm")	# as /proc/self/exe names it: --agent's init is at this path in the guest
K=$(cat .cache/kernel/current 2>/dev/null)/bzImage
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
srv=
pids=
trap 'for p in $srv $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
val() { tr -d '\r' < "$T/$1.out" | sed -n "s/^$2=//p" | tail -n 1; }
tailof() { tr -d '\r' < "$T/$1.out" | tail -n 6 | tr '\n' '|'; }
. tests/lib/stuck.sh	# wait_for, alive, look_stuck, where
sector2() { qemu-img convert -f qcow2 -O raw "$1" "$T/conv.raw" && dd if="$T/conv.raw" bs=512 skip=2 count=1 2>/dev/null | tr -d '\0'; }
if [ ! -f "$K" ]; then
	ko "snapshot linux tests" "no test kernel (tests/prepare-kernels.sh)"
	echo "snapshot-linux: $pass passed, $fail failed, 0 skipped"; exit 1
fi
# lkvm itself goes into the initramfs for --agent, with the libraries it needs.
PEER=$BUILD/tests/vsock-peer
sh tests/kernel/vsock-peer.sh "$PEER" || true
libs=$(ldd "$LKVM" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' | sed 's/.*/&:&/')
if [ ! -x "$BUILD/tests/kernel/reseed" ] || [ ! -x "$PEER" ] || ! sh tests/kernel/mkinitramfs.sh "$T/init.cpio.gz" \
	tests/kernel/init-snapshot.sh "$BUILD/tests/kernel/reseed:/bin/reseed" "$PEER:/bin/vsock-peer" "$LKVM:$LKVM" $libs; then
	ko "snapshot linux tests" "cannot build the initramfs"
	echo "snapshot-linux: $pass passed, $fail failed, 0 skipped"; exit 1
fi
# The host's end: an HTTP server (64 KiB blob) and a port that holds connections open.
python3 - > "$T/ports" <<'PY' &
import hashlib, http.server, socket, sys, threading
blob = bytes(range(251)) * 261
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(blob))); self.end_headers(); self.wfile.write(blob)
    def log_message(self, *a): pass
hold = socket.socket(); hold.bind(("127.0.0.1", 0)); hold.listen(8); held = []
def keep():
    while True:
        held.append(hold.accept()[0])
threading.Thread(target=keep, daemon=True).start()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], hold.getsockname()[1], hashlib.md5(blob).hexdigest(), flush=True)
s.serve_forever()
PY
srv=$!
wait_for "$T/ports" . 30
read -r hp hold md5 < "$T/ports"
# The disk: "disk-base" in sector 0, as qcow2. The shares: A's, and one per clone without "gone".
printf 'disk-base' > "$T/base.raw" && truncate -s 8M "$T/base.raw"
qemu-img convert -f raw -O qcow2 "$T/base.raw" "$T/disk.qcow2"
for s in shareA share1 share2 shareR; do mkdir "$T/$s"; echo keep-data > "$T/$s/keep"; echo "new-in-$s" > "$T/$s/new"; done
echo done > "$T/shareA/done"; echo done > "$T/shareR/done"	# the clones' come after lkvm exec
echo gone-data > "$T/shareA/gone"
# Started as root, VM a is jailed (docs/jail.md): its share is its jail user's (restores are not jailed).
[ "$(id -u)" = 0 ] && chown -R 65534:65534 "$T/shareA"
vport=5123
P="quiet ip=dhcp lkvm_net=$hp lkvm_hold=$hold lkvm_vport=$vport rdinit=$LKVM init=/init"

# 1. Boot, snapshot while it runs: the VM goes on into a new overlay, the image is the snapshot's.
"$LKVM" run --name a -k "$K" -i "$T/init.cpio.gz" -m 256 -c 2 --rng -d "$T/disk.qcow2" --jail-user 65534:65534 --9p "$T/shareA,share" --agent \
	-p "$P" < /dev/null > "$T/a.out" 2>&1 & a=$!; pids="$pids $a"
if ! wait_for "$T/a.out" SNAP-READY 400; then
	ko "boot to the snapshot point" "$(tailof a)"
	echo "snapshot-linux: $pass passed, $fail failed, 0 skipped"; exit 1
fi
# The host holds a vsock connection into the guest's listener (CONNECT, OK; nothing sent).
python3 - "$T/lkvm/a.vsock" $vport > "$T/vhold" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"CONNECT %s\n" % sys.argv[2].encode())
line = b""
while not line.endswith(b"\n"):
    c = s.recv(1)
    if not c: break
    line += c
print(line.decode().strip(), flush=True)
time.sleep(100000)
PY
vholdpid=$!; pids="$pids $vholdpid"
wait_for "$T/vhold" . 30
"$LKVM" snapshot a "$T/snap" > "$T/snap.out" 2>&1; src=$?
img_md5=$(md5sum < "$T/disk.qcow2")
ov="$T/disk-after-snap.qcow2"
if [ $src = 0 ] && [ -f "$T/snap/state" ] && [ -f "$ov" ] && grep -q "disk 0: the VM now writes $ov" "$T/snap.out" &&
   [ "$(val a SNAP-HELD)" = 1 ] && grep -q '^OK ' "$T/vhold"; then
	ok "snapshot of a booted Linux guest while it runs: $(head -n 1 "$T/snap.out")"
else ko "snapshot" "status $src: $(cat "$T/snap.out" | tr '\n' '|') held '$(val a SNAP-HELD)' vsock '$(cat "$T/vhold")'"; fi
echo a > "$T/shareA/go"
wait $a; arc=$?
if [ $arc = 0 ] && [ "$(val a SNAP-GO)" = a ] && [ "$(val a SNAP-KEEP)" = keep-data ] && [ "$(val a SNAP-GONE)" = readable ] &&
   [ "$(val a SNAP-RST)" = still-open ] && [ "$(val a SNAP-VRST | cut -d" " -f1)" = still-open ] && [ "$(val a SNAP-CID)" = 3 ] && [ "$(sector2 "$ov")" = written-by-a ] && [ "$(sector2 "$T/disk.qcow2")" = "" ]; then
	ok "the snapshotted VM went on: its TCP and vsock connections stayed open, its write went to the overlay, the image has none"
else ko "the snapshotted VM goes on" "status $arc, go '$(val a SNAP-GO)' rst '$(val a SNAP-RST)' vsock '$(val a SNAP-VRST)' cid '$(val a SNAP-CID)' overlay '$(sector2 "$ov")' image '$(sector2 "$T/disk.qcow2")': $(tailof a)"; fi

# 2. Two clones at once, each with its own share.
echo c1 > "$T/share1/go"; echo c2 > "$T/share2/go"
t0=$(date +%s)
# clone N: restore clone cN (again): its own overlay folder and share; c2 another CID, which the
# guest reads again at the transport reset.
clone() {
	vs=; [ $1 = 2 ] && vs="--vsock 5"
	rm -rf "$T/snap/clones/c$1"
	"$LKVM" run --restore "$T/snap" --clone --name c$1 --9p "$T/share$1,share" $vs < /dev/null > "$T/c$1.out" 2>&1 &
	eval c$1pid=$!; pids="$pids $!"; echo $! >> "$T/clone.pids"
}
clone 1; clone 2
( sleep 900; kill $(cat "$T/clone.pids") 2>/dev/null; sleep 30; kill -9 $(cat "$T/clone.pids") 2>/dev/null ) & watchdog=$!	# a clone stuck past SIGTERM fails its checks, not the trip
# lkvm exec into each clone (its agent's listener survived the reset): stdin in, 256 KiB out, status 7.
head -c 100000 /dev/urandom > "$T/stdin"; in_md5=$(md5sum < "$T/stdin" | cut -c1-32)
for c in 1 2; do
	# SNAP-DONE comes seconds after the restore. A clone without it in 120 s: where its vCPUs
	# are (tests/lib/stuck.sh; the test kernel runs without KASLR), then it is stopped. In the
	# nested machine only, a clone stuck so or one that triple-faulted (it loses L2 guests so,
	# QEMU's own too: docs/kvm-hosts.md) is restored again, up to three attempts, each printed.
	attempt=1
	while :; do
		p=$(eval echo \$c${c}pid)
		wait_for "$T/c$c.out" SNAP-DONE 120 $p && break
		lost=
		if alive $p; then
			look_stuck c$c "$T"; [ -s "$T/syms" ] || nm "$(dirname "$K")/vmlinux" > "$T/syms" 2>/dev/null
			stop $p
			lost="stuck, $(where c$c "$T" "$T/syms")"
		elif grep -q "triple fault" "$T/c$c.out"; then
			lost="triple fault: $(tailof c$c)"
		fi
		if [ -n "$lost" ] && [ -n "${LKVM_ENV_NESTED:-}" ] && [ $attempt -lt 3 ]; then
			attempt=$((attempt + 1))
			echo "note: the nested machine lost clone c$c ($lost); attempt $attempt of 3"
			clone $c
			continue
		fi
		ko "clone c$c" "no SNAP-DONE from it in 120 s (attempt $attempt: ${lost:-it ended}): $(tr -d '\r' < "$T/c$c.out" | tail -n 6 | tr '\n' '|' | cut -c1-500)"
		break
	done
	tok=tok$c$$
	timeout -k 10 120 "$LKVM" exec c$c -e T=$tok -- sh -c 'echo "t=$T in=$(md5sum | cut -c1-32)" >&2
		dd if=/dev/urandom bs=1024 count=256 2>/dev/null > /tmp/o; echo "out=$(md5sum < /tmp/o | cut -c1-32)" >&2; cat /tmp/o; exit 7' \
		< "$T/stdin" > "$T/e$c.out" 2> "$T/e$c.err"; erc=$?
	got=$(md5sum < "$T/e$c.out" | cut -c1-32)
	if [ $erc = 7 ] && grep -qx "t=$tok in=$in_md5" "$T/e$c.err" && grep -qx "out=$got" "$T/e$c.err" &&
	   [ "$(stat -c %s "$T/e$c.out")" = 262144 ]; then
		ok "lkvm exec into restored clone c$c: status 7, its -e value, the host's 100000 stdin bytes hashed right in the guest, 256 KiB of output hashed right on the host"
	else ko "lkvm exec into clone c$c" "status $erc, $(stat -c %s "$T/e$c.out") bytes ($got), stderr: $(tr '\n' '|' < "$T/e$c.err" | head -c 300)"; fi
	echo done > "$T/share$c/done"
done
# Each clone powers off once its share says done: bounded, a clone the nested machine froze must
# not hold the suite (stop: SIGTERM, then SIGKILL).
for c in 1 2; do
	p=$(eval echo \$c${c}pid)
	if gone $p 120; then wait $p; eval r$c=$?
	else look_stuck c$c "$T"; echo "note: clone c$c did not end 120 s after its checks: $(where c$c "$T" "$T/syms")"; stop $p; eval r$c=124; fi
done
kill $watchdog 2>/dev/null
echo "note: both clones ran their checks in $(($(date +%s) - t0)) s"
for c in 1 2; do
	o=c$c; eval rc=\$r$c
	if [ $rc = 0 ] && [ "$(val $o SNAP-GO)" = c$c ] && [ "$(val $o SNAP-DISK)" = disk-base ] &&
	   [ "$(val $o SNAP-KEEP)" = keep-data ] && [ "$(val $o SNAP-GONE)" = error ] && [ "$(val $o SNAP-NEW)" = "new-in-share$c" ] &&
	   [ -n "$(val $o SNAP-RST)" ] && [ "$(val $o SNAP-RST)" != still-open ] && [ "$(val $o SNAP-ADDR)" = 10.0.2.15 ] &&
	   [ "$(val $o SNAP-DHCP)" = ok ] && [ "$(val $o SNAP-PING)" = ok ] && [ "$(val $o SNAP-GET)" = "$md5" ] &&
	   [ "$(sector2 "$T/snap/clones/c$c/disk0.qcow2")" = "written-by-c$c" ]; then
		ok "clone c$c: read the disk, the 9p file it held (the deleted one: an error), its own share; TCP reset, DHCP, ping, HTTP; wrote its own overlay"
	else
		ko "clone c$c" "status $rc, go '$(val $o SNAP-GO)' disk '$(val $o SNAP-DISK)' keep '$(val $o SNAP-KEEP)' gone '$(val $o SNAP-GONE)' new '$(val $o SNAP-NEW)' rst '$(val $o SNAP-RST)' addr '$(val $o SNAP-ADDR)' dhcp '$(val $o SNAP-DHCP)' ping '$(val $o SNAP-PING)' get '$(val $o SNAP-GET)' overlay '$(sector2 "$T/snap/clones/c$c/disk0.qcow2")': $(tailof $o)"
	fi
done
vr1=$(val c1 SNAP-VRST); vr2=$(val c2 SNAP-VRST)
if [ "${vr1%% *}" = 1 ] && [ "${vr2%% *}" = 1 ] && [ "$(val c1 SNAP-CID)" = 3 ] && [ "$(val c2 SNAP-CID)" = 5 ]; then
	ok "vsock transport reset in each clone: the connection held across the snapshot ended ($vr1); the guest's CID is 3 and (--vsock 5) 5"
else ko "vsock transport reset" "held connection '$vr1' / '$vr2', CIDs '$(val c1 SNAP-CID)' / '$(val c2 SNAP-CID)' (want 1 ..., 3 and 5)"; fi
ra=$(val c1 SNAP-RAND); rb=$(val c2 SNAP-RAND)
if [ "$(val c1 SNAP-RESEED)" = ok ] && [ "$(val c2 SNAP-RESEED)" = ok ] && [ ${#ra} = 32 ] && [ ${#rb} = 32 ] && [ "$ra" != "$rb" ]; then
	ok "the clones' random pools differ after a reseed from virtio-rng ($ra / $rb; before it: $(val c1 SNAP-RAND-BEFORE) / $(val c2 SNAP-RAND-BEFORE))"
else ko "clones' randomness" "reseed '$(val c1 SNAP-RESEED)'/'$(val c2 SNAP-RESEED)', '$ra' / '$rb'"; fi
if [ "$(md5sum < "$T/disk.qcow2")" = "$img_md5" ] && [ "$(sector2 "$T/disk.qcow2")" = "" ]; then
	ok "the snapshot's image is unchanged after the VM and both clones wrote"
else ko "the image unchanged" "it changed"; fi

# 3. A plain restore resumes once; a second one is refused with the reason.
echo r > "$T/shareR/go"
timeout -k 10 600 "$LKVM" run --restore "$T/snap" --9p "$T/shareR,share" < /dev/null > "$T/r.out" 2>&1; rr=$?
"$LKVM" run --restore "$T/snap" --9p "$T/shareR,share" < /dev/null > "$T/r2.out" 2>&1; rr2=$?
if [ $rr = 0 ] && [ "$(val r SNAP-GO)" = r ] && [ "$(sector2 "$T/snap/disk0.qcow2")" = written-by-r ] && [ $rr2 = 1 ] &&
   grep -q "disk0.qcow2 holds what the VM restored from this snapshot wrote" "$T/r2.out"; then
	ok "a plain restore resumed the VM (its overlay DIR/disk0.qcow2); a second one is refused: $(tr -d '\r' < "$T/r2.out" | head -n 1 | cut -c1-90)..."
else ko "plain restores" "status $rr then $rr2: $(tailof r) / $(cat "$T/r2.out")"; fi

echo "snapshot-linux: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
