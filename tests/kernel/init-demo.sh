# /etc/lkvm-init of `make demo`: an interactive busybox shell on the console.
echo
echo "lkvm demo: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) CPUs, $(sed -n 's/^MemTotal: *//p' /proc/meminfo) RAM"
echo "Type 'poweroff' (or press Ctrl-A x) to leave."
echo
hostname lkvm-demo
export PS1='lkvm-demo:\w# ' HOME=/root
setsid cttyhack sh -l
poweroff -f
