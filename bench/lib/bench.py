#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# Measurement helpers for bench/run.sh (Python 3 standard library only):
# free ports, waiting for listeners, one wrk round with the CPU the proxy and
# Redis spent during it (utime+stime from /proc/PID/stat, summed over the
# process and its descendants), the idle-connection and many-keys memory runs,
# and the report that goes into docs/benchmarks.md.

import argparse
import datetime
import json
import os
import random
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# /proc


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    # comm may contain spaces and parentheses: fields start after the last ')'
    return s[s.rindex(")") + 2:].split()


def proc_tree(pid):
    """pid and all its descendants (nginx master + workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(d))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_split(pid):
    """(utime, stime) in clock ticks of pid and its descendants, all threads."""
    user = system = 0
    for p in proc_tree(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        # after the comm: state=0 ppid=1 ... utime=11 stime=12 (fields 14, 15)
        user += int(f[11])
        system += int(f[12])
    return user, system


def cpu_ticks(pid):
    """utime+stime in clock ticks of pid and its descendants, all threads."""
    return sum(cpu_split(pid))


def sleeps(pid):
    """Voluntary context switches of pid and its descendants, all threads: how
    often the process went to sleep waiting for something (each costs a
    wake-up later)."""
    total = 0
    for p in proc_tree(pid):
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/status" % (p, t)) as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            total += int(line.split()[1])
            except (OSError, ValueError):
                continue
    return total


def rss_kib(pid, tree=True):
    total = 0
    for p in (proc_tree(pid) if tree else [pid]):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------
# ports


def cmd_freeport(a):
    got = []
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    # ports handed out earlier in this run may not be bound yet
    reg = os.environ.get("BENCH_PORTS_FILE")
    used = set()
    if reg and os.path.exists(reg):
        with open(reg) as f:
            used = {int(x) for x in f.read().split()}
    # below the ephemeral range so wrk's own outgoing ports never collide
    while len(got) < a.n:
        port = rnd.randrange(20000, 32000)
        if port in got or port in used:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        got.append(port)
    if reg:
        with open(reg, "a") as f:
            f.write("".join("%d\n" % p for p in got))
    print(" ".join(str(p) for p in got))


def cmd_waitport(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if a.pid and not os.path.exists("/proc/%d" % a.pid):
            sys.exit(2)
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(1)


def http_get(port, path="/", headers=None, timeout=2.0):
    """One HTTP/1.1 request; returns (status, head text, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        s.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\n%sConnection: close\r\n\r\n"
                   % (path, h)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, head.decode("latin-1"), body


def cmd_probe(a):
    """Send a request and print its status; exit 1 unless it is expected."""
    try:
        status, head, body = http_get(a.port, headers={"X-Key": "probe"})
    except OSError as e:
        print("probe error: %s" % e)
        sys.exit(1)
    print(status)
    if a.verbose:
        print(head)
        print(body[:300].decode("latin-1", "replace"))
    if a.expect and str(status) not in a.expect.split(","):
        sys.exit(1)


# --------------------------------------------------------------------------
# one wrk round


def parse_kv_line(out, tag):
    for line in out.splitlines():
        if line.startswith(tag + " "):
            d = {}
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                d[k] = float(v) if "." in v else int(v)
            return d
    return None


def _cpu_stat():
    """System-wide user+nice+system ticks, and steal ticks, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2], (v[7] if len(v) > 7 else 0)


def _one_round(a):
    wrk = ["wrk", "-t%d" % a.threads, "-c%d" % a.connections, "-d%ds" % a.duration,
           "--timeout", "5s", "-s", a.script, "http://127.0.0.1:%d/" % a.port]
    if a.cpu is not None:
        wrk = ["taskset", "-c", a.cpu] + wrk
    mine = [x for x in {a.redis_pid, a.upstream_pid} if x and x != a.pid]
    pu0, ps0 = cpu_split(a.pid)
    p0 = pu0 + ps0
    z0 = sleeps(a.pid)
    r0 = cpu_ticks(a.redis_pid) if a.redis_pid else 0
    o0 = sum(cpu_ticks(x) for x in mine)
    s0, st0 = _cpu_stat()
    c0 = os.times()
    t0 = time.monotonic()
    res = subprocess.run(wrk, capture_output=True, text=True, timeout=a.duration + 30)
    wall = time.monotonic() - t0
    c1 = os.times()
    s1, st1 = _cpu_stat()
    pu1, ps1 = cpu_split(a.pid)
    p1 = pu1 + ps1
    z1 = sleeps(a.pid)
    r1 = cpu_ticks(a.redis_pid) if a.redis_pid else 0
    o1 = sum(cpu_ticks(x) for x in mine)
    # CPU that none of ours used (other processes on the machine, plus steal):
    # a noise indicator for the round, in percent of one CPU
    ours = (p1 - p0) + (o1 - o0) + ((c1[2] + c1[3] + c1[0] + c1[1])
                                    - (c0[2] + c0[3] + c0[0] + c0[1])) * CLK_TCK
    foreign = max(0.0, (s1 - s0) - ours) + (st1 - st0)
    st = parse_kv_line(res.stdout, "WRKSTATS")
    rec = {"config": a.config, "round": a.round, "ok": st is not None and st["requests"] > 0}
    if st:
        n = max(st["requests"], 1)
        tick_us = 1e6 / CLK_TCK
        rec.update(st)
        rec.update({
            "wall_s": round(wall, 3),
            "rps": st["requests"] / (st["duration_us"] / 1e6),
            "proxy_ticks": p1 - p0,
            "redis_ticks": r1 - r0,
            "proxy_us_per_req": (p1 - p0) * tick_us / n,
            "proxy_kernel_share": (ps1 - ps0) / (p1 - p0) if p1 > p0 else None,
            "proxy_sleeps_per_req": (z1 - z0) / n,
            "redis_us_per_req": (r1 - r0) * tick_us / n,
            "non2xx_share": st["err_status"] / n,
            "foreign_cpu_pct": 100.0 * foreign / CLK_TCK / wall,
        })
    else:
        rec["error"] = (res.stdout + res.stderr)[-500:]
    return rec


def _print_round(rec, note=""):
    if rec["ok"]:
        print("  %-20s round %d: %8.0f req/s  p50 %6.0f us  p99 %6.0f us  proxy %6.1f us/req"
              " (sleeps %4.2f/req)  redis %5.1f us/req  non-2xx %5.1f%%  other CPU %3.0f%%%s"
              % (rec["config"], rec["round"], rec["rps"], rec["p50_us"], rec["p99_us"],
                 rec["proxy_us_per_req"], rec.get("proxy_sleeps_per_req") or 0,
                 rec["redis_us_per_req"], 100 * rec["non2xx_share"],
                 rec["foreign_cpu_pct"], note), flush=True)
    else:
        print("  %-20s round %d: FAILED %s" % (rec["config"], rec["round"], rec.get("error", "")),
              flush=True)


def cmd_round(a):
    """One wrk round. If other processes took more than --noise-max percent of
    a CPU during it, it is run again (within a retry budget in seconds shared
    by the whole run) and the quietest attempt is kept."""
    budget_file = a.out + ".retry-budget"
    attempts = []
    while True:
        rec = _one_round(a)
        attempts.append(rec)
        noisy = rec["ok"] and rec["foreign_cpu_pct"] > a.noise_max
        spent = 0.0
        if os.path.exists(budget_file):
            with open(budget_file) as f:
                spent = float(f.read() or 0)
        if not noisy or len(attempts) > a.retries or spent + a.duration > a.retry_budget:
            break
        _print_round(rec, "  (noisy: run again)")
        with open(budget_file, "w") as f:
            f.write(str(spent + a.duration + 2))
        time.sleep(2)
    ok = [r for r in attempts if r["ok"]]
    best = min(ok, key=lambda r: r["foreign_cpu_pct"]) if ok else attempts[-1]
    best["attempts"] = len(attempts)
    with open(a.out, "a") as f:
        f.write(json.dumps(best) + "\n")
    if len(attempts) > 1:
        with open(a.out + ".discarded", "a") as f:
            for r in attempts:
                if r is not best:
                    f.write(json.dumps(r) + "\n")
    _print_round(best, "" if len(attempts) == 1 else "  (kept the quietest of %d)" % len(attempts))


# --------------------------------------------------------------------------
# memory runs


def _read_response(sock, buf):
    """Return leftover bytes once one full response is in buf, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    m = re.search(rb"(?im)^content-length:\s*(\d+)", buf[:end])
    need = end + 4 + (int(m.group(1)) if m else 0)
    return buf[need:] if len(buf) >= need else None


def cmd_idle_conns(a):
    """Open N keep-alive connections, one request on each, keep them idle,
    then read the proxy's RSS."""
    rss0 = rss_kib(a.pid)
    sel = selectors.DefaultSelector()
    socks, statuses, failed = [], {}, 0
    req = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Key: idle\r\n\r\n"
    t0 = time.monotonic()
    batch = 250
    overall = t0 + a.max_seconds
    for start in range(0, a.n, batch):
        if time.monotonic() > overall:
            failed += a.n - start
            break
        pending = {}
        for _ in range(min(batch, a.n - start)):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", a.port))
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
        sent = set()
        deadline = min(time.monotonic() + 10, overall)
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1):
                s = key.fileobj
                if s not in pending:
                    continue
                if ev & selectors.EVENT_WRITE and s not in sent:
                    try:
                        s.send(req)
                        sent.add(s)
                        sel.modify(s, selectors.EVENT_READ)
                    except OSError:
                        sel.unregister(s)
                        s.close()
                        del pending[s]
                        failed += 1
                    continue
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    s.close()
                    del pending[s]
                    failed += 1
                    continue
                pending[s] += chunk
                if _read_response(s, pending[s]) is not None:
                    st = int(pending[s].split(b" ", 2)[1])
                    statuses[st] = statuses.get(st, 0) + 1
                    sel.unregister(s)
                    socks.append(s)
                    del pending[s]
        for s in list(pending):
            sel.unregister(s)
            s.close()
            failed += 1
    setup_s = time.monotonic() - t0
    time.sleep(a.settle)
    # the connections must still be open: the proxy may have closed some
    alive = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        alive += 1
    rss1 = rss_kib(a.pid)
    for s in socks:
        s.close()
    rec = {"kind": "idle_conns", "config": a.config, "n": a.n, "open": len(socks),
           "alive": alive, "failed": failed, "statuses": statuses,
           "rss_before_kib": rss0, "rss_kib": rss1, "setup_s": round(setup_s, 2)}
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print("  %s: %d/%d connections open and idle (%d failed), statuses %s, RSS %.1f MiB "
          "(%.1f MiB before)" % (a.config, alive, a.n, failed, statuses, rss1 / 1024, rss0 / 1024))


