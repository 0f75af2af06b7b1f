#!/bin/sh
# qcow2 interoperability with QEMU's own tools: lkvm's qcow2 code reads what
# qemu-img makes (v2, v3, compressed, zero clusters, backing chains, every
# cluster size and preallocation mode) and what it writes passes
# `qemu-img check` and converts back to the bytes written. The cases are in
# tests/unit/test_qcow2.c; this runs them as their own suite, and says SKIP
# (not a pass) when qemu-img is not installed (Debian package qemu-utils).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1; then
	echo "qcow2-interop: SKIP: qemu-img/qemu-io not installed (apt-get install qemu-utils)"
	echo "qcow2-interop: 0 passed, 0 failed (SKIPPED)"
	exit 0
fi
bin=$BUILD/tests/unit/test_qcow2
[ -x "$bin" ] || make -s "$bin" >/dev/null || { echo "qcow2-interop: 0 passed, 1 failed (build)"; exit 1; }
qemu-img --version | head -n 1
out=$("$bin" 2>&1)
rc=$?
echo "$out"
pass=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -n 1)
fail=$(echo "$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -n 1)
[ -n "$pass" ] || { pass=0; fail=1; }
[ $rc -eq 0 ] || [ "$fail" -gt 0 ] || fail=1
echo "qcow2-interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
