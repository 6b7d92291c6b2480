# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# Shell helpers shared by bench/run.sh and bench/profile.sh: installing the
# peers, starting and stopping our own processes by pid, rendering the
# config templates, building sluice, writing sluice bench configs.
# Expects HERE (bench/), ROOT (repo), PY and RUN_DIR to be set by the caller.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_tools: install with apt-get whatever of nginx, haproxy, wrk,
# redis-server is missing; set NGINX and HAPROXY
ensure_tools() {
    local need_pkgs=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
    command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
    command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
    command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
    if [ ${#need_pkgs[@]} -gt 0 ]; then
        log "installing ${need_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || true
        # policy-rc.d may refuse to start the system services: that is fine,
        # the bench runs its own instances with their own configs
        apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
    fi
    export PATH=$PATH:/usr/sbin:/sbin
    NGINX=$(command -v nginx)
    HAPROXY=$(command -v haproxy)
}

PIDS=()
cleanup() {
    local rc=$?
    set +e
    local pid i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "${RUN_DIR:-}" ] && [ -d "$RUN_DIR" ]; then
        if [ "${KEEP_RUN_DIR:-0}" = 1 ] || [ $rc -ne 0 ]; then
            log "logs and raw results kept in $RUN_DIR"
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop NAME: stop one process started by start (by its pid)
stop() {
    local var="PID_$1" pid
    pid=${!var:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start NAME CPUS CMD...: start CMD in the background pinned to CPUS, log to
# RUN_DIR/NAME.log, remember its pid in PID_NAME and in PIDS
start() {
    local name=$1 cpus=$2
    shift 2
    taskset -c "$cpus" "$@" >"$RUN_DIR/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    printf -v "PID_$name" '%s' "$pid"
}

# render TEMPLATE OUT KEY=VALUE...: replace @KEY@ by VALUE
render() {
    local tmpl=$1 out=$2 kv k v
    shift 2
    cp "$tmpl" "$out"
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        v=${v//\\/\\\\}
        v=${v//|/\\|}
        v=${v//&/\\&}
        sed -i "s|@$k@|$v|g" "$out"
    done
}

wait_up() {    # wait_up NAME PORT
    local var="PID_$1"
    $PY waitport "$2" --pid "${!var}" --timeout 15 || {
        log "$1 did not start listening on $2; its log:"
        tail -n 20 "$RUN_DIR/$1.log" >&2 || true
        return 1
    }
}

# build_sluice: build bench/build/sluice unless SLUICE_BIN is set; sets
# HAVE_SLUICE (0/1), SLUICE_BIN and SLUICE_DESC; never fails
build_sluice() {
    local build_type=${1:-Release} rev dirty
    SLUICE_DESC="not built"
    HAVE_SLUICE=0
    if [ -z "${SLUICE_BIN:-}" ]; then
        log "building sluice ($build_type) into $BUILD_DIR"
        if cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$build_type" >"$RUN_DIR/build.log" 2>&1 \
            && cmake --build "$BUILD_DIR" --target sluice -j "$(nproc)" >>"$RUN_DIR/build.log" 2>&1; then
            SLUICE_BIN=$BUILD_DIR/sluice
        else
            log "sluice did not build:"
            grep -E 'error|Error' "$RUN_DIR/build.log" | head -n 15 >&2 || true
            return 0
        fi
    fi
    [ -x "$SLUICE_BIN" ] || die "SLUICE_BIN=$SLUICE_BIN is not executable"
    HAVE_SLUICE=1
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$ROOT" status --porcelain -- src include lua 2>/dev/null | awk 'NR == 1 { print "x" }' || true)
    SLUICE_DESC="$SLUICE_BIN, commit $rev${dirty:+ (with uncommitted changes in src/include/lua)}"
}

# sluice_conf NAME STORE KEY RATE PER BURST: write RUN_DIR/NAME.conf; @NAME@
# in STORE becomes NAME (each instance gets its own Redis key prefix: sharing
# one would make the configurations share, and refill, each other's buckets)
sluice_conf() {
    local name=$1 store=${2//@NAME@/$1} key=$3 rate=$4 per=$5 burst=$6 extra=${7:-} port aport
    local tmpl=${8:-$HERE/conf/sluice.conf.in}
    read -r port aport <<<"$($PY freeport 2)"
    printf -v "PORT_$name" '%s' "$port"
    printf -v "APORT_$name" '%s' "$aport"
    render "$tmpl" "$RUN_DIR/$name.conf" PORT="$port" APORT="$aport" \
        UPORT="$UPORT" STORE="$store" KEY="$key" RATE="$rate" PER="$per" BURST="$burst" \
        EXTRA="$extra"
}

# start_sluice NAME: check the conf, start, wait for the listener
start_sluice() {
    local name=$1 port_var="PORT_$1"
    if ! "$SLUICE_BIN" -t -c "$RUN_DIR/$name.conf" >"$RUN_DIR/$name.check" 2>&1; then
        log "sluice -t rejected $name.conf:"
        cat "$RUN_DIR/$name.check" >&2
        return 1
    fi
    start "$name" "$PROXY_CPU" "$SLUICE_BIN" -c "$RUN_DIR/$name.conf"
    wait_up "$name" "${!port_var}"
}

# start_upstream CPUS: the fixed nginx upstream on a free port; sets UPORT
start_upstream() {
    UPORT=$($PY freeport 1)
    mkdir -p "$RUN_DIR/upstream-tmp"
    render "$HERE/conf/upstream.nginx.conf" "$RUN_DIR/upstream.conf" DIR="$RUN_DIR" PORT="$UPORT"
    start upstream "$1" "$NGINX" -p "$RUN_DIR" -e "$RUN_DIR/upstream.err" -c "$RUN_DIR/upstream.conf"
    wait_up upstream "$UPORT" || die "upstream nginx did not start"
    $PY probe "$UPORT" --expect 200 >/dev/null || die "upstream nginx does not answer 200"
}

# start_redis CPUS: redis-server on a free port, no persistence; sets RPORT
# and REDIS_STORE (the sluice store table pointing at it)
start_redis() {
    RPORT=$($PY freeport 1)
    start redis "$1" redis-server --bind 127.0.0.1 --port "$RPORT" --save "" \
        --appendonly no --protected-mode no --dir "$RUN_DIR" --loglevel warning
    wait_up redis "$RPORT" || die "redis-server did not start"
    REDIS_STORE="{ kind = \"redis\", url = \"redis://127.0.0.1:$RPORT/0\", timeout = \"20ms\", on_error = \"allow\", prefix = \"@NAME@\" }"
}

LOCAL_STORE='{ kind = "local" }'
HUGE=100000000
