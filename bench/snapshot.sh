#!/bin/sh
# Snapshot figures; needs /dev/kvm where Linux user space runs (bench/run.sh runs it through
# tests/kvm-env.sh, so the nested machine on hosts like ours). Prints markdown.
#   1. Our test kernel and a busybox initramfs (bench/snap-init.sh): fork to the guest's
#      first console byte, booting cold (init's first byte) against restoring a snapshot
#      taken at that point (the guest prints without pause: its first byte comes at once).
#   2. N VMs (-m 256) at once, each idle in user space: booted, against N restored from one
#      snapshot of the same guest: total RSS, PSS and private memory of the lkvm processes.
#      N is 20 (BENCH_SNAP_VMS), 4 in the nested machine: 8 or 20 Linux guests at once there
#      crashed its kernel or locked it up (docs/kvm-hosts.md).
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
LKVM=$(pwd)/$B/lkvm
O=$B/bench
K=$(cat .cache/kernel/current 2>/dev/null)/bzImage
RUNS=${BENCH_SNAP_RUNS:-10}
if [ -n "${LKVM_ENV_NESTED:-}" ]; then N=${BENCH_SNAP_VMS:-4}; else N=${BENCH_SNAP_VMS:-20}; fi
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
trap '"$LKVM" stop --all > /dev/null 2>&1; rm -rf "$T"' EXIT
# sh has no local variables: each helper counts in its own (ready_n's loop calls wait_for).
wait_for() { w=0; while [ $w -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; w=$((w + 1)); done; return 1; }
[ -x $O/timeit ] || cc -O2 -o $O/timeit bench/timeit.c
sh tests/kernel/mkinitramfs.sh "$T/init.cpio.gz" bench/snap-init.sh || exit 1
BOOT="-k $K -i $T/init.cpio.gz -m 256 --network mode=none"

echo "### Snapshot restore against a cold boot (test kernel, busybox init; $RUNS runs each)"
echo
step "cold boots"
cold=$($O/timeit -k "$RUNS" $LKVM run -q $BOOT -p "quiet loglevel=0 bench_dots" < /dev/null)
step snapshot
$LKVM run -q --name s $BOOT -p "quiet loglevel=0 bench_dots" < /dev/null > "$T/s.out" 2>&1 &
wait_for "$T/s.out" 'R\.\.\.' 300 && $LKVM snapshot s "$T/snap" --stop > "$T/snap.out" 2>&1
wait
step restores
warm=$($O/timeit -k "$RUNS" $LKVM run -q --restore "$T/snap" < /dev/null)
echo "| start | fork to the guest's first console byte (min / median / max ms) |"
echo "|---|---|"
echo "$cold" | sed 's/first-byte ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\) .*/| cold boot to init | \1 \/ \2 \/ \3 |/'
echo "$warm" | sed 's/first-byte ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\) .*/| restore of a snapshot taken there | \1 \/ \2 \/ \3 |/'
echo
echo "Median restore / cold boot: **$(ratio "$(echo "$warm" | med first-byte)" "$(echo "$cold" | med first-byte)" 3)**. The snapshot: $(sed -n 's/.*saved in [^:]*: //p' "$T/snap.out" | tr -d '\r'); its RAM file takes $(du -k "$T/snap/memory" | cut -f1) KiB on disk for 256 MiB."

# Memory of N VMs at once: sums over the lkvm processes (smaps_rollup), supervisors and VMs
# (tree(): a jailed lkvm run, root's default, runs the VM in a child).
measure() {	# label pids...
	label=$1; shift
	rss=0; pss=0; priv=0
	for p in $(for q in "$@"; do tree "$q"; done); do
		set -- $(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {v+=$2} END {print r+0, p+0, v+0}' /proc/$p/smaps_rollup 2>/dev/null)
		rss=$((rss + ${1:-0})); pss=$((pss + ${2:-0})); priv=$((priv + ${3:-0}))
	done
	echo "$label $rss $pss $priv"
}
start_n() {	# prefix args...: N VMs, their pids in $T/prefix.pids
	pre=$1; shift
	: > "$T/$pre.pids"
	i=0; while [ $i -lt $N ]; do
		$LKVM run -q --name $pre$i "$@" < /dev/null > "$T/$pre$i.out" 2>&1 &
		echo $! >> "$T/$pre.pids"
		i=$((i + 1))
	done
}
ready_n() {	# prefix pattern seconds: how many printed pattern
	n=0; r=0; while [ $r -lt $N ]; do wait_for "$T/$1$r.out" "$2" "$3" && n=$((n + 1)); r=$((r + 1)); done; echo $n
}
echo
echo "### $N VMs of 256 MiB at once, idle in user space: booted against restored from one snapshot"
echo
[ -n "${LKVM_ENV_NESTED:-}" ] && [ -z "${BENCH_SNAP_VMS:-}" ] &&
	echo "$N, not 20: this ran in tests/kvm-env.sh's nested machine, which more Linux guests at once crash or lock up (docs/kvm-hosts.md). Outside it the default is 20." && echo
step "$N booted VMs"
start_n boot $BOOT -p "quiet loglevel=0"
nb=$(ready_n boot READY 900)
sleep 10
mb=$(measure booted $(cat "$T/boot.pids"))
$LKVM stop --all > /dev/null 2>&1; wait
step "snapshot for the clones"
$LKVM run -q --name m $BOOT -p "quiet loglevel=0" < /dev/null > "$T/m.out" 2>&1 &
wait_for "$T/m.out" tick 300 && $LKVM snapshot m "$T/msnap" --stop > /dev/null 2>&1
wait
step "$N restored VMs"
start_n clone --restore "$T/msnap" --clone
nc=$(ready_n clone tick 300)
sleep 10
mc=$(measure restored $(cat "$T/clone.pids"))
$LKVM stop --all > /dev/null 2>&1; wait
echo "| $N VMs | ready | total RSS | total PSS | total private |"
echo "|---|---|---|---|---|"
for m in "$mb:$nb" "$mc:$nc"; do
	set -- ${m%:*}
	echo "| $1 | ${m#*:} of $N | $(($2 / 1024)) MiB | $(($3 / 1024)) MiB | $(($4 / 1024)) MiB |"
done
set -- $mb; brss=$2 bpss=$3; set -- $mc
echo
echo "Restored / booted, total RSS: **$(ratio "$2" "$brss" 3)**; total PSS (shared pages counted once across the VMs): **$(ratio "$3" "$bpss" 3)**."
