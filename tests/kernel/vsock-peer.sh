#!/bin/sh
# vsock-peer.sh OUT: builds tests/kernel/vsock-peer.c (static, it goes into initramfs) as OUT,
# unless OUT is newer than the source and runs. "Runs" matters in the nested machine: the
# checkout is a cache=loose 9p mount there, and a stall of that machine can leave a binary
# it built empty or cut short on the host, newer than its source all the same.
set -eu
out=$1 src=tests/kernel/vsock-peer.c
if [ -x "$out" ] && [ ! "$src" -nt "$out" ]; then
	# With no arguments the peer exits 2 at once; an empty or cut file cannot.
	rc=0; "$out" > /dev/null 2>&1 || rc=$?
	[ $rc = 2 ] && exit 0
fi
mkdir -p "$(dirname "$out")"
cc -static -O2 -Wall -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
