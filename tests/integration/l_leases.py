#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Token leases (issue 13 point 1, docs/rate-limiting.md "Leases"), against a
# real Redis:
#  1. fleet bound with leases on: three sluice processes, uneven load on one
#     key (6, 3 and 1 client threads), admit at most burst + rate x T and at
#     least 97 % of it, and most admissions come from leased blocks;
#  2. tokens given back at reload and at SIGTERM: the bucket in Redis holds
#     every token not admitted at once, and no holder is left in it;
#  3. Redis down with a block outstanding: the block may still be spent,
#     then on_error = "deny" answers 503; never more than the block;
#  4. all-or-nothing between a leased and a plain limit: requests the plain
#     limit refuses take nothing from the leased one (its bucket, after the
#     give-back, is short of exactly the admitted requests).
# Upstream: /echo. Daemons: workers = 1, store redis.

import os
import signal
import threading
import time

import harness as h

HEAD = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
"""

FLEET = HEAD + """\
store = { kind = "redis", url = "${redis}", timeout = "500ms", on_error = "deny",
          lease = { ttl = "250ms", max_share = 0.03 } }
limits = { fleet = { key = "header:X-Key", rate = 300, per = "1s", burst = 300, lease = true } }
routes = { { path = "/", upstream = "app", limits = { "fleet" } } }
"""

SLOW = HEAD + """\
store = { kind = "redis", url = "${redis}", timeout = "500ms", on_error = "deny",
          lease = { ttl = "2s", max_share = 0.5 } }
