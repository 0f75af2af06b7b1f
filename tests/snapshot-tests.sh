#!/bin/sh
# Snapshots of a small test guest (needs /dev/kvm: run through tests/kvm-env.sh).
# tests/guests/snapcount.S prints "n=N t=T r=R" every 10 timer ticks (N the
# line, T PIT interrupts, R RTC interrupts); a snapshot taken mid-run and
# restored must go on at N+1 exactly, with T and R still growing: vCPU state,
# RAM, both PICs, the PIT and the RTC came back. The host checks every line.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
LKVM=$BUILD/lkvm
G=$BUILD/tests/guests/snapcount.bin
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
pids=
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }
wait_for() {	# file pattern seconds
	i=0; while [ $i -lt $(($3 * 10)) ]; do tr -d '\r' < "$1" 2>/dev/null | grep -q -- "$2" && return 0; sleep 0.1; i=$((i + 1)); done; return 1
}
# The complete lines' fields, one "N T R" per line, from the files given in order (a line may span two).
fields() { cat "$@" | tr -d '\r' | sed -n 's/^n=\([0-9]*\) t=\([0-9]*\) r=\([0-9]*\)$/\1 \2 \3/p'; }
last_n() { fields "$1" | tail -n 1 | cut -d' ' -f1; }
errs() { sed '/emulates guest ring 0 (kvm_pvm)/d' "$1" | head -c 300 | tr '\n' '|'; }
# consecutive FILE...: the N of the lines go 1, 2, 3... without a gap or a repeat, T >= 10 N and grows
consecutive() {
	fields "$@" | awk 'BEGIN { want = 1; lt = -1 } { if ($1 != want || $2 < 10 * $1 || $2 <= lt) { bad = 1; print "line " NR ": " $0 " (expected n=" want ")"; exit } want++; lt = $2 }
		END { if (!bad && want < 2) print "no lines" }'
}

# 1. A guest snapshotted with --stop after 5 lines; DIR holds the state and a sparse RAM file.
$LKVM run --flat --name a -k "$G" < /dev/null > "$T/a.out" 2> "$T/a.err" & a=$!; pids="$pids $a"
if wait_for "$T/a.out" '^n=5 ' 120; then
	$LKVM snapshot a "$T/snap" --stop > "$T/snap.out" 2>&1; src=$?
	wait $a; arc=$?
	na=$(last_n "$T/a.out")
	mem_k=$(du -k "$T/snap/memory" 2>/dev/null | cut -f1); size=$(stat -c %s "$T/snap/memory" 2>/dev/null)
	if [ $src = 0 ] && [ $arc = 0 ] && [ -f "$T/snap/state" ] && [ "$size" = 268435456 ] && [ "${mem_k:-99999}" -lt 8192 ] &&
	   grep -q "VM 'a' saved in .*paused [0-9]* ms, then stopped" "$T/snap.out"; then
		ok "snapshot --stop after line $na: the VM ended with status 0; RAM file of 256 MiB takes ${mem_k} KiB (zero pages are holes)"
	else ko "snapshot --stop" "snapshot $src, VM $arc, memory $size bytes / ${mem_k} KiB: $(cat "$T/snap.out" | tr '\n' '|') $(errs "$T/a.err")"; fi
else
	ko "snapshot --stop" "the guest printed no 5 lines: $(errs "$T/a.err")"
	na=
fi

