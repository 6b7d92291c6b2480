#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Upstream failures (issue 2, point 4): nothing listening gives 502, a reset
# or a close without an answer gives 502, a hanging upstream gives 504 after
# the upstream timeout, a response that breaks or stalls mid-body reaches the
# client visibly broken (closed before Content-Length bytes, or without the
# last chunk), an upstream's own 5xx passes through untouched, a pool
# balances round-robin and skips a server that refuses connections, and with
# retries = 0 no request is ever sent upstream twice (retries: b_retries.py).
# Client: raw connections. Upstreams: "a", "b" (/echo, /hang, /stall,
# /close-mid-body, /chunked?break=1, /reset, /close, /status/NNN) and a dead
# port. Daemon: routes /down (dead port), /rr (a+b), /skip (a, dead, b), /skip0
# (the same without upstream keep-alive), /. Errors are counted in /metrics.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "2s", idle_timeout = "10s" }
upstreams = {
  app  = { servers = { "127.0.0.1:${a}" }, connect_timeout = "500ms", timeout = "1s",
           retries = 0 },
  down = { servers = { "127.0.0.1:${dead}" }, connect_timeout = "500ms", timeout = "1s" },
  rr   = { servers = { "127.0.0.1:${a}", "127.0.0.1:${b}" }, timeout = "1s" },
  skip = { servers = { "127.0.0.1:${a}", "127.0.0.1:${dead}", "127.0.0.1:${b}" },
           connect_timeout = "500ms", timeout = "1s" },
  skip0 = { servers = { "127.0.0.1:${a}", "127.0.0.1:${dead}", "127.0.0.1:${b}" },
            connect_timeout = "500ms", timeout = "1s", keepalive = 0 },
}
routes = {
  { path = "/", upstream = "app" },
  { path = "/down/", upstream = "down" },
  { path = "/rr/", upstream = "rr" },
  { path = "/skip/", upstream = "skip" },
  { path = "/skip0/", upstream = "skip0" },
}
"""


def one(s, target, timeout=5, closes=False):
    """One GET on a fresh connection: (response, seconds, closed after it);
    waits for the close only when the case expects one."""
    with h.Conn(s.addr, timeout=timeout) as c:
        c.send(h.request_bytes("GET", target))
        t0 = time.monotonic()
        r = c.read_response(timeout=timeout)
        return r, time.monotonic() - t0, c.wait_closed(2) if closes else None


def main(env):
    t = env.t
    a = env.upstream("a")
    b = env.upstream("b")
    dead = h.free_port()
    s = env.sluice(CONF, values={"a": a.port, "b": b.port, "dead": dead})

    # nothing listening
    r, el, _ = one(s, "/down/echo")
    h.problem_ok(t, r, 502, "upstream down")
    t.ok(el < 1.5, "upstream down: answered at once (%.2fs)" % el)

    # reset and close without an answer, each sent upstream exactly once
    for path in ("/reset", "/close"):
        n0 = a.snapshot()[0]
        r, el, _ = one(s, path)
        h.problem_ok(t, r, 502, "upstream %s before answering" % path[1:])
        time.sleep(0.1)
        t.eq(a.snapshot()[0] - n0, 1, "upstream %s: request sent upstream exactly once" % path[1:])

    # hanging upstream: 504 after timeout = 1s
    n0 = a.snapshot()[0]
    r, el, _ = one(s, "/hang")
    h.problem_ok(t, r, 504, "upstream hangs")
    t.ok(0.8 <= el <= 2.5, "upstream hangs: 504 after the 1s timeout (%.2fs)" % el)
    time.sleep(0.1)
    t.eq(a.snapshot()[0] - n0, 1, "upstream hangs: request sent once (no retry)")

    # broken mid-body: Content-Length 1000, 100 bytes, close
    r, el, closed = one(s, "/close-mid-body", closes=True)
    t.eq(r.status, 200, "close mid-body: the head (200) is passed on")
    t.ok(not r.complete and r.body_len < 1000,
         "close mid-body: client sees an incomplete body (%d bytes, framing %s)"
         % (r.body_len, r.framing), repr(r))
    t.ok(closed, "close mid-body: client connection closed")

    # stalled mid-body: 100 bytes then nothing; cut after the 1s timeout
    t0 = time.monotonic()
    r, el, closed = one(s, "/stall", closes=True)
    el = time.monotonic() - t0
    t.eq(r.status, 200, "stall mid-body: the head (200) is passed on")
    t.ok(not r.complete and r.body_len < 1000,
         "stall mid-body: client sees an incomplete body (%d bytes)" % r.body_len, repr(r))
    t.ok(closed and el <= 3.5, "stall mid-body: connection closed after the timeout (%.2fs)" % el)

    # chunked response broken before its last chunk
    r, el, closed = one(s, "/chunked?n=4&size=50&break=1", closes=True)
    t.eq(r.status, 200, "chunked broken: head passed on")
    t.ok(not r.complete, "chunked broken: client never sees a complete body (%d bytes, %s)"
         % (r.body_len, r.framing), repr(r))
    t.ok(closed, "chunked broken: client connection closed")

    # the same, complete, for contrast
    r, _, _ = one(s, "/chunked?n=4&size=50")
    t.ok(r.status == 200 and r.complete and r.body_len == 200, "complete chunked response",
         repr(r))

    # upstream's own errors pass through
    for st in (500, 503, 404):
        r, _, _ = one(s, "/status/%d" % st)
        ok = r.status == st and b'"upstream": "a"' in r.body
        t.ok(ok, "upstream %d passes through with its own body" % st, (r, r.body[:200]))

    # the keep-alive connection to the client survives an upstream error
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/down/echo"))
        r1 = c.read_response()
        if c.is_open(0.2):
            c.send(h.request_bytes("GET", "/echo"))
            r2 = c.read_response()
            t.eq((r1.status, r2.status), (502, 200), "502 then 200 on one client connection")
        else:
            t.note("client connection closed after a 502 (allowed)")

    # round-robin over a and b
    na, nb = a.snapshot()[0], b.snapshot()[0]
    sts = [one(s, "/rr/echo?i=%d" % i)[0].status for i in range(8)]
    da, db = a.snapshot()[0] - na, b.snapshot()[0] - nb
    t.ok(all(x == 200 for x in sts), "round-robin: 8 requests answered", sts)
    t.ok(da >= 3 and db >= 3 and da + db == 8, "round-robin: a got %d, b got %d" % (da, db))

    # a, dead, b: the refused connect moves on to the next server; once with
    # upstream keep-alive, once without (every request picks and connects)
    for pool in ("skip", "skip0"):
        na, nb = a.snapshot()[0], b.snapshot()[0]
        sts = [one(s, "/%s/echo?i=%d" % (pool, i))[0].status for i in range(9)]
        da, db = a.snapshot()[0] - na, b.snapshot()[0] - nb
        t.ok(all(x == 200 for x in sts), "%s: all 9 requests answered despite a dead server"
             % pool, sts)
        t.eq(da + db, 9, "%s: every request reached exactly one live upstream once" % pool)
        t.ok(da >= 2 and db >= 2, "%s: both live servers used (a %d, b %d)" % (pool, da, db))

    m = h.scrape(s.admin)
    for up_name, kind in (("down", "connect_error"), ("app", "response_timeout"),
                          ("app", "broken"), ("skip0", "connect_error")):
        t.ok(h.metric(m, "sluice_upstream_errors_total", upstream=up_name, kind=kind) >= 1,
             "/metrics: upstream_errors_total{upstream=%s,kind=%s} counted" % (up_name, kind))
    t.ok(s.alive(), "daemon alive after the upstream failures")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
