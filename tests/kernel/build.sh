#!/bin/sh
# Build lkvm's test kernel from Debian's linux-source-6.1 with tests/kernel/lkvm.config
# merged onto tinyconfig. Cached in .cache/kernel/<hash of the config>/ (bzImage,
# vmlinux, stripped, for booting; vmlinux.debug with its debug info, for gdb); prints that directory. 8-12 minutes on 2 cores the first time.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
frag=$top/tests/kernel/lkvm.config
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "kernel: $tarball missing: apt-get install linux-source-6.1" >&2; exit 2; }
key=$( (cat "$frag"; ls -l "$tarball") | sha256sum | cut -c1-12)
out=$top/.cache/kernel/$key
done_already() { [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ] && [ -f "$out/vmlinux.debug" ]; }
if done_already; then echo "$out"; exit 0; fi
# One kernel build at a time (it takes both cores), and a second caller reuses the first's result.
mkdir -p "$top/.cache"
exec 9>"$top/.cache/kernel.lock"
flock 9
if done_already; then echo "$out"; exit 0; fi
src=$top/.cache/linux-source-6.1
if [ ! -f "$src/Makefile" ]; then
	echo "kernel: extracting $tarball" >&2
	mkdir -p "$top/.cache"
	rm -rf "$src.tmp" && mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	mv "$src.tmp" "$src"
fi
cd "$src"
start=$(date +%s)
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$frag" >/dev/null
make -s olddefconfig >&2
# Every option the fragment asks for must have survived olddefconfig.
missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=n) opt=${line%=n}; grep -q "^$opt=" .config && { echo "kernel: $opt is still set" >&2; missing=1; } ;;
	CONFIG_*=*) grep -qx "$line" .config || { echo "kernel: $line did not take (dependencies?)" >&2; missing=1; } ;; esac
done < "$frag"
[ $missing = 0 ] || { echo "kernel: fix tests/kernel/lkvm.config" >&2; exit 1; }
make -s -j2 bzImage >&2
# The gdb scripts (lx-dmesg, lx-symbols) beside the tree's vmlinux.
make -s scripts_gdb >&2
mkdir -p "$out"
cp arch/x86/boot/bzImage .config "$out/"
cp vmlinux "$out/vmlinux.debug"
objcopy --strip-debug vmlinux "$out/vmlinux"
echo "kernel: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