def cmd_keys(a):
    """Send N requests each with a new X-Key (wrk + wrk-keys.lua), read RSS."""
    rss0 = rss_kib(a.pid)
    donefile = "%s.done.%d" % (a.out, os.getpid())
    if os.path.exists(donefile):
        os.unlink(donefile)
    wrk = ["wrk", "-t1", "-c%d" % a.connections, "-d%ds" % a.max_seconds, "--timeout", "5s",
           "-s", a.script, "http://127.0.0.1:%d/" % a.port, "--", str(a.n), a.prefix, donefile]
    if a.cpu is not None:
        wrk = ["taskset", "-c", a.cpu] + wrk
    t0 = time.monotonic()
    proc = subprocess.Popen(wrk, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wrk keeps sleeping for its whole -d once the thread has stopped: end it
    while proc.poll() is None:
        if os.path.exists(donefile):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.1)
    try:
        out, err = proc.communicate(timeout=a.max_seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    secs = time.monotonic() - t0
    if os.path.exists(donefile):
        os.unlink(donefile)
    res = subprocess.CompletedProcess(wrk, proc.returncode, out, err)
    time.sleep(a.settle)
    st = parse_kv_line(res.stdout, "WRKKEYS") or {}
    rss1 = rss_kib(a.pid)
    rec = {"kind": "keys", "config": a.config, "phase": a.phase, "n": a.n,
           "keys_sent": st.get("keys"), "requests": st.get("requests"),
           "err_status": st.get("err_status"), "seconds": round(secs, 1),
           "rss_before_kib": rss0, "rss_kib": rss1}
    if not st:
        rec["error"] = (res.stdout + res.stderr)[-500:]
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print("  %s %s: %s distinct keys in %.1f s (%s requests, %s non-2xx), RSS %.1f MiB "
          "(%.1f MiB before)" % (a.config, a.phase, st.get("keys"), secs, st.get("requests"),
                                 st.get("err_status"), rss1 / 1024, rss0 / 1024))


def cmd_count(a):
    """Exactly N keep-alive requests over C connections (for profiling)."""
    req = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Key: profile\r\n\r\n"
    sel = selectors.DefaultSelector()
    bufs, sent, done, statuses = {}, 0, 0, {}
    for _ in range(min(a.connections, a.n)):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        s.setblocking(False)
        bufs[s] = b""
        s.send(req)
        sent += 1
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + a.timeout
    while done < a.n and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                sys.exit("connection closed by the server after %d responses" % done)
            bufs[s] += chunk
            while True:
                rest = _read_response(s, bufs[s])
                if rest is None:
                    break
                st = int(bufs[s].split(b" ", 2)[1])
                statuses[st] = statuses.get(st, 0) + 1
                done += 1
                bufs[s] = rest
                if sent < a.n:
                    s.send(req)
                    sent += 1
    for s in bufs:
        s.close()
    print("%d responses, statuses %s" % (done, statuses))
    if done < a.n:
        sys.exit(1)


_CG_WATCH = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc",
             "read", "write", "readv", "writev", "recv", "send", "recvfrom", "sendto",
             "sendmsg", "recvmsg", "epoll_wait", "epoll_ctl", "ioctl", "accept", "accept4",
             "close", "connect", "clock_gettime", "gettimeofday", "memcpy", "memmove",
             "memset", "strlen", "evbuffer_add", "evbuffer_pullup", "lua_pcall",
             "redisAsyncCommand", "redisvAsyncCommand", "redisAsyncCommandArgv",
             "redisAsyncFormattedCommand", "http_parser_execute", "snprintf", "vsnprintf")


