# /etc/lkvm-init of `make demo`: an interactive busybox shell on the console.
echo
echo "lkvm demo: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) CPUs, $(sed -n 's/^MemTotal: *//p' /proc/meminfo) RAM"
echo "Type 'poweroff' or 'exit' (or press Ctrl-A x) to leave."
echo
hostname lkvm-demo
export PS1='lkvm-demo:\w# ' HOME=/root
# This kernel has no ACPI, so the kernel's own power-off would only halt: poweroff leaves
# the shell instead, and the lines below end the VM through lkvm's debug-exit port.
echo 'poweroff() { sync; exit 0; }' > /etc/profile
setsid cttyhack sh -l
# Debug-exit port 0xf4: lkvm ends with status 0.
dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null
reboot -f
