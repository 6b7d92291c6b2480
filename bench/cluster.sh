#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# Redis Cluster sizing (issue 11.5): decisions per second per Redis core, with
# 1 and 3 masters. In one run, on loopback, starts the nginx upstream and
# three Redis setups: a single redis-server (redis://, the reference), a
# cluster of one master holding all 16384 slots and a cluster of three
# masters (redis-cli --cluster create, no replicas); one sluice (one worker)
# per setup and workload; wrk with many keys (bench/lib/wrk-spread.lua, over
# every slot) and with one hot key (bench/lib/wrk-hot.lua), in interleaved
# rounds. Records req/s, p99, sluice's and every redis-server's CPU per
# decision, and the script calls per master (INFO commandstats); writes the
# section "Redis Cluster: 1 and 3 masters" of docs/benchmarks.md and leaves
# the rest of that file alone. About 2 minutes after the build.
#
#   bench/cluster.sh
#
# Knobs (environment):
#   ROUNDS, DURATION, WARMUP  rounds per configuration (3), seconds per wrk
#                        round (3), warm-up seconds per configuration (1)
#   CONNECTIONS, THREADS wrk connections (64) and threads (1)
#   SPREAD_KEYS          distinct keys of the many-keys workload (100000)
#   PIN=0                do not pin: by default sluice gets the last CPU, wrk,
#                        the upstream and every redis-server the others
#   REDIS_CPU            CPUs for the redis-servers
#   CONFIGS              subset of: single_spread single_hot cluster1_spread
#                        cluster1_hot cluster3_spread cluster3_hot
#   NOISE_MAX, NOISE_RETRIES, RETRY_BUDGET   as in bench/run.sh (25, 1, 30)
#   QUIET_WAIT           before the rounds, wait up to this many seconds (60)
#                        for the CPU others use to drop under NOISE_MAX
#   SLUICE_BIN           use this binary instead of building bench/build/sluice
#   DOC=path, WRITE_DOC=0   where to write the section, or only print it
#   KEEP_RUN_DIR=1       keep the temp dir with logs and raw results
set -euo pipefail
# PID_x, PORT_x, NODES_x, URL_x are set and read by name (printf -v, ${!var})
# shellcheck disable=SC2034,SC2154

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY="python3 $HERE/lib/bench.py"
CPY="python3 $HERE/lib/cluster.py"

# the knobs given, for the command line the report shows
GIVEN=""
for v in ROUNDS DURATION WARMUP CONNECTIONS THREADS SPREAD_KEYS PIN REDIS_CPU CONFIGS NOISE_MAX; do
    [ -n "${!v:-}" ] || continue
    if [[ ${!v} == *" "* ]]; then GIVEN+="$v=\"${!v}\" "; else GIVEN+="$v=${!v} "; fi
done
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
SPREAD_KEYS=${SPREAD_KEYS:-100000}
PIN=${PIN:-1}
NOISE_MAX=${NOISE_MAX:-25}
QUIET_WAIT=${QUIET_WAIT:-60}
NOISE_RETRIES=${NOISE_RETRIES:-1}
RETRY_BUDGET=${RETRY_BUDGET:-30}
DOC=${DOC:-$ROOT/docs/benchmarks.md}
WRITE_DOC=${WRITE_DOC:-1}
BUILD_DIR=${BUILD_DIR:-$HERE/build}
ALL_CONFIGS="single_spread single_hot cluster1_spread cluster1_hot cluster3_spread cluster3_hot"
CONFIGS=${CONFIGS:-$ALL_CONFIGS}

. "$HERE/lib/common.sh"

ensure_tools

NPROC=$(nproc)
if [ "$PIN" = 1 ] && [ "$NPROC" -ge 2 ]; then
    PROXY_CPU=$((NPROC - 1))
    LOAD_CPU="0-$((NPROC - 2))"
    [ "$NPROC" = 2 ] && LOAD_CPU=0
    PINNING="sluice on CPU $PROXY_CPU; wrk, upstream and every redis-server on CPU ${REDIS_CPU:-$LOAD_CPU}"
else
    PROXY_CPU="0-$((NPROC - 1))"
    LOAD_CPU="0-$((NPROC - 1))"
    PINNING="none"
fi
REDIS_CPU=${REDIS_CPU:-$LOAD_CPU}

RUN_DIR=$(mktemp -d /tmp/sluice-cluster-bench.XXXXXX)
chmod 755 "$RUN_DIR"    # nginx workers run as nobody
export BENCH_PORTS_FILE=$RUN_DIR/ports
RESULTS=$RUN_DIR/cluster.jsonl
: >"$RESULTS"
NOTES=()

build_sluice Release
[ "$HAVE_SLUICE" = 1 ] || die "sluice did not build"

