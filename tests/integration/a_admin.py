#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The admin listener (DESIGN "Admin listener", issue 2 point 8): /healthz
# and /readyz answer 200 on the admin address; an unknown admin path is a
# problem+json 404; the admin endpoints are never reachable through the
# proxy listener (there they are ordinary paths, routed upstream). How
# /readyz follows the store and the upstreams is o_readyz.py's concern, the
# content of /metrics o_metrics_promtool.py's.
# A hostile admin client is bounded: a request head past 8 KiB (one 100 kB
# header, 10,000 small ones, several MiB on each of four connections) is
# refused with a 4xx or a close and the daemon's RSS does not grow with it;
# a head of 4 kB (an admin token's size) still passes; an idle connection
# and one that stops mid-head are closed after the admin timeout (15 s).
# Client: http.client and raw requests. Upstream: "app", /echo for any path.
# Daemon: one route "/" to app, local store.

import threading
import time

import harness as h

ADMIN_TIMEOUT_S = 15

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "app" } }
"""


def refused(c, data):
    """Sends data (the server may stop reading midway); returns the status of
    the answer, or None when the connection closed without one."""
    try:
        c.send(data)
    except OSError:
        pass
    try:
        r = c.read_response(timeout=5)
    except (h.NoResponse, h.Timeout, OSError):
        return None
    return r.status


def is_refused(status):
    return status is None or 400 <= status < 500


def flood(addr, nbytes, out, i):
    """One connection sending a head with one header of nbytes, in pieces;
    out[i] is the status or None (closed)."""
    chunk = b"a" * 65536
    with h.Conn(addr, timeout=10) as c:
        try:
            c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(nbytes // len(chunk)):
                c.send(chunk)
            c.send(b"\r\n\r\n")
        except OSError:
            pass
        out[i] = refused(c, b"")


def check_big_heads(t, s):
    with h.Conn(s.admin) as c:
        st = refused(c, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000
                     + b"\r\n\r\n")
        t.ok(is_refused(st), "100 kB header refused (4xx or close)", st)
    with h.Conn(s.admin) as c:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
        st = refused(c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        t.ok(is_refused(st), "10,000 headers refused (4xx or close)", st)
    rss0 = h.rss_kb(s.pid)
    out = [0] * 4
    with h.RssSampler(s.pid) as rss:
        ths = [threading.Thread(target=flood, args=(s.admin, 4 << 20, out, i), daemon=True)
               for i in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(20)
    t.ok(all(is_refused(st) for st in out), "4 MiB head on 4 connections refused", out)
    t.ok(rss.max_kb - rss0 < 16 * 1024, "RSS does not grow with the heads (%d kB -> max %d kB)"
         % (rss0, rss.max_kb))
    with h.Conn(s.admin) as c:
        c.send(h.request_bytes("GET", "/healthz", [("X-Pad", "a" * 4096)]))
        t.eq(c.read_response().status, 200, "a 4 kB header still passes")
    r = h.admin_get(s.admin, "/metrics")
    t.eq(r and r[0], 200, "/metrics 200 after the hostile heads")


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})
    t0 = time.monotonic()
    idle = h.Conn(s.admin)
    slow = h.Conn(s.admin)
    slow.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")

    r = h.admin_get(s.admin, "/healthz")
    t.eq(r and r[0], 200, "/healthz 200")
    t.ok(h.wait_until(lambda: (h.admin_get(s.admin, "/readyz") or (0,))[0] == 200, 3, 0.05),
         "/readyz 200", h.admin_get(s.admin, "/readyz"))
    r = h.admin_get(s.admin, "/metrics")
    t.eq(r and r[0], 200, "/metrics 200")

    with h.Conn(s.admin) as c:
        c.send(h.request_bytes("GET", "/nope"))
        h.problem_ok(t, c.read_response(), 404, "admin /nope")

    n0 = up.snapshot()[0]
    for path in ("/healthz", "/readyz", "/metrics"):
        r = h.request(s.addr, "GET", path)
        body = r.json() if r.status == 200 else {}
        t.ok(r.status == 200 and body.get("upstream") == "app" and body.get("target") == path,
             "proxy listener forwards %s to the upstream, never answers it itself" % path,
             (r, r.body[:200]))
    t.eq(up.snapshot()[0] - n0, 3, "the upstream got the three admin-looking paths")

    check_big_heads(t, s)
    left = ADMIN_TIMEOUT_S + 5 - (time.monotonic() - t0)
    t.ok(idle.wait_closed(max(left, 0.1)), "an idle admin connection is closed by the timeout")
    closed_s = time.monotonic() - t0
    t.ok(closed_s > ADMIN_TIMEOUT_S - 1, "... not before the timeout", closed_s)
    t.ok(slow.wait_closed(2), "an admin connection stalled mid-head is closed by the timeout")
    idle.close()
    slow.close()
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
