#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# All-or-nothing (DESIGN "Token bucket semantics", issue 3 point 1): a
# request refused by its second limit takes nothing from its first, with the
# embedded store and with Redis. Seen through the first limit's RateLimit r
# after the refusals, and through Redis directly.
# Client: raw requests with X-A and X-B keys. Upstream: /echo.
# Daemon: limits "a" (burst 10 per minute on header:X-A) and "b" (burst 1
# per minute on header:X-B), route "/" checks both.

import re

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = ${store}
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = {
  a = { key = "header:X-A", rate = 10, per = "1m" },
  b = { key = "header:X-B", rate = 1, per = "1m" },
}
routes = { { path = "/", upstream = "app", limits = { "a", "b" } } }
"""


def r_of(resp, name):
    m = re.search(r'"%s";r=(\d+)' % name, resp.header("ratelimit") or "")
    return int(m.group(1)) if m else None


def case(env, label, store, up):
    t = env.t
    s = env.sluice(CONF, name="sluice-" + label, values={"up": up.port, "store": store})
    ka, kb = "A-" + label, "B-" + label
    r = h.request(s.addr, "GET", "/echo", [("X-A", ka), ("X-B", kb)])
    t.eq(r.status, 200, "%s: first request admitted by a and b" % label)
    t.eq((r_of(r, "a"), r_of(r, "b")), (9, 0), "%s: a has 9 left, b 0" % label)
    for i in range(4):
        r = h.request(s.addr, "GET", "/echo", [("X-A", ka), ("X-B", kb)])
        t.eq(r.status, 429, "%s: request %d refused by b" % (label, i + 2))
        if r.status == 429:
            try:
                vp = r.json().get("violated-policies")
            except ValueError:
                vp = None
            t.eq(vp, ["b"], "%s: request %d violated-policies names only b" % (label, i + 2))
    r = h.request(s.addr, "GET", "/echo", [("X-A", ka), ("X-B", kb + "-fresh")])
    t.eq(r.status, 200, "%s: with a fresh b key the request passes" % label)
    t.eq(r_of(r, "a"), 8, "%s: a lost exactly 2 tokens over 6 requests "
         "(the 4 refused by b took nothing)" % label)
    r = h.request(s.addr, "GET", "/echo", [("X-A", ka)])
    t.eq((r.status, r_of(r, "a"), r_of(r, "b")), (200, 7, None),
         "%s: without X-B only a applies" % label)
    s.stop()


def main(env):
    up = env.upstream("app")
    case(env, "local", '{ kind = "local" }', up)
    redis = env.redis()
    case(env, "redis", '{ kind = "redis", url = "%s", timeout = "200ms", on_error = "deny" }'
         % redis.url, up)
    env.t.ok(len(redis.cmd("KEYS", "*")) >= 3, "redis: buckets were stored in redis",
             redis.cmd("KEYS", "*"))


if __name__ == "__main__":
    h.run(main, time_limit=60)
