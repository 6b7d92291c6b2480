#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Runs one libFuzzer driver for a bounded time:
#   tests/fuzz/run.sh BUILD_DIR DRIVER [SECONDS] [extra libFuzzer flags...]
# e.g. tests/fuzz/run.sh build-fuzz fuzz_http_request 600
# BUILD_DIR is a CMake build configured with CC=clang -DSL_FUZZ=ON. The
# committed corpus and regressions are read, never written: new inputs go to
# BUILD_DIR/fuzz-work/DRIVER/corpus, crashes to BUILD_DIR/fuzz-work/DRIVER/.
# Minimise a crash with `BIN -minimize_crash=1 -runs=100000 CRASH` and keep
# it in tests/fuzz/regression/DRIVER/ (replayed by ctest from then on).
set -eu
build=$1
driver=$2
seconds=${3:-600}
[ $# -ge 3 ] && shift 3 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/tests/fuzz/$driver
work=$build/fuzz-work/$driver
case $driver in
fuzz_config) dict=$here/dict/config.dict ;;
*) dict=$here/dict/http.dict ;;
esac
[ -x "$bin" ] || { echo "run.sh: $bin not built (configure with CC=clang -DSL_FUZZ=ON)" >&2; exit 2; }
mkdir -p "$work/corpus" "$here/regression/$driver"
# the conf sandbox stops endless loops after ~0.3 s: -timeout well above that
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -dict="$dict" -artifact_prefix="$work/" -print_final_stats=1 "$@" \
    "$work/corpus" "$here/corpus/$driver" "$here/regression/$driver"
