#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Latency taken apart (issue 4, point 3):
# - Server-Timing: a route with server_timing = true answers
#   `limiter;dur=X` and, when proxied, `upstream;dur=Y` (Y covers a 250 ms
#   upstream); a 429 carries the limiter only; a route without the switch
#   has no Server-Timing at all.
# - slow_request = "100ms": a request slower than that writes one warn line
#   "slow request (trace T): X ms total: head .., limiter .., upstream wait ..,
#   upstream first byte .., response .." to the error log, with the client's
#   trace id and phases that add up to the total; fast requests and a 50 ms
#   one write none.
# - the JSON access log carries limiter_ms, upstream_ms, limit and trace_id
#   (null where they do not apply), the same durations as Server-Timing.
# Client: one request per connection, each with its own W3C traceparent so
# that every line can be matched. Upstream: /echo and /slow?ms=N. Daemon:
# 1 worker, local store, per_key = 2 per hour, routes by host (the test
# upstream picks its behaviour by the whole path): timed.test (limited,
# server_timing), plain.test (limited) and bare.test (no limits,
# server_timing); access log to a file, error log on stderr.

import os
import re

import harness as h
import obs_util as o

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
error_log = "stderr"
slow_request = "100ms"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = 2, per = "1h" } }
routes = {
  { host = "timed.test", path = "/", upstream = "app", limits = "per_key", server_timing = true },
  { host = "plain.test", path = "/", upstream = "app", limits = "per_key" },
  { host = "bare.test", path = "/", upstream = "app", server_timing = true },
}
"""
SLOW_MS = 250
SLOW_RE = re.compile(
    r"^\S+ warn slow request \(trace ([0-9a-f]{32})\): ([\d.]+) ms total: head ([\d.]+) ms, "
    r"limiter ([\d.]+) ms, upstream wait ([\d.]+) ms, upstream first byte ([\d.]+) ms, "
    r"response ([\d.]+) ms")


def trace_ids():
    n = [0]

    def nxt():
        n[0] += 1
        return "%032x" % (0x4bf92f3577b34da6a3ce929d0e0e0000 + n[0])
    return nxt


def server_timing(r):
    """{name: dur in ms or None} from every Server-Timing field of r, or None
    when there is none."""
    fields = r.header_all("server-timing")
    if not fields:
        return None
    out = {}
    for item in ",".join(fields).split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        dur = None
        for p in parts[1:]:
            k, _, v = p.partition("=")
            if k.strip().lower() == "dur":
                try:
                    dur = float(v)
                except ValueError:
                    dur = v
        out[parts[0]] = dur
    return out


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})
    access = os.path.join(s.dir, "access.log")
    nxt = trace_ids()
    sent = {}   # trace id -> (label, response)

    def get(label, target, key=None):
        route, _, target = target.partition("/")
        target = "/" + target
        tid = nxt()
        hdrs = [("traceparent", "00-%s-00f067aa0ba902b7-01" % tid)]
        if key:
            hdrs.append(("X-Key", key))
        r = h.request(s.addr, "GET", target, hdrs, host=route + ".test")
        sent[tid] = (label, r)
        return tid, r

    # ---- Server-Timing --------------------------------------------------
    tid_ok, r = get("timed echo", "timed/echo", "k1")
    t.eq(r.status, 200, "timed: timed.test /echo is 200")
    st = server_timing(r)
    t.ok(st is not None and is_num(st.get("limiter")) and is_num(st.get("upstream")),
         "timed: Server-Timing has limiter;dur and upstream;dur", r.header_all("server-timing"))

    tid_slow, r = get("timed slow", "timed/slow?ms=%d" % SLOW_MS, "k1")
    t.eq(r.status, 200, "timed: timed.test /slow?ms=%d is 200" % SLOW_MS)
    st_slow = server_timing(r) or {}
    t.ok(is_num(st_slow.get("upstream")) and SLOW_MS <= st_slow["upstream"] < SLOW_MS + 1000,
         "timed: upstream;dur covers the %d ms upstream" % SLOW_MS, st_slow)
    t.ok(is_num(st_slow.get("limiter")) and st_slow["limiter"] < 50,
         "timed: limiter;dur is small beside it", st_slow)

    tid_429, r = get("timed 429", "timed/echo", "k1")
    t.eq(r.status, 429, "timed: third request on key k1 is 429")
    st = server_timing(r)
    t.ok(st is not None and is_num(st.get("limiter")) and "upstream" not in st,
         "timed: the 429 has limiter;dur and no upstream entry", r.header_all("server-timing"))

    tid_plain, r = get("plain echo", "plain/echo", "k2")
    t.eq(r.status, 200, "plain: plain.test /echo is 200")
    t.eq(r.header_all("server-timing"), [], "plain: no Server-Timing without the switch")
    tid_plain429 = None
    for _ in range(2):
        tid_plain429, r = get("plain 429", "plain/echo", "k2")
    t.eq(r.status, 429, "plain: third request on key k2 is 429")
    t.eq(r.header_all("server-timing"), [], "plain: no Server-Timing on its 429 either")
    seen = up.requests_since(0)
    t.ok(all(not any(k.lower() == "server-timing" for k, _ in q["headers"]) for q in seen),
         "the upstream never receives a Server-Timing header")

    tid_bare, r = get("bare echo", "bare/echo")
    t.eq(r.status, 200, "bare: bare.test /echo (no limits) is 200")
    st = server_timing(r)
    t.ok(st is not None and is_num(st.get("upstream")),
         "bare: Server-Timing has upstream;dur", r.header_all("server-timing"))
    t.note("bare (no limits) Server-Timing: %r" % (r.header_all("server-timing"),))

    # ---- slow_request ---------------------------------------------------
    tid_pslow, r = get("plain slow", "plain/slow?ms=%d" % SLOW_MS, "k3")
    t.eq(r.status, 200, "slow: plain.test /slow?ms=%d is 200" % SLOW_MS)
    tid_mid, r = get("bare 50ms", "bare/slow?ms=50")
    t.eq(r.status, 200, "slow: bare.test /slow?ms=50 is 200")
    fast = [tid for tid, (lab, _) in sent.items() if tid not in (tid_slow, tid_pslow)]

    def slow_lines():
        out = []
        for ln in s.stderr_text().splitlines():
            if "slow request" in ln:
                out.append(ln)
        return out
    h.wait_until(lambda: len(slow_lines()) >= 2, 3, 0.05)
    lines = slow_lines()
    t.eq(len(lines), 2, "slow: exactly two slow-request lines (the two %d ms requests)"
         % SLOW_MS)
    by_trace = {}
    for ln in lines:
        m = SLOW_RE.match(ln)
        t.ok(m, "slow: line has the documented shape", ln)
        if m:
            by_trace[m.group(1)] = [float(x) for x in m.groups()[1:]]
    for tid, label in ((tid_slow, "timed"), (tid_pslow, "plain")):
        ph = by_trace.get(tid)
        if not t.ok(ph is not None, "slow: %s %d ms request logged with its trace id %s"
                    % (label, SLOW_MS, tid), lines):
            continue
        total, head, lim, wait, ttfb, resp = ph
        t.ok(total >= SLOW_MS and ttfb >= SLOW_MS - 10,
             "slow: %s total %.1f ms, upstream first byte %.1f ms" % (label, total, ttfb), ph)
        t.ok(abs(head + lim + wait + ttfb + resp - total) <= 0.5 + 0.05 * 5,
             "slow: %s phases add up to the total" % label, ph)
    t.ok(not any(tid in ln for ln in lines for tid in fast),
         "slow: no line for the fast requests nor the 50 ms one")

    # ---- access log -----------------------------------------------------
    lines_, bad = o.wait_access_lines(
        access, lambda ls: set(sent) <= {x.get("trace_id") for x in ls}, timeout=4)
    t.eq(bad, [], "access log: every line is JSON")
    log = {x.get("trace_id"): x for x in lines_}
    missing = [sent[tid][0] for tid in sent if tid not in log]
    if not t.ok(not missing, "access log: one line per request, matched by the client's "
                "trace id", "missing %s; trace ids logged %s" % (missing, list(log)[:10])):
        return

    def field_ok(tid, label, **want):
        x = log[tid]
        bad_ = {}
        for k, w in want.items():
            v = x.get(k, "<absent>")
            if w == "num":
                good = is_num(v)
            elif callable(w):
                good = is_num(v) and w(v)
            else:
                good = v == w
            if not good:
                bad_[k] = v
        t.ok(not bad_, "access log: %s: %s" % (label, ", ".join(
            "%s %s" % (k, "number" if w == "num" else ("in range" if callable(w) else
                                                         repr(w))) for k, w in want.items())),
             "wrong: %r; line %r" % (bad_, x))

    field_ok(tid_ok, "timed 200", status=200, limit="admitted", limiter_ms="num",
             upstream_ms="num", route="timed.test/")
    field_ok(tid_slow, "timed slow", limit="admitted", limiter_ms="num",
             upstream_ms=lambda v: v >= SLOW_MS, duration_ms=lambda v: v >= SLOW_MS)
    field_ok(tid_429, "timed 429", status=429, limit="limited", limiter_ms="num",
             upstream_ms=None, upstream=None)
    field_ok(tid_plain, "plain 200", status=200, limit="admitted", limiter_ms="num",
             upstream_ms="num")
    field_ok(tid_plain429, "plain 429", status=429, limit="limited", upstream_ms=None)
    field_ok(tid_bare, "bare (no limits)", status=200, limiter_ms=None, limit="none",
             upstream_ms="num", route="bare.test/")
    keys = ("limiter_ms", "upstream_ms", "limit", "trace_id")
    t.ok(all(all(k in x for k in keys) for x in lines_),
         "access log: every line has limiter_ms, upstream_ms, limit and trace_id")

    # The header goes out before the body, so its upstream duration ends at
    # the response head while the log's runs to the last byte: equal up to
    # the time a small body takes.
    x = log[tid_slow]
    hv, lv = st_slow.get("limiter"), x.get("limiter_ms")
    t.ok(is_num(hv) and is_num(lv) and abs(hv - lv) <= 0.0015,
         "Server-Timing limiter;dur equals the access log's limiter_ms (timed slow request)",
         "header %r, log %r" % (hv, lv))
    hv, lv = st_slow.get("upstream"), x.get("upstream_ms")
    t.ok(is_num(hv) and is_num(lv) and -0.0015 <= lv - hv <= 5,
         "Server-Timing upstream;dur is the access log's upstream_ms up to the body "
         "(timed slow request)", "header %r, log %r" % (hv, lv))

    fwd = [q for q in up.requests_since(0)
           if any(k.lower() == "traceparent" and tid_ok in v for k, v in q["headers"])]
    t.eq(len(fwd), 1, "the client's trace id goes upstream in traceparent")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=30)
