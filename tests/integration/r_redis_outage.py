#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis killed during load, then restarted (issue 3, points 2, 6 and 7), for
# each on_error policy: "allow" admits everything while Redis is down, "deny"
# answers 503 with Retry-After, "local" enforces the limit with the embedded
# store; no other status ever shows; the transition is logged once, not per
# request; after the restart sluice uses Redis again without being restarted.
# Client: 3 load threads with fresh keys, plus a fixed key probed during the
# outage. Upstream: /echo. Daemon: store redis (timeout 100ms), limit burst 3
# per minute on header:X-Key, 2 workers.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
error_log = "stderr"
store = { kind = "redis", url = "${redis}", timeout = "100ms", on_error = "${policy}" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
limits = { per_key = { key = "header:X-Key", rate = 3, per = "1m" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""

EXPECT = {
    "allow": [200, 200, 200, 200, 200],
    "deny": [503, 503, 503, 503, 503],
    "local": [200, 200, 200, 429, 429],
}
ALLOWED = {"allow": {200}, "deny": {200, 503}, "local": {200}}


def store_lines(text):
    return [ln for ln in text.splitlines()
            if "redis" in ln.lower() or "store" in ln.lower()]


def policy(env, name, up):
    t = env.t
    redis = h.Redis(env, "redis-" + name)
    redis.start()
    s = env.sluice(CONF, name="sluice-" + name, values={"up": up.port, "redis": redis.url,
                                                       "policy": name})
    r = h.request(s.addr, "GET", "/echo", [("X-Key", "base")])
    t.eq(r.status, 200, "%s: baseline request" % name)
    t.ok(redis.cmd("DBSIZE") >= 1, "%s: the baseline bucket is in redis" % name)

    load = h.Load(s.addr, 3, lambda i, n: h.request_bytes(
        "GET", "/echo", [("X-Key", "%s-%d-%d" % (name, i, n))])).start()
    time.sleep(0.3)
    log_before = len(s.stderr_text())
    t_kill = time.monotonic()
    redis.kill()
    time.sleep(0.4)

    sts = []
    for i in range(5):
        r = h.request(s.addr, "GET", "/echo", [("X-Key", "outage")])
        sts.append(r.status)
        if name == "deny" and r.status == 503:
            ra = r.header("retry-after") or ""
            if i == 0:
                t.ok(ra.isdigit() and int(ra) >= 1, "deny: 503 has Retry-After >= 1", ra)
                h.problem_ok(t, r, 503, "deny: 503")
    t.eq(sts, EXPECT[name], "%s: 5 requests on one key while redis is down" % name)
    time.sleep(0.8)
    outage_log = s.stderr_text()[log_before:]
    n_out = len(load.counts(since=t_kill))

    redis.start()
    t_up = time.monotonic()

    def recovered():
        key = "rec-%f" % time.monotonic()
        r_ = h.request(s.addr, "GET", "/echo", [("X-Key", key)])
        return r_.status == 200 and redis.cmd("DBSIZE") >= 1
    ok = h.wait_until(recovered, 10, 0.2)
    t.ok(ok, "%s: after the restart sluice uses redis again (%.1fs)"
         % (name, time.monotonic() - t_up))
    time.sleep(0.3)
    counts = load.stop()
    t.note("%s: load statuses %s" % (name, counts))
    bad = {k: v for k, v in counts.items() if k not in ALLOWED[name]}
    t.ok(not bad, "%s: under load only %s answers" % (name, sorted(ALLOWED[name])), counts)
    if name == "deny":
        t.ok(counts.get(503, 0) > 0, "deny: load saw 503 during the outage", counts)
        t.ok(load.counts(since=time.monotonic() - 0.25).get(200, 0) > 0,
             "deny: load gets 200 again after recovery")

    lines = store_lines(outage_log)
    t.ok(1 <= len(lines) <= 4,
         "%s: the outage is logged once per transition (%d lines for %d+5 requests)"
         % (name, len(lines), n_out), "\n".join(lines[:20]))
    t.ok(s.alive(), "%s: the same daemon process is still running" % name)
    s.stop()
    redis.stop()


def main(env):
    up = env.upstream("app")
    for name in ("allow", "deny", "local"):
        policy(env, name, up)


if __name__ == "__main__":
    h.run(main, time_limit=90)
