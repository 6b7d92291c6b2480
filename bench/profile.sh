#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# Where sluice's time goes (issue 5, part 3). Starts the bench upstream,
# redis-server and one sluice (one worker) and profiles it two ways:
#
#  - callgrind: sluice runs under valgrind; after WARM requests the counters
#    are zeroed, exactly N keep-alive requests are sent, the counters dumped.
#    Instruction counts do not depend on the machine's noise, so the
#    instructions per request and the top functions are repeatable;
#  - perf (if `perf record -e cpu-clock` works here): sluice (and with
#    REFERENCE=1 nginx) runs natively under wrk for PERF_SECONDS while perf
#    samples it, kernel included; nstat counts the TCP segments meanwhile.
#
#   bench/profile.sh                      # redis store, admitted requests
#   STORE=local bench/profile.sh
#   REJECT=1 bench/profile.sh             # the 429 path
#
#  - strace -c: system calls per request over the same N requests.
#
# With REFERENCE=1 (default) nginx + limit_req (or its 429 path) gets the
# same treatment, as a yardstick.
#
# Knobs: STORE=redis|local, REJECT=0|1, N (20000), WARM (2000), CONNECTIONS
# (8 for the callgrind/strace client, 64 for perf's wrk),
# TOOL=callgrind|perf|both (callgrind includes strace), TOP (30),
# PERF_SECONDS (10), REFERENCE (1), SLUICE_BIN (else builds RelWithDebInfo
# into bench/build-prof), OUT_DIR (keep the outputs there).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY="python3 $HERE/lib/bench.py"
STORE=${STORE:-redis}
REJECT=${REJECT:-0}
N=${N:-20000}
WARM=${WARM:-2000}
TOOL=${TOOL:-both}
TOP=${TOP:-30}
PERF_SECONDS=${PERF_SECONDS:-10}
REFERENCE=${REFERENCE:-1}
BUILD_DIR=${BUILD_DIR:-$HERE/build-prof}

. "$HERE/lib/common.sh"

ensure_tools
command -v valgrind >/dev/null 2>&1 || {
    log "installing valgrind"
    apt-get install -y -qq valgrind >/dev/null || die "apt-get install valgrind failed"
}

RUN_DIR=$(mktemp -d /tmp/sluice-profile.XXXXXX)
chmod 755 "$RUN_DIR"
export BENCH_PORTS_FILE=$RUN_DIR/ports
OUT_DIR=${OUT_DIR:-$RUN_DIR}
mkdir -p "$OUT_DIR"

build_sluice RelWithDebInfo
[ "$HAVE_SLUICE" = 1 ] || die "sluice did not build"
log "profiling $SLUICE_DESC"

NPROC=$(nproc)
PROXY_CPU=$((NPROC - 1))
LOAD_CPU=0
[ "$NPROC" -ge 2 ] && LOAD_CPU="0-$((NPROC - 2))"

start_upstream "$LOAD_CPU"
start_redis "$LOAD_CPU"
store=$REDIS_STORE
[ "$STORE" = local ] && store=$LOCAL_STORE
if [ "$REJECT" = 1 ]; then
    sluice_conf prof "$store" ip 1 1h 1
    expect=429
else
    sluice_conf prof "$store" ip "$HUGE" 1s "$HUGE"
    expect=200
fi
what="store=$STORE, $([ "$REJECT" = 1 ] && echo "every request refused (429)" || echo "every request admitted (200)")"

# the reference: nginx + limit_req (or its 429 path), run as one process
tmpl=$HERE/conf/nginx-limit.conf
[ "$REJECT" = 1 ] && tmpl=$HERE/conf/nginx-reject.conf
NPORT=$($PY freeport 1)
mkdir -p "$RUN_DIR/nginx-tmp"
render "$tmpl" "$RUN_DIR/nginx.conf" DIR="$RUN_DIR" NAME=nginx PORT="$NPORT" UPORT="$UPORT"

perf_ok=0
if [ "$TOOL" != callgrind ] && perf record -q -e cpu-clock -o "$RUN_DIR/perf.test" -- true >/dev/null 2>&1; then
    perf_ok=1
