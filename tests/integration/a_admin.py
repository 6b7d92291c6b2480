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
# Client: http.client and raw requests. Upstream: "app", /echo for any path.
# Daemon: one route "/" to app, local store.

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "app" } }
"""


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

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
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=30)
