#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A slow Redis (issue 3, points 2 and 7): while Redis is blocked by DEBUG
# SLEEP 1.5, requests are decided after the store timeout (100ms), not after
# the seconds Redis takes: "deny" answers 503 quickly, "allow" forwards
# quickly; once Redis wakes up, sluice uses it again. A pause shorter than
# the stall time (0.4 s) fails only the late calls and keeps the connection.
# Client: single requests timed against the sleep. Upstream: /echo.
# Daemon: store redis timeout 100ms, on_error deny then allow.

import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${redis}", timeout = "100ms", on_error = "${policy}" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = 10, per = "1m" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""

WANT = {"deny": 503, "allow": 200}


def policy(env, name, up, redis):
    t = env.t
    s = env.sluice(CONF, name="sluice-" + name, values={"up": up.port, "redis": redis.url,
                                                       "policy": name})
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", name + "-warm")]).status, 200,
         "%s: warm-up request" % name)
    sleeper = threading.Thread(target=lambda: redis.cmd("DEBUG", "SLEEP", "1.5", timeout=5),
                               daemon=True)
    t_sleep = time.monotonic()
    sleeper.start()
    time.sleep(0.15)
    timings = []
    for i in range(3):
        t0 = time.monotonic()
        r = h.request(s.addr, "GET", "/echo", [("X-Key", "%s-slow-%d" % (name, i))], timeout=5)
        timings.append((r.status, round(time.monotonic() - t0, 3)))
    asleep = time.monotonic() - t_sleep < 1.5
    t.ok(asleep, "%s: the probes ran while redis slept" % name)
    t.ok(all(st == WANT[name] for st, _ in timings),
         "%s: requests during DEBUG SLEEP get %d" % (name, WANT[name]), timings)
    t.ok(all(el < 0.6 for _, el in timings),
         "%s: each decided within timeout 100ms + margin, not after the sleep" % name, timings)
    sleeper.join(5)

    def back():
        return h.request(s.addr, "GET", "/echo", [("X-Key", "%s-after-%f" % (
            name, time.monotonic()))]).status == 200 and redis.cmd("DBSIZE") > 0
    redis.cmd("FLUSHALL")
    t.ok(h.wait_until(back, 8, 0.2), "%s: redis used again after it wakes up" % name)
    s.stop()


def spike(env, up, redis):
    """A pause shorter than the stall time (10 timeouts, at least 1 s): the
    late calls fail on their own, the connection stays (no reconnection
    storm against a Redis that is slow under load)."""
    t = env.t
    s = env.sluice(CONF, name="sluice-spike", values={"up": up.port, "redis": redis.url,
                                                      "policy": "allow"})
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "spike-warm")]).status, 200,
         "spike: warm-up request")
    m0 = h.scrape(s.admin)
    sleeper = threading.Thread(target=lambda: redis.cmd("DEBUG", "SLEEP", "0.4", timeout=5),
                               daemon=True)
    sleeper.start()
    time.sleep(0.05)
    statuses = [h.request(s.addr, "GET", "/echo", [("X-Key", "spike-%d" % i)], timeout=5).status
                for i in range(2)]
    sleeper.join(5)
    t.ok(all(st == 200 for st in statuses), "spike: requests during the pause admitted (allow)",
         statuses)
    redis.cmd("FLUSHALL")

    def back():
        return h.request(s.addr, "GET", "/echo", [("X-Key", "spike-after-%f" % (
            time.monotonic()))]).status == 200 and redis.cmd("DBSIZE") > 0
    t.ok(h.wait_until(back, 5, 0.1), "spike: redis used again right after the pause")
    m1 = h.scrape(s.admin)
    t.ok(h.metric(m1, "sluice_store_errors_total", kind="timeout")
         > h.metric(m0, "sluice_store_errors_total", kind="timeout"),
         "spike: the late calls were counted as timeouts")
    t.eq(h.metric(m1, "sluice_store_reconnects_total"),
         h.metric(m0, "sluice_store_reconnects_total"),
         "spike: the connection was kept (no reconnection)")
    s.stop()


def main(env):
    up = env.upstream("app")
    redis = env.redis()
    for name in ("deny", "allow"):
        policy(env, name, up, redis)
    spike(env, up, redis)


if __name__ == "__main__":
    h.run(main, time_limit=60)
