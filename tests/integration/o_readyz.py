#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# /readyz follows the store and the upstreams (issue 4, points 2 and 4):
# - store redis with on_error = "deny": 200 {"ready":true} while Redis runs,
#   503 {"ready":false,"missing":"store"} once redis-server is stopped (no
#   client traffic needed), 200 again once redis-server is back on the same
#   port; /healthz stays 200 throughout.
# - with on_error = "allow" a Redis outage leaves sluice ready.
# - an upstream with one refusing and one live server stays ready after a
#   request tried the refusing one; an upstream whose every server refuses
#   connections gives 503 {"missing":"upstream dead"} after a request has
#   tried it (502), and 200 again once a server listens there and a request
#   got through.
# Readiness is recomputed by each worker once a second, so every flip is
# waited for with a bound of a few seconds.
# Client: one request per connection. Upstreams: /echo on a live port, and
# free ports nobody listens on. Daemon: 2 workers.

import time

import harness as h
import obs_util as o

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = { kind = "redis", url = "${redis}", timeout = "100ms", on_error = "${policy}" }
upstreams = {
  app  = { servers = { "127.0.0.1:${up}" }, connect_timeout = "500ms" },
  half = { servers = { "127.0.0.1:${dead1}", "127.0.0.1:${up}" }, connect_timeout = "500ms" },
  dead = { servers = { "127.0.0.1:${dead2}", "127.0.0.1:${dead3}" }, connect_timeout = "500ms" },
}
limits = { per_key = { key = "header:X-Key", rate = 1000, per = "1s" } }
routes = {
  { path = "/", upstream = "app", limits = "per_key" },
  { path = "/half/", upstream = "half" },
  { path = "/dead/", upstream = "dead" },
}
"""
FLIP = 5.0      # bound on any readiness flip (1 s tick, reconnect backoff)


def show(ans):
    return "no answer" if ans is None else "%d %r" % ans


def store_part(env, up, dead):
    t = env.t
    redis = env.redis("redis-deny")
    s = env.sluice(CONF, name="sluice-deny",
                   values={"up": up.port, "redis": redis.url, "policy": "deny",
                           "dead1": dead[0], "dead2": dead[1], "dead3": dead[2]})
    # Not ready until the workers' first connection to Redis is up.
    waited, ans = o.wait_readyz(s.admin, 200, FLIP)
    t.eq(ans, (200, {"ready": True}),
         "deny: /readyz 200 {\"ready\":true} with redis up (%.2fs after start)" % waited)
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "a")]).status, 200,
         "deny: a limited request passes with redis up")

    redis.stop()
    waited, ans = o.wait_readyz(s.admin, 503, FLIP)
    t.eq(ans, (503, {"ready": False, "missing": "store"}),
         "deny: /readyz 503 missing \"store\" after redis-server stopped (%.2fs, no traffic)"
         % waited)
    hz = h.admin_get(s.admin, "/healthz")
    t.ok(hz is not None and hz[0] == 200, "deny: /healthz still 200 while redis is down", hz)
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "a")]).status, 503,
         "deny: a limited request is 503 while redis is down")
    ans2 = o.readyz(s.admin)
    t.ok(ans2 is not None and ans2[0] == 503,
         "deny: still 503 after a request failed on the store", show(ans2))

    redis.start()
    waited, ans = o.wait_readyz(s.admin, 200, FLIP)
    t.eq(ans, (200, {"ready": True}),
         "deny: /readyz back to 200 after redis-server restarted on port %d (%.2fs)"
         % (redis.port, waited))
    ok = h.wait_until(lambda: h.request(s.addr, "GET", "/echo",
                                        [("X-Key", "a")]).status == 200, 3, 0.1)
    t.ok(ok, "deny: requests pass again after redis returned")
    s.stop()
    redis.stop()


def allow_part(env, up, dead):
    t = env.t
    redis = env.redis("redis-allow")
    s = env.sluice(CONF, name="sluice-allow",
                   values={"up": up.port, "redis": redis.url, "policy": "allow",
                           "dead1": dead[0], "dead2": dead[1], "dead3": dead[2]})
    waited, ans = o.wait_readyz(s.admin, 200, FLIP)
    t.eq(ans, (200, {"ready": True}), "allow: /readyz 200 with redis up")
    redis.stop()
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "a")]).status, 200,
         "allow: a request passes while redis is down")
    time.sleep(1.3)     # past a readiness tick
    ans = o.readyz(s.admin)
    t.eq(ans, (200, {"ready": True}), "allow: /readyz stays 200 while redis is down")
    return s, redis


def upstream_part(env, s, dead):
    t = env.t
    # One refusing and one live server: the request goes through, still ready.
    sts = [h.request(s.addr, "GET", "/half/x").status for _ in range(4)]
    t.eq(sts, [200] * 4, "half: requests pass (the refusing server is skipped)")
    _, samples = o.scrape_until(s.admin, lambda sm: (o.value(
        sm, "sluice_upstream_errors_total", upstream="half", kind="connect_error") or 0) >= 1)
    t.ok((o.value(samples, "sluice_upstream_errors_total", upstream="half",
                  kind="connect_error") or 0) >= 1,
         "half: the refusing server was tried (connect_error counted)")
    deadline = time.monotonic() + 1.5
    seen = set()
    while time.monotonic() < deadline:
        ans = o.readyz(s.admin)
        seen.add(show(ans))
        time.sleep(0.05)
    t.eq(seen, {show((200, {"ready": True}))},
         "half: /readyz stays 200 for 1.5 s with one of two servers refusing")

    # Every server refuses: 502, then not ready, naming the upstream.
    r = h.request(s.addr, "GET", "/dead/x")
    t.eq(r.status, 502, "dead: a request to an upstream whose servers all refuse is 502")
    waited, ans = o.wait_readyz(s.admin, 503, FLIP, interval=0.02)
    t.eq(ans, (503, {"ready": False, "missing": "upstream dead"}),
         "dead: /readyz 503 missing \"upstream dead\" after the request (%.2fs)" % waited)

    # A server comes up there; once a request got through, ready again.
    back = h.Upstream("dead-back", dead[1]).start()
    env.at_exit(back.stop)
    ok = h.wait_until(lambda: h.request(s.addr, "GET", "/dead/x").status == 200, 4, 0.1)
    t.ok(ok, "dead: a request passes once a server listens on 127.0.0.1:%d" % dead[1])
    waited, ans = o.wait_readyz(s.admin, 200, FLIP)
    t.eq(ans, (200, {"ready": True}), "dead: /readyz back to 200 (%.2fs)" % waited)


def main(env):
    up = env.upstream("app")
    dead = [h.free_port() for _ in range(3)]
    store_part(env, up, dead)
    s, redis = allow_part(env, up, dead)
    upstream_part(env, s, dead)
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=40)
