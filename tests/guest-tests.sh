#!/bin/sh
# The small test guests under lkvm (needs /dev/kvm: run through tests/kvm-env.sh).
# Each guest is checked by its serial output and lkvm's exit status.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init guest
LKVM=$BUILD/lkvm
G=$BUILD/tests/guests
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# run NAME GUEST [ARGS...]: stdout in $T/NAME.out, stderr in $T/NAME.err, status in $rc
run() {
	name=$1 guest=$2; shift 2
	timeout -k 10 60 "$LKVM" run --flat -k "$G/$guest.bin" "$@" < /dev/null > "$T/$name.out" 2> "$T/$name.err"; rc=$?
	# The one-line notice on hosts whose KVM emulates ring 0 is expected.
	sed -i '/emulates guest ring 0 (kvm_pvm)/d' "$T/$name.err"
}
has() { tr -d '\r' < "$T/$1.out" | grep -qx -- "$2"; }
why() { echo "status $rc, out: $(head -c 200 "$T/$1.out" | tr '\n' '|') err: $(head -c 300 "$T/$1.err" | tr '\n' '|')"; }

run hello hello16
if [ $rc = 0 ] && has hello "hello from real mode" && has hello "hello through int 10h"; then pass "real-mode serial output, direct and through the BIOS"; else fail hello "$(why hello)"; fi

run hello-flat hello16 --flat=0x20000
if [ $rc = 0 ] && has hello-flat "hello through int 10h"; then pass "--flat=0x20000 loads and enters there"; else fail "--flat=0x20000" "$(why hello-flat)"; fi

run pm32 pm32
if [ $rc = 0 ] && has pm32 "hello from protected mode, cr0 00000011"; then pass "32-bit protected mode: GDT, CR0.PE, far jump"; else fail pm32 "$(why pm32)"; fi

run lm64 lm64
if [ $rc = 0 ] && has lm64 "hello from long mode" && has lm64 "mmio ffffffff" && has lm64 "done" &&
   tr -d '\r' < "$T/lm64.out" | grep -q '^pci 00:00.0 id [0-9a-f]\{4\}8086$'; then
	pass "long mode: serial, PCI config 0xcf8/0xcfc, unclaimed MMIO reads all ones, unclaimed port survives"
else fail lm64 "$(why lm64)"; fi

# The BIOS as Linux's setup code calls it; the memory answers follow -m.
for mib in 256 64; do
	run bios$mib bios16 -m $mib
	exp=$T/bios$mib.exp
	{
		echo "int10-0f ax=5003 bh=00"; echo "int10-03 dx=0000"; echo "int10-12 bl=10"
		echo "int11 ax=0820"; echo "int12 ax=027f"
		echo "e820 0000000000000000 000000000009fc00 1"
		echo "e820 000000000009fc00 0000000000000400 2"
		printf 'e820 0000000000100000 %016x 1\n' $(((mib - 1) * 1048576))
		echo "int15-e801 cf=0 ax=3c00 bx=$(printf %04x $(((mib - 16) * 16))) cx=3c00 dx=$(printf %04x $(((mib - 16) * 16)))"
		k=$(((mib - 1) * 1024)); [ $k -gt 65535 ] && k=65535
		echo "int15-88 cf=0 ax=$(printf %04x $k)"
		echo "int15-2401 cf=0 ah=00"; echo "int15-2402 cf=0 al=01"; echo "int15-2403 cf=0 bx=0003"
		echo "int15-c0 cf=0 ah=00 model=fc"; echo "int15-ec00 cf=0"; echo "int15-99 cf=1 ah=86"
		echo "int16-01 zf=1"; echo "int16-02 al=00"; echo "int13-08 cf=1"; echo "int60 ax=1234 bx=5678"; echo "bios done"
	} > "$exp"
	missing=$(tr -d '\r' < "$T/bios$mib.out" | grep -vxF -f - "$exp" | tr '\n' '|')
	n820=$(tr -d '\r' < "$T/bios$mib.out" | grep -c '^e820 ')
	count=$(tr -d '\r' < "$T/bios$mib.out" | sed -n 's/^e820-count n=\([0-9a-f]*\) cf=1$/\1/p')
	if [ $rc = 0 ] && [ -z "$missing" ] && [ -n "$count" ] && [ $((0x$count)) = "$n820" ]; then
		pass "BIOS services with -m $mib: int 10h/11h/12h/13h/16h, int 15h e820 ($n820 entries)/e801/88h/A20/C0h/EC00h, unknown function fails"
	else fail "BIOS services -m $mib" "missing: $missing count '$count' for $n820 entries: $(why bios$mib)"; fi
