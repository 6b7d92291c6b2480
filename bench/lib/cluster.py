#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) the sluice developers
#
# Measurement helpers for bench/cluster.sh (Python 3 standard library only;
# the /proc readings and the wrk stats line come from bench.py): waiting for
# a Redis Cluster to be ready, one wrk round against one sluice with the CPU
# and the calls of every redis-server of its setup (INFO commandstats and
# errorstats per node), and the "Redis Cluster: 1 and 3 masters" section of
# docs/benchmarks.md. It does not start or stop anything: cluster.sh does.

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

BEGIN = "<!-- bench:cluster:begin -->"
END = "<!-- bench:cluster:end -->"
TICK_US = 1e6 / B.CLK_TCK
SCRIPT_CMDS = ("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro")
# what lua/token_bucket.lua calls inside the script (commandstats counts those
# too): one GET per distinct bucket of a call, so GETs per master are the
# checks per master; and what this script itself sends
INNER_CMDS = ("get", "set", "time", "info")

# --------------------------------------------------------------------------
# a minimal RESP client: enough for INFO and CLUSTER INFO


def _read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("latin-1")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError("unexpected reply %r" % line[:40])


def redis_cmd(port, *args, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        out = b"*%d\r\n" % len(args)
        for arg in args:
            b = str(arg).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        s.sendall(out)
        with s.makefile("rb") as f:
            return _read_reply(f)
    finally:
        s.close()


def info_fields(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and not k.startswith("#"):
            out[k] = v
    return out


def _subfields(v):
    d = {}
    for kv in v.split(","):
        k, _, x = kv.partition("=")
        try:
            d[k] = float(x) if "." in x else int(x)
        except ValueError:
            pass
    return d


def node_stats(port):
    """{command: {calls, usec, rejected_calls, failed_calls}}, {error: count}."""
    f = info_fields(redis_cmd(port, "INFO", "commandstats", "errorstats"))
    cmds, errs = {}, {}
    for k, v in f.items():
        if k.startswith("cmdstat_"):
            cmds[k[8:]] = _subfields(v)
        elif k.startswith("errorstat_"):
            errs[k[10:]] = _subfields(v).get("count", 0)
    return cmds, errs


def cmd_wait_cluster(a):
    """Wait until every node says cluster_state:ok, knows all the others and
    sees all 16384 slots assigned."""
    deadline = time.monotonic() + a.timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            ready = True
            for port in a.ports:
                f = info_fields(redis_cmd(port, "CLUSTER", "INFO"))
                last = "%d: state %s, slots %s, nodes %s" % (
                    port, f.get("cluster_state"), f.get("cluster_slots_assigned"),
                    f.get("cluster_known_nodes"))
                if (f.get("cluster_state") != "ok" or f.get("cluster_slots_assigned") != "16384"
                        or int(f.get("cluster_known_nodes", 0)) != len(a.ports)):
                    ready = False
                    break
            if ready:
                return
        except (OSError, RuntimeError) as e:
            last = str(e)
        time.sleep(0.1)
    sys.exit("cluster not ready after %g s (%s)" % (a.timeout, last))


def cmd_wait_quiet(a):
    """Wait until the machine is quiet: the CPU busy over one second (all
    processes, steal included) under --max-pct of one CPU, twice in a row.
    Prints what it saw; exit 1 at the timeout. Call it while our own
    processes are idle."""
    deadline = time.monotonic() + a.timeout
    quiet = 0
    busy = None
    while time.monotonic() < deadline:
        b0, st0 = B._cpu_stat()
        time.sleep(1)
        b1, st1 = B._cpu_stat()
        busy = 100.0 * ((b1 - b0) + (st1 - st0)) / B.CLK_TCK
        quiet = quiet + 1 if busy <= a.max_pct else 0
        if quiet >= 2:
            print("%.0f" % busy)
            return
    print("%.0f" % (busy or 0))
    sys.exit(1)


# --------------------------------------------------------------------------
# sluice's counters


def sluice_counters(aport):
    """The decision and store counters of sluice's admin /metrics."""
    try:
        s = socket.create_connection(("127.0.0.1", aport), timeout=3)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError:
        return {}
    out = {}
    for line in data.decode("latin-1").split("\r\n\r\n", 1)[-1].splitlines():
        if line.startswith(("sluice_ratelimit_decisions_total", "sluice_store_")) \
                and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def _delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# --------------------------------------------------------------------------
# one round


def _snapshot(nodes, others, a):
    snap = {"nodes": []}
    for pid, port in nodes:
        cmds, errs = node_stats(port)
        snap["nodes"].append({"ticks": B.cpu_ticks(pid), "cmds": cmds, "errs": errs})
    snap["others"] = {setup: [B.cpu_ticks(p) for p in pids] for setup, pids in others.items()}
    snap["proxy"] = B.cpu_ticks(a.pid)
    snap["upstream"] = B.cpu_ticks(a.upstream_pid) if a.upstream_pid else 0
    snap["counters"] = sluice_counters(a.aport)
    snap["sys"], snap["steal"] = B._cpu_stat()
    snap["times"] = os.times()
    return snap


def _node_delta(port, n0, n1):
    calls = usec = rejected = failed = reads = 0
    other = {}
    for cmd, s1 in n1["cmds"].items():
        s0 = n0["cmds"].get(cmd, {})
        dc = s1.get("calls", 0) - s0.get("calls", 0)
        if cmd in SCRIPT_CMDS:
            calls += dc
            usec += s1.get("usec", 0) - s0.get("usec", 0)
        elif cmd == "get":
            reads += dc
        elif cmd not in INNER_CMDS and dc:
            other[cmd] = dc
        rejected += s1.get("rejected_calls", 0) - s0.get("rejected_calls", 0)
        failed += s1.get("failed_calls", 0) - s0.get("failed_calls", 0)
    return {"port": port, "ticks": n1["ticks"] - n0["ticks"], "script_calls": calls,
            "bucket_reads": reads,
            "script_usec": usec, "rejected_calls": rejected, "failed_calls": failed,
            "other_calls": other, "errors": _delta(n1["errs"], n0["errs"])}


def _one_round(a, nodes, others):
    wrk = ["wrk", "-t%d" % a.threads, "-c%d" % a.connections, "-d%ds" % a.duration,
           "--timeout", "5s", "-s", a.script, "http://127.0.0.1:%d/" % a.port]
    if a.script_args:
        wrk += ["--"] + a.script_args.split()
    if a.cpu is not None:
        wrk = ["taskset", "-c", a.cpu] + wrk
    s0 = _snapshot(nodes, others, a)
    t0 = time.monotonic()
    res = subprocess.run(wrk, capture_output=True, text=True, timeout=a.duration + 30)
    wall = time.monotonic() - t0
    s1 = _snapshot(nodes, others, a)
    st = B.parse_kv_line(res.stdout, "WRKSTATS")
    rec = {"config": a.config, "setup": a.setup, "workload": a.workload, "round": a.round,
           "ok": st is not None and st["requests"] > 0}
    if not st:
        rec["error"] = (res.stdout + res.stderr)[-500:]
        return rec
    n = max(st["requests"], 1)
    per_node = [_node_delta(port, x0, x1)
                for (pid, port), x0, x1 in zip(nodes, s0["nodes"], s1["nodes"])]
    redis_ticks = sum(x["ticks"] for x in per_node)
    proxy = s1["proxy"] - s0["proxy"]
    idle = {setup: [t1 - t0 for t0, t1 in zip(s0["others"][setup], ticks)]
            for setup, ticks in s1["others"].items()}
    mine = redis_ticks + sum(sum(t) for t in idle.values()) + (s1["upstream"] - s0["upstream"])
    c0, c1 = s0["times"], s1["times"]
    ours = proxy + mine + ((c1[0] + c1[1] + c1[2] + c1[3])
                           - (c0[0] + c0[1] + c0[2] + c0[3])) * B.CLK_TCK
    foreign = max(0.0, (s1["sys"] - s0["sys"]) - ours) + (s1["steal"] - s0["steal"])
    rec.update(st)
    rec.update({
        "wall_s": round(wall, 3),
        "rps": st["requests"] / (st["duration_us"] / 1e6),
        "proxy_us_per_req": proxy * TICK_US / n,
        "redis_ticks": redis_ticks,
        "redis_us_per_req": redis_ticks * TICK_US / n,
        "idle_ticks": idle,
        "nodes": per_node,
        "counters": _delta(s1["counters"], s0["counters"]),
        "non2xx_share": st["err_status"] / n,
        "foreign_cpu_pct": 100.0 * foreign / B.CLK_TCK / wall,
    })
    return rec


def _print_round(rec, note=""):
    if not rec["ok"]:
        print("  %-16s round %d: FAILED %s" % (rec["config"], rec["round"], rec.get("error", "")),
              flush=True)
        return
    calls = [x["script_calls"] for x in rec["nodes"]]
    bad = sum(x["rejected_calls"] + x["failed_calls"] for x in rec["nodes"])
    bad += B._counter_sum(rec.get("counters", {}), "sluice_store_errors_total")
    print("  %-16s round %d: %7.0f req/s  p99 %6.0f us  sluice %5.1f us/req  redis %5.2f us/req"
          "  script calls/node %s  non-2xx %4.1f%%  bad calls/store errors %d  other CPU %3.0f%%%s"
          % (rec["config"], rec["round"], rec["rps"], rec["p99_us"], rec["proxy_us_per_req"],
             rec["redis_us_per_req"], "/".join(str(c) for c in calls), 100 * rec["non2xx_share"],
             bad, rec["foreign_cpu_pct"], note), flush=True)


def _parse_nodes(spec):
    out = []
    for item in spec.split(","):
        if item:
            pid, _, port = item.partition(":")
            out.append((int(pid), int(port)))
    return out


def cmd_round(a):
    """One wrk round, run again (within a budget shared by the run) while other
    processes took more than --noise-max percent of a CPU; the quietest is kept."""
    nodes = _parse_nodes(a.nodes)
    others = {}
    for item in a.others.split(","):
        if item:
            setup, _, pid = item.partition(":")
            others.setdefault(setup, []).append(int(pid))
    budget_file = a.out + ".retry-budget"
    attempts = []
    while True:
        rec = _one_round(a, nodes, others)
        attempts.append(rec)
        spent = 0.0
        if os.path.exists(budget_file):
            with open(budget_file) as f:
                spent = float(f.read() or 0)
        noisy = rec["ok"] and rec["foreign_cpu_pct"] > a.noise_max
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
    _print_round(best, "" if len(attempts) == 1 else "  (kept the quietest of %d)" % len(attempts))


# --------------------------------------------------------------------------
# report

SETUPS = {
    "single": "single redis-server (redis://)",
    "cluster1": "cluster, 1 master (all 16384 slots)",
    "cluster3": "cluster, 3 masters",
}
WORKLOADS = {
    "spread": "many keys",
    "hot": "one hot key",
}


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, spec="%.1f"):
    return "n/a" if x is None else spec % x


def _idle_rates(rounds, setup):
    """Ticks per second each redis-server of a setup burns with no traffic
    (cron, cluster bus), read during the other setups' rounds."""
    rs = [r for r in rounds if r.get("ok") and setup in r.get("idle_ticks", {})]
    wall = sum(r["wall_s"] for r in rs)
    if not rs or wall <= 0:
        return None
    n = len(rs[0]["idle_ticks"][setup])
    return [sum(r["idle_ticks"][setup][i] for r in rs) / wall for i in range(n)]


def _summary(rs, idle_rates):
    """Medians over the kept rounds of one configuration."""
    n_nodes = len(rs[0]["nodes"])
    out = {"n": len(rs), "rps": _med([r["rps"] for r in rs]),
           "p50": _med([r["p50_us"] for r in rs]), "p99": _med([r["p99_us"] for r in rs]),
           "proxy_us": _med([r["proxy_us_per_req"] for r in rs]),
           "redis_us": _med([r["redis_us_per_req"] for r in rs]),
           "non2xx": sum(r["err_status"] for r in rs), "requests": sum(r["requests"] for r in rs),
           "foreign": _med([r["foreign_cpu_pct"] for r in rs])}
    # above the background: what the idle redis-servers of this setup burn
    background = sum(idle_rates) if idle_rates else None
    out["redis_net_us"] = _med([
        max(0.0, r["redis_ticks"] - background * r["wall_s"]) * TICK_US
        / max(r["requests"], 1) for r in rs]) if background is not None else None
    out["inside_us"] = _med([sum(x["script_usec"] for x in r["nodes"]) / max(r["requests"], 1)
                             for r in rs])
    calls = [sum(r["nodes"][i]["script_calls"] for r in rs) for i in range(n_nodes)]
    out["calls"] = calls
    out["reads"] = [sum(r["nodes"][i].get("bucket_reads", 0) for r in rs) for i in range(n_nodes)]
    out["calls_per_decision"] = sum(calls) / max(out["requests"], 1)
    # the busiest master's CPU per decision of the whole setup: it saturates first
    rates = idle_rates or [0.0] * n_nodes
    per_node_us = [_med([max(0.0, r["nodes"][i]["ticks"] - rates[i] * r["wall_s"]) * TICK_US
                         / max(r["requests"], 1) for r in rs]) for i in range(n_nodes)]
    out["per_node_us"] = per_node_us
    out["bad_calls"] = sum(x["rejected_calls"] + x["failed_calls"] for r in rs for x in r["nodes"])
    errs, other = {}, {}
    for r in rs:
        for x in r["nodes"]:
            for k, v in x["errors"].items():
                errs[k] = errs.get(k, 0) + v
            for k, v in x["other_calls"].items():
                other[k] = other.get(k, 0) + v
    out["errors"], out["other_calls"] = errs, other
    ctr = {}
    for r in rs:
        for k, v in r.get("counters", {}).items():
            ctr[k] = ctr.get(k, 0) + v
    out["store_errors"] = B._counter_sum(ctr, "sluice_store_errors_total")
    kinds = {}
    for k, v in ctr.items():
        if k.startswith("sluice_store_errors_total") and 'kind="' in k:
            kind = k.split('kind="', 1)[1].split('"', 1)[0]
            kinds[kind] = kinds.get(kind, 0) + v
    out["store_error_kinds"] = kinds
    out["store_error_decisions"] = B._counter_sum(ctr, "sluice_ratelimit_decisions_total",
                                                  result="store_error")
    out["admitted"] = B._counter_sum(ctr, "sluice_ratelimit_decisions_total", result="admitted")
    return out


def _shares(xs):
    total = sum(xs)
    if total <= 0:
        return "n/a"
    return " / ".join("%.0f %%" % (100.0 * x / total) for x in xs)


def _capacity(s):
    """(net µs per decision of all masters, decisions/s per core, busiest
    master's index and net µs per decision, Redis-bound decisions/s)."""
    net = s["redis_net_us"] if s["redis_net_us"] is not None else s["redis_us"]
    busiest = max(range(len(s["calls"])), key=lambda i: s["per_node_us"][i] or 0)
    b_us = s["per_node_us"][busiest]
    return (net, 1e6 / net if net > 0 else None, busiest, b_us,
            1e6 / b_us if b_us and b_us > 0 else None)


# a few timeouts in a noisy round (the store's timeout is 20 ms) take nothing
# from the CPU per decision; more than this share of the decisions does
STORE_ERRORS_MAX = 0.005


def _clean(s):
    return not (s["non2xx"] or s["bad_calls"]
                or s["store_error_decisions"] > STORE_ERRORS_MAX * s["requests"])


def _errors_cell(s):
    kinds = ", ".join("%s %d" % (k, v) for k, v in sorted(s["store_error_kinds"].items()) if v)
    if not s["store_errors"] and not s["store_error_decisions"]:
        return "0"
    return "%d (%s) → %d decisions" % (s["store_errors"], kinds or "kind n/a",
                                       s["store_error_decisions"])


def _checks_per_call(s):
    return 1 / s["calls_per_decision"] if s["calls_per_decision"] else None


def _findings(summ, spread_keys):
    """What the numbers say, computed, so that a new run cannot leave stale prose.
    Configurations that were not clean are left out of it."""
    L = []
    bad = [cfg for cfg, s in summ.items() if not _clean(s)]
    summ = {cfg: s for cfg, s in summ.items() if _clean(s)}
    one, three, single = (summ.get("cluster1_spread"), summ.get("cluster3_spread"),
                          summ.get("single_spread"))
    if one and three:
        c1, c3 = _capacity(one), _capacity(three)
        if c1[4] and c3[4]:
            L.append("- Many keys, 1 → 3 masters: the Redis-bound capacity goes from %.0f to "
                     "%.0f decisions/s, × %.2f (× 3 would be perfect); the masters got "
                     "%s of the checks (bucket reads) and %s of the script calls "
                     "(33 %% each would be even)."
                     % (c1[4], c3[4], c3[4] / c1[4], _shares(three["reads"]),
                        _shares(three["calls"])))
        k1, k3 = _checks_per_call(one), _checks_per_call(three)
        why = ""
        if k1 and k3 and k3 < 0.8 * k1:
            why = (": each master gets its share of the checks, so its calls carry fewer of "
                   "them and the fixed part of a call is paid more often")
        L.append("- Many keys, Redis CPU per decision summed over the masters: %.2f µs with 1, "
                 "%.2f µs with 3; checks per script call %s with 1, %s with 3%s."
                 % (c1[0], c3[0], _fmt(k1, "%.0f"), _fmt(k3, "%.0f"), why))
    if single and one:
        cs, c1 = _capacity(single), _capacity(one)
        L.append("- Many keys, the 1-master cluster against a single redis-server: %.2f µs "
                 "against %.2f µs of Redis CPU per decision, %s against %s decisions/s per "
                 "core (checks per script call %s against %s); sluice %.1f against %.1f µs "
                 "per decision."
                 % (c1[0], cs[0], _fmt(c1[1], "%.0f"), _fmt(cs[1], "%.0f"),
                    _fmt(_checks_per_call(one), "%.0f"), _fmt(_checks_per_call(single), "%.0f"),
                    one["proxy_us"], single["proxy_us"]))
    hots = [(name, summ.get(cfg)) for name, cfg in (("single", "single_hot"),
                                                    ("1 master", "cluster1_hot"),
                                                    ("3 masters", "cluster3_hot"))]
    hots = [(name, s) for name, s in hots if s]
    if len(hots) > 1:
        L.append("- One hot key, script calls per decision (checks per call): %s; Redis CPU "
                 "per decision: %s." % (
                     ", ".join("%s %.3f (%.0f)" % (n, s["calls_per_decision"],
                                                   1 / s["calls_per_decision"]
                                                   if s["calls_per_decision"] else 0)
                               for n, s in hots),
                     ", ".join("%s %.2f µs" % (n, _capacity(s)[0]) for n, s in hots)))
    hot3 = summ.get("cluster3_hot")
    if hot3:
        c = _capacity(hot3)
        total = max(sum(hot3["reads"]), 1)
        L.append("- One hot key lives on one slot, so on one master (%.0f %% of the checks "
                 "there): more masters do not raise its ceiling, %s decisions/s of one "
                 "core; leases (issue 13.2) are what helps a hot key."
                 % (100.0 * hot3["reads"][c[2]] / total, _fmt(c[4], "%.0f")))
    if bad:
        L.append("- Not clean: %s had non-2xx replies, rejected or failed Redis calls, or "
                 "store errors on more than %g %% of the decisions (see the table): their "
                 "numbers are not capacity, and are left out of these lines (marked † above)."
                 % (", ".join(bad), 100 * STORE_ERRORS_MAX))
    if L:
        L.append("")
    return L


def build_section(run_dir, machine):
    rounds = B._load(os.path.join(run_dir, "cluster.jsonl"))
    L = [BEGIN, "## Redis Cluster: 1 and 3 masters", ""]
    noise_max = machine.get("noise_max", 25)
    L.append("Run of %s by `%s` (%d rounds of %d s per configuration, interleaved, "
             "after a %d s warm-up each; wrk %d thread, %d connections). sluice: %s. %s; "
             "%s, %d CPUs; pinning: %s."
             % (machine["date"], machine["command"], machine["rounds"],
                machine["duration"], machine["warmup"], machine["threads"],
                machine["connections"], machine["sluice"], machine["redis"], machine["cpu"],
                machine["nproc"], machine["pinning"]))
    L.append("")
    L.append(
        "Issue 11.5: decisions per second per Redis core, and how they scale from 1 to 3 "
        "masters. One sluice (one worker) per setup and workload, one limit keyed on a "
        "request header with a rate and burst never reached, so every request is one decision, "
        "admitted. Setups: **single**: one redis-server, `redis://`, the reference; "
        "**cluster, 1 master**: one cluster-enabled redis-server that holds all 16384 slots "
        "(`CLUSTER ADDSLOTSRANGE 0 16383`); **cluster, 3 masters**: three made by "
        "`redis-cli --cluster create`, no replicas; both cluster setups through "
        "`redis-cluster://` with all their nodes as seeds. Workloads: **many keys**: "
        "`X-Key` drawn from %s keys (`bench/lib/wrk-spread.lua`), buckets over every slot; "
        "**one hot key**: one `X-Tenant` (`bench/lib/wrk-hot.lua`), one slot, one master."
        % format(machine.get("spread_keys", 100000), ","))
    L.append("")
    L.append(
        "Redis CPU is utime+stime of every redis-server of the setup (from /proc) over the "
        "round, divided by the decisions (wrk's requests); *net* subtracts what those "
        "redis-servers burn idle (cron, cluster bus), read while the other setups' rounds run. "
        "Each figure is the median over the rounds used: those during which other processes "
        "took at most %g %% of a CPU, or all of them when none was that quiet. "
        "*In-command* is Redis's own time inside the script calls (INFO commandstats `usec`), "
        "without reading, parsing and replying (wall time: it exceeds the CPU when "
        "redis-server is preempted). CPU busy is decisions/s × µs per decision, in %% of one "
        "core. Decisions/s per Redis core = 1e6 / net µs per "
        "decision. Script calls per decision below 1 is batching (several checks of one slot "
        "in one EVALSHA)." % noise_max)
    L.append("")
    L.append("| setup | workload | rounds used | decisions/s | p50 µs | p99 µs "
             "| CPU busy: sluice / all Redis | sluice µs/decision "
             "| Redis µs/decision (raw / net) | in-command µs/decision | script calls/decision "
             "| script calls per master | bucket reads per master | non-2xx "
             "| store errors (decisions left to on_error) | rejected or failed Redis calls |")
    L.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
             "| --- | ---: | ---: | ---: |")
    summ = {}
    for cfg in machine["configs"]:
        setup, workload = cfg.split("_", 1)
        rs = [r for r in rounds if r["config"] == cfg and r.get("ok")]
        if not rs:
            L.append("| %s | %s | not measured | | | | | | | | | | | | | |"
                     % (SETUPS[setup], WORKLOADS[workload]))
            continue
        # on a shared machine, the rounds others disturbed are set aside
        # when there is a quiet one
        quiet = [r for r in rs if r["foreign_cpu_pct"] <= noise_max]
        s = _summary(quiet or rs, _idle_rates(rounds, setup))
        s["rounds_used"] = "%d of %d%s" % (len(quiet or rs), len(rs), "" if quiet else ", all noisy")
        summ[cfg] = s
        L.append("| %s | %s | %s | %.0f | %.0f | %.0f | %.0f %% / %.0f %% | %.1f | %.2f / %s | %.2f "
                 "| %.3f | %s | %s | %d | %s | %d |" % (
                     SETUPS[setup] + ("" if _clean(s) else " †"), WORKLOADS[workload],
                     s["rounds_used"], s["rps"], s["p50"], s["p99"], s["proxy_us"] * s["rps"] / 1e4,
                     s["redis_us"] * s["rps"] / 1e4,
                     s["proxy_us"], s["redis_us"], _fmt(s["redis_net_us"], "%.2f"),
                     s["inside_us"], s["calls_per_decision"], _shares(s["calls"]),
                     _shares(s["reads"]), s["non2xx"], _errors_cell(s), s["bad_calls"]))
    L.append("")
    L.append("Bucket reads are the GETs the script makes (one per distinct bucket of a call): "
             "their share per master is the share of the checks.")
    L.append("")

    L.append("### Capacity per Redis core, and with 3 masters")
    L.append("")
    L.append(
        "This machine has %d CPUs: sluice's one worker has one, and wrk, the upstream and "
        "every redis-server share the other, so the three masters run on one core, next to "
        "the load generator. The measured decisions/s are capped by sluice and by that shared "
        "core (see CPU busy above), not by any one Redis: they cannot show three masters "
        "scaling, and are not meant to. What scales is the Redis side, so the scaling figure "
        "is Redis's capacity: decisions/s per Redis core (1e6 / net µs per decision); "
        "masters × that; and, closer to what a real cluster would do, the decisions/s at "
        "which its busiest master would be at 100 %% of its own core (1e6 / that master's net "
        "µs per decision of the whole setup), which discounts the product by the measured "
        "spread of the checks over the masters. These figures come from Redis servers far "
        "from saturation, each master seeing its share of what one sluice worker sends; the "
        "checks per call (the batches) grow when calls take longer to come back, so a "
        "master at 100 %% would spend less per decision than here: read the Redis-bound "
        "figures as lower bounds, the more so with 3 masters, whose batches are the smallest."
        % machine["nproc"])
    L.append("")
    L.append("| setup | workload | Redis net µs/decision (all masters) | decisions/s per Redis "
             "core | busiest master: µs per decision (share of checks) | Redis-bound "
             "decisions/s of the setup | masters × per core |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for cfg, s in summ.items():
        setup, workload = cfg.split("_", 1)
        net, per_core, busiest, b_us, bound = _capacity(s)
        masters = len(s["calls"])
        total = max(sum(s["reads"]), 1)
        # one hot key is one slot: more masters do nothing for it
        scaled = "— (one slot)" if workload == "hot" and masters > 1 else \
            _fmt(masters * per_core if per_core else None, "%.0f")
        L.append("| %s%s | %s | %.2f | %s | %.2f (%.0f %%) | %s | %s |" % (
            SETUPS[setup], "" if _clean(s) else " †", WORKLOADS[workload], net,
            _fmt(per_core, "%.0f"), b_us, 100.0 * s["reads"][busiest] / total,
            _fmt(bound, "%.0f"), scaled))
    L.append("")
    L.extend(_findings(summ, machine.get("spread_keys", 100000)))
    extra = []
    for cfg, s in summ.items():
        if s["errors"]:
            extra.append("- %s: Redis error replies %s" % (cfg, ", ".join(
                "%s × %d" % kv for kv in sorted(s["errors"].items()))))
        if s["other_calls"]:
            extra.append("- %s: other commands sluice sent during the rounds: %s" % (
                cfg, ", ".join("%s × %d" % kv for kv in sorted(s["other_calls"].items()))))
    if extra:
        L.append("Besides the script calls (from INFO commandstats and errorstats):")
        L.append("")
        L.extend(extra)
        L.append("")
    for note in machine.get("notes", []):
        L.append("- note: %s" % note)
    if machine.get("notes"):
        L.append("")
    L.append("<details><summary>Every round</summary>")
    L.append("")
    L.append("| round | configuration | decisions/s | p99 µs | sluice µs | Redis µs | "
             "script calls per master | non-2xx | store errors | other CPU |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in rounds:
        if r.get("ok"):
            L.append("| %d | %s | %.0f | %d | %.1f | %.2f | %s | %d | %d | %.0f %% |" % (
                r["round"], r["config"], r["rps"], r["p99_us"], r["proxy_us_per_req"],
                r["redis_us_per_req"], " / ".join(str(x["script_calls"]) for x in r["nodes"]),
                r["err_status"], B._counter_sum(r.get("counters", {}),
                                                "sluice_store_errors_total"),
                r["foreign_cpu_pct"]))
        else:
            L.append("| %d | %s | failed | | | | | | | |" % (r["round"], r["config"]))
    L.append("")
    L.append("</details>")
    L.append(END)
    return "\n".join(L) + "\n"


def cmd_report(a):
    with open(os.path.join(a.run_dir, "machine.json")) as f:
        machine = json.load(f)
    block = build_section(a.run_dir, machine)
    doc = open(a.doc).read() if os.path.exists(a.doc) else "# Benchmarks\n"
    if BEGIN in doc and END in doc:
        i, j = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:i] + block.rstrip("\n") + doc[j:]
    elif "\n## Previous runs\n" in doc:
        # before bench/run.sh's history, which it rewrites on every run
        i = doc.index("\n## Previous runs\n") + 1
        doc = doc[:i] + block + "\n" + doc[i:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block
    with open(a.doc, "w") as f:
        f.write(doc.rstrip("\n") + "\n")
    print("wrote %s" % a.doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("wait-cluster")
    p.add_argument("ports", type=int, nargs="+")
    p.add_argument("--timeout", type=float, default=20)
    p.set_defaults(fn=cmd_wait_cluster)

    p = sub.add_parser("wait-quiet")
    p.add_argument("--max-pct", type=float, default=25)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_wait_quiet)

    p = sub.add_parser("round")
    for name in ("--config", "--setup", "--workload", "--script", "--out", "--nodes"):
        p.add_argument(name, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aport", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--others", default="")
    p.add_argument("--upstream-pid", type=int, default=0)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu", default=None)
    p.add_argument("--script-args", default="")
    p.add_argument("--noise-max", type=float, default=25.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--retry-budget", type=float, default=0)
    p.set_defaults(fn=cmd_round)

    p = sub.add_parser("report")
    p.add_argument("run_dir")
    p.add_argument("doc")
    p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
