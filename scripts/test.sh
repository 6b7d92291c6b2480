#!/usr/bin/env bash
# Installs what is needed, builds sluice three times (Debug, Debug with
# ASan+UBSan, Release) and runs every test (unit, conf checks, integration)
# under ctest in the first two, the unit tests in the Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE="address;undefined" >/dev/null
cmake --build build-asan -j"$jobs"
# Release: the optimiser sees warnings the Debug build does not
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$jobs"

status=0
echo "== Release build: unit tests =="
(cd build-release && ctest -L unit --output-on-failure --timeout 600) || status=1
echo "== ASan+UBSan build =="
(cd build-asan && ctest --output-on-failure --timeout 600) || status=1
echo "== plain build =="
(cd build && ctest --output-on-failure --timeout 600) || status=1
exit $status
