#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Upstream health (issue 10, point 2). Active checks: a server whose /health
# answers 500 stops getting requests within about fails * interval and gets
# them again after passes good checks; with every server of a checked pool
# down the answer is 503 problem+json at once, and no request reaches an
# upstream; a reload that keeps the upstream keeps the verdicts. A pool
# without active checks keeps trying when all its servers are dead (502).
# Passive ejection: after max_fails 5xx in a row (passive_5xx) the server is
# ejected for fail_timeout, doubled at the next ejection; a refused connect
# ejects too. sluice_upstream_server_up shows each server's state.
# Client: fresh connections. Upstreams: "a", "b" (checked), "d", "e"
# (passive 5xx), "f" and a dead port (passive connect), two dead ports
# (unchecked). Daemon: two workers, so states are shown to be shared.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = {
  checked = { servers = { "127.0.0.1:${a}", "127.0.0.1:${b}" }, keepalive = 0,
              health = { path = "/health", interval = "200ms", timeout = "150ms",
                         fails = 2, passes = 2 } },
  plain = { servers = { "127.0.0.1:${dead1}", "127.0.0.1:${dead2}" },
            connect_timeout = "300ms" },
  passive = { servers = { "127.0.0.1:${d}", "127.0.0.1:${e}" },
              health = { max_fails = 2, fail_timeout = "1s", max_fail_timeout = "5s",
                         passive_5xx = true } },
  pconn = { servers = { "127.0.0.1:${dead3}", "127.0.0.1:${f}" },
            health = { max_fails = 1, fail_timeout = "2s" } },
}
routes = {
  { path = "/c/", upstream = "checked" },
  { path = "/p/", upstream = "plain" },
  { path = "/x/", upstream = "passive" },
  { path = "/k/", upstream = "pconn" },
}
"""


def get(s, target):
    with h.Conn(s.addr, timeout=5) as c:
        c.send(h.request_bytes("GET", target))
        t0 = time.monotonic()
        r = c.read_response(timeout=5)
        return r, time.monotonic() - t0


def hits(up, since):
    """Requests other than health checks the upstream got since index `since`."""
    return sum(1 for r in up.requests_since(since) if not r["target"].startswith("/health"))


def server_up(s, upstream, up_port):
    m = h.scrape(s.admin)
    series = [v for n, ls, v in m if n == "sluice_upstream_server_up"
              and ls.get("upstream") == upstream and ls.get("server") == "127.0.0.1:%d" % up_port]
    return series[0] if series else None


def wait_state(s, upstream, up_port, want, timeout):
    """Seconds until the metric shows want, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server_up(s, upstream, up_port) == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def active_checks(t, s, a, b):
    t.ok(wait_state(s, "checked", a.port, 1, 2) is not None
         and server_up(s, "checked", b.port) == 1, "active: both servers up at start")
    checks = [r for r in a.requests_since(0) if r["target"] == "/health"]
    t.ok(len(checks) >= 1, "active: a gets GET /health")
    if checks:
        hd = {k.lower(): v for k, v in checks[0]["headers"]}
        t.eq((checks[0]["method"], hd.get("host"), hd.get("user-agent"), hd.get("connection")),
             ("GET", "127.0.0.1:%d" % a.port, "sluice-health", "close"),
             "active: the check's method, Host, User-Agent and Connection")

    a.health_status = 500
    el = wait_state(s, "checked", a.port, 0, 3)
    t.ok(el is not None and el < 1.2, "active: a marked down within ~fails*interval (%s s)" % el)
    na, nb = a.snapshot()[0], b.snapshot()[0]
    sts = [get(s, "/c/echo?i=%d" % i)[0].status for i in range(8)]
    t.ok(all(x == 200 for x in sts), "active: requests answered while a is down", sts)
    t.eq((hits(a, na), hits(b, nb)), (0, 8), "active: a down gets nothing, b gets all")

    a.health_status = 200
    el = wait_state(s, "checked", a.port, 1, 3)
    t.ok(el is not None and el < 1.2, "active: a up again after passes good checks (%s s)" % el)
    na = a.snapshot()[0]
    for i in range(6):
        get(s, "/c/echo?j=%d" % i)
    t.ok(hits(a, na) >= 1, "active: a gets requests again (%d of 6)" % hits(a, na))


def all_down(t, s, a, b):
    a.health_status = b.health_status = 500
    t.ok(wait_state(s, "checked", a.port, 0, 3) is not None
         and wait_state(s, "checked", b.port, 0, 3) is not None, "all down: both marked down")
    na, nb = a.snapshot()[0], b.snapshot()[0]
    r, el = get(s, "/c/echo")
    doc = h.problem_ok(t, r, 503, "all down")
    t.ok(el < 0.2, "all down: answered at once (%.3f s)" % el)
    t.ok(doc is not None and "health check" in doc.get("detail", ""),
         "all down: the detail says why", doc)
    t.ok(r.header("retry-after") is not None, "all down: Retry-After")
    time.sleep(0.1)
    t.eq((hits(a, na), hits(b, nb)), (0, 0), "all down: no request reached an upstream")
    return na, nb


