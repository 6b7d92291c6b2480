#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Routing (issue 2, point 5): an optional host match (case-insensitive,
# port ignored), then the longest path prefix wins whatever the order in the
# conf; the path is passed upstream unchanged; no match answers 404 as
# problem+json and forwards nothing.
# Client: raw GETs with chosen Host fields. Upstreams: "api", "v2", "static",
# "host" (each /echo-like for any path, naming itself). Daemon: routes
# written shortest-first on purpose, no catch-all "/".

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "2s" }
upstreams = {
  api    = { servers = { "127.0.0.1:${api}" } },
  v2     = { servers = { "127.0.0.1:${v2}" } },
  static = { servers = { "127.0.0.1:${static}" } },
  host   = { servers = { "127.0.0.1:${host}" } },
}
routes = {
  { path = "/api/", upstream = "api" },
  { path = "/api/v2/", upstream = "v2" },
  { path = "/static/", upstream = "static" },
  { host = "example.com", path = "/", upstream = "host" },
}
"""


def main(env):
    t = env.t
    ups = {n: env.upstream(n) for n in ("api", "v2", "static", "host")}
    s = env.sluice(CONF, values={n: u.port for n, u in ups.items()})

    cases = [
        ("test", "/api/x", "api"),
        ("test", "/api/", "api"),
        ("test", "/api/v2", "api"),          # "/api/v2/" does not match without its slash
        ("test", "/api/v2/", "v2"),
        ("test", "/api/v2/users/7?q=1", "v2"),
        ("test", "/api/v2?x=/api/v2/", "api"),
        ("test", "/static/app.js", "static"),
        ("example.com", "/anything", "host"),
        ("EXAMPLE.com", "/x", "host"),
        ("example.com:8080", "/x", "host"),
        ("example.com", "/api/v2/x", None),  # either the host route or v2: not asserted
    ]
    for host, path, want in cases:
        r = h.request(s.addr, "GET", path, host=host)
        got = r.json().get("upstream") if r.status == 200 else "status %d" % r.status
        if want is None:
            t.note("Host %s %s went to %s" % (host, path, got))
            continue
        t.eq(got, want, "Host %s, %s -> %s" % (host, path, want))
        if r.status == 200:
            t.eq(r.json().get("target"), path, "Host %s, %s: path passed unchanged" % (host, path))

    before = {n: u.snapshot() for n, u in ups.items()}
    for host, path in (("test", "/"), ("test", "/apix"), ("test", "/ap"), ("other.com", "/x"),
                       ("example.org", "/static"), ("test", "/API/x")):
        r = h.request(s.addr, "GET", path, host=host)
        h.problem_ok(t, r, 404, "Host %s, %s: no route" % (host, path))
    time.sleep(0.05)
    t.eq({n: u.snapshot() for n, u in ups.items()}, before, "404s forwarded nothing")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
