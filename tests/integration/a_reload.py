#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# SIGHUP reload (issue 2, point 6). A valid new conf takes effect for new
# requests without dropping any connection: an open keep-alive connection and
# a request in flight survive it. An invalid conf is refused with its
# file:line in the error log and the old conf keeps serving.
# Client: raw keep-alive connections. Upstreams: "a" and "b" (/echo names the
# one that answered, /slow). Daemon: one route "/" to a, then to b, then a
# broken conf. Reloads are counted in /metrics.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
error_log = "stderr"
shutdown_timeout = "5s"
client = { header_timeout = "2s", idle_timeout = "20s" }
upstreams = {
  a = { servers = { "127.0.0.1:${a}" }, timeout = "5s" },
  b = { servers = { "127.0.0.1:${b}" }, timeout = "5s" },
}
routes = { { path = "/", upstream = "%s" }, { path = "/other/", upstream = "%s" } }
"""

BROKEN = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "2s", idle_timout = "20s" }
upstreams = { a = { servers = { "127.0.0.1:${a}" } } }
routes = { { path = "/", upstream = "a" } }
"""


def who(addr, conn=None):
    """Which upstream answers GET /echo (on conn, or a fresh connection)."""
    req = h.request_bytes("GET", "/echo")
    if conn is None:
        with h.Conn(addr) as c:
            c.send(req)
            r = c.read_response()
    else:
        conn.send(req)
        r = conn.read_response()
    return r.json().get("upstream") if r.status == 200 else "status %d" % r.status


def main(env):
    t = env.t
    a = env.upstream("a")
    b = env.upstream("b")
    s = env.sluice(CONF % ("a", "b"), values={"a": a.port, "b": b.port})

    t.eq(who(s.addr), "a", "before reload: / goes to upstream a")
    keep = h.Conn(s.addr)
    env.at_exit(keep.close)
    t.eq(who(s.addr, keep), "a", "keep-alive connection opened before reload is served by a")

    inflight = h.Conn(s.addr)
    env.at_exit(inflight.close)
    n0 = a.snapshot()[0]
    inflight.send(h.request_bytes("GET", "/slow?ms=1000"))
    t.ok(a.wait_requests(n0 + 1, 3) > n0, "slow request reached upstream a")

    s.reload(CONF % ("b", "a"))
    switched = h.wait_until(lambda: who(s.addr) == "b", 5, 0.05)
    t.ok(switched, "after a good reload new connections go to upstream b",
         "stderr tail: %s" % s.stderr_text()[-1000:])

    r = inflight.read_response(timeout=5)
    t.eq(r.status, 200, "request in flight across the reload completes")
    t.ok(r.complete, "its body is complete")

    t.ok(keep.is_open(), "keep-alive connection from before the reload is still open")
    got = who(s.addr, keep)
    t.ok(got in ("a", "b"), "next request on that connection is answered (%s)" % got, got)
    t.ok(s.alive(), "daemon still running after a good reload")

    before = s.stderr_text()
    s.reload(BROKEN)
    want = "%s:5: " % s.conf_path
    logged = h.wait_until(lambda: want in s.stderr_text()[len(before):], 5, 0.05)
    t.ok(logged, "bad reload logs '%s...' in the error log" % want,
         "new stderr: %r" % s.stderr_text()[len(before):][-1500:])
    time.sleep(0.2)
    t.ok(s.alive(), "daemon still running after a bad reload")
    t.eq(who(s.addr), "b", "after a bad reload the old conf (upstream b) keeps serving")
    t.ok(keep.is_open(), "keep-alive connection still open after the bad reload")
    t.eq(who(s.addr, keep), "b", "and still served")
    t.ok(s.healthy(), "/healthz still 200 after the bad reload")

    m = h.scrape(s.admin)
    t.eq((h.metric(m, "sluice_config_reloads_total", result="success"),
          h.metric(m, "sluice_config_reloads_total", result="failure"),
          h.metric(m, "sluice_config_last_reload_successful")), (1, 1, 0),
         "/metrics: reloads success 1, failure 1, last reload unsuccessful")

    # a second good reload still works after a refused one
    s.reload(CONF % ("a", "b"))
    t.ok(h.wait_until(lambda: who(s.addr) == "a", 5, 0.05),
         "a good reload after a refused one takes effect")
    m = h.scrape(s.admin)
    t.eq((h.metric(m, "sluice_config_reloads_total", result="success"),
          h.metric(m, "sluice_config_last_reload_successful")), (2, 1),
         "/metrics: reloads success 2, last reload successful")

    keep.close()
    inflight.close()
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
