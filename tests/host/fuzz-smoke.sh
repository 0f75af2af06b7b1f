#!/bin/sh
# Every libFuzzer target for a short smoke run (make fuzz runs them longer):
# FUZZ_SMOKE_SECONDS each (default 5). They are always ASan+UBSan builds of
# their own, so a SANITIZE=1 run leaves them to the plain make check (a named skip).
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/suite.sh
suite_init fuzz-smoke
case $BUILD in
*-san) skip fuzz-smoke "the fuzz targets are sanitized builds of their own; the plain make check runs them"
	suite_end; exit ;;
esac
if ! need_tool clang "clang libclang-rt-14-dev" fuzz-smoke; then suite_end; exit; fi
FUZZ_SUITE=fuzz-smoke exec sh tests/fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-5}"
