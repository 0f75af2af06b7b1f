#!/bin/sh
# Fetch Debian's newest generic kernel package once (apt-get download + dpkg -x,
# never installed) and print the directory holding its files: boot/vmlinuz,
# lib/modules/..., and vmlinux (the uncompressed kernel, extracted here).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
base=$top/.cache/debian
mkdir -p "$base"
# One fetch at a time: make check's first nested trip (kvm-env.sh) and CI's early
# tests/prepare-kernels.sh may both get here.
exec 7> "$base/.lock"
flock 7
if [ -f "$base/current" ] && [ -f "$(cat "$base/current")/vmlinux" ]; then cat "$base/current"; exit 0; fi
pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-amd64-unsigned$' 2>/dev/null | cut -d' ' -f1 | sort -V | tail -n 1)
[ -n "$pkg" ] || { echo "debian-kernel: no linux-image-*-amd64-unsigned known to apt (run apt-get update)" >&2; exit 2; }
dir=$base/$pkg
if [ ! -f "$dir/boot/vmlinuz" ]; then
	echo "debian-kernel: fetching $pkg" >&2
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; echo "debian-kernel: cannot download $pkg" >&2; exit 2; }
	rm -rf "$dir" && mkdir -p "$dir"
	dpkg -x "$tmp"/*.deb "$dir"
	rm -rf "$tmp"
	mv "$dir"/boot/vmlinuz-* "$dir/boot/vmlinuz"
fi
# The uncompressed vmlinux, for the PVH/ELF boot path: find the compressed payload ourselves.
if [ ! -f "$dir/vmlinux" ]; then
	ex=$top/.cache/linux-source-6.1/scripts/extract-vmlinux
	if [ ! -f "$ex" ]; then
		mkdir -p "$top/.cache/extract" && tar -xf /usr/src/linux-source-6.1.tar.xz -C "$top/.cache/extract" --strip-components=1 --wildcards '*/scripts/extract-vmlinux'
		ex=$top/.cache/extract/scripts/extract-vmlinux
	fi
	sh "$ex" "$dir/boot/vmlinuz" > "$dir/vmlinux.tmp" && mv "$dir/vmlinux.tmp" "$dir/vmlinux"
fi
echo "$dir" > "$base/current"
echo "$dir"
