#!/bin/sh
# kvm-env.sh CMD [ARGS...]: run CMD where /dev/kvm works.
#
# Where /dev/kvm can be opened, CMD runs directly. Otherwise (our development
# and CI machines are PVM guests whose KVM does not bind) it runs inside a QEMU
# TCG virtual machine whose emulated CPU has AMD SVM: Debian's kernel with its
# kvm-amd module gives a working /dev/kvm there (nested paging included).
# That machine sees the host's / read-only and this checkout read-write over
# virtio-9p, with a fresh tmpfs /tmp, so CMD runs with the same tools and
# paths. CMD's terminal is the machine's serial console (interactive use works);
# its exit status comes back through a file in the checkout and becomes ours. Everything fetched is cached in .cache/l1/.
#
# The nested machine sometimes stops for good on its own (docs/kvm-hosts.md).
# Its init writes a heartbeat and its kernel log to a second serial port (a
# file here); when the heartbeat stops, that is the machine's stall, not a
# test hanging: kvm-env saves the vCPUs' state (QEMU monitor) and the log
# under .cache/l1/stalls/, says "kvm-env: STALL: ..." and exits 75. A test
# that hangs while the machine lives runs into LKVM_ENV_TIMEOUT instead (124).
# Every trip adds a line to .cache/l1/trips.log (status, seconds, command).
#   LKVM_ENV_TIMEOUT  seconds before giving up (default 1500)
#   LKVM_ENV_STALL    seconds without a heartbeat that make a stall (default 120)
#   LKVM_ENV_FORCE_L1 use the nested machine even if /dev/kvm works (testing)
#   LKVM_ENV_MEM      its memory in MiB (default 4096)
#   LKVM_ENV_TTY=1    CMD is interactive: give it the console as controlling terminal
#   LKVM_ENV_KEEPER=0 no idle VM kept open in it for the whole trip (default 1: see the init)
#   LKVM_ENV_SMP, LKVM_ENV_ACCEL, LKVM_ENV_KPARAMS  its vCPUs (2), QEMU -accel (tcg) and
#                     extra kernel parameters: for measuring stalls
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { echo "usage: kvm-env.sh CMD [ARGS...]" >&2; exit 2; }