# 2. Restored: the lines go on at n+1, timer and RTC interrupts keep coming (3 RTC ticks at least).
if [ -n "$na" ]; then
	$LKVM run --restore "$T/snap" --name b < /dev/null > "$T/b.out" 2> "$T/b.err" & b=$!; pids="$pids $b"
	r0=$(fields "$T/a.out" | tail -n 1 | cut -d' ' -f3)
	wait_for "$T/b.out" "^n=$((na + 30)) " 120
	i=0; while [ $i -lt 600 ]; do r=$(fields "$T/a.out" "$T/b.out" | tail -n 1 | cut -d' ' -f3); [ "${r:-0}" -ge $((r0 + 3)) ] && break; sleep 0.1; i=$((i + 1)); done
	$LKVM stop b > /dev/null 2>&1; wait $b; brc=$?
	bad=$(consecutive "$T/a.out" "$T/b.out")
	nb=$(last_n "$T/b.out"); first=$(fields "$T/b.out" | head -n 1 | cut -d' ' -f1)
	if [ $brc = 0 ] && [ -z "$bad" ] && [ "${nb:-0}" -ge $((na + 30)) ] && [ "${r:-0}" -ge $((r0 + 3)) ] && [ -z "$(errs "$T/b.err")" ]; then
		ok "restore: the count went on from line $na to $nb without a gap or a repeat (first complete line $first); RTC interrupts $r0 -> $r, timer interrupts every line"
	else ko "restore" "status $brc, lines $na -> ${nb:-none}, rtc $r0 -> $r, $bad: $(tail -c 200 "$T/b.out" | tr '\r\n' '||') $(errs "$T/b.err")"; fi

	# 3. Two clones at once: each goes on from the same line.
	$LKVM run --restore "$T/snap" --clone --name c1 < /dev/null > "$T/c1.out" 2> "$T/c1.err" & c1=$!
	$LKVM run --restore "$T/snap" --clone --name c2 < /dev/null > "$T/c2.out" 2> "$T/c2.err" & c2=$!
	pids="$pids $c1 $c2"
	wait_for "$T/c1.out" "^n=$((na + 10)) " 120; wait_for "$T/c2.out" "^n=$((na + 10)) " 120
	$LKVM stop c1 > /dev/null 2>&1; $LKVM stop c2 > /dev/null 2>&1
	wait $c1; r1=$?; wait $c2; r2=$?
	b1=$(consecutive "$T/a.out" "$T/c1.out"); b2=$(consecutive "$T/a.out" "$T/c2.out")
	if [ $r1 = 0 ] && [ $r2 = 0 ] && [ -z "$b1$b2" ] && [ "$(last_n "$T/c1.out")" -ge $((na + 10)) ] && [ "$(last_n "$T/c2.out")" -ge $((na + 10)) ]; then
		ok "two clones at once: both went on from line $na ($(last_n "$T/c1.out") and $(last_n "$T/c2.out") lines)"
	else ko "two clones" "status $r1/$r2, $b1 $b2: $(errs "$T/c1.err") $(errs "$T/c2.err")"; fi
fi

# A VM with virtio-vsock is saved (its transport; its connections are dropped at a restore and
# the guest told with the transport reset event: tests/snapshot-linux-tests.sh proves that in
# Linux). A restore whose vsock socket the running VM still holds is refused in one line; with
# --vsock given again (a socket of its own) the count goes on from the snapshot's line.
$LKVM run --flat --name v -k "$G" --vsock 3,uds="$T/v.sock" < /dev/null > "$T/v.out" 2> "$T/v.err" & v=$!; pids="$pids $v"
if wait_for "$T/v.out" '^n=2 ' 120; then
	$LKVM snapshot v "$T/snapv" > "$T/snapv.out" 2>&1; src=$?
	nv=$(last_n "$T/v.out"); wait_for "$T/v.out" "^n=$((nv + 2)) " 60; going=$?
	$LKVM run --restore "$T/snapv" --clone --name v1 < /dev/null > "$T/v1.out" 2> "$T/v1.err"; v1rc=$?
	$LKVM run --restore "$T/snapv" --clone --name v2 --vsock 3,uds="$T/v2.sock" < /dev/null > "$T/v2.out" 2> "$T/v2.err" & v2=$!
	pids="$pids $v2"
	wait_for "$T/v2.out" "^n=$((nv + 5)) " 120
	[ -S "$T/v2.sock" ]; v2sock=$?
	$LKVM stop v2 > /dev/null 2>&1; wait $v2; v2rc=$?
	$LKVM stop v > /dev/null 2>&1; wait $v; vrc=$?
	first=$(fields "$T/v2.out" | head -n 1 | cut -d' ' -f1); n2=$(last_n "$T/v2.out")
	if [ $src = 0 ] && [ -f "$T/snapv/state" ] && [ $going = 0 ] && [ $vrc = 0 ] &&
	   [ $v1rc = 1 ] && [ "$(wc -l < "$T/v1.err")" = 1 ] && grep -q "v.sock: in use" "$T/v1.err" &&
	   [ $v2rc = 0 ] && [ $v2sock = 0 ] && [ "${first:-0}" -le $((nv + 1)) ] && [ "${n2:-0}" -ge $((nv + 5)) ] &&
	   [ -z "$(fields "$T/v2.out" | awk 'NR > 1 && $1 != p + 1 { print "line " NR ": " $0; exit } { p = $1 }')" ]; then
		ok "a VM with virtio-vsock: saved while it ran (it went on); a restore on its socket is refused ($(cat "$T/v1.err")); one with --vsock of its own went on from line $first to $n2"
	else ko "snapshot with vsock" "snapshot $src: $(tr '\n' '|' < "$T/snapv.out") going=$going VM $vrc; restore on its socket $v1rc: $(errs "$T/v1.err"); with its own $v2rc sock=$v2sock lines $first..$n2 (from $nv): $(errs "$T/v2.err")"; fi
