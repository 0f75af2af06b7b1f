#!/bin/sh
# lkvm sandbox --snapshot-cache in a real guest: a cold run boots to the agent's ready
# point and saves the VM into the cache; warm runs restore it (no kernel boot: nothing
# on --console-log) and get this run's command, environment, working directory and
# shares through the agent (a file written in the -v share reaches the host), each
# with a random pool of its own; another option makes another entry; a corrupt, a
# stale and another user's entry are refused in one line (the first two rebuilt), and
# so is a cache folder others may write to.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init sandbox-cache
LKVM=$(pwd)/$BUILD/lkvm
K0=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
# The guest's / is this host's (read-only): its shares live in the checkout, not in /tmp.
D=$(mktemp -d "$(pwd)/$BUILD/sandbox-cache.XXXXXX")
chmod 0755 "$D"	# run as root, the sandbox is jailed: its user (nobody) reads this data through the root share
R=$(mktemp -d)
export XDG_RUNTIME_DIR=$R
trap 'rm -rf "$D" "$R"' EXIT
if [ ! -f "$K0" ]; then
	fail "sandbox cache tests" "no test kernel (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi
K=$D/bzImage	# a copy of our own: the stale test changes its mtime
cp "$K0" "$K"
C=$R/cache
SB="$LKVM sandbox -k $K -m 512 --network mode=none --snapshot-cache=$C"
entries() { ls "$C" 2>/dev/null | wc -l; }
ms() { date +%s%N | cut -c1-13; }
lines() { wc -l < "$1"; }
one() { tr '\n' '|' < "$1" | cut -c1-300; }
mkdir "$D/w1" "$D/w2" "$D/w3"
CMD='echo "t=$T cwd=$(pwd)"; echo "written by $T" > "$V/out.txt"; echo "rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")"; exit 9'

# 1. Cold: the entry is made (state, memory, ident; folder 0700), the command ran as always.
t0=$(ms)
(cd "$D/w1" && timeout -k 10 300 $SB --console-log "$D/con1" -e T=one -e V="$D/w1" -v "$D/w1" -- sh -c "$CMD") \
	< /dev/null > "$D/o1" 2> "$D/e1"; rc1=$?; t1=$(ms)
