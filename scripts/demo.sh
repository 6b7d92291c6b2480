#!/usr/bin/env bash
# Installs what is needed, builds sluice, and starts a small demo upstream on
# 127.0.0.1:9000 and sluice with conf/sluice.conf on 127.0.0.1:8080, both in
# the background. `scripts/demo.sh stop` stops them (by the pids it saved).
set -euo pipefail
cd "$(dirname "$0")/.."
run=build/demo
mkdir -p "$run"

stop() {
    for name in sluice upstream; do
        if [ -f "$run/$name.pid" ]; then
            kill "$(cat "$run/$name.pid")" 2>/dev/null || true
            rm -f "$run/$name.pid"
        fi
    done
}
if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target sluice
stop

python3 tests/integration/upstream.py --port 9000 >"$run/upstream.log" 2>&1 &
echo $! >"$run/upstream.pid"
./build/sluice -c conf/sluice.conf >"$run/sluice.log" 2>&1 &
echo $! >"$run/sluice.pid"

for _ in $(seq 50); do
    if curl -fs -o /dev/null http://127.0.0.1:9901/healthz && curl -s -o /dev/null http://127.0.0.1:9000/; then
        echo "sluice is up on http://127.0.0.1:8080/ (admin http://127.0.0.1:9901/healthz)"
        echo "logs: $run/sluice.log; stop with: scripts/demo.sh stop"
        exit 0
    fi
    sleep 0.1
done
echo "sluice did not come up; see $run/sluice.log" >&2
cat "$run/sluice.log" >&2
stop
exit 1
