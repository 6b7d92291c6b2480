#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# The sluice benchmark (issue 5), on loopback and bounded in time. Starts a
# fixed nginx upstream (~100-byte JSON 200), redis-server, sluice with the
# redis and the local store, sluice's reject path with both stores, and the
# references (nginx proxy_pass + limit_req, nginx's 429 path, HAProxy with a
# stick table), each with one worker; runs wrk against each in interleaved
# rounds and records req/s, p50/p99 and the CPU the proxy and Redis spent per
# request; the cache hit path (sluice's cache against nginx proxy_cache, one
# URL); then the memory runs (10,000 idle keep-alive connections,
# 1,000,000 keys in the local store). Writes docs/benchmarks.md.
#
#   bench/run.sh                 # full run, about 10 minutes
#   QUICK=1 bench/run.sh         # about 2-3 minutes
#
# Knobs (environment):
#   QUICK=1              3 rounds of 3 s, 1 s warm-up, no reclaim run
#   ROUNDS, DURATION     rounds per configuration, seconds per wrk round
#   CONNECTIONS, THREADS wrk connections (64) and threads (1)
#   CONFIGS              space-separated subset of the configurations below
#   PIN=0                do not pin: by default the proxy under test gets the
#                        last CPU, wrk + upstream + Redis the others
#   REDIS_CPU            CPUs for redis-server (default: with wrk and the upstream)
#   SLUICE_BIN           use this binary instead of building bench/build/sluice
#   REQUIRE_SLUICE=1     fail if sluice cannot be built or started
#   NOISE_MAX, NOISE_RETRIES, RETRY_BUDGET
#                        a round during which other processes used more than
#                        NOISE_MAX % of a CPU (25) is run again, up to
#                        NOISE_RETRIES times (2), within RETRY_BUDGET seconds
#                        for the whole run (60, QUICK 30); the quietest
#                        attempt is kept
#   MEMORY=0             skip the memory runs
#   KEYS, IDLE_CONNS     sizes of the memory runs (1000000, 10000)
#   RECLAIM_KEYS         keys per batch of the reclaim run (300000)
#   RECLAIM=0/1          second local-store run checking that expired keys'
#                        memory is reused (default 1, 0 with QUICK)
#   DOC=path, WRITE_DOC=0   where to write the report, or don't
#   KEEP_RUN_DIR=1       keep the temp dir with logs and raw results
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY="python3 $HERE/lib/bench.py"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-3}; RECLAIM=${RECLAIM:-0}; WARMUP=${WARMUP:-1}
    RETRY_BUDGET=${RETRY_BUDGET:-30}
else
    ROUNDS=${ROUNDS:-5}; DURATION=${DURATION:-8}; RECLAIM=${RECLAIM:-1}
    RETRY_BUDGET=${RETRY_BUDGET:-60}
fi
NOISE_MAX=${NOISE_MAX:-25}
NOISE_RETRIES=${NOISE_RETRIES:-2}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PIN=${PIN:-1}
MEMORY=${MEMORY:-1}
KEYS=${KEYS:-1000000}
IDLE_CONNS=${IDLE_CONNS:-10000}
RECLAIM_PER=${RECLAIM_PER:-5}
RECLAIM_KEYS=${RECLAIM_KEYS:-300000}
WARMUP=${WARMUP:-2}
DOC=${DOC:-$ROOT/docs/benchmarks.md}
WRITE_DOC=${WRITE_DOC:-1}
REQUIRE_SLUICE=${REQUIRE_SLUICE:-0}
BUILD_DIR=${BUILD_DIR:-$HERE/build}
ALL_CONFIGS="direct nginx_limit haproxy sluice_redis sluice_local nginx_reject sluice_reject_redis sluice_reject_local nginx_cache sluice_cache sluice_hot_lease sluice_mixed sluice_mixed_lease"
CONFIGS=${CONFIGS:-$ALL_CONFIGS}

. "$HERE/lib/common.sh"

ensure_tools

# 10,000 idle connections need 10,000 descriptors in sluice and in the client
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 200)) ]; then
    ulimit -n $((IDLE_CONNS + 1000)) 2>/dev/null \
        || log "warning: ulimit -n is $(ulimit -n), the idle-connection run may fail"
fi

NPROC=$(nproc)
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ]; then
    PROXY_CPU=$((NPROC - 1))
    LOAD_CPU="0-$((NPROC - 2))"
    [ "$NPROC" = 2 ] && LOAD_CPU=0
    PINNING="proxy under test on CPU $PROXY_CPU; wrk, upstream and redis-server on CPU $LOAD_CPU"