if [ -z "${LKVM_ENV_FORCE_L1:-}" ] && [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null; then
	exec "$@"
fi

why="no /dev/kvm"
[ -e /dev/kvm ] && why="/dev/kvm cannot be opened"
[ -n "${LKVM_ENV_FORCE_L1:-}" ] && why="LKVM_ENV_FORCE_L1 is set"
dmesg 2>/dev/null | grep -q "kvm-pvm: this kernel is itself a kvm-pvm guest" && why="$why: this host is a PVM guest whose kvm_pvm does not bind"
echo "kvm-env: $why; running inside a QEMU TCG guest with nested SVM" >&2
# One nested machine at a time on a host (it takes both cores): wait for the running one.
exec 9>"${TMPDIR:-/tmp}/lkvm-nested.lock"
if ! flock -n 9; then
	echo "kvm-env: another nested machine is running; waiting for it" >&2
	flock 9
fi

cache=$top/.cache/l1
mkdir -p "$cache"
for tool in qemu-system-x86_64 cpio gzip busybox; do
	command -v $tool >/dev/null || [ -x /bin/$tool ] || { echo "kvm-env: $tool is missing (see .ci/run for the packages)" >&2; exit 2; }
done

# Debian's generic kernel: it has kvm-amd, 9p, tun, loop and ext4 as modules (the last two for
# the sandbox-jail suite's ext4 work tree on a loop file; ext4 wants crc32c). Fetched once.
if [ ! -f "$cache/vmlinuz" ] || ! grep -qx ext4 "$cache/modules/order" 2>/dev/null; then
	deb=$(sh "$top/tests/kernel/debian-kernel.sh") || exit 2
	pkg=$(basename "$deb")
	rm -rf "$cache/modules" && mkdir -p "$cache/modules"
	cp "$deb/boot/vmlinuz" "$cache/vmlinuz"
	mods=$(echo "$deb"/lib/modules/*/kernel)
	# Load order: dependencies first (modinfo names them).
	add() {
		f=$(find "$mods" -name "$1.ko" | head -n 1)
		[ -n "$f" ] || { echo "kvm-env: module $1 not in $pkg" >&2; return 1; }
		grep -qx "$1" "$cache/modules/order" 2>/dev/null && return 0
		for d in $(/sbin/modinfo -F depends "$f" | tr ',' ' '); do add "$d" || return 1; done
		f=$(find "$mods" -name "$1.ko" | head -n 1)	# the recursion reused $f
		cp "$f" "$cache/modules/"
		echo "$1" >> "$cache/modules/order"
	}
	for m in virtio_pci 9pnet_virtio 9p kvm-amd tun loop crc32c_generic ext4; do add $m || exit 2; done
fi

# The initramfs: busybox, the modules, and an init that mounts the host and runs the job.
# Named by its init's hash: worktrees with different versions of this script share the cache.
init_script=$(sed -n '/^#!\/bin\/busybox sh$/,/^INIT$/p' "$0")
initramfs=$cache/initramfs-$( (echo "$init_script"; cat "$cache/modules/order") | sha256sum | cut -c1-12).cpio.gz
if [ ! -f "$initramfs" ]; then
	ir=$(mktemp -d)
	mkdir -p "$ir/bin" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/host" "$ir/modules"
	cp "$(command -v busybox || echo /bin/busybox)" "$ir/bin/busybox"
	cp "$cache"/modules/* "$ir/modules/"
	cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
# ttyS1 is kvm-env's log file: the whole kernel log, and a heartbeat every 5 s that stops
# when this machine does (the host's watchdog tells that stall from a test that hangs).
if [ -c /dev/ttyS1 ]; then
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	cat /proc/kmsg > /dev/ttyS1 2>&1 &
	(while :; do echo "kvm-env-heartbeat $(cut -d' ' -f1 /proc/uptime)"; sleep 5; done) > /dev/ttyS1 2>&1 &
fi
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "kvm-env: insmod $m failed"; done
job=$(sed -n 's/.*lkvm_job=\([^ ]*\).*/\1/p' /proc/cmdline)
work=$(sed -n 's/.*lkvm_work=\([^ ]*\).*/\1/p' /proc/cmdline)
opts=trans=virtio,version=9p2000.L,msize=1048576,cache=loose
mount -t 9p -o $opts,ro hostroot /host || echo "kvm-env: cannot mount the host root"
# /tmp first: a checkout under /tmp (a CI clone) is mounted over the fresh tmpfs, not hidden by it.
mount -t tmpfs tmp /host/tmp; mount -t proc proc /host/proc; mount -t sysfs sys /host/sys
mkdir -p "/host$work" 2>/dev/null
mount -t 9p -o $opts work "/host$work" || echo "kvm-env: cannot mount $work"
mount -t devtmpfs dev /host/dev; mkdir -p /host/dev/pts; mount -t devpts pts /host/dev/pts
ksyms=$(sed -n 's/.*lkvm_ksyms=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$ksyms" ] && cat /proc/kallsyms > "/host$ksyms"
mount -t tmpfs run /host/run 2>/dev/null
ip link set lo up	# 127.0.0.1 for the tests' own servers (user-mode networking)
[ -c /dev/kvm ] || echo "kvm-env: no /dev/kvm in the nested machine"
# The keeper (lkvm_keeper=1, the default): one idle VM with one vCPU for the whole trip,
# made before the job starts, so that KVM's static keys (the preempt notifiers' in
# __schedule above all) switch on once here and VMs coming and going patch no kernel text:
# that patching is where this machine stalls (docs/kvm-hosts.md).
if grep -q lkvm_keeper=1 /proc/cmdline; then
	chroot /host python3 -c 'import fcntl, os, time
kvm = os.open("/dev/kvm", os.O_RDWR)
vm = fcntl.ioctl(kvm, 0xAE01, 0)	# KVM_CREATE_VM
fcntl.ioctl(vm, 0xAE60, 0)	# KVM_CREATE_IRQCHIP
fcntl.ioctl(vm, 0xAE41, 0)	# KVM_CREATE_VCPU
open("/tmp/.kvm-env-keeper", "w").close()
time.sleep(1 << 30)' > /dev/null 2>&1 &
	i=0; while [ ! -e /host/tmp/.kvm-env-keeper ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -e /host/tmp/.kvm-env-keeper ] || echo "kvm-env: the keeper VM was not ready after 10 s"
	rm -f /host/tmp/.kvm-env-keeper
fi
if grep -q lkvm_tty=1 /proc/cmdline; then
	# Interactive (make demo): the console becomes the job's controlling terminal, so lkvm
	# in it is in the foreground, puts it in raw mode and reads the keyboard.
	setsid cttyhack chroot /host /bin/sh "$job"
else
	chroot /host /bin/sh "$job"
fi
sync
echo 0 > /proc/sys/kernel/printk	# not even the "Power down" line
poweroff -f
INIT
	chmod +x "$ir/init"
	(cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$initramfs.tmp") && mv "$initramfs.tmp" "$initramfs"
	rm -rf "$ir"
fi

# The nested kernel's symbols, for naming where its vCPUs are when it stalls: the first trip
# with this kernel has its init copy /proc/kallsyms into the checkout; kept in the cache after.
ksyms=$cache/kallsyms-$(cksum < "$cache/vmlinuz" | cut -d' ' -f1)
ksyms_arg=
[ -s "$ksyms" ] || { ksyms_arg="lkvm_ksyms=$top/.l1-run/kallsyms-$$"; rm -f "$top/.l1-run/kallsyms-$$"; }

# The job: same directory, the variables that matter, then CMD.
# The same directory when the nested machine has it (the host's / is there read-only,
# but /tmp is its own), else the checkout.
cwd=$(pwd)
job=$cache/job-$$.sh
# CMD's status comes back through the checkout, the one place the nested machine writes
# (.cache may be a symlink to a shared cache, which it sees read-only).
mkdir -p "$top/.l1-run"
rcfile=$top/.l1-run/rc-$$
rm -f "$rcfile"
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
	# LKVM_ENV_NESTED: tests may tell the nested machine's own faults from ours.
	echo "export PATH=$(q "$PATH") HOME=/tmp TERM=$(q "${TERM:-dumb}") XDG_RUNTIME_DIR=/tmp/xdg LKVM_ENV_NESTED=1"
	env | grep -E '^(LKVM_|CI=|SANITIZE=|UBSAN_OPTIONS=|ASAN_OPTIONS=)' | while IFS='=' read -r k v; do echo "export $k=$(q "$v")"; done
	echo "mkdir -p /tmp/xdg && { cd $(q "$cwd") 2>/dev/null || cd $(q "$top"); } || exit 125"
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
	echo "echo \$? > $(q "$rcfile")"
} > "$job"
klog=$cache/klog-$$
mon=$cache/mon-$$.sock
stalled=$cache/stalled-$$
rm -f "$klog" "$mon" "$stalled"
wd=
trap 'rm -f "$job" "$rcfile" "$klog" "$mon" "$stalled"; [ -n "$wd" ] && kill "$wd" 2>/dev/null' EXIT

# The machine's shape; the variables are for measuring its stalls (docs/kvm-hosts.md).
smp=${LKVM_ENV_SMP:-2} accel=${LKVM_ENV_ACCEL:-tcg} kparams=${LKVM_ENV_KPARAMS:-}
[ "${LKVM_ENV_KEEPER:-1}" = 1 ] && kparams="$kparams lkvm_keeper=1"

# qemu's stdio console needs a standard input (CI may run us without one).
{ true 3<&0; } 2>/dev/null || exec </dev/null
exec 3<&0	# qemu runs in the background, where stdin would be /dev/null
start=$(date +%s)
# --foreground: qemu reads the terminal (interactive use); in a process group of
# its own it would be stopped by SIGTTIN.
timeout --foreground "${LKVM_ENV_TIMEOUT:-1500}" qemu-system-x86_64 -M q35 -accel "$accel" -cpu max -smp "$smp" -m "${LKVM_ENV_MEM:-4096}" \
	-nodefaults -no-user-config -display none -no-reboot -chardev stdio,id=con,signal=off -serial chardev:con \
	-chardev file,id=klog,path="$klog" -serial chardev:klog -monitor unix:"$mon",server=on,wait=off \
	-kernel "$cache/vmlinuz" -initrd "$initramfs" \
	-append "console=ttyS0 quiet loglevel=1 panic=-1 nokaslr lkvm_job=$job lkvm_work=$top lkvm_tty=${LKVM_ENV_TTY:-0} $ksyms_arg $kparams" \
	-fsdev local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
	-fsdev local,id=work,path="$top",security_model=passthrough -device virtio-9p-pci,fsdev=work,mount_tag=work \
	<&3 &
qpid=$!

# The watchdog: no heartbeat for LKVM_ENV_STALL seconds (or none within 5 minutes of the
# start) is the machine's stall. The vCPUs' state and the kernel log are kept for the notes
# (nokaslr above: the RIPs there match one /proc/kallsyms of that kernel).
stall=${LKVM_ENV_STALL:-120}
(
	exec 3<&- </dev/null
	last=0 since=$(date +%s) limit=300
	while kill -0 "$qpid" 2>/dev/null; do
		sleep 5
		n=$(grep -c '^kvm-env-heartbeat' "$klog" 2>/dev/null)
		now=$(date +%s)
		if [ "${n:-0}" != "$last" ]; then last=${n:-0} since=$now limit=$stall; continue; fi
		[ $((now - since)) -ge "$limit" ] || continue
		d=$cache/stalls/$(date +%Y%m%d-%H%M%S)-$$
		mkdir -p "$d"
		cp "$klog" "$d/klog" 2>/dev/null
		command -v python3 > /dev/null && python3 "$top/tests/kvm-env-stall.py" "$mon" "$ksyms" > "$d/vcpus" 2>&1
		# Evidence for the notes, not a cure: an NMI wakes a halted vCPU; if the heartbeat then
		# comes back, a wake-up was lost (a timer's interrupt) rather than the machine stuck. The
		# trip ends all the same: its timers were 2 minutes late, and its tests' limits with them.
		poke="no NMI sent (python3 missing)"
		if command -v python3 > /dev/null && python3 "$top/tests/kvm-env-stall.py" --nmi "$mon" > "$d/nmi" 2>&1; then
			sleep 20
			n2=$(grep -c '^kvm-env-heartbeat' "$klog" 2>/dev/null)
			poke="after an NMI to every vCPU, $(( ${n2:-0} - last )) heartbeats in 20 s"
			cp "$klog" "$d/klog-after-nmi" 2>/dev/null
		fi
		echo "$poke" >> "$d/nmi"
		echo "no heartbeat for $((now - since)) s (after $last heartbeats, $((now - start)) s into the trip); vCPUs: $(grep -m2 '^sample 0' "$d/vcpus" 2>/dev/null | cut -d' ' -f3- | tr '\n' ';'); $(grep '^lapic cpu' "$d/vcpus" 2>/dev/null | cut -c1-300 | tr '\n' ';'); $poke; state in $d" > "$stalled"
		kill "$qpid" 2>/dev/null
		break
	done
) &
cmdline="$*"
wd=$!
# A signal (timeout(1) around us, Ctrl-C) must stop the nested machine too:
# the shell runs traps only between commands, so qemu runs in the background.
trap 'kill "$qpid" 2>/dev/null; rm -f "$job" "$rcfile" "$klog" "$mon" "$stalled"; [ -n "$wd" ] && kill "$wd" 2>/dev/null; exit 143' INT TERM
wait "$qpid"
qrc=$?
kill "$wd" 2>/dev/null
[ -n "$ksyms_arg" ] && [ -s "$top/.l1-run/kallsyms-$$" ] && mv "$top/.l1-run/kallsyms-$$" "$ksyms"
rc=$(cat "$rcfile" 2>/dev/null)
secs=$(( $(date +%s) - start ))
trip() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1 ${secs}s smp=$smp accel=$accel kparams='$kparams' $cmdline" | cut -c1-300 >> "$cache/trips.log"; }
if [ -f "$stalled" ]; then
	trip stall
	echo "kvm-env: STALL: the nested machine stopped on its own: $(cat "$stalled")" >&2
	exit 75
fi
if [ -z "$rc" ]; then
	trip timeout
	echo "kvm-env: the nested machine ended without reporting CMD's status (qemu status $qrc: $([ $qrc = 124 ] && echo "timed out after ${LKVM_ENV_TIMEOUT:-1500} s with its heartbeat alive: a test hung" || echo crashed))" >&2
	exit 124
fi
trip "rc=$rc"
exit "$rc"