else ko "snapshot with vsock" "the guest printed no 2 lines: $(errs "$T/v.err")"; fi

# 4. Without --stop the VM goes on, and its snapshot restores to the moment it was taken.
$LKVM run --flat --name d -k "$G" < /dev/null > "$T/d.out" 2> "$T/d.err" & d=$!; pids="$pids $d"
if wait_for "$T/d.out" '^n=3 ' 120; then
	n0=$(last_n "$T/d.out")
	$LKVM snapshot d "$T/snap2" > "$T/snap2.out" 2>&1; src=$?
	n1=$(last_n "$T/d.out")
	wait_for "$T/d.out" "^n=$((n1 + 3)) " 60; going=$?
	$LKVM stop d > /dev/null 2>&1; wait $d; drc=$?
	$LKVM run --restore "$T/snap2" --name e < /dev/null > "$T/e.out" 2> "$T/e.err" & e=$!; pids="$pids $e"
	wait_for "$T/e.out" '^n=' 60
	$LKVM stop e > /dev/null 2>&1; wait $e; erc=$?
	ne=$(fields "$T/e.out" | head -n 1 | cut -d' ' -f1)
	if [ $src = 0 ] && [ $going = 0 ] && [ $drc = 0 ] && [ $erc = 0 ] && [ -n "$ne" ] && [ "$ne" -gt "$n0" ] && [ "$ne" -le $((n1 + 1)) ] &&
	   [ -z "$(consecutive "$T/d.out")" ]; then
		ok "snapshot of a running VM: it went on (line $n1 -> $(last_n "$T/d.out")); the restore started at line $ne (the snapshot came between lines $n0 and $n1)"
	else ko "snapshot without --stop" "snapshot $src, went on $going, status $drc/$erc, lines $n0..$n1, restored at '$ne': $(cat "$T/snap2.out") $(errs "$T/e.err")"; fi
else
	ko "snapshot without --stop" "no 3 lines: $(errs "$T/d.err")"
fi

# 5. Mismatches KVM must see: CPU features this host's KVM lacks (the snapshot's CPUID
# patched: leaf 1 ECX bit 16, reserved, never offered), and a RAM file cut short.
if [ -f "$T/snap/state" ]; then
	cp -r "$T/snap" "$T/cpu" && python3 - "$T/cpu/state" <<'PY'
