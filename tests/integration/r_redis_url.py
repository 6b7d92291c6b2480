#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis URLs (issue 3, point 2): redis://:password@host:port/db (AUTH and
# SELECT on connect), redis://user:password@... (ACL user), and unix
# sockets with ?db=N and credentials (unix://:password@/path, ?user=&password=). With on_error = "deny" a failed connection would show
# as 503, so 200 plus the bucket found in the right database proves the URL
# was honoured. A wrong password is a store failure, not a crash.
# Client: single requests. Upstream: /echo. Redis: requirepass, an ACL user,
# and a unix socket. Daemon: one limit on header:X-K, one per URL.

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${url}", timeout = "300ms", on_error = "deny" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-K", rate = 5, per = "1m" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


def main(env):
    t = env.t
    up = env.upstream("app")
    sock = env.path("redis.sock")
    redis = h.Redis(env, "redis", password="s3cret",
                    extra_args=["--unixsocket", sock, "--unixsocketperm", "700"])
    redis.start()
    redis.cmd("ACL", "SETUSER", "sl", "on", ">pw-sl", "~*", "+@all")

    cases = [
        ("password, db 3", "redis://:s3cret@127.0.0.1:%d/3" % redis.port, 3),
        ("ACL user, db 0", "redis://sl:pw-sl@127.0.0.1:%d/0" % redis.port, 0),
        ("unix socket with a password, db 5", "unix://:s3cret@%s?db=5" % sock, 5),
        ("unix socket with an ACL user, db 6", "unix:%s?db=6&user=sl&password=pw-sl" % sock, 6),
    ]
    for i, (label, url, db) in enumerate(cases):
        before = redis.cmd("DBSIZE", db=db)
        s = env.sluice(CONF, name="sluice-%d" % i, values={"up": up.port, "url": url})
        r = h.request(s.addr, "GET", "/echo", [("X-K", "k%d" % i)])
        t.eq(r.status, 200, "%s: request admitted through redis" % label)
        t.ok(redis.cmd("DBSIZE", db=db) > before, "%s: the bucket is in db %d" % (label, db),
             redis.cmd("KEYS", "*", db=db))
        s.stop()

    s = env.sluice(CONF, name="sluice-badpw", values={
        "up": up.port, "url": "redis://:wrong@127.0.0.1:%d/0" % redis.port})
    r = h.request(s.addr, "GET", "/echo", [("X-K", "bad")])
    t.eq(r.status, 503, "wrong password: on_error deny answers 503")
    t.ok(s.alive(), "wrong password: daemon keeps running")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
