#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Exact admission (issue 3, points 5 and 7), with the embedded store and with
# Redis: a burst of N > burst requests on one key gets exactly `burst` 200s;
# the refused ones are 429 with Retry-After (whole seconds, >= 1), the
# RateLimit-Policy and RateLimit fields, and a quota-exceeded problem+json
# naming the limit; after waiting the advertised Retry-After the next request
# passes. Admitted responses carry RateLimit fields with a falling r, unless
# the route turns them off. A new key starts full.
# Client: raw requests, concurrent and sequential, X-Key chosen per case.
# Upstream: /echo. Daemon: limit "per_key" rate 2 per 1s, burst 5 on
# header:X-Key; routes /quiet/ (ratelimit_headers = false) and /.

import re
import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "2s" }
store = ${store}
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
limits = { per_key = { key = "header:X-Key", rate = 2, per = "1s", burst = 5 } }
routes = {
  { path = "/quiet/", upstream = "app", limits = { "per_key" }, ratelimit_headers = false },
  { path = "/", upstream = "app", limits = { "per_key" } },
}
"""

POLICY_RE = re.compile(r'^"per_key";q=(\d+);w=(\d+)$')
RL_RE = re.compile(r'^"per_key";r=(\d+);t=(\d+)$')
QUOTA = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def burst(addr, key, n):
    """n requests at once, one connection each; returns the responses."""
    out = [None] * n
    go = threading.Event()

    def one(i):
        go.wait(5)
        try:
            out[i] = h.request(addr, "GET", "/echo?i=%d" % i, [("X-Key", key)])
        except Exception as e:  # recorded, checked by the caller
            out[i] = e
    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in ths:
        th.start()
    go.set()
    for th in ths:
        th.join(10)
    return out


def check_store(env, label, store_lua, up):
    t = env.t
    s = env.sluice(CONF, name="sluice-" + label, values={"up": up.port, "store": store_lua})

    # concurrent burst of 12 on a fresh key: exactly 5 pass
    n0 = up.snapshot()[0]
    rs = burst(s.addr, "burst-" + label, 12)
    errs = [r for r in rs if not isinstance(r, h.Response)]
    t.ok(not errs, "%s: all 12 requests answered" % label, errs[:3])
    sts = [r.status for r in rs if isinstance(r, h.Response)]
    t.eq(sts.count(200), 5, "%s: 12 concurrent requests, exactly burst=5 admitted" % label)
    t.eq(sts.count(429), 7, "%s: the other 7 are 429" % label)
    time.sleep(0.05)
    t.eq(up.snapshot()[0] - n0, 5, "%s: upstream got only the 5 admitted" % label)

    denied = [r for r in rs if isinstance(r, h.Response) and r.status == 429]
    if denied:
        r = denied[0]
        ra = r.header("retry-after") or ""
        t.ok(ra.isdigit() and int(ra) >= 1, "%s: 429 Retry-After is whole seconds >= 1 (%r)"
             % (label, ra))
        t.ok(POLICY_RE.match(r.header("ratelimit-policy") or ""),
             "%s: 429 RateLimit-Policy" % label, r.header("ratelimit-policy"))
        m = RL_RE.match(r.header("ratelimit") or "")
        t.ok(m and m.group(1) == "0", "%s: 429 RateLimit r=0" % label, r.header("ratelimit"))
        doc = h.problem_ok(t, r, 429, "%s: 429" % label)
        if doc:
            t.eq(doc.get("type"), QUOTA, "%s: problem type quota-exceeded" % label)
            t.eq(doc.get("violated-policies"), ["per_key"], "%s: violated-policies" % label)
        # wait what was advertised, then one passes
        wait = int(ra) if ra.isdigit() else 1
        time.sleep(wait + 0.05)
        r2 = h.request(s.addr, "GET", "/echo", [("X-Key", "burst-" + label)])
        t.eq(r2.status, 200, "%s: after waiting Retry-After=%ds the next request passes"
             % (label, wait))

    # sequential: r falls 4..0 on admitted responses, then 429
    key = "seq-" + label
    seen = []
    with h.Conn(s.addr) as c:
        for i in range(6):
            c.send(h.request_bytes("GET", "/echo", [("X-Key", key)]))
            r = c.read_response()
            m = RL_RE.match(r.header("ratelimit") or "")
            seen.append((r.status, int(m.group(1)) if m else None))
    t.eq(seen, [(200, 4), (200, 3), (200, 2), (200, 1), (200, 0), (429, 0)],
         "%s: sequential (status, r): falling remaining then 429" % label)

    # another key is independent; a key absent: the limit does not apply
    t.eq(h.request(s.addr, "GET", "/echo", [("X-Key", "other-" + label)]).status, 200,
         "%s: a different key starts full" % label)
    sts = [h.request(s.addr, "GET", "/echo").status for _ in range(8)]
    t.eq(sts, [200] * 8, "%s: without X-Key the limit does not apply" % label)

    # ratelimit_headers = false on admitted responses
    r = h.request(s.addr, "GET", "/quiet/echo", [("X-Key", "quiet-" + label)])
    t.ok(r.status == 200 and not r.has("ratelimit") and not r.has("ratelimit-policy"),
         "%s: ratelimit_headers = false: no RateLimit fields when admitted" % label, r.headers)
    s.stop()
    return sts


def main(env):
    up = env.upstream("app")
    check_store(env, "local", '{ kind = "local" }', up)
    redis = env.redis()
    check_store(env, "redis", '{ kind = "redis", url = "%s", timeout = "200ms", '
                'on_error = "deny" }' % redis.url, up)
    keys = redis.cmd("KEYS", "*")
    env.t.ok(keys and all(k.startswith("sluice:") for k in keys),
             "redis: bucket keys live under the sluice: prefix", keys)
    ttls = [redis.cmd("PTTL", k) for k in keys[:5]] if keys else []
    env.t.ok(ttls and all(0 < x <= 5000 for x in ttls),
             "redis: keys expire once the bucket would be full (<= burst/rate = 2.5s)", ttls)


if __name__ == "__main__":
    h.run(main, time_limit=90)
