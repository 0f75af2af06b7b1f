#!/bin/sh
# The measurements themselves; needs /dev/kvm (bench/run.sh runs it through
# tests/kvm-env.sh). Prints markdown for bench/README.md.
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. bench/lib.sh
O=$B/bench
LKVM=$B/lkvm
RUNS=${BENCH_RUNS:-20}
T="timeout 120"	# no single VMM run may hang the benchmark
QEMU=qemu-system-x86_64
# Under kvm_pvm QEMU dies setting MSR 0x10a (IA32_ARCH_CAPABILITIES) unless -cpu host drops it.
QCPU=host
[ -d /sys/module/kvm_pvm ] && QCPU=host,-arch-capabilities
QFAST="-nodefaults -no-user-config -display none -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=4"

echo "### Start-up latency ($RUNS runs each, same PVH guest: one byte on the UART, then exit)"
echo
echo "| VMM | first serial byte (min / median / max ms) | VM exit (min / median / max ms) |"
echo "|---|---|---|"
step start-up
l=$($O/timeit "$RUNS" $LKVM run -q -m 128 -k $O/pvh-exit.elf < /dev/null)
m=$($O/timeit "$RUNS" $QEMU -M microvm,x-option-roms=off,rtc=off -accel kvm -cpu $QCPU -m 128 $QFAST -kernel $O/pvh-exit.elf < /dev/null)
q=$($O/timeit "$RUNS" $QEMU -M q35 -accel kvm -cpu $QCPU -m 128 $QFAST -kernel $O/pvh-exit.elf < /dev/null)
for row in "lkvm|$l" "QEMU -M microvm|$m" "QEMU -M q35|$q"; do
	echo "$row" | sed 's/first-byte ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\) | exit ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\)/\1 \/ \2 \/ \3 | \4 \/ \5 \/ \6/' | sed 's/^/| /; s/$/ |/'
done
le=$(echo "$l" | med exit); me=$(echo "$m" | med exit); qe=$(echo "$q" | med exit)
echo
echo "Median time to VM exit, lkvm / QEMU microvm: **$(ratio "$le" "$me")**; lkvm / QEMU q35: **$(ratio "$le" "$qe")** (goal: at most 0.5 against microvm)."


echo
echo "### Start-up against the bare-KVM floor ($RUNS runs each, the same PVH guest)"
echo
echo "bench/floor_pvh.c opens /dev/kvm, makes one VM, one memory slot and one vCPU, enters the guest and"
echo "runs it until port 0xf4: nothing else (a second row adds KVM_CREATE_IRQCHIP). lkvm with its default user-mode NIC and with none;"
echo "$( [ "$(id -u)" = 0 ] && echo "run as root here, so jailed by default (a supervisor, namespaces, a cgroup): the last row without the jail." || echo "not root here, so not jailed: the last row is the same run." )"
echo
echo "| VMM | first serial byte (min / median / max ms) | VM exit (min / median / max ms) |"
echo "|---|---|---|"
step "start-up floor"
f=$($O/timeit "$RUNS" $O/floor_pvh $O/pvh-exit.elf < /dev/null)
fq=$($O/timeit "$RUNS" $O/floor_pvh $O/pvh-exit.elf irqchip < /dev/null)
ln=$($O/timeit "$RUNS" $LKVM run -q -m 128 -k $O/pvh-exit.elf < /dev/null)
l0=$($O/timeit "$RUNS" $LKVM run -q -m 128 --network mode=none -k $O/pvh-exit.elf < /dev/null)
lj=$($O/timeit "$RUNS" $LKVM run -q -m 128 --network mode=none --no-jail -k $O/pvh-exit.elf < /dev/null)
for row in "bare KVM floor|$f" "bare KVM floor with the in-kernel irqchip|$fq" "lkvm, default user NIC|$ln" "lkvm, no NIC|$l0" "lkvm, no NIC, --no-jail|$lj"; do
	echo "$row" | sed 's/first-byte ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\) | exit ms min \([0-9.]*\) median \([0-9.]*\) max \([0-9.]*\)/\1 \/ \2 \/ \3 | \4 \/ \5 \/ \6/' | sed 's/^/| /; s/$/ |/'
done
fe=$(echo "$f" | med exit)
echo
echo "Median time to VM exit against the floor: lkvm with the default NIC **$(ratio "$(echo "$ln" | med exit)" "$fe")**, without **$(ratio "$(echo "$l0" | med exit)" "$fe")**, without a NIC or the jail **$(ratio "$(echo "$lj" | med exit)" "$fe")** (goal: at most 1.5); the floor with the in-kernel irqchip (a PC board's PIC, IOAPIC and LAPIC, which lkvm makes) $(ratio "$(echo "$fq" | med exit)" "$fe"), and lkvm without a NIC against that: $(ratio "$(echo "$l0" | med exit)" "$(echo "$fq" | med exit)")."