def _cg_parse(path):
    """Read a callgrind dump (one event, Ir). Returns (total, self cost per
    (object, file, function), inclusive cost of calls per caller function,
    call counts per callee function, object of each function)."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "fn": "fn", "cfn": "fn"}
    total = None
    ob = fl = fn = cfn = None
    cur_file = None
    after_calls = False
    self_cost, call_cost, calls, fn_obj = {}, {}, {}, {}
    spec = re.compile(r"^(ob|cob|fl|fi|fe|cfi|cfl|fn|cfn)=(?:\((\d+)\))?\s?(.*)$")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if after_calls:
                    call_cost[fn] = call_cost.get(fn, 0) + ir
                    after_calls = False
                else:
                    k = (ob, cur_file, fn)
                    self_cost[k] = self_cost.get(k, 0) + ir
                continue
            m = spec.match(line)
            if m:
                key, ident, name = m.group(1), m.group(2), m.group(3)
                table = names[kind_of[key]]
                if ident is not None:
                    if name:
                        table[ident] = name
                    name = table.get(ident, "?")
                if key == "ob":
                    ob = name
                elif key == "fl":
                    fl = cur_file = name
                elif key in ("fi", "fe"):
                    cur_file = name
                elif key == "fn":
                    fn = name
                    cur_file = fl
                    fn_obj.setdefault(fn, ob)
                elif key == "cfn":
                    cfn = name
                continue
            if line.startswith("calls="):
                n = int(line[6:].split()[0])
                calls[cfn] = calls.get(cfn, 0) + n
                after_calls = True
            elif line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    return total, self_cost, call_cost, calls, fn_obj


def cmd_cgsum(a):
    """Summarise a callgrind dump as instructions per request."""
    total, self_cost, call_cost, calls, fn_obj = _cg_parse(a.file)
    if not total:
        sys.exit("no totals in %s" % a.file)
    n = a.requests

    def base(name):
        return re.sub(r"'\d+$", "", name or "?")

    by_fn, by_obj, by_src = {}, {}, {}
    for (ob, fl, fn), ir in self_cost.items():
        b = base(fn)
        by_fn[b] = by_fn.get(b, 0) + ir
        o = os.path.basename(ob or "?")
        by_obj[o] = by_obj.get(o, 0) + ir
        if fl and ("/src/" in fl or fl.startswith("src/")):
            k = "src/" + fl.split("src/", 1)[1]
            by_src[k] = by_src.get(k, 0) + ir
    incl = {}
    for (ob, fl, fn), ir in self_cost.items():
        incl[base(fn)] = incl.get(base(fn), 0) + ir
    for fn, ir in call_cost.items():
        incl[base(fn)] = incl.get(base(fn), 0) + ir
    obj_of = {base(k): os.path.basename(v or "?") for k, v in fn_obj.items()}

    print("== callgrind: %d requests, %s instructions in all, %.0f instructions per request"
          " (user space only: the kernel's share is not counted)" % (n, format(total, ","),
                                                                     total / n))
    print()
    watched = {}
    for name, c in calls.items():
        # libc's entry points carry version tags, GI aliases and ifunc variants
        bare = re.sub(r"^(__GI_|__libc_|__)", "", base(name).split("@")[0])
        m = re.match(r"(memcpy|memmove|memset|strlen)_", bare)
        if m:
            bare = m.group(1)
        if bare in _CG_WATCH:
            watched[bare] = watched.get(bare, 0) + c
    print("== calls per request (allocations, copies, syscall wrappers, hot entry points)")
    for name, c in sorted(watched.items(), key=lambda kv: -kv[1]):
        if c:
            print("%12.2f  %s" % (c / n, name))
    print()

    def show(title, d, limit, objs=False):
        print("== %s" % title)
        print("%12s %7s  %s" % ("Ir/request", "share", "name"))
        for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:limit]:
            print("%12.0f %6.1f%%  %s%s" % (v / n, 100.0 * v / total, k,
                                            "  [%s]" % obj_of[k] if objs and k in obj_of else ""))
        print()

    show("self cost by object", by_obj, 15)
    if by_src:
        show("self cost by sluice source file (src/)", by_src, 30)
    show("self cost by function (top %d)" % a.top, by_fn, a.top, True)
    show("inclusive cost by function (top %d; recursion and calls begun before the "
         "counters were zeroed make this approximate)" % a.top, incl, a.top, True)


_SCRAPE = ("sluice_ratelimit_decisions_total", "sluice_store_errors_total",
           "sluice_store_call_duration_seconds_count", "sluice_http_requests_total",
           "sluice_store_noscript_reloads_total", "sluice_lease_admitted_total",
           "sluice_lease_takes_total")


def cmd_scrape(a):
    """Keep a few of sluice's counters (admin /metrics) for the report."""
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=3)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError as e:
        print("  scrape of %s failed: %s" % (a.config, e))
        return
    counters = {}
    for line in data.decode("latin-1").split("\r\n\r\n", 1)[-1].splitlines():
        if line.startswith(_SCRAPE):
            name, _, value = line.rpartition(" ")
            try:
                counters[name] = float(value)
            except ValueError:
                pass
    with open(a.out, "a") as f:
        f.write(json.dumps({"config": a.config, "counters": counters}) + "\n")