done
# int 1Ah: the host's UTC date and time, ticks since midnight.
o=$(tr -d '\r' < "$T/bios256.out")
gd=$(echo "$o" | sed -n 's/^int1a-04 cf=0 date //p'); gt=$(echo "$o" | sed -n 's/^int1a-02 cf=0 time //p')
gticks=$(echo "$o" | sed -n 's/^int1a-00 ticks=//p')
hs=$(date -u +%s); hmid=$((hs % 86400))
gsecs=$(( $(printf %d 0x${gticks:-0}) * 10000 / 182065 ))
near() { d=$(($1 - $2)); [ ${d#-} -le $3 ]; }
if [ "$gd" = "$(date -u +%Y-%m-%d)" ] && { [ "$gt" = "$(date -u +%H:%M)" ] || [ "$gt" = "$(date -u -d '-1 min' +%H:%M)" ]; } &&
   { near $gsecs $hmid 90 || [ $hmid -lt 120 ]; }; then
	pass "BIOS int 1Ah: date $gd, time $gt, ${gsecs}s since midnight from the RTC"
else fail "BIOS int 1Ah" "guest '$gd $gt' ${gsecs}s, host $(date -u '+%Y-%m-%d %H:%M') ${hmid}s"; fi

run reset reset
if [ $rc = 0 ] && has reset "R" && ! grep -q . "$T/reset.err"; then pass "i8042 reset ends the VM with status 0"; else fail reset "$(why reset)"; fi

run triple triple
# On AMD, KVM resets the vCPU before reporting a shutdown: the dump shows the reset state, and
# lkvm must then say the registers are not where the guest was (and only then).
at_reset=no; grep -q "rip 000000000000fff0" "$T/triple.err" && grep -q "cs  f000" "$T/triple.err" && at_reset=yes
said=no; grep -q "registers of a CPU just reset" "$T/triple.err" && said=yes
if [ $rc = 2 ] && has triple "triple fault ahead" && grep -q "triple fault" "$T/triple.err" && grep -q "rip " "$T/triple.err" &&
   [ $at_reset = $said ]; then
	pass "triple fault in protected mode: status 2 and a register dump (reset state: $at_reset, and said so: $said)"
else fail triple "reset state $at_reset, said so $said: $(why triple)"; fi

run rtc rtc
got=$(tr -d '\r' < "$T/rtc.out" | sed -n 's/^date //p')
now=$(date -u '+%Y-%m-%d %H:%M'); before=$(date -u -d '-1 min' '+%Y-%m-%d %H:%M')
if [ $rc = 0 ] && { [ "$got" = "$now" ] || [ "$got" = "$before" ]; }; then pass "RTC reads the host's UTC date and time ($got)"; else fail rtc "guest '$got', host '$now': $(why rtc)"; fi

run pit pit
if [ $rc = 0 ] && has pit "ticks 100"; then pass "PIT interrupts through the in-kernel PIC (100 ticks)"; else fail pit "$(why pit)"; fi

run ioapic ioapic -c 2
if [ $rc = 0 ] && tr -d "\r" < "$T/ioapic.out" | grep -qx "ioapic pin [0-9]* ticks 100"; then
	pass "PIT interrupts through the IOAPIC pin the MP table names for IRQ 0 and the LAPIC (100 ticks)"
else fail ioapic "$(why ioapic)"; fi

for n in 1 2 4; do
	run smp$n smp -c $n
	ids=$(tr -d '\r' < "$T/smp$n.out" | sed -n 's/^cpu apic //p' | sort | tr '\n' ' ')
	want=$(seq 0 $((n - 1)) | tr '\n' ' ')
	if [ $rc = 0 ] && has smp$n "cpus $n" && [ "$ids" = "$want" ]; then pass "-c $n: every vCPU started and reported its APIC id ($ids)"; else fail "smp -c $n" "ids '$ids' want '$want': $(why smp$n)"; fi
done

run emul-off emul --no-emulate
if [ $rc = 2 ] && grep -q "f3 0f b8" "$T/emul-off.err" && grep -q "rip " "$T/emul-off.err"; then
	pass "--no-emulate: KVM's emulation failure stops the VM with the instruction bytes (f3 0f b8)"
else fail "emulation failure report" "$(why emul-off)"; fi
run emul emul
if [ $rc = 0 ] && has emul "popcnt 00000020" && has emul "popcnt64 0000000000000040" && has emul "popcnt16 12340010"; then
	pass "popcnt (32/64/16-bit) on MMIO emulated in lkvm (KVM's emulator lacks it)"
else fail emul "$(why emul)"; fi

# Every port, string I/O and unbacked MMIO from a hostile guest: lkvm survives.
# Kernels QEMU's -kernel also boots: Multiboot (its header's address fields, and an ELF one) and
# i386 ELF with a PVH note. Each guest checks what lkvm handed it (EAX magic, the info
# structure) and prints it; the test checks the guest saw the command line, the memory and the
# initrd lkvm put there (flags 0x24d: memory, command line, modules, memory map, loader name).
E=$BUILD/tests/guests/elf
printf 'module-bytes-1234567\n' > "$T/mod.img"
for mb in mb32.bin mbelf.elf; do
	timeout -k 10 60 "$LKVM" run -k "$E/$mb" -m 64 -i "$T/mod.img" --no-default-params -p "hello-from-mb $mb" \
		< /dev/null > "$T/$mb.out" 2> "$T/$mb.err"; rc=$?
	if [ $rc = 0 ] && has "$mb" "mb magic ok, flags 0000024d" && has "$mb" "mb mem_lower 639 mem_upper 64512" &&
	   has "$mb" "mb cmdline hello-from-mb $mb" && has "$mb" "mb mods 1 size 21" && has "$mb" "mb loader lkvm" &&
	   tr -d '\r' < "$T/$mb.out" | grep -q '^mb mmap bytes [1-9][0-9]* first type 1$'; then
		pass "Multiboot kernel ($mb): EAX magic, memory, e820 map, command line, initrd as module 0"
	else fail "Multiboot kernel ($mb)" "$(why "$mb")"; fi
done
timeout -k 10 60 "$LKVM" run -k "$E/pvh32.elf" -m 64 --no-default-params -p "hello-from-pvh32" \
	< /dev/null > "$T/pvh32.out" 2> "$T/pvh32.err"; rc=$?
if [ $rc = 0 ] && has pvh32 "pvh32 start info ok, cmdline hello-from-pvh32"; then
	pass "i386 ELF kernel with a PVH note: entered with the start info and the command line"
else fail "i386 ELF PVH kernel" "$(why pvh32)"; fi

run hostile hostile -m 256 --network mode=none	# its MMIO sweep expects no device BARs
if [ $rc = 0 ] && has hostile "hostile done" && ! grep -q "lkvm" "$T/hostile.err"; then
	pass "hostile guest: all ports, string I/O, MMIO above RAM; unclaimed reads all ones"
else fail hostile "$(why hostile)"; fi

# Seccomp on (the default) must not get in the way; off must also work.
run hello-noseccomp hello16 --no-seccomp
[ $rc = 0 ] && has hello-noseccomp "hello from real mode" && pass "--no-seccomp" || fail "--no-seccomp" "$(why hello-noseccomp)"

# Twenty small VMs at once on this 2-core machine all complete.
i=0; while [ $i -lt 20 ]; do timeout -k 10 120 "$LKVM" run --flat -k "$G/hello16.bin" -m 16 < /dev/null > "$T/many$i.out" 2>&1 & i=$((i + 1)); done
wait
n=0; i=0; while [ $i -lt 20 ]; do grep -q "hello through int 10h" "$T/many$i.out" && n=$((n + 1)); i=$((i + 1)); done
[ $n = 20 ] && pass "20 VMs at once all complete" || fail "20 VMs at once" "$n of 20 completed"

# SIGTERM ends a running VM with status 143, and its disk is flushed on the way out.
if need_tool strace strace "SIGTERM flush"; then
	dd if=/dev/zero of="$T/term.img" bs=1M count=1 2>/dev/null
	strace -f -qq -e trace=fdatasync -o "$T/term.trace" "$LKVM" run --flat -k "$G/counter.bin" -d "$T/term.img" \
		--network mode=none < /dev/null > "$T/term.out" 2>&1 &
	i=0; while [ $i -lt 100 ] && ! grep -q done "$T/term.out"; do sleep 0.1; i=$((i + 1)); done
	pkill -TERM -f "run --flat -k $G/counter.bin -d $T/term.img"
	wait $!; rc=$?
	if [ $rc = 143 ] && grep -q 'fdatasync(.*= 0' "$T/term.trace"; then
		pass "SIGTERM: status 143, the disk flushed (fdatasync) on the way out"
	else
		fail "SIGTERM flush" "status $rc, trace: $(tr '\n' '|' < "$T/term.trace" | head -c 300)"
	fi
fi

suite_end
