#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# NOSCRIPT recovery (issue 3, point 2): SCRIPT FLUSH while requests flow
# makes EVALSHA fail with NOSCRIPT; sluice loads the script again and retries
# that call, so no request fails. on_error = "deny" makes any failure that
# leaked through visible as a 503. Redis's error stats prove NOSCRIPT really
# happened (the test is not vacuous).
# Client: 4 threads, keep-alive, a new key per request (always admitted).
# Upstream: /echo. Daemon: store redis, on_error deny, 2 workers.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = { kind = "redis", url = "${redis}", timeout = "500ms", on_error = "deny" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
limits = { per_key = { key = "header:X-Key", rate = 100, per = "1s" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


def noscript_count(redis):
    info = redis.cmd("INFO", "errorstats") or ""
    for line in info.splitlines():
        if line.startswith("errorstat_NOSCRIPT:"):
            return int(line.split("count=")[1].split(",")[0])
    return 0


def main(env):
    t = env.t
    up = env.upstream("app")
    redis = env.redis()
    s = env.sluice(CONF, values={"up": up.port, "redis": redis.url})
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "warm")]).status, 200, "warm-up request")

    load = h.Load(s.addr, 4, lambda i, n: h.request_bytes(
        "GET", "/echo", [("X-Key", "k-%d-%d" % (i, n))])).start()
    time.sleep(0.3)
    for _ in range(6):
        redis.cmd("SCRIPT", "FLUSH")
        time.sleep(0.25)
    time.sleep(0.3)
    counts = load.stop()
    total = sum(counts.values())
    t.note("statuses during the flushes: %s" % counts)
    t.ok(total > 100, "load ran (%d requests)" % total)
    t.eq(set(counts), {200}, "no request failed across 6 SCRIPT FLUSH")
    t.ok(noscript_count(redis) > 0, "redis answered NOSCRIPT at least once (%d)"
         % noscript_count(redis))
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "after")]).status, 200,
         "request after the flushes")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