fi

# ---------------------------------------------------------------- callgrind

# callgrind_run NAME PORT CMD...: run CMD under callgrind, WARM requests,
# zero, N requests, dump; summarise the dump into OUT_DIR/NAME-callgrind.txt
callgrind_run() {
    local name=$1 port=$2 pid_var="PID_$1"
    shift 2
    rm -f "$OUT_DIR/$name.callgrind.out"*
    start "$name" "$PROXY_CPU" valgrind --tool=callgrind \
        --callgrind-out-file="$OUT_DIR/$name.callgrind.out" "$@"
    $PY waitport "$port" --pid "${!pid_var}" --timeout 120 || die "$name under valgrind did not start"
    [ "$REJECT" = 1 ] && $PY probe "$port" >/dev/null
    $PY count --port "$port" --n "$WARM" --connections "${CONNECTIONS:-8}" >/dev/null
    callgrind_control -z "${!pid_var}" >/dev/null
    $PY count --port "$port" --n "$N" --connections "${CONNECTIONS:-8}"
    # an explicit dump goes to FILE.1; what follows it (shutdown) to FILE
    callgrind_control -d "${!pid_var}" >/dev/null
    stop "$name"
    [ -s "$OUT_DIR/$name.callgrind.out.1" ] || die "no callgrind dump for $name"
    $PY cgsum "$OUT_DIR/$name.callgrind.out.1" --requests "$N" --top "$TOP" \
        >"$OUT_DIR/$name-callgrind.txt"
}

if [ "$TOOL" != perf ]; then
    log "callgrind: sluice, $what; $WARM warm-up requests, then $N counted"
    "$SLUICE_BIN" -t -c "$RUN_DIR/prof.conf" >/dev/null || die "sluice -t rejected the conf"
    callgrind_run sluice "$PORT_prof" "$SLUICE_BIN" -c "$RUN_DIR/prof.conf"
    if [ "$REFERENCE" = 1 ]; then
        log "callgrind: nginx reference, same requests"
        callgrind_run nginx "$NPORT" "$NGINX" -p "$RUN_DIR" -e "$RUN_DIR/nginx.err" \
            -c "$RUN_DIR/nginx.conf" -g "master_process off;"
        echo "== callgrind, nginx reference ($(basename "$tmpl")): $(head -n1 "$OUT_DIR/nginx-callgrind.txt" | sed 's/^== callgrind: //')"
        sed -n '/^== calls per request/,/^$/p' "$OUT_DIR/nginx-callgrind.txt"
    fi
    cat "$OUT_DIR/sluice-callgrind.txt"
fi

# ---------------------------------------------------------------- strace

# strace_run NAME PORT CMD...: system calls per request over N requests
strace_run() {
    local name=$1 port=$2 pid_var="PID_$1" st_pid
    shift 2
    start "$name" "$PROXY_CPU" "$@"
    wait_up "$name" "$port" || die "$name did not start"
    [ "$REJECT" = 1 ] && $PY probe "$port" >/dev/null
    $PY count --port "$port" --n "$WARM" --connections "${CONNECTIONS:-8}" >/dev/null
    strace -c -f -q -o "$OUT_DIR/$name-strace.txt" -p "${!pid_var}" &
    st_pid=$!
    PIDS+=("$st_pid")
    sleep 1
    $PY count --port "$port" --n "$N" --connections "${CONNECTIONS:-8}" >/dev/null
    sleep 0.5
    kill -INT "$st_pid" 2>/dev/null || true
    wait "$st_pid" 2>/dev/null || true
    stop "$name"
    awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
        printf "%10.2f  %s\n", $4 / n, $NF; t += $4 }
        END { printf "%10.2f  (all system calls)\n", t / n }' "$OUT_DIR/$name-strace.txt" \
        | sort -rn | awk 'n++ < 15'
}

