#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Load balancing (issue 10, point 3). Weights 3 and 1 share requests 3:1;
# balance = "hash:header:X-Tenant" sends a tenant to the same server every
# time, from every sluice instance, and when a reload takes a server out only
# that server's tenants move; least_conn keeps away from the server that is
# busy with slow requests, where round-robin keeps sending it half of them.
# Client: fresh connections, one request each. Upstreams: a, b, c (/echo and
# /slow name the one that answered; /slow?only=a is slow on a alone).
# Daemons: one worker (so per-worker choices are the whole picture), routes
# by host; a second instance with two workers for the hash only.

import threading
import time

import harness as h

UPSTREAMS = """\
upstreams = {
  weighted = { servers = { { address = "127.0.0.1:${a}", weight = 3 }, "127.0.0.1:${b}" } },
  hashed = { servers = { %s }, balance = "hash:header:X-Tenant" },
  lc = { servers = { "127.0.0.1:${a}", "127.0.0.1:${b}" }, balance = "least_conn",
         keepalive = 0 },
  rr = { servers = { "127.0.0.1:${a}", "127.0.0.1:${b}" }, keepalive = 0 },
  p2c = { servers = { "127.0.0.1:${a}", "127.0.0.1:${b}" }, balance = "random2",
          keepalive = 0 },
}
"""

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = %d
access_log = "off"
""" + UPSTREAMS + """\
routes = {
  { host = "w.test", path = "/", upstream = "weighted" },
  { host = "h.test", path = "/", upstream = "hashed" },
  { host = "lc.test", path = "/", upstream = "lc" },
  { host = "rr.test", path = "/", upstream = "rr" },
  { host = "p2c.test", path = "/", upstream = "p2c" },
}
"""

ALL3 = '"127.0.0.1:${a}", "127.0.0.1:${b}", "127.0.0.1:${c}"'
WITHOUT_C = '"127.0.0.1:${a}", "127.0.0.1:${b}"'
TENANTS = ["tenant-%d" % i for i in range(30)]


def who(addr, host, target="/echo", headers=()):
    r = h.request(addr, "GET", target, headers=headers, host=host)
    return r.json().get("upstream") if r.status == 200 else "status %d" % r.status


def tenants_map(addr):
    return {t: who(addr, "h.test", headers=[("X-Tenant", t)]) for t in TENANTS}


def slow_share(addr, host, n=16):
    """n requests /slow?ms=1500&only=a, each on its own connection, 50 ms
    apart, not waiting for answers: which upstream answered each."""
    got = []
    lock = threading.Lock()

    def one():
        w = who(addr, host, "/slow?ms=1500&only=a")
        with lock:
            got.append(w)

    ths = []
    for _ in range(n):
        th = threading.Thread(target=one)
        th.start()
        ths.append(th)
        time.sleep(0.05)
    for th in ths:
        th.join(10)
    return got


def main(env):
    t = env.t
    ups = {n: env.upstream(n) for n in ("a", "b", "c")}
    values = {n: u.port for n, u in ups.items()}
    s = env.sluice(CONF % (1, ALL3), values=values)

    # weights: smooth round-robin gives exactly 3:1 over whole cycles
    got = [who(s.addr, "w.test") for _ in range(40)]
    t.eq((got.count("a"), got.count("b")), (30, 10), "weights 3 and 1: 30 of 40 to a, 10 to b")
    t.eq(got[:8], ["a", "a", "b", "a"] * 2, "smooth: a a b a, not a a a b")

    # hash: a tenant sticks to one server, tenants spread over all three
    before = tenants_map(s.addr)
    again = tenants_map(s.addr)
    t.eq(again, before, "every tenant goes to the same server again")
    used = sorted(set(before.values()))
    t.eq(used, ["a", "b", "c"], "30 tenants spread over the three servers")
    t.ok(all(who(s.addr, "h.test") in ("a", "b", "c") for _ in range(3)),
         "a request without X-Tenant is still served")

    # another instance (two workers) sends every tenant where the first does
    s2 = env.sluice(CONF % (2, ALL3), name="sluice2", values=values)
    t.eq(tenants_map(s2.addr), before, "a second instance maps every tenant the same way")
    s2.stop()

    # c leaves by a reload: only its tenants move
    on_c = [k for k, v in before.items() if v == "c"]
    s.reload(CONF % (1, WITHOUT_C))
    t.ok(h.wait_until(lambda: who(s.addr, "h.test", headers=[("X-Tenant", on_c[0])]) != "c",
                      5, 0.05), "the reload took c out")
    after = tenants_map(s.addr)
    moved = sorted(k for k in TENANTS if after[k] != before[k])
    t.eq(moved, sorted(on_c), "only the %d tenants of c moved; the other %d stayed"
         % (len(on_c), len(TENANTS) - len(on_c)))
    t.ok(set(after.values()) <= {"a", "b"}, "c gets nothing any more", after)
    t.ok(1 <= len(on_c) <= 20, "c held about a third of the tenants (%d)" % len(on_c))

    # least_conn: a is busy with its slow request, so the others go to b
    lc = slow_share(s.addr, "lc.test")
    t.ok(lc.count("a") <= 4 and lc.count("b") >= 12,
         "least_conn: at most 4 of 16 to the busy server a (got a=%d b=%d)"
         % (lc.count("a"), lc.count("b")), lc)
    # random2: with two servers both are drawn, so the same
    p2 = slow_share(s.addr, "p2c.test")
    t.ok(p2.count("a") <= 4 and p2.count("b") >= 12,
         "random2: at most 4 of 16 to the busy server a (got a=%d b=%d)"
         % (p2.count("a"), p2.count("b")), p2)
    # round-robin, for contrast: a keeps its turns, each one slow
    rr = slow_share(s.addr, "rr.test")
    t.eq(rr.count("a"), 8, "round-robin: 8 of 16 to the busy server a")

    t.ok(s.alive(), "daemon still running")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
