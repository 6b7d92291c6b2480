#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Delay instead of reject (issue 13, point 3), with the embedded store and
# with Redis: a refused request whose tokens come back within its limit's
# `delay` waits for them and is admitted (later, by about the refill time);
# one whose wait would pass the delay gets 429 (at once, or at its turn
# when another request took the token first); at max_delayed
# waiting requests per worker the next refusal is a 429 at once; a client
# that leaves while waiting frees its place. Waits are counted
# (result="delayed") and the access log says "delayed".
# Client: raw requests, concurrent. Upstream: /echo. Daemon: one worker,
# max_delayed = 2, limits on header:X-Key.

import json
import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${access}"
max_delayed = 2
store = ${store}
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
limits = {
  smooth = { key = "header:X-Key", rate = 10, per = "1s", burst = 1, delay = "1s" },
  short = { key = "header:X-Key", rate = 4, per = "1s", burst = 1, delay = "300ms" },
  slow = { key = "header:X-Key", rate = 2, per = "1s", burst = 1, delay = "5s" },
}
routes = {
  { path = "/smooth/", upstream = "app", limits = { "smooth" } },
  { path = "/short/", upstream = "app", limits = { "short" } },
  { path = "/slow/", upstream = "app", limits = { "slow" } },
}
"""


def burst(addr, path, key, n):
    """n requests at once, one connection each: [(status, seconds taken)]."""
    out = [None] * n
    go = threading.Event()

    def one(i):
        go.wait(5)
        t0 = time.monotonic()
        try:
            r = h.request(addr, "GET", path, [("X-Key", key)], timeout=8)
            out[i] = (r.status, time.monotonic() - t0)
        except Exception as e:  # recorded, checked by the caller
            out[i] = (repr(e), time.monotonic() - t0)
    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in ths:
        th.start()
    go.set()
    for th in ths:
        th.join(10)
    return out


def statuses(res):
    return sorted(st for st, _ in res)


def check_store(env, label, store_lua, up):
    t = env.t
    access = env.path("access-%s.log" % label)
    s = env.sluice(CONF, name="sluice-" + label,
                   values={"up": up.port, "store": store_lua, "access": access})

    # 3 at once, 10/s, burst 1: one now, the others about 100 and 200 ms later
    res = burst(s.addr, "/smooth/echo", "a", 3)
    t.eq(statuses(res), [200, 200, 200], "%s: every request within the delay is admitted" % label)
    waits = sorted(d for _, d in res)
    t.ok(waits[2] >= 0.15, "%s: the last one waited for its token (~0.2 s)" % label, waits)

    # 4/s, delay 300 ms: the second's token is 250 ms away, the third's 500 ms
    res = burst(s.addr, "/short/echo", "b", 3)
    t.eq(statuses(res), [200, 200, 429], "%s: a wait past the delay is a 429" % label)
    # Both refused ones see the same 250 ms wait (nothing is reserved); the one
    # that loses the token at its turn would need 250 ms more: 429 then.
    refused = [d for st, d in res if st == 429]
    t.ok(refused and refused[0] < 0.45, "%s: ... given no later than the delay" % label, res)

    # 2/s, delay 5 s, max_delayed 2: one now, two wait, the other three get 429 at once
    res = burst(s.addr, "/slow/echo", "c", 6)
    t.eq(statuses(res), [200, 200, 200, 429, 429, 429],
         "%s: past max_delayed waiting requests, 429" % label)

    # clients that leave while waiting free their places
    time.sleep(1.1)  # the "c" bucket is full again
    conns = []
    first = h.request(s.addr, "GET", "/slow/echo", [("X-Key", "d")])
    t.eq(first.status, 200, "%s: a fresh key passes" % label)
    for _ in range(2):
        c = h.Conn(s.addr)
        c.send(h.request_bytes("GET", "/slow/echo", [("X-Key", "d")]))
        conns.append(c)
    time.sleep(0.1)
    for c in conns:
        c.close()
    time.sleep(1.2)  # both waits are over (0.5 s and 1 s)
    res = burst(s.addr, "/slow/echo", "e", 3)
    t.eq(statuses(res), [200, 200, 200], "%s: the places of gone clients are free again" % label)

    samples = h.scrape(s.admin)
    t.ok(h.metric(samples, "sluice_ratelimit_decisions_total", limit="smooth",
                  result="delayed") == 2,
         "%s: two waits counted as delayed" % label,
         h.metric(samples, "sluice_ratelimit_decisions_total", limit="smooth", result="delayed"))
    s.stop()
    with open(access) as f:
        outcomes = [json.loads(ln).get("limit") for ln in f if '"/smooth/echo"' in ln]
    t.eq(sorted(outcomes), ["admitted", "delayed", "delayed"],
         "%s: the access log says delayed" % label)


def main(env):
    up = env.upstream("app")
    check_store(env, "local", '{ kind = "local" }', up)
    redis = env.redis()
    check_store(env, "redis", '{ kind = "redis", url = "%s", timeout = "500ms" }' % redis.url, up)


if __name__ == "__main__":
    h.run(main, time_limit=90)
