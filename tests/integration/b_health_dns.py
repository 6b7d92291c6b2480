#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Upstream health for a server given by host name (issue 10, point 2, with
# point 1). Every address of the name is checked on its own, with the name
# as the check's Host; an address whose /health fails stops getting requests
# while the other keeps them; an address the name no longer has loses its
# sluice_upstream_server_up series (labels stay as bounded as the addresses).
# Client: fresh connections. Upstreams: "one" on 127.0.0.1 and "two" on
# 127.0.0.2, the same port, behind api.sluice.test in dnsmasq (the helper of
# b_dns_upstream.py). Daemon: 1 worker.

import shutil
import time

import harness as h
from b_dns_upstream import Dnsmasq
from upstream import Upstream

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
resolver = { servers = { "127.0.0.1:${dns}" }, valid = "1s", timeout = "1s" }
upstreams = {
  app = { servers = { "api.sluice.test:${port}" }, keepalive = 0,
          health = { path = "/health", interval = "200ms", timeout = "150ms", fails = 2 } },
}
routes = { { path = "/", upstream = "app" } }
"""


def series(s):
    """The server label of every sluice_upstream_server_up series, with its value."""
    return {ls.get("server"): v for n, ls, v in h.scrape(s.admin)
            if n == "sluice_upstream_server_up" and ls.get("upstream") == "app"}


def hits(up, since):
    return sum(1 for r in up.requests_since(since) if not r["target"].startswith("/health"))


def main(env):
    t = env.t
    if shutil.which("dnsmasq") is None:
        t.skip("health of a host name's addresses", "dnsmasq not installed (dnsmasq-base)")
        return
    one = env.upstream("one")
    two = Upstream("two", one.port, "127.0.0.2").start()
    env.at_exit(two.stop)
    hosts = env.path("hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 api.sluice.test\n127.0.0.2 api.sluice.test\n")
    dns = Dnsmasq(env, hosts)
    s = env.sluice(CONF, values={"dns": dns.port, "port": one.port})
    a1, a2 = "127.0.0.1:%d" % one.port, "127.0.0.2:%d" % one.port

    t.ok(h.wait_until(lambda: one.snapshot()[0] >= 1 and two.snapshot()[0] >= 1, 3, 0.05),
         "both addresses of the name are checked")
    checks = [r for r in two.requests_since(0) if r["target"] == "/health"]
    hd = {k.lower(): v for k, v in checks[0]["headers"]} if checks else {}
    t.eq(hd.get("host"), "api.sluice.test:%d" % one.port, "the check's Host is the name")
    for i in range(4):
        h.request(s.addr, "GET", "/echo?i=%d" % i)
    t.eq(series(s), {a1: 1.0, a2: 1.0}, "one series per address, both up")

    two.health_status = 500
    t.ok(h.wait_until(lambda: series(s).get(a2) == 0, 3, 0.05), "127.0.0.2 marked down")
    n1, n2 = one.snapshot()[0], two.snapshot()[0]
    sts = [h.request(s.addr, "GET", "/echo?j=%d" % i).status for i in range(6)]
    t.ok(all(x == 200 for x in sts), "requests answered", sts)
    t.eq((hits(one, n1), hits(two, n2)), (6, 0), "only 127.0.0.1 gets requests")

    dns.write("127.0.0.1 api.sluice.test\n")

    def gone():
        h.request(s.addr, "GET", "/echo")  # the pool follows the name at an acquire
        return a2 not in series(s)

    t.ok(h.wait_until(gone, 8, 0.2), "the address the name lost has no series any more",
         series(s))
    t.eq(series(s), {a1: 1.0}, "the remaining address is still up")
    t.ok(s.alive(), "daemon alive")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
