#!/bin/sh
# make demo: install what is missing, build lkvm and the test kernel, and boot
# to an interactive busybox shell on the serial console (poweroff or Ctrl-A x ends it).
set -e
cd "$(dirname "$0")/.."
need="qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio bc:bc flex:flex bison:bison lz4:lz4"
missing=""
for pair in $need; do command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"; done
[ -f /usr/src/linux-source-6.1.tar.xz ] || missing="$missing linux-source-6.1"
[ -f /usr/include/libaio.h ] || missing="$missing libaio-dev"
[ -f /usr/include/zlib.h ] || missing="$missing zlib1g-dev"
[ -f /usr/include/libelf.h ] || missing="$missing libelf-dev"
if [ -n "$missing" ]; then
	echo "demo: installing$missing"
	if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $missing
	else sudo apt-get update -q && sudo apt-get install -y -q $missing; fi
fi
make -j2 all
k=$(sh tests/kernel/build.sh)
mkdir -p .cache/test-images
sh tests/kernel/mkinitramfs.sh .cache/test-images/demo.cpio.gz tests/kernel/init-demo.sh
echo "demo: booting $k/bzImage (2 vCPUs, 512 MiB); Ctrl-A x quits"
if [ -d /sys/module/kvm_pvm ]; then
	# Linux user space does not run under kvm_pvm (README): boot in the nested machine.
	echo "demo: this host's KVM is kvm_pvm; the shell runs in a nested QEMU TCG machine with SVM"
	export LKVM_ENV_FORCE_L1=1 LKVM_ENV_TTY=1
fi
exec sh tests/kvm-env.sh build/lkvm run -k "$k/bzImage" -i .cache/test-images/demo.cpio.gz -c 2 -m 512 -p quiet
