#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A reload while a request waits for Redis: the request finishes on the old
# generation and, being its last user, frees it from inside the limiter's
# answer (found by a review: the limiter was freed under its own callback,
# an assertion in debug builds, a use after free in release ones; then the
# Redis store's reply pool was freed before hiredis gave the reply back).
# Redis is held with DEBUG SLEEP while the reload happens, once for a refusal
# (429) and once for an admission.
# Client: single requests. Upstream: /echo. Daemon: store redis (timeout 2s),
# one limit on header X-Key, 1 per hour.

import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${redis}", timeout = "2s", on_error = "deny" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = 1, per = "1h", burst = ${burst} } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


def reloads(s):
    return h.metric(h.scrape(s.admin), "sluice_config_reloads_total", result="success")


def across_reload(env, s, redis, key, want, label):
    """One request held in the limiter by a sleeping Redis while sluice
    reloads; its answer must be `want`, and sluice must go on serving."""
    t = env.t
    got = {}

    def one():
        try:
            got["r"] = h.request(s.addr, "GET", "/echo", [("X-Key", key)], timeout=10)
        except Exception as e:  # reported below
            got["e"] = e

    sleeper = threading.Thread(target=lambda: redis.cmd("DEBUG", "SLEEP", "0.8", timeout=5),
                               daemon=True)
    n0 = reloads(s)
    sleeper.start()
    time.sleep(0.1)
    client = threading.Thread(target=one, daemon=True)
    client.start()
    time.sleep(0.2)  # the request now waits for Redis
    s.reload(CONF)
    t.ok(h.wait_until(lambda: reloads(s) > n0, 3), "%s: reloaded while the request waited" % label)
    client.join(10)
    sleeper.join(5)
    r = got.get("r")
    t.ok(r is not None and r.status == want, "%s: the waiting request got %d" % (label, want),
         repr(got))
    t.ok(s.alive(), "%s: sluice still running" % label)
    r = h.request(s.addr, "GET", "/echo", [("X-Key", key + "-after")])
    t.eq(r.status, 200, "%s: a new request on the new generation" % label)


def main(env):
    t = env.t
    up = env.upstream("app")
    redis = env.redis()
    s = env.sluice(CONF, values={"up": up.port, "redis": redis.url, "burst": 1})
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "k1")]).status, 200, "k1: first request")
    across_reload(env, s, redis, "k1", 429, "refusal")
    across_reload(env, s, redis, "k2", 200, "admission")


if __name__ == "__main__":
    h.run(main)