import struct, sys, zlib
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); off = 16
while off < len(b):
    n = struct.unpack_from('<H', b, off)[0]; name = bytes(b[off + 2:off + 2 + n])
    plen = struct.unpack_from('<Q', b, off + 6 + n)[0]; pay = off + 14 + n
    if name == b'vcpu:0':
        nent = struct.unpack_from('<I', b, pay + 4)[0]
        for i in range(nent):
            e = pay + 8 + 40 * i
            if struct.unpack_from('<I', b, e)[0] == 1:
                struct.pack_into('<I', b, e + 20, struct.unpack_from('<I', b, e + 20)[0] | 1 << 16)
        struct.pack_into('<I', b, pay + plen, zlib.crc32(bytes(b[off:pay + plen])))
    off = pay + plen + 4
open(p, 'wb').write(b)
PY
	$LKVM run --restore "$T/cpu" < /dev/null > "$T/cpu.out" 2> "$T/cpu.err"; rc=$?
	if [ $rc = 1 ] && grep -q "the snapshot's guest was given CPU features this host's KVM lacks: cpuid 1.0 ecx bit 16" "$T/cpu.err" &&
	   [ "$(sed '/kvm_pvm/d' "$T/cpu.err" | wc -l)" = 1 ]; then
		ok "a snapshot whose guest had a CPU feature this host lacks is refused: $(sed '/kvm_pvm/d' "$T/cpu.err" | cut -c1-120)..."
	else ko "CPU feature check" "status $rc: $(errs "$T/cpu.err")"; fi
	cp -r "$T/snap" "$T/short" && truncate -s 1M "$T/short/memory"
	$LKVM run --restore "$T/short" < /dev/null > "$T/short.out" 2> "$T/short.err"; rc=$?
	if [ $rc = 1 ] && grep -q "short/memory: guest RAM file of 1048576 bytes, the VM has 268435456" "$T/short.err"; then
		ok "a RAM file cut short is refused: $(sed '/kvm_pvm/d' "$T/short.err" | cut -c1-110)..."
	else ko "short RAM file" "status $rc: $(errs "$T/short.err")"; fi
fi

# 6. A writable raw disk: refused without --disk-copy (the VM runs on), copied with it.
head -c 1048576 /dev/urandom > "$T/raw.img"
$LKVM run --flat --name f -k "$G" -d "$T/raw.img" < /dev/null > "$T/f.out" 2> "$T/f.err" & f=$!; pids="$pids $f"
if wait_for "$T/f.out" '^n=2 ' 120; then
	$LKVM snapshot f "$T/snap3" > "$T/s3a.out" 2>&1; r1=$?
	gone=0; [ -e "$T/snap3" ] || gone=1
	$LKVM snapshot f "$T/snap3" --disk-copy > "$T/s3b.out" 2>&1; r2=$?
	n3=$(last_n "$T/f.out")
	wait_for "$T/f.out" "^n=$((n3 + 2)) " 60; going=$?
	$LKVM stop f > /dev/null 2>&1; wait $f
	$LKVM run --restore "$T/snap3" --name g < /dev/null > "$T/g.out" 2> "$T/g.err" & gp=$!; pids="$pids $gp"
	wait_for "$T/g.out" '^n=' 60; $LKVM stop g > /dev/null 2>&1; wait $gp; r3=$?
	if [ $r1 = 1 ] && [ $gone = 1 ] && grep -q "disk 0 (.*raw.img) is a raw image the VM writes: give --disk-copy" "$T/s3a.out" &&
	   [ $r2 = 0 ] && cmp -s "$T/raw.img" "$T/snap3/disk0.raw" && [ $going = 0 ] && [ $r3 = 0 ] && [ -n "$(fields "$T/g.out")" ] &&
	   [ ! -e "$T/snap3/disk0.qcow2" ]; then
		ok "a writable raw disk: refused without --disk-copy ($(head -n 1 "$T/s3a.out" | cut -c1-60)...), copied with it; restored over the copy"
	else ko "raw disk" "without: $r1 (dir gone $gone) $(cat "$T/s3a.out"); with: $r2, went on $going, restore $r3: $(errs "$T/g.err")"; fi
else
	ko "raw disk" "no 2 lines: $(errs "$T/f.err")"
fi

echo "snapshot: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
