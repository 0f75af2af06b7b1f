#!/bin/sh
# On the host, before the KVM suites: build our test kernel, fetch Debian's, and
# make the boot tests' initramfs. All cached under .cache/ (git-ignored).
set -e
cd "$(dirname "$0")/.."
mkdir -p .cache/test-images .cache/kernel
# One at a time (CI starts one early, beside other work; make check's own call then waits).
exec 8> .cache/prepare-kernels.lock
flock 8
sh tests/kernel/build.sh > .cache/kernel/current.tmp && mv .cache/kernel/current.tmp .cache/kernel/current
sh tests/kernel/debian-kernel.sh > /dev/null
sh tests/kernel/mkinitramfs.sh .cache/test-images/init-basic.cpio.gz tests/kernel/init-basic.sh
sh tests/kernel/mkinitramfs.sh .cache/test-images/init-gdb.cpio.gz tests/kernel/init-gdb.sh