echo
echo "### Exit cost (5000 exits, minus the same guest with 0 exits; median of ${EXIT_PAIRS:-15} such pairs)"
echo
echo "| exit | bare KVM_RUN loop (floor) | lkvm | lkvm / floor |"
echo "|---|---|---|---|"
# One pair (5000 exits, then 0) is noisy: a whole process start and exit is in it. The
# median of EXIT_PAIRS pairs, for the floor and for lkvm alike.
PAIRS=${EXIT_PAIRS:-15}
median_of() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'; }
for kind in pio mmio; do
	step "exit cost $kind"
	bare=$(for i in $(seq "$PAIRS"); do
		b1=$($T $O/bare_kvm $O/exits-$kind-5000.bin | sed -n 's/.*seconds //p')
		b0=$($T $O/bare_kvm $O/exits-$kind-0.bin | sed -n 's/.*seconds //p')
		awk -v a="$b1" -v b="$b0" 'BEGIN { print (a - b) * 1e6 / 5000 }'
	done | median_of)
	lk=$(for i in $(seq "$PAIRS"); do
		t1=$(date +%s.%N); $T $LKVM run -q --flat -m 1 -k $O/exits-$kind-5000.bin < /dev/null; t2=$(date +%s.%N)
		$T $LKVM run -q --flat -m 1 -k $O/exits-$kind-0.bin < /dev/null; t3=$(date +%s.%N)
		awk -v a="$t1" -v b="$t2" -v c="$t3" 'BEGIN { print ((b - a) - (c - b)) * 1e6 / 5000 }'
	done | median_of)
	echo "| $kind | $bare us | $lk us | $(ratio "$lk" "$bare") |"
done

echo
echo "### VMM memory overhead (RSS of the idle VMM, its jail's supervisor included; the guest touches a few pages)"
echo
echo "| -m | lkvm RSS | QEMU microvm RSS | lkvm / QEMU |"
echo "|---|---|---|---|"
for mem in 128 4096; do
	step "memory -m $mem"
	$LKVM run -q -m $mem -k $O/pvh-halt.elf < /dev/null > /dev/null & lp=$!
	$QEMU -M microvm,x-option-roms=off,rtc=off -accel kvm -cpu $QCPU -m $mem $QFAST -kernel $O/pvh-halt.elf < /dev/null > /dev/null & qp=$!
	sleep 3
	lr=0	# a jailed run (root's default) is a supervisor and the VM its child: both count
	for p in $(tree $lp); do lr=$((lr + $(cat /proc/$p/status 2>/dev/null | awk '/^VmRSS:/ {r = $2} END {print r + 0}'))); done
	qr=$(awk "/^VmRSS:/ {print \$2}" /proc/$qp/status)
	kill $lp $qp; wait $lp $qp 2>/dev/null
	echo "| $mem MiB | $((lr / 1024)).$(( (lr % 1024) * 10 / 1024 )) MiB | $((qr / 1024)).$(( (qr % 1024) * 10 / 1024 )) MiB | $(ratio "$lr" "$qr") |"
done

echo
echo "### Size"
echo
strip -o $O/lkvm.stripped $LKVM
ls=$(stat -c %s $O/lkvm.stripped); qs=$(stat -c %s "$(command -v $QEMU)")
echo "| | stripped binary | shared libraries |"
echo "|---|---|---|"
echo "| lkvm | $((ls / 1024)) KiB | $(ldd $LKVM | grep -c '=>') ($(ldd $LKVM | sed -n 's/^\t\([^ ]*\) =>.*/\1/p' | tr '\n' ' ')) |"
echo "| qemu-system-x86_64 | $((qs / 1024)) KiB | $(ldd "$(command -v $QEMU)" | grep -c '=>') |"
echo
echo "lkvm / QEMU binary size: **$(ratio "$ls" "$qs")**"

echo
if [ -d /sys/module/kvm_pvm ]; then
	echo "### Snapshots"
	echo
	echo "Not measured here: kvm_pvm runs no Linux user space. \`LKVM_ENV_FORCE_L1=1 sh tests/kvm-env.sh sh bench/snapshot.sh\` measures them in the nested machine."
	echo
	echo "### Kernel start to init"
	echo
	echo "Not measured here, for the same reason: \`LKVM_ENV_FORCE_L1=1 sh tests/kvm-env.sh sh bench/boot-init.sh\`."
else
	step snapshots
	sh bench/snapshot.sh "$B"
	echo
	sh bench/boot-init.sh "$B"
fi