def reload_keeps_state(t, s, a, b):
    # b comes back; a stays down across a reload of the same upstreams
    b.health_status = 200
    t.ok(wait_state(s, "checked", b.port, 1, 3) is not None, "reload: b up again before it")
    s.reload(CONF.replace('access_log = "off"', 'access_log = "off"\n-- reloaded'))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and h.metric(h.scrape(s.admin), "sluice_config_reloads_total",
                                                 result="success") < 1:
        time.sleep(0.05)
    t.eq(h.metric(h.scrape(s.admin), "sluice_config_reloads_total", result="success"), 1,
         "reload: done")
    na = a.snapshot()[0]
    for i in range(4):
        get(s, "/c/echo?r=%d" % i)
    t.eq(hits(a, na), 0, "reload: a, down before the reload, is still down after it")
    t.eq(server_up(s, "checked", a.port), 0, "reload: the metric still shows a down")
    a.health_status = 200
    t.ok(wait_state(s, "checked", a.port, 1, 3) is not None, "reload: a comes back after it")


def unchecked_all_dead(t, s):
    for i in range(2):
        r, el = get(s, "/p/echo")
        h.problem_ok(t, r, 502, "no active checks, all dead (try %d)" % (i + 1))
    m = h.scrape(s.admin)
    t.ok(h.metric(m, "sluice_upstream_errors_total", upstream="plain", kind="connect_error")
         >= 4, "no active checks: every dead server is tried again (connects counted)")


def passive_5xx(t, s, d, e):
    d.force_status = 500
    nd, ne = d.snapshot()[0], e.snapshot()[0]
    sts = [get(s, "/x/echo?i=%d" % i)[0].status for i in range(10)]
    t.eq(hits(d, nd), 2, "passive 5xx: d gets max_fails=2 requests, then is ejected")
    t.eq(sts.count(500), 2, "passive 5xx: the two 5xx pass through to the client")
    t.eq(hits(e, ne), 8, "passive 5xx: e takes the rest")
    t.eq(server_up(s, "passive", d.port), 0, "passive 5xx: the metric shows d ejected")
    m = h.scrape(s.admin)
    t.eq(h.metric(m, "sluice_upstream_server_ejections_total", upstream="passive",
                  server="127.0.0.1:%d" % d.port), 1, "passive 5xx: one ejection counted")
    # after fail_timeout d is tried again, fails max_fails more times: ejected for twice as long
    t.ok(wait_state(s, "passive", d.port, 1, 2.5) is not None, "passive 5xx: back after 1s")
    for i in range(6):
        get(s, "/x/echo?j=%d" % i)
    t0 = time.monotonic()
    t.eq(server_up(s, "passive", d.port), 0, "passive 5xx: ejected again while it fails")
    time.sleep(1.4)
    t.eq(server_up(s, "passive", d.port), 0, "passive 5xx: the second ejection is longer (2s)")
    d.force_status = None
    el = wait_state(s, "passive", d.port, 1, 3)
    t.ok(el is not None, "passive 5xx: back after the doubled fail_timeout (%.1f s)"
         % (time.monotonic() - t0))


def passive_connect(t, s, dead3):
    sts = [get(s, "/k/echo?i=%d" % i)[0].status for i in range(6)]
    t.ok(all(x == 200 for x in sts), "passive connect: all answered by f", sts)
    t.eq(server_up(s, "pconn", dead3), 0, "passive connect: the refusing server is ejected")
    m = h.scrape(s.admin)
    t.eq(h.metric(m, "sluice_upstream_errors_total", upstream="pconn", kind="connect_error"),
         1, "passive connect: one refused connect, then no more tries")


def main(env):
    t = env.t
    a, b = env.upstream("a"), env.upstream("b")
    d, e, f = env.upstream("d"), env.upstream("e"), env.upstream("f")
    values = {"a": a.port, "b": b.port, "d": d.port, "e": e.port, "f": f.port,
              "dead1": h.free_port(), "dead2": h.free_port(), "dead3": h.free_port()}
    s = env.sluice(CONF, values=values)

    active_checks(t, s, a, b)
    all_down(t, s, a, b)
    reload_keeps_state(t, s, a, b)
    unchecked_all_dead(t, s)
    passive_5xx(t, s, d, e)
    passive_connect(t, s, values["dead3"])
    t.ok(s.alive(), "daemon alive")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