E=$(ls -d "$C"/* 2>/dev/null | head -n 1)
if [ $rc1 = 9 ] && grep -qx "t=one cwd=$D/w1" "$D/o1" && [ "$(cat "$D/w1/out.txt" 2>/dev/null)" = "written by one" ] &&
   [ "$(entries)" = 1 ] && [ -f "$E/state" ] && [ -f "$E/memory" ] && [ -f "$E/ident" ] &&
   [ "$(stat -c %a "$C")" = 700 ] && grep -q "Linux version" "$D/con1" && [ ! -s "$D/e1" ]; then
	pass "cold run ($((t1 - t0)) ms): booted (kernel messages on the console), status 9, its output and share write; entry $(basename "$E") made in a 0700 folder"
else fail "cold run" "rc=$rc1 out '$(one "$D/o1")' err '$(one "$D/e1")' entries $(entries) in $(stat -c %a "$C" 2>&1), share '$(cat "$D/w1/out.txt" 2>&1)'"; fi

# 2. Warm, twice: restored (no boot on the console), this run's -e, cwd, share; pools differ.
for n in 2 3; do
	eval t$n=\$\(ms\)
	(cd "$D/w$n" && timeout -k 10 300 $SB --console-log "$D/con$n" -e T=run$n -e V="$D/w$n" -v "$D/w$n" -- sh -c "$CMD") \
		< /dev/null > "$D/o$n" 2> "$D/e$n"; eval rc$n=\$?
	eval t${n}e=\$\(ms\)
done
ok=1
for n in 2 3; do
	eval rc=\$rc$n
	if [ $rc = 9 ] && grep -qx "t=run$n cwd=$D/w$n" "$D/o$n" && [ "$(cat "$D/w$n/out.txt" 2>/dev/null)" = "written by run$n" ] &&
	   ! grep -q "Linux version" "$D/con$n" && ! grep -q "lkvm sandbox" "$D/e$n"; then :; else
		ok=0; fail "warm run $n" "rc=$rc out '$(one "$D/o$n")' err '$(one "$D/e$n")' share '$(cat "$D/w$n/out.txt" 2>&1)' console $(grep -c "Linux version" "$D/con$n")"
	fi
done
r1=$(sed -n 's/^rand=//p' "$D/o1"); r2=$(sed -n 's/^rand=//p' "$D/o2"); r3=$(sed -n 's/^rand=//p' "$D/o3")
[ $ok = 1 ] && [ "$(entries)" = 1 ] &&
	pass "two warm runs ($((t2e - t2)) and $((t3e - t3)) ms, cold $((t1 - t0)) ms): restored, not booted; each had its own -e, cwd and -v share (written on the host), status 9"
if [ ${#r2} = 32 ] && [ ${#r3} = 32 ] && [ "$r2" != "$r3" ] && [ "$r1" != "$r2" ] && [ "$r1" != "$r3" ]; then
	pass "random pools differ between the two warm runs (and the cold one): $r2 / $r3 / $r1"
else fail "random pools" "'$r1' '$r2' '$r3'"; fi

# 3. Another option that shapes the VM (-c 2): another entry.
timeout -k 10 300 $SB -c 2 -e T=cpus -e V="$D/w3" -v "$D/w3" -- sh -c "$CMD; " < /dev/null > "$D/o4" 2> "$D/e4"; rc=$?
[ $rc = 9 ] && [ "$(entries)" = 2 ] && grep -q "t=cpus" "$D/o4" && pass "-c 2 made an entry of its own (2 now)" ||
	fail "another option" "rc=$rc entries $(entries): $(one "$D/e4")"

# 4. A corrupt entry (a byte of its state flipped): refused in one line, rebuilt, then restored.
size=$(stat -c %s "$E/state")
printf 'X' | dd of="$E/state" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
timeout -k 10 300 $SB --console-log "$D/con5" -e T=five -e V="$D/w1" -v "$D/w1" -- sh -c "$CMD" < /dev/null > "$D/o5" 2> "$D/e5"; rc5=$?
timeout -k 10 300 $SB --console-log "$D/con6" -e T=six -e V="$D/w1" -v "$D/w1" -- sh -c "$CMD" < /dev/null > "$D/o6" 2> "$D/e6"; rc6=$?
if [ $rc5 = 9 ] && [ "$(lines "$D/e5")" = 1 ] && grep -q "state: record .* fails its checksum.*; rebuilding it" "$D/e5" &&
   grep -q "Linux version" "$D/con5" && [ $rc6 = 9 ] && ! grep -q "lkvm sandbox" "$D/e6" && ! grep -q "Linux version" "$D/con6" && grep -q "t=six" "$D/o6"; then
	pass "a corrupt entry: refused in one line ($(cat "$D/e5")), booted and saved again; the next run restored it"
else fail "corrupt entry" "rc $rc5/$rc6: '$(one "$D/e5")' / '$(one "$D/e6")' boot messages $(grep -c "Linux version" "$D/con5")/$(grep -c "Linux version" "$D/con6")"; fi

# 5. Stale: the kernel file changed (its mtime): one line, rebuilt.
touch "$K"
timeout -k 10 300 $SB --console-log "$D/con7" -e T=seven -e V="$D/w1" -v "$D/w1" -- sh -c "$CMD" < /dev/null > "$D/o7" 2> "$D/e7"; rc=$?
[ $rc = 9 ] && [ "$(lines "$D/e7")" = 1 ] && grep -q "is stale (the kernel, initrd or lkvm changed); rebuilding it" "$D/e7" &&
	grep -q "Linux version" "$D/con7" && pass "a stale entry (the kernel's mtime changed): $(cat "$D/e7")" ||
	fail "stale entry" "rc=$rc: '$(one "$D/e7")' boot messages $(grep -c "Linux version" "$D/con7")"

# 6. Another user's entry, an entry others may write to, a folder others may write to: refused, not run.
# (--console-log as in 5: it is part of the key, so these look up the entry 5 rebuilt.)
if [ "$(id -u)" = 0 ]; then
	chown 65534 "$E/memory"
	timeout -k 10 120 $SB --console-log "$D/con8" -e V="$D/w1" -v "$D/w1" -- true < /dev/null > "$D/o8" 2> "$D/e8"; rc8=$?
	chown 0 "$E/memory"
else rc8=1; echo "lkvm sandbox: $E/memory: owned by uid 65534 (not root: not tried)" > "$D/e8"; fi
chmod 0666 "$E/state"
timeout -k 10 120 $SB --console-log "$D/con9" -e V="$D/w1" -v "$D/w1" -- true < /dev/null > "$D/o9" 2> "$D/e9"; rc9=$?
chmod 0600 "$E/state"
chmod 0777 "$C"
timeout -k 10 120 $SB --console-log "$D/con10" -e V="$D/w1" -v "$D/w1" -- true < /dev/null > "$D/o10" 2> "$D/e10"; rc10=$?
chmod 0700 "$C"
if [ $rc8 = 1 ] && [ "$(lines "$D/e8")" = 1 ] && grep -q "memory: owned by uid 65534" "$D/e8" &&
   [ $rc9 = 1 ] && [ "$(lines "$D/e9")" = 1 ] && grep -q "state: writable by others (mode 666" "$D/e9" &&
   [ $rc10 = 1 ] && [ "$(lines "$D/e10")" = 1 ] && grep -q "folder $C: writable by others (mode 777" "$D/e10" && [ -f "$E/state" ] &&
   [ ! -s "$D/con8" ] && [ ! -s "$D/con9" ]; then
	pass "refused, status 1, no VM, one line each: another user's file ($(cat "$D/e8")), a file others may write, a folder others may write"
else fail "others' entries" "$rc8 '$(one "$D/e8")' / $rc9 '$(one "$D/e9")' / $rc10 '$(one "$D/e10")'"; fi
suite_end