else
    PROXY_CPU="0-$((NPROC - 1))"
    LOAD_CPU="0-$((NPROC - 1))"
    PINNING="none"
fi

RUN_DIR=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$RUN_DIR"    # nginx workers run as nobody
export BENCH_PORTS_FILE=$RUN_DIR/ports
RESULTS=$RUN_DIR/results.jsonl
MEM=$RUN_DIR/mem.jsonl
: >"$RESULTS"
: >"$MEM"
NOTES=()

want() { [[ " $CONFIGS " == *" $1 "* ]]; }

build_sluice Release
if [ "$HAVE_SLUICE" = 0 ]; then
    [ "$REQUIRE_SLUICE" = 1 ] && die "sluice is required (REQUIRE_SLUICE=1) but not available"
    NOTES+=("sluice did not build at this commit; only the references ran")
fi

# ---------------------------------------------------------------- start

log "run dir $RUN_DIR; $NPROC CPUs; pinning: $PINNING"
start_upstream "$LOAD_CPU"
PORT_direct=$UPORT
PID_direct=$PID_upstream

start_redis "${REDIS_CPU:-$LOAD_CPU}"

for name in nginx_limit nginx_reject nginx_cache; do
    want "$name" || continue
    port=$($PY freeport 1)
    printf -v "PORT_$name" '%s' "$port"
    tmpl=$HERE/conf/nginx-limit.conf
    [ "$name" = nginx_reject ] && tmpl=$HERE/conf/nginx-reject.conf
    [ "$name" = nginx_cache ] && tmpl=$HERE/conf/nginx-cache.conf
    mkdir -p "$RUN_DIR/$name-tmp"
    render "$tmpl" "$RUN_DIR/$name.conf" DIR="$RUN_DIR" NAME="$name" PORT="$port" UPORT="$UPORT"
    start "$name" "$PROXY_CPU" "$NGINX" -p "$RUN_DIR" -e "$RUN_DIR/$name.err" -c "$RUN_DIR/$name.conf"
    wait_up "$name" "$port" || die "$name did not start"
done

if want haproxy; then
    PORT_haproxy=$($PY freeport 1)
    render "$HERE/conf/haproxy.cfg" "$RUN_DIR/haproxy.cfg" DIR="$RUN_DIR" NAME=haproxy \
        PORT="$PORT_haproxy" UPORT="$UPORT"
    start haproxy "$PROXY_CPU" "$HAPROXY" -db -f "$RUN_DIR/haproxy.cfg"
    wait_up haproxy "$PORT_haproxy" || die "haproxy did not start"
fi

if [ "$HAVE_SLUICE" = 1 ]; then
    sluice_conf sluice_redis "$REDIS_STORE" ip "$HUGE" 1s "$HUGE"
    sluice_conf sluice_local "$LOCAL_STORE" ip "$HUGE" 1s "$HUGE"
    sluice_conf sluice_reject_redis "$REDIS_STORE" ip 1 1h 1
    sluice_conf sluice_reject_local "$LOCAL_STORE" ip 1 1h 1
    sluice_conf sluice_cache "$LOCAL_STORE" ip 1 1s 1 "" "$HERE/conf/sluice-cache.conf.in"
    # issue 13.2: a per-tenant limit, every request the same tenant, leased;
    # and 90 % of requests over 10 hot keys, 10 % over 100,000 cold ones,
    # without and with leases (bench/lib/wrk-hot.lua, wrk-mixed.lua)
    sluice_conf sluice_hot_lease "$REDIS_STORE" "header:X-Tenant" "$HUGE" 1s "$HUGE" ", lease = true"
    sluice_conf sluice_mixed "$REDIS_STORE" "header:X-Key" "$HUGE" 1s "$HUGE"
    sluice_conf sluice_mixed_lease "$REDIS_STORE" "header:X-Key" "$HUGE" 1s "$HUGE" ", lease = true"
    for name in sluice_redis sluice_local sluice_reject_redis sluice_reject_local sluice_cache \
            sluice_hot_lease sluice_mixed sluice_mixed_lease; do
        want "$name" || continue
        if ! start_sluice "$name"; then
            NOTES+=("$name did not start")
            [ "$REQUIRE_SLUICE" = 1 ] && die "$name did not start"
            stop "$name"
            CONFIGS=$(printf '%s\n' $CONFIGS | grep -vx "$name" | tr '\n' ' ')
        fi
    done
fi