# ---------------------------------------------------------------- redis

# cluster_node NAME: a cluster-enabled redis-server on a free port, its bus
# on another; sets PORT_NAME
cluster_node() {
    local name=$1 port bus
    read -r port bus <<<"$($PY freeport 2)"
    printf -v "PORT_$name" '%s' "$port"
    start "$name" "$REDIS_CPU" redis-server --bind 127.0.0.1 --port "$port" \
        --cluster-enabled yes --cluster-port "$bus" --cluster-config-file "$name-nodes.conf" \
        --save "" --appendonly no --protected-mode no --dir "$RUN_DIR" --loglevel warning
    wait_up "$name" "$port" || die "redis-server $name did not start"
}

# a store table for sluice_conf: @NAME@ becomes each configuration's prefix
store_for() {
    printf '{ kind = "redis", url = "%s", timeout = "20ms", on_error = "allow", prefix = "@NAME@" }' "$1"
}

log "run dir $RUN_DIR; $NPROC CPUs; pinning: $PINNING"
start_upstream "$LOAD_CPU"

start_redis "$REDIS_CPU"
NODES_single="$PID_redis:$RPORT"
URL_single="redis://127.0.0.1:$RPORT/0"

# one master: --cluster create wants three, so the lone node takes every slot
cluster_node c1a
redis-cli -p "$PORT_c1a" CLUSTER ADDSLOTSRANGE 0 16383 >"$RUN_DIR/c1-addslots.log" 2>&1 \
    || die "CLUSTER ADDSLOTSRANGE failed: $(cat "$RUN_DIR/c1-addslots.log")"
$CPY wait-cluster "$PORT_c1a" || die "the 1-master cluster did not become ready"
NODES_cluster1="$PID_c1a:$PORT_c1a"
URL_cluster1="redis-cluster://127.0.0.1:$PORT_c1a"

for n in c3a c3b c3c; do cluster_node "$n"; done
timeout 60 redis-cli --cluster create "127.0.0.1:$PORT_c3a" "127.0.0.1:$PORT_c3b" \
    "127.0.0.1:$PORT_c3c" --cluster-yes >"$RUN_DIR/c3-create.log" 2>&1 \
    || die "redis-cli --cluster create failed: $(tail -n 5 "$RUN_DIR/c3-create.log")"
$CPY wait-cluster "$PORT_c3a" "$PORT_c3b" "$PORT_c3c" || die "the 3-master cluster did not become ready"
NODES_cluster3="$PID_c3a:$PORT_c3a,$PID_c3b:$PORT_c3b,$PID_c3c:$PORT_c3c"
URL_cluster3="redis-cluster://127.0.0.1:$PORT_c3a,127.0.0.1:$PORT_c3b,127.0.0.1:$PORT_c3c"
log "redis: single $RPORT; 1-master cluster $PORT_c1a; 3-master cluster $PORT_c3a $PORT_c3b $PORT_c3c"

# ---------------------------------------------------------------- sluice