if [ "$TOOL" != perf ] && command -v strace >/dev/null 2>&1; then
    log "strace: system calls per request, $N requests over ${CONNECTIONS:-8} connections"
    echo "== strace: system calls per request, sluice"
    strace_run sluice_st "$PORT_prof" "$SLUICE_BIN" -c "$RUN_DIR/prof.conf"
    if [ "$REFERENCE" = 1 ]; then
        echo "== strace: system calls per request, nginx reference (worker process)"
        strace_run nginx_st "$NPORT" "$NGINX" -p "$RUN_DIR" -e "$RUN_DIR/nginx.err" \
            -c "$RUN_DIR/nginx.conf" -g "master_process off;"
    fi
    echo
fi

# ---------------------------------------------------------------- perf

# perf_run NAME PORT PID_TO_SAMPLE_VAR CMD...: wrk for PERF_SECONDS against
# CMD while perf samples the process; self time by object and by symbol
perf_run() {
    local name=$1 port=$2 pid_var="PID_$1" wrk_pid
    shift 2
    start "$name" "$PROXY_CPU" "$@"
    wait_up "$name" "$port" || die "$name did not start"
    [ "$REJECT" = 1 ] && $PY probe "$port" >/dev/null
    taskset -c "$LOAD_CPU" wrk -t1 -c"${CONNECTIONS:-64}" -d$((PERF_SECONDS + 2))s \
        "http://127.0.0.1:$port/" >"$RUN_DIR/$name-wrk.txt" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep 1
    nstat -n >/dev/null 2>&1 || true
    perf record -q -e cpu-clock -F 1999 -g -p "${!pid_var}" -o "$OUT_DIR/$name.perf.data" \
        -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || log "perf record failed"
    nstat 2>/dev/null >"$RUN_DIR/$name-nstat.txt" || true
    wait "$wrk_pid" || true
    awk '/Requests\/sec|Non-2xx/' "$RUN_DIR/$name-wrk.txt"
    # every TCP segment on the machine in the window (wrk, proxy, upstream,
    # Redis): 4 per proxied request is the floor (request and response, each
    # over two connections, ACKs riding on data)
    awk -v secs="$PERF_SECONDS" '
        FNR == NR && /Requests\/sec/ { rps = $2 }
        FNR != NR && $1 == "TcpOutSegs" { segs = $2 }
        END { if (rps > 0 && segs > 0)
                  printf "TCP segments per request (all processes): %.2f\n", segs / secs / rps }
    ' "$RUN_DIR/$name-wrk.txt" "$RUN_DIR/$name-nstat.txt"
    stop "$name"
    [ -s "$OUT_DIR/$name.perf.data" ] || return 0
    # awk reads all its input (no SIGPIPE under pipefail) and keeps the top lines
    echo "== perf ($name): self time by shared object (kernel included)"
    perf report -i "$OUT_DIR/$name.perf.data" --stdio --no-children --sort dso -g none \
        --percent-limit 0.5 2>/dev/null | awk '!/^#/ && NF && n++ < 15'
    echo "== perf ($name): self time by symbol (top $TOP)"
    perf report -i "$OUT_DIR/$name.perf.data" --stdio --no-children --sort dso,symbol -g none \
        --percent-limit 0.3 2>/dev/null \
        | awk -v top="$TOP" '!/^#/ && NF && n++ < top { print $1, $2, $3, $4 }'
    echo
}

if [ "$TOOL" != callgrind ]; then
    if [ "$perf_ok" = 1 ]; then
        log "perf: $what; wrk for $PERF_SECONDS s, cpu-clock samples"
        perf_run sluice_perf "$PORT_prof" "$SLUICE_BIN" -c "$RUN_DIR/prof.conf"
        if [ "$REFERENCE" = 1 ]; then
            log "perf: nginx reference, same load"
            perf_run nginx_perf "$NPORT" "$NGINX" -p "$RUN_DIR" -e "$RUN_DIR/nginx.err" \
                -c "$RUN_DIR/nginx.conf" -g "master_process off;"
        fi
    else
        log "perf: cpu-clock sampling is not available here; skipped"
    fi
fi

if [ "$OUT_DIR" = "$RUN_DIR" ]; then
    KEEP_RUN_DIR=1
fi
log "outputs in $OUT_DIR"
