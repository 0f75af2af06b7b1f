#!/bin/sh
# Device-layer benchmarks on the host (no KVM, no VM): build bench/devices.c
# against lkvm's library objects and run it; it prints a markdown section
# ("### Device layer ...") on stdout, progress on stderr. Arguments go to the
# program (-r REPETITIONS, default 5; -w blk,aio,alloc,9p,net,tap: only those rows). Its
# files live in a fresh mkdtemp directory under $TMPDIR (default /tmp), removed
# at the end. The tap rows need CAP_NET_ADMIN (root): they run in a network
# namespace of the program's own and never touch the host's network; without
# the capability the table says they were skipped.
set -e
cd "$(dirname "$0")/.."
B=${BUILD:-build}
make --no-print-directory -s -j"$(nproc)" BUILD="$B" "$B/bench/devices" >&2
exec "$B/bench/devices" "$@"