def _counter_sum(c, prefix, **labels):
    total = 0.0
    for k, v in c.items():
        if not k.startswith(prefix):
            continue
        if all('%s="%s"' % kv in k for kv in labels.items()):
            total += v
    return total


def cmd_ticks(a):
    print(cpu_ticks(a.pid))


def cmd_rss(a):
    print(rss_kib(a.pid))


# --------------------------------------------------------------------------
# report

BEGIN = "<!-- bench:latest:begin -->"
END = "<!-- bench:latest:end -->"
PREV = "<!-- bench:previous -->"
KEEP_PREVIOUS = 5

LABELS = {
    "direct": "upstream direct (no proxy; CPU = the upstream's)",
    "nginx_limit": "nginx proxy_pass + limit_req",
    "haproxy": "HAProxy + stick table",
    "sluice_redis": "sluice, redis store",
    "sluice_local": "sluice, local store",
    "nginx_reject": "nginx, reject path (429)",
    "sluice_reject_redis": "sluice, reject path, redis store",
    "sluice_reject_local": "sluice, reject path, local store",
    "nginx_cache": "nginx proxy_cache, hits",
    "sluice_cache": "sluice cache, hits",
    "sluice_hot_lease": "sluice, redis store, leases, one tenant (header:X-Tenant)",
    "sluice_mixed": "sluice, redis store, 90 % over 10 hot keys / 10 % over 100k cold",
    "sluice_mixed_lease": "sluice, redis store, leases, 90 % hot / 10 % cold (as above)",
    "sluice_mem_conns": "sluice, redis store",
    "sluice_mem_keys": "sluice, local store, key header:X-Key, 1 per 1h",
    "sluice_mem_reclaim": "sluice, local store, key header:X-Key, refill in seconds",
}