limits = {
  tenant = { key = "header:X-Tenant", rate = 1, per = "1000s", burst = 1000, lease = true },
  user = { key = "header:X-User", rate = 1, per = "1000s", burst = 5 },
}
routes = {
  { path = "/both", upstream = "app", limits = { "tenant", "user" } },
  { path = "/", upstream = "app", limits = { "tenant" } },
}
"""

RATE, BURST, DURATION = 300.0, 300.0, 3.0


def metric(s, name):
    r = h.admin_get(s.admin, "/metrics")
    if r is None:
        return None
    for line in r[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def bucket_state(redis, key):
    """(milli-tokens, [holder fields]) of a bucket key, or None when absent."""
    v = redis.cmd("GET", key)
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    f = v.split()
    return int(f[0]), f[3:]


def hammer(addr, path, headers, stop_at, counts, lock):
    c = None
    while time.monotonic() < stop_at:
        try:
            if c is None:
                c = h.Conn(addr, timeout=3)
            c.send(h.request_bytes("GET", path, headers))
            r = c.read_response(timeout=3)
            with lock:
                counts[r.status] = counts.get(r.status, 0) + 1
            if r.header("connection", "").lower() == "close":
                c.close()
                c = None
        except Exception as e:
            with lock:
                counts[type(e).__name__] = counts.get(type(e).__name__, 0) + 1
            if c:
                c.close()
            c = None
    if c:
        c.close()


def fleet_bound(env, t, up, redis):
    fleet = [env.sluice(FLEET, name="sluice-%d" % i, values={"up": up.port, "redis": redis.url})
             for i in range(3)]
    lock = threading.Lock()
    counts = {}
    first = [None]
    last = [0.0]
    stop_at = [0.0]
    go = threading.Event()

    def worker(addr):
        go.wait(5)
        c = None
        while time.monotonic() < stop_at[0]:
            try:
                if c is None:
                    c = h.Conn(addr, timeout=3)
                t0 = time.monotonic()
                c.send(h.request_bytes("GET", "/echo", [("X-Key", "hot")]))
                r = c.read_response(timeout=3)
                t1 = time.monotonic()
                with lock:
                    if first[0] is None or t0 < first[0]:
                        first[0] = t0
                    last[0] = max(last[0], t1)
                    counts[r.status] = counts.get(r.status, 0) + 1
            except Exception as e:
                with lock:
                    counts[type(e).__name__] = counts.get(type(e).__name__, 0) + 1
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    ths = [threading.Thread(target=worker, args=(s.addr,), daemon=True)
           for s, n in zip(fleet, (6, 3, 1)) for _ in range(n)]
    up_before = up.snapshot()[0]
    for th in ths:
        th.start()
    stop_at[0] = time.monotonic() + DURATION
    go.set()
    for th in ths:
        th.join(DURATION + 10)
    T = last[0] - first[0] if first[0] else 0
    admitted = counts.get(200, 0)
    bound = BURST + RATE * T
    from_lease = sum(metric(s, "sluice_lease_admitted_total") or 0 for s in fleet)
    t.note("fleet: T %.2fs, statuses %s, bound %.1f, admitted from leases %d"
           % (T, counts, bound, from_lease))
    t.ok(set(counts) <= {200, 429}, "fleet: only 200 and 429 answers", counts)
    t.ok(admitted <= bound, "fleet: admitted %d <= burst + rate x T = %.1f" % (admitted, bound))
    t.ok(admitted >= 0.97 * bound, "fleet: admitted %d >= 97%% of %.1f" % (admitted, bound))
    t.ok(from_lease >= admitted / 2, "fleet: most admissions came from leased blocks",
         "%d of %d" % (from_lease, admitted))
    t.eq(up.snapshot()[0] - up_before, admitted, "fleet: upstream saw exactly the admitted")
    for s in fleet:
        s.stop()


def burst_of(addr, n, path="/echo", headers=(("X-Tenant", "t1"),)):
    """n pipelined requests on one connection: a hot key for the lease table."""
    statuses = []
    with h.Conn(addr, timeout=3) as c:
        c.send(b"".join(h.request_bytes("GET", path, list(headers)) for _ in range(n)))
        for _ in range(n):
            statuses.append(c.read_response(timeout=3).status)
    return statuses


def given_back_at_sigterm(env, t, up, redis):
    s = env.sluice(SLOW, name="sluice-term", values={"up": up.port, "redis": redis.url})
    key = "sluice:tenant:t1"
    admitted = 0
    for _ in range(6):
        admitted += burst_of(s.addr, 20).count(200)
    st = bucket_state(redis, key)
    t.ok(st is not None and len(st[1]) == 3,
         "sigterm: a block is held (one holder in the bucket)", st)
    t.ok(metric(s, "sluice_lease_admitted_total") > 0, "sigterm: requests admitted from it")
    held_before = 1000 - admitted - (st[0] / 1000.0 if st else 0)
    t.ok(held_before >= 1, "sigterm: tokens are out in the block (%.1f)" % held_before)

    # a reload retires the limiter that holds the block: it goes back
    s.reload(SLOW.replace("per = \"1000s\", burst = 5", "per = \"1000s\", burst = 6"))
    h.wait_until(lambda: (bucket_state(redis, key) or (0, [0]))[1] == [], 5)
    st = bucket_state(redis, key)
    t.ok(st is not None and st[1] == [], "reload: no holder left in the bucket", st)
    t.ok(st is not None and 1000 - admitted <= st[0] / 1000.0 <= 1000 - admitted + 1,
         "reload: the bucket holds every token not admitted", st)
    for _ in range(3):
        admitted += burst_of(s.addr, 20).count(200)
    st = bucket_state(redis, key)
    t.ok(st is not None and len(st[1]) == 3, "sigterm: after the reload a block is held again",
         st)
    s.stop()
    st = bucket_state(redis, key)
    t.ok(st is not None and st[1] == [], "sigterm: no holder left in the bucket", st)
    # rate 1 per 1000 s: at most a token came back by itself meanwhile
    level = st[0] / 1000.0 if st else -1
    t.ok(1000 - admitted <= level <= 1000 - admitted + 1,
         "sigterm: the bucket holds every token not admitted (%.3f, admitted %d)"
         % (level, admitted))
    redis.cmd("DEL", key)


def redis_down(env, t, up):
    redis = env.redis("redis-down")
    s = env.sluice(SLOW, name="sluice-down", values={"up": up.port, "redis": redis.url})
    for _ in range(3):
        burst_of(s.addr, 20)
    st = bucket_state(redis, "sluice:tenant:t1")
    t.ok(st is not None and len(st[1]) == 3, "redis down: a block is held", st)
    held = 1000 - 60 - (st[0] / 1000.0 if st else 1000)
    redis.kill()
    statuses = []
    for _ in range(10):
        statuses += burst_of(s.addr, 20)
    time.sleep(2.2)  # past the block's ttl: nothing is left to spend
    late = burst_of(s.addr, 20)
    statuses += late
    ok = statuses.count(200)
    t.note("redis down: held %.0f, then %s" % (held, {x: statuses.count(x) for x in set(statuses)}))
    t.ok(ok <= held, "redis down: no more admitted than the block held (%d <= %.0f)" % (ok, held))
    t.eq(late, [503] * 20, "redis down: once the block is spent or expired, on_error = deny: 503")
    t.ok(set(statuses) <= {200, 503}, "redis down: only 200 and 503", set(statuses))
    t.ok(s.alive(), "redis down: the daemon lives")
    s.stop()


def all_or_nothing(env, t, up, redis):
    s = env.sluice(SLOW, name="sluice-aon", values={"up": up.port, "redis": redis.url})
    hdrs = (("X-Tenant", "t2"), ("X-User", "u1"))
    # warm the tenant key on the tenant-only route so a block is held
    warm = burst_of(s.addr, 30, headers=(("X-Tenant", "t2"),)).count(200)
    statuses = []
    for _ in range(4):
        statuses += burst_of(s.addr, 20, path="/both", headers=hdrs)
    both_ok = statuses.count(200)
    t.eq(both_ok, 5, "all-or-nothing: the plain limit admits its burst of 5")
    t.eq(statuses.count(429), 75, "all-or-nothing: and refuses the rest")
    s.stop()  # gives the block back
    st = bucket_state(redis, "sluice:tenant:t2")
    level = st[0] / 1000.0 if st else -1
    want = 1000 - warm - both_ok
    t.ok(want <= level <= want + 1,
         "all-or-nothing: the leased bucket lost only the admitted requests (%.3f, want %d)"
         % (level, want))


def main(env):
    t = env.t
    if os.environ.get("SLUICE_ADDR"):
        t.skip("leases", "needs several daemons and a redis of its own: cannot attach")
        return
    up = env.upstream("app")
    redis = env.redis()
    fleet_bound(env, t, up, redis)
    given_back_at_sigterm(env, t, up, redis)
    all_or_nothing(env, t, up, redis)
    redis_down(env, t, up)


if __name__ == "__main__":
    h.run(main, time_limit=90)