# every configuration must answer as intended before it is measured: the
# admitting ones 200, the reject ones 429 after their first request
active=()
for name in $CONFIGS; do
    case $name in
        sluice_*) [ "$HAVE_SLUICE" = 1 ] || continue ;;
    esac
    port_var="PORT_$name"
    [ -n "${!port_var:-}" ] || continue
    case $name in
        *reject*)
            $PY probe "${!port_var}" >/dev/null || true
            if ! status=$($PY probe "${!port_var}" --expect 429); then
                log "$name answered $status instead of 429; skipping it"
                NOTES+=("$name answered $status instead of 429 and was skipped")
                continue
            fi ;;
        *)
            if ! status=$($PY probe "${!port_var}" --expect 200); then
                log "$name answered $status instead of 200; skipping it"
                NOTES+=("$name answered $status instead of 200 and was skipped")
                continue
            fi ;;
    esac
    active+=("$name")
done
[ ${#active[@]} -gt 0 ] || die "nothing to measure"

# ---------------------------------------------------------------- rounds

# the wrk script of a configuration: the requests it sends, and the stats line
script_for() {
    case $1 in
        sluice_hot_lease) echo "$HERE/lib/wrk-hot.lua" ;;
        sluice_mixed*) echo "$HERE/lib/wrk-mixed.lua" ;;
        *) echo "$HERE/lib/wrk-stats.lua" ;;
    esac
}

# round NAME N OUT DURATION [RETRY_BUDGET]
round() {
    local name=$1 n=$2 out=$3 dur=$4 port_var="PORT_$1" pid_var="PID_$1" retries=$NOISE_RETRIES
    # the baseline leaves the proxy CPU idle for others to use: that is no noise
    [ "$name" = direct ] && retries=0
    $PY round --config "$name" --round "$n" --port "${!port_var}" --pid "${!pid_var}" \
        --redis-pid "$PID_redis" --upstream-pid "$PID_upstream" --duration "$dur" --connections "$CONNECTIONS" \
        --threads "$THREADS" --cpu "$LOAD_CPU" --script "$(script_for "$name")" --out "$out" \
        --noise-max "$NOISE_MAX" --retries "$retries" --retry-budget "${5:-$RETRY_BUDGET}"
}

log "warm-up: ${WARMUP} s each"
for name in "${active[@]}"; do
    round "$name" 0 "$RUN_DIR/warmup.jsonl" "$WARMUP" 0 >/dev/null
done

log "${ROUNDS} interleaved rounds of ${DURATION} s over: ${active[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for name in "${active[@]}"; do
        round "$name" "$r" "$RESULTS" "$DURATION"
    done
done

for name in "${active[@]}"; do
    case $name in
        sluice_*)
            aport_var="APORT_$name"
            $PY scrape --config "$name" --port "${!aport_var}" --out "$RUN_DIR/metrics.jsonl" ;;
    esac
done

# the throughput instances are done: free the CPU and memory for the memory runs
for name in nginx_reject nginx_cache haproxy sluice_redis sluice_local sluice_reject_redis \
        sluice_reject_local sluice_cache sluice_hot_lease sluice_mixed sluice_mixed_lease; do
    stop "$name"
done

# ---------------------------------------------------------------- memory

if [ "$MEMORY" = 1 ]; then
    log "memory: $IDLE_CONNS idle keep-alive connections"
    if [ -n "${PID_nginx_limit:-}" ]; then
        $PY idle-conns --config nginx_limit --port "$PORT_nginx_limit" --pid "$PID_nginx_limit" \
            --n "$IDLE_CONNS" --out "$MEM" || NOTES+=("idle-connection run against nginx failed")
        stop nginx_limit
    fi
    if [ "$HAVE_SLUICE" = 1 ]; then
        sluice_conf sluice_mem_conns "$REDIS_STORE" ip "$HUGE" 1s "$HUGE"
        if start_sluice sluice_mem_conns; then
            $PY idle-conns --config sluice_mem_conns --port "$PORT_sluice_mem_conns" \
                --pid "$PID_sluice_mem_conns" --n "$IDLE_CONNS" --out "$MEM" \
                || NOTES+=("idle-connection run against sluice failed")
        else
            NOTES+=("sluice for the idle-connection run did not start")
        fi
        stop sluice_mem_conns

        log "memory: $KEYS distinct keys in the local store (held: refill takes 1 h)"
        sluice_conf sluice_mem_keys "$LOCAL_STORE" "header:X-Key" 1 1h 1
        if start_sluice sluice_mem_keys; then
            $PY keys --config sluice_mem_keys --phase held --port "$PORT_sluice_mem_keys" \
                --pid "$PID_sluice_mem_keys" --n "$KEYS" --prefix held --cpu "$LOAD_CPU" \
                --connections "$CONNECTIONS" --max-seconds 150 \
                --script "$HERE/lib/wrk-keys.lua" --out "$MEM" \
                || NOTES+=("many-keys run failed")
        else
            NOTES+=("sluice for the many-keys run did not start")
        fi
        stop sluice_mem_keys

        if [ "$RECLAIM" = 1 ]; then
            log "memory: reclaim: $RECLAIM_KEYS keys that refill in ${RECLAIM_PER} s, wait, $RECLAIM_KEYS more"
            sluice_conf sluice_mem_reclaim "$LOCAL_STORE" "header:X-Key" 1 "${RECLAIM_PER}s" 1
            if start_sluice sluice_mem_reclaim; then
                $PY keys --config sluice_mem_reclaim --phase first --port "$PORT_sluice_mem_reclaim" \
                    --pid "$PID_sluice_mem_reclaim" --n "$RECLAIM_KEYS" --prefix first --cpu "$LOAD_CPU" \
                    --connections "$CONNECTIONS" --max-seconds 150 \
                    --script "$HERE/lib/wrk-keys.lua" --out "$MEM" || true
                sleep $((RECLAIM_PER + 2))
                $PY keys --config sluice_mem_reclaim --phase "second, after ${RECLAIM_PER}s+2s" \
                    --port "$PORT_sluice_mem_reclaim" --pid "$PID_sluice_mem_reclaim" --n "$RECLAIM_KEYS" \
                    --prefix second --cpu "$LOAD_CPU" --connections "$CONNECTIONS" \
                    --max-seconds 150 --script "$HERE/lib/wrk-keys.lua" --out "$MEM" || true
            fi
            stop sluice_mem_reclaim
        fi
    fi