def _load(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, spec="%.1f"):
    return "n/a" if x is None else spec % x


def _paired_ratio(rounds, num, den, field):
    """Median over rounds of num/den, each ratio taken within one round."""
    by = {}
    for r in rounds:
        if r.get("ok"):
            by.setdefault(r["round"], {})[r["config"]] = r[field]
    vals = [v[num] / v[den] for v in by.values() if num in v and den in v and v[den] > 0]
    return statistics.median(vals) if vals else None


def build_report(run_dir, machine):
    rounds = _load(os.path.join(run_dir, "results.jsonl"))
    discarded = _load(os.path.join(run_dir, "results.jsonl.discarded"))
    mem = _load(os.path.join(run_dir, "mem.jsonl"))
    order = [c for c in machine["configs"]]
    summary = {}
    for c in order:
        rs = [r for r in rounds if r["config"] == c and r.get("ok")]
        if not rs:
            summary[c] = None
            continue
        summary[c] = {
            "n": len(rs),
            "rps": _med([r["rps"] for r in rs]),
            "p50": _med([r["p50_us"] for r in rs]),
            "p99": _med([r["p99_us"] for r in rs]),
            "cpu": _med([r["proxy_us_per_req"] for r in rs]),
            "kernel": _med([r.get("proxy_kernel_share") for r in rs]),
            "sleeps": _med([r.get("proxy_sleeps_per_req") for r in rs]),
            "redis": _med([r["redis_us_per_req"] for r in rs]),
            "non2xx": _med([r["non2xx_share"] for r in rs]),
            "foreign": _med([r.get("foreign_cpu_pct") for r in rs]),
            "errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                          for r in rs),
        }

    L = []
    L.append(BEGIN)
    L.append("## Latest run: %s" % machine["date"])
    L.append("")
    L.append("- machine: %s, %s CPUs, kernel %s" % (machine["cpu"], machine["nproc"],
                                                     machine["kernel"]))
    L.append("- sluice: %s" % machine["sluice"])
    L.append("- mode: %s; %d rounds of %d s per configuration, interleaved; wrk %s, %d "
             "connection(s), %d thread(s); CPU pinning: %s"
             % (machine["mode"], machine["rounds"], machine["duration"], machine["wrk"],
                machine["connections"], machine["threads"], machine["pinning"]))
    L.append("- versions: %s" % machine["versions"])
    L.append("- command: `%s`" % machine["command"])
    L.append("")
    L.append("Medians across rounds. CPU is utime+stime of the proxy's processes "
             "(all threads, nginx master+worker) from /proc/PID/stat, before and after "
             "each wrk round, divided by the requests wrk completed; Redis the same for "
             "redis-server. Resolution is one clock tick (%d µs) per round. "
             "\"in kernel\" is the stime share of the proxy's CPU. \"sleeps/req\" is "
             "the proxy's voluntary context switches per request: each is a wait in "
             "epoll_wait for lack of work, paid for again at the wake-up. "
             "\"other CPU\" is the CPU that none of the bench's processes used during "
             "the round (other processes on the machine, and steal), in percent of one "
             "CPU: a noise indicator." % (1e6 / CLK_TCK))
    L.append("")
    L.append("| configuration | req/s | p50 µs | p99 µs | proxy CPU µs/req | in kernel "
             "| sleeps/req | Redis CPU µs/req | non-2xx | socket errors | other CPU | rounds |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in order:
        s = summary[c]
        if s is None:
            L.append("| %s | not run | | | | | | | | | | |" % LABELS.get(c, c))
            continue
        L.append("| %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %.1f%% | %d | %s | %d |" % (
            LABELS.get(c, c), s["rps"], s["p50"], s["p99"],
            _fmt(s["cpu"], "%.1f"),
            _fmt(None if s["kernel"] is None else 100 * s["kernel"], "%.0f%%"),
            _fmt(s["sleeps"], "%.2f"),
            _fmt(s["redis"], "%.2f"), 100 * s["non2xx"], s["errors"],
            _fmt(s["foreign"], "%.0f%%"), s["n"]))
    L.append("")

    # targets (issue 5)
    def S(c, k):
        return summary[c][k] if summary.get(c) else None

    targets = []

    def target(name, value, goal, ok, spec="%.2f"):
        if value is None:
            targets.append((name, "n/a", goal, "NOT RUN"))
        else:
            targets.append((name, spec % value, goal, "PASS" if ok(value) else "FAIL"))

    target("sluice-redis CPU/req ÷ nginx+limit_req CPU/req",
           _paired_ratio(rounds, "sluice_redis", "nginx_limit", "proxy_us_per_req"),
           "≤ 0.80", lambda v: v <= 0.8)
    target("sluice-redis req/s ÷ nginx+limit_req req/s",
           _paired_ratio(rounds, "sluice_redis", "nginx_limit", "rps"),
           "≥ 1.00", lambda v: v >= 1.0)
    target("sluice-redis p99 ÷ nginx+limit_req p99",
           _paired_ratio(rounds, "sluice_redis", "nginx_limit", "p99_us"),
           "≤ 1.00", lambda v: v <= 1.0)
    target("Redis CPU µs per decision (sluice-redis)", S("sluice_redis", "redis"),
           "≤ 6 µs", lambda v: v <= 6.0)
    target("sluice-local req/s ÷ nginx+limit_req req/s",
           _paired_ratio(rounds, "sluice_local", "nginx_limit", "rps"),
           "≥ 1.20", lambda v: v >= 1.2)
    target("sluice 429 CPU/req ÷ nginx 429 CPU/req (redis store)",
           _paired_ratio(rounds, "sluice_reject_redis", "nginx_reject", "proxy_us_per_req"),
           "≤ 1.00", lambda v: v <= 1.0)
    target("sluice 429 CPU/req ÷ nginx 429 CPU/req (local store)",
           _paired_ratio(rounds, "sluice_reject_local", "nginx_reject", "proxy_us_per_req"),
           "≤ 1.00", lambda v: v <= 1.0)
    target("sluice cache hits req/s ÷ nginx proxy_cache hits req/s (issue 15)",
           _paired_ratio(rounds, "sluice_cache", "nginx_cache", "rps"),
           "≥ 1.20", lambda v: v >= 1.2)
    target("sluice cache CPU/hit ÷ nginx proxy_cache CPU/hit (issue 15)",
           _paired_ratio(rounds, "sluice_cache", "nginx_cache", "proxy_us_per_req"),
           "≤ 1.00", lambda v: v <= 1.0)
    # leases (issue 13.2): Redis CPU per admitted request, all of them 2xx here
    target("sluice-redis with leases, hot key: req/s ÷ nginx+limit_req req/s",
           _paired_ratio(rounds, "sluice_hot_lease", "nginx_limit", "rps"),
           "≥ 1.00", lambda v: v >= 1.0)
    target("sluice-redis with leases, hot key: req/s ÷ sluice-local req/s",
           _paired_ratio(rounds, "sluice_hot_lease", "sluice_local", "rps"),
           "≥ 0.95", lambda v: v >= 0.95)
    target("sluice-redis with leases, hot key: p99 ÷ nginx+limit_req p99",
           _paired_ratio(rounds, "sluice_hot_lease", "nginx_limit", "p99_us"),
           "≤ 1.00", lambda v: v <= 1.0)
    target("Redis CPU µs per admitted request (leases, hot key)", S("sluice_hot_lease", "redis"),
           "≤ 0.5 µs", lambda v: v <= 0.5)
    target("mixed keys: req/s with leases ÷ without",
           _paired_ratio(rounds, "sluice_mixed_lease", "sluice_mixed", "rps"),
           "≥ 0.97 (no worse, within noise)", lambda v: v >= 0.97)
    conns = [m for m in mem if m["kind"] == "idle_conns" and m["config"].startswith("sluice")]
    if conns:
        m = conns[-1]
        ok_conns = m["alive"] >= m["n"]
        targets.append(("sluice RSS, %d idle keep-alive connections (%d still open)"
                        % (m["n"], m["alive"]), "%.1f MiB" % (m["rss_kib"] / 1024), "≤ 64 MiB",
                        "PASS" if m["rss_kib"] <= 64 * 1024 and ok_conns else "FAIL"))
    else:
        targets.append(("sluice RSS, 10000 idle keep-alive connections", "n/a", "≤ 64 MiB",
                        "NOT RUN"))
    keys = [m for m in mem if m["kind"] == "keys" and m["phase"] == "held"]
    if keys:
        m = keys[-1]
        ok_keys = (m.get("keys_sent") or 0) >= m["n"]
        targets.append(("local store RSS, %s distinct keys held" % (m.get("keys_sent"),),
                        "%.1f MiB" % (m["rss_kib"] / 1024), "≤ 128 MiB",
                        "PASS" if m["rss_kib"] <= 128 * 1024 and ok_keys else "FAIL"))
    else:
        targets.append(("local store RSS, 1000000 distinct keys", "n/a", "≤ 128 MiB", "NOT RUN"))
    second = [m for m in mem if m["kind"] == "keys" and m["phase"].startswith("second")]
    first = [m for m in mem if m["kind"] == "keys" and m["phase"] == "first"]
    if second and first:
        m, f0 = second[-1], first[-1]
        targets.append(("local store RSS after %s more keys, sent once the first %s would be "
                        "full again (reclaim; %.1f MiB after the first batch)"
                        % (m.get("keys_sent"), f0.get("keys_sent"), f0["rss_kib"] / 1024),
                        "%.1f MiB" % (m["rss_kib"] / 1024), "≤ 128 MiB",
                        "PASS" if m["rss_kib"] <= 128 * 1024 else "FAIL"))

    L.append("### Targets (issue 5)")
    L.append("")
    L.append("Ratios are the median over rounds of the ratio within each round "
             "(the two configurations ran back to back).")
    L.append("")
    L.append("| target | measured | goal | result |")
    L.append("| --- | ---: | ---: | --- |")
    for t in targets:
        L.append("| %s | %s | %s | %s |" % t)
    L.append("")

    if mem:
        L.append("### Memory runs")
        L.append("")
        L.append("| run | detail | RSS before | RSS after |")
        L.append("| --- | --- | ---: | ---: |")
        for m in mem:
            if m["kind"] == "idle_conns":
                detail = "%d connections asked, %d open and idle at the reading, %d failed, " \
                         "statuses %s" % (m["n"], m["alive"], m["failed"], ", ".join(
                             "%s × %s" % (v, k) for k, v in sorted(m["statuses"].items())))
                name = "%s, idle connections" % LABELS.get(m["config"], m["config"])
            else:
                detail = "%s distinct keys in %s s (%s requests, %s non-2xx)" % (
                    m.get("keys_sent"), m["seconds"], m.get("requests"), m.get("err_status"))
                name = "%s, keys (%s)" % (LABELS.get(m["config"], m["config"]), m["phase"])
            L.append("| %s | %s | %.1f MiB | %.1f MiB |" % (
                name, detail, m["rss_before_kib"] / 1024, m["rss_kib"] / 1024))
        L.append("")

    scraped = _load(os.path.join(run_dir, "metrics.jsonl"))
    if scraped:
        L.append("### sluice's own counters over the whole run (warm-up, probes and rounds)")
        L.append("")
        L.append("| configuration | admitted | limited | store_error | store errors "
                 "(timeout / connection / reply) | NOSCRIPT reloads | from leases "
                 "| lease takes |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in scraped:
            c = m["counters"]
            L.append("| %s | %.0f | %.0f | %.0f | %.0f / %.0f / %.0f | %.0f | %.0f | %.0f |" % (
                LABELS.get(m["config"], m["config"]),
                _counter_sum(c, "sluice_ratelimit_decisions_total", result="admitted"),
                _counter_sum(c, "sluice_ratelimit_decisions_total", result="limited"),
                _counter_sum(c, "sluice_ratelimit_decisions_total", result="store_error"),
                _counter_sum(c, "sluice_store_errors_total", kind="timeout"),
                _counter_sum(c, "sluice_store_errors_total", kind="connection"),
                _counter_sum(c, "sluice_store_errors_total", kind="reply"),
                _counter_sum(c, "sluice_store_noscript_reloads_total"),
                _counter_sum(c, "sluice_lease_admitted_total"),
                _counter_sum(c, "sluice_lease_takes_total")))
        L.append("")
    noisy = [r for r in rounds if r.get("ok") and r.get("foreign_cpu_pct", 0) > machine.get(
        "noise_max", 25)]
    L.append("Noise: %d round(s) were run again because other processes took more than "
             "%g%% of a CPU (the quietest attempt is kept); %d kept round(s) are still above "
             "that. Rounds with a lot of \"other CPU\" are the least trustworthy."
             % (len(discarded), machine.get("noise_max", 25), len(noisy)))
    L.append("")
    L.append("<details><summary>Every round</summary>")
    L.append("")
    L.append("| round | configuration | req/s | p50 µs | p99 µs | proxy µs/req | Redis µs/req "
             "| non-2xx | other CPU |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rounds:
        if r.get("ok"):
            L.append("| %d | %s | %.0f | %d | %d | %.1f | %.2f | %.1f%% | %s |" % (
                r["round"], r["config"], r["rps"], r["p50_us"], r["p99_us"],
                r["proxy_us_per_req"], r["redis_us_per_req"], 100 * r["non2xx_share"],
                _fmt(r.get("foreign_cpu_pct"), "%.0f%%")))
        else:
            L.append("| %d | %s | failed | | | | | | |" % (r["round"], r["config"]))
    L.append("")
    L.append("</details>")
    if machine.get("notes"):
        L.append("")
        for n in machine["notes"]:
            L.append("- note: %s" % n)
    L.append(END)
    return "\n".join(L) + "\n", targets


HEADER = """# Benchmarks

Produced by `bench/run.sh` (`QUICK=1` for a 2-3 minute run; the knobs are at
the top of the script). The targets come from issue 5. Absolute numbers do not
transfer between machines, and this one is shared and noisy: the ratios are
taken within one run, between configurations measured back to back.

What runs, all on loopback, each proxy with one worker and no access log:

- **upstream**: nginx, 1 worker, `return 200` with a 95-byte JSON body,
  unlimited keep-alive. Every proxy forwards to it.
- **nginx proxy_pass + limit_req**: 1 worker, keep-alive pool of 64 to the
  upstream (HTTP/1.1), `limit_req` keyed on `$binary_remote_addr` with
  rate 100000000r/s and a burst of as much with `nodelay`: it never refuses
  but looks up and updates its shared-memory node on every request.
  `error_log` at `crit`, so that refusals (logged at `error`) are not written.
- **nginx, reject path**: the same with `rate=1r/m`, no burst and
  `limit_req_status 429`: the first request passes, every later one gets
  nginx's built-in 429 page.
- **HAProxy + stick table**: `nbthread 1`, `stick-table type ip ... store
  http_req_rate(10s)`, `http-request track-sc0 src`, deny with 429 above a
  rate that is never reached, `http-reuse always`.
- **sluice, redis / local store**: `workers = 1`, `access_log = "off"`, one
  limit keyed on `ip` with rate = burst = 100000000 per 1s, so every request
  is decided (by Redis, or in process) and admitted. The redis store has
  `timeout = "20ms"`, `on_error = "allow"` and a key prefix of its own per
  configuration (they share one redis-server, not their buckets).
- **sluice, reject path**: the same with rate 1 per 1h, burst 1: after the
  first request, every request is refused with 429.
- **sluice, leases** (issue 13.2): the redis store with `lease = true` on
  the limit (`store.lease` defaults: ttl 250ms, max_share 0.1).
  *Hot key*: a per-tenant limit (`header:X-Tenant`), every request the same
  tenant (static wrk headers, `bench/lib/wrk-hot.lua`). *Mixed*: a limit
  on `header:X-Key`, 90 % of requests over 10 hot keys and 10 % over
  100,000 cold ones (`bench/lib/wrk-mixed.lua`, Lua per request in wrk),
  measured without and with leases. Same huge rate and burst as above.
- **load**: wrk, 1 thread, 64 connections, fixed-duration rounds, the
  configurations interleaved (A B C ... A B C ...). By default the proxy under
  test is pinned to the last CPU and wrk, the upstream and redis-server to the
  others. CPU per request comes from utime+stime in /proc/PID/stat (all
  threads; for nginx master and worker) before and after each round.
- **memory**: (1) sluice (redis store) with 10,000 client connections, each
  having sent one request and then left idle: VmRSS. (2) sluice, local store,
  a limit keyed on `header:X-Key` (1 per 1h, burst 1), wrk sending 1,000,000
  requests with a new key each: VmRSS with the 1,000,000 buckets held.
  (3) full runs only: the same with a refill of a few seconds, 1,000,000 keys,
  a pause until they would all be full again, 1,000,000 new keys: VmRSS
  shows whether expired buckets' memory is reused.

"""

PROFILE = """## Profile

Per-phase breakdown (parse, route, limiter, store, upstream, response): to be
filled in from `bench/profile.sh`, which gives callgrind instructions per
request (repeatable on a noisy machine), system calls per request (strace)
and perf cpu-clock samples including the kernel, with nginx + limit_req
measured the same way as a yardstick.

"""


def cmd_report(a):
    with open(os.path.join(a.run_dir, "machine.json")) as f:
        machine = json.load(f)
    block, targets = build_report(a.run_dir, machine)
    if os.path.exists(a.doc):
        with open(a.doc) as f:
            doc = f.read()
    else:
        doc = HEADER + BEGIN + "\n" + END + "\n\n" + PROFILE + "## Previous runs\n\n" + PREV + "\n"
    if BEGIN in doc and END in doc:
        i, j = doc.index(BEGIN), doc.index(END) + len(END)
        old = doc[i + len(BEGIN):j - len(END)].strip()
        doc = doc[:i] + block.rstrip("\n") + doc[j:]
    else:
        old = ""
        doc = doc.rstrip("\n") + "\n\n" + block
    if PREV not in doc:
        doc = doc.rstrip("\n") + "\n\n## Previous runs\n\n" + PREV + "\n"
    if old and not a.no_keep:
        old = old.replace("## Latest run:", "### Run of", 1)
        old = re.sub(r"(?m)^### ", "#### ", old)
        old = old.replace("#### Run of", "### Run of", 1)
        k = doc.index(PREV) + len(PREV)
        prev = doc[k:]
        runs = re.split(r"(?m)^(?=### Run of )", prev)
        kept = [r for r in runs if r.startswith("### Run of ")][:KEEP_PREVIOUS - 1]
        doc = doc[:k] + "\n\n" + old + "\n\n" + "\n".join(r.rstrip("\n") + "\n" for r in kept)
    with open(a.doc, "w") as f:
        f.write(doc.rstrip("\n") + "\n")
    print("wrote %s" % a.doc)
    for t in targets:
        print("  %-70s %12s  %-9s %s" % t)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("freeport")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_freeport)

    p = sub.add_parser("waitport")
    p.add_argument("port", type=int)
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10)
    p.set_defaults(fn=cmd_waitport)

    p = sub.add_parser("probe")
    p.add_argument("port", type=int)
    p.add_argument("--expect", default="")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_probe)

    p = sub.add_parser("round")
    p.add_argument("--config", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--redis-pid", type=int, default=0)
    p.add_argument("--upstream-pid", type=int, default=0)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu", default=None)
    p.add_argument("--script", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--noise-max", type=float, default=25.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--retry-budget", type=float, default=0)
    p.set_defaults(fn=cmd_round)

    p = sub.add_parser("idle-conns")
    p.add_argument("--config", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=60)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_idle_conns)

    p = sub.add_parser("keys")
    p.add_argument("--config", required=True)
    p.add_argument("--phase", default="held")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--n", type=int, default=1000000)
    p.add_argument("--prefix", default="k")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--max-seconds", type=int, default=120)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--cpu", default=None)
    p.add_argument("--script", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_keys)

    p = sub.add_parser("count")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(fn=cmd_count)

    p = sub.add_parser("cgsum")
    p.add_argument("file")
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--expect", default="")
    p.set_defaults(fn=cmd_cgsum)

    p = sub.add_parser("scrape")
    p.add_argument("--config", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_scrape)

    p = sub.add_parser("ticks")
    p.add_argument("pid", type=int)
    p.set_defaults(fn=cmd_ticks)

    p = sub.add_parser("rss")
    p.add_argument("pid", type=int)
    p.set_defaults(fn=cmd_rss)

    p = sub.add_parser("report")
    p.add_argument("run_dir")
    p.add_argument("doc")
    p.add_argument("--no-keep", action="store_true")
    p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