active=()
for cfg in $CONFIGS; do
    setup=${cfg%%_*}
    workload=${cfg#*_}
    url_var="URL_$setup"
    key="header:X-Key"
    [ "$workload" = hot ] && key="header:X-Tenant"
    sluice_conf "$cfg" "$(store_for "${!url_var}")" "$key" "$HUGE" 1s "$HUGE"
    if ! start_sluice "$cfg"; then
        NOTES+=("$cfg: sluice did not start ($({ cat "$RUN_DIR/$cfg.check" "$RUN_DIR/$cfg.log" 2>/dev/null || true; } | head -c 300 | tr '\n' ' '))")
        stop "$cfg"
        continue
    fi
    port_var="PORT_$cfg"
    if ! status=$($PY probe "${!port_var}" --expect 200); then
        log "$cfg answered $status instead of 200; skipping it"
        NOTES+=("$cfg answered $status instead of 200 and was skipped")
        continue
    fi
    active+=("$cfg")
done
[ ${#active[@]} -gt 0 ] || die "nothing to measure"

# ---------------------------------------------------------------- rounds

# round CFG N OUT DURATION [RETRY_BUDGET]
round() {
    local cfg=$1 setup=${1%%_*} workload=${1#*_} others="" s pid
    local port_var="PORT_$1" aport_var="APORT_$1" pid_var="PID_$1" nodes_var="NODES_${1%%_*}"
    local script=$HERE/lib/wrk-spread.lua args=$SPREAD_KEYS
    if [ "$workload" = hot ]; then
        script=$HERE/lib/wrk-hot.lua
        args=""
    fi
    # the other setups' redis-servers, idle during this round: their background
    for s in single cluster1 cluster3; do
        [ "$s" = "$setup" ] && continue
        local v="NODES_$s"
        for pid in $(tr ',' '\n' <<<"${!v}" | cut -d: -f1); do
            others+="$s:$pid,"
        done
    done
    $CPY round --config "$cfg" --setup "$setup" --workload "$workload" --round "$2" \
        --port "${!port_var}" --aport "${!aport_var}" --pid "${!pid_var}" \
        --nodes "${!nodes_var}" --others "$others" --upstream-pid "$PID_upstream" \
        --duration "$4" --connections "$CONNECTIONS" --threads "$THREADS" --cpu "$LOAD_CPU" \
        --script "$script" --script-args "$args" --out "$3" \
        --noise-max "$NOISE_MAX" --retries "$NOISE_RETRIES" --retry-budget "${5:-$RETRY_BUDGET}"
}

# the machine may be shared: let others' bursts pass before measuring
if busy=$($CPY wait-quiet --max-pct "$NOISE_MAX" --timeout "$QUIET_WAIT"); then
    log "machine quiet (${busy} % of a CPU busy)"
else
    log "machine still busy after ${QUIET_WAIT} s (${busy} % of a CPU): measuring anyway"
    NOTES+=("the machine was still busy (${busy} % of a CPU) after waiting ${QUIET_WAIT} s for quiet")
fi

log "warm-up: ${WARMUP} s each"
for cfg in "${active[@]}"; do
    round "$cfg" 0 "$RUN_DIR/warmup.jsonl" "$WARMUP" 0 >/dev/null
done

log "${ROUNDS} interleaved rounds of ${DURATION} s over: ${active[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    for cfg in "${active[@]}"; do
        round "$cfg" "$r" "$RESULTS" "$DURATION"
    done
done

# a store that misbehaved under load says so in its log (the descriptor limit
# warning at start is about client.max_connections, not the store)
BAD_LOG='^[^ ]+ (warn|err|error|crit|alert|emerg) (store|redis|cluster)'
for cfg in "${active[@]}"; do
    pid_var="PID_$cfg"
    if ! kill -0 "${!pid_var}" 2>/dev/null; then
        NOTES+=("$cfg: sluice exited during the run; last log lines: $(tail -n 5 "$RUN_DIR/$cfg.log" | tr '\n' ' ')")
    elif grep -qE "$BAD_LOG" "$RUN_DIR/$cfg.log"; then
        NOTES+=("$cfg: sluice logged $(grep -cE "$BAD_LOG" "$RUN_DIR/$cfg.log") warning or error line(s), the first: $(grep -m1 -E "$BAD_LOG" "$RUN_DIR/$cfg.log" | cut -c1-240)")
    fi
done

# ---------------------------------------------------------------- report

export C_SPREAD_KEYS=$SPREAD_KEYS C_NOISE_MAX=$NOISE_MAX C_DATE C_CPU C_NPROC C_SLUICE C_REDIS C_PINNING C_COMMAND C_NOTES C_CONFIGS
C_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
C_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
C_NPROC=$NPROC
C_SLUICE=$SLUICE_DESC
C_REDIS="redis $({ redis-server --version || true; } | sed 's/.* v=\([^ ]*\).*/\1/')"
C_PINNING=$PINNING
C_COMMAND="${GIVEN}bench/cluster.sh"
C_CONFIGS=$CONFIGS
C_NOTES=$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}")
python3 - "$RUN_DIR/machine.json" "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" <<'EOF'
import json, os, sys
e = os.environ
rounds, duration, warmup, threads, conns = (int(x) for x in sys.argv[2:7])
json.dump({
    "date": e["C_DATE"], "cpu": e["C_CPU"], "nproc": int(e["C_NPROC"]),
    "sluice": e["C_SLUICE"], "redis": e["C_REDIS"], "pinning": e["C_PINNING"],
    "command": e["C_COMMAND"], "rounds": rounds, "duration": duration,
    "warmup": warmup, "threads": threads, "connections": conns,
    "configs": e["C_CONFIGS"].split(), "spread_keys": int(e["C_SPREAD_KEYS"]),
    "noise_max": float(e["C_NOISE_MAX"]),
    "notes": [n for n in e["C_NOTES"].split("\n") if n],
}, open(sys.argv[1], "w"), indent=1)
EOF

if [ "$WRITE_DOC" = 1 ]; then
    $CPY report "$RUN_DIR" "$DOC"
else
    $CPY report "$RUN_DIR" "$RUN_DIR/cluster.md"
    cat "$RUN_DIR/cluster.md"
fi
mkdir -p "$HERE/results"
cp "$RESULTS" "$HERE/results/cluster.jsonl" 2>/dev/null || true
cp "$RUN_DIR/machine.json" "$HERE/results/cluster-machine.json" 2>/dev/null || true
log "done"