fi

# ---------------------------------------------------------------- report

MODE=full
if [ "$QUICK" = 1 ]; then MODE=quick; fi
export B_NOISE_MAX=$NOISE_MAX
export B_DATE B_CPU B_NPROC B_KERNEL B_SLUICE B_MODE B_ROUNDS B_DURATION B_WRK B_CONNS \
    B_THREADS B_PINNING B_VERSIONS B_COMMAND B_CONFIGS B_NOTES
B_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
B_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
B_NPROC=$NPROC
B_KERNEL=$(uname -r)
B_SLUICE=$SLUICE_DESC
B_MODE=$MODE
B_ROUNDS=$ROUNDS
B_DURATION=$DURATION
B_WRK=$({ wrk -v 2>&1 || true; } | head -n1 | awk '{print $2}')
B_CONNS=$CONNECTIONS
B_THREADS=$THREADS
B_PINNING=$PINNING
B_VERSIONS="$({ "$NGINX" -v 2>&1 || true; } | sed 's/.*version: //'), $({ "$HAPROXY" -v || true; } | awk 'NR == 1 {print "HAProxy " $3}'), redis $({ redis-server --version || true; } | sed 's/.* v=\([^ ]*\).*/\1/')"
B_COMMAND="bench/run.sh"
if [ "$QUICK" = 1 ]; then B_COMMAND="QUICK=1 bench/run.sh"; fi
B_CONFIGS=$ALL_CONFIGS
B_NOTES=$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}")
python3 - "$RUN_DIR/machine.json" <<'EOF'
import json, os, sys
e = os.environ
json.dump({
    "date": e["B_DATE"], "cpu": e["B_CPU"], "nproc": int(e["B_NPROC"]),
    "kernel": e["B_KERNEL"], "sluice": e["B_SLUICE"], "mode": e["B_MODE"],
    "rounds": int(e["B_ROUNDS"]), "duration": int(e["B_DURATION"]), "wrk": e["B_WRK"],
    "connections": int(e["B_CONNS"]), "threads": int(e["B_THREADS"]),
    "pinning": e["B_PINNING"], "versions": e["B_VERSIONS"], "command": e["B_COMMAND"],
    "configs": e["B_CONFIGS"].split(), "noise_max": float(e["B_NOISE_MAX"]),
    "notes": [n for n in e["B_NOTES"].split("\n") if n],
}, open(sys.argv[1], "w"), indent=1)
EOF

if [ "$WRITE_DOC" = 1 ]; then
    mkdir -p "$(dirname "$DOC")"
    $PY report "$RUN_DIR" "$DOC"
else
    $PY report "$RUN_DIR" "$RUN_DIR/benchmarks.md"
    cat "$RUN_DIR/benchmarks.md"
fi
# raw results of the last run (not committed)
mkdir -p "$HERE/results"
cp "$RESULTS" "$MEM" "$RUN_DIR/machine.json" "$RUN_DIR/metrics.jsonl" "$HERE/results/" 2>/dev/null || true
log "done"
