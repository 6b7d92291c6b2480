#!/usr/bin/env bash
# Installs what is needed, builds sluice twice (plain, and with ASan+UBSan) and
# runs every test (unit, conf checks, integration) under ctest in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE="address;undefined" >/dev/null
cmake --build build-asan -j"$jobs"

status=0
echo "== ASan+UBSan build =="
(cd build-asan && ctest --output-on-failure --timeout 600) || status=1
echo "== plain build =="
(cd build && ctest --output-on-failure --timeout 600) || status=1
exit $status
