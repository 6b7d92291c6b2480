#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Balancing over servers given by host name (issue 10, point 3, with point 1's
# resolver). Every address of a name gets the weight of the name's entry, and
# the hash ring follows the addresses as the DNS changes them, without a
# reload: when a name loses an address, only the tenants on that address
# move, and they come back when it returns.
# Client: fresh connections. Upstreams: one, two, three on 127.0.0.1,
# 127.0.0.2 and 127.0.0.3, the same port. DNS: dnsmasq from a hosts file (as
# in b_dns_upstream). Daemon: 1 worker.

import shutil

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
  weighted = { servers = { { address = "svc.sluice.test:${port}", weight = 2 },
                           "127.0.0.3:${port}" } },
  hashed = { servers = { "svc.sluice.test:${port}", "127.0.0.3:${port}" },
             balance = "hash:header:X-Tenant" },
}
routes = {
  { host = "w.test", path = "/", upstream = "weighted" },
  { host = "h.test", path = "/", upstream = "hashed" },
}
"""

TENANTS = ["tenant-%d" % i for i in range(30)]
BOTH = "127.0.0.1 svc.sluice.test\n127.0.0.2 svc.sluice.test\n"


def who(addr, host, headers=()):
    r = h.request(addr, "GET", "/echo", headers=headers, host=host)
    return r.json().get("upstream") if r.status == 200 else "status %d" % r.status


def tenants_map(addr):
    return {t: who(addr, "h.test", [("X-Tenant", t)]) for t in TENANTS}


def main(env):
    t = env.t
    if shutil.which("dnsmasq") is None:
        t.skip("balance over host names", "dnsmasq not installed (Debian: dnsmasq-base)")
        return
    one = env.upstream("one")
    ups = [one]
    for name, ip in (("two", "127.0.0.2"), ("three", "127.0.0.3")):
        u = Upstream(name, one.port, ip).start()
        env.at_exit(u.stop)
        ups.append(u)
    hosts = env.path("hosts")
    with open(hosts, "w") as f:
        f.write(BOTH)
    dns = Dnsmasq(env, hosts)
    s = env.sluice(CONF, values={"dns": dns.port, "port": one.port})

    t.ok(h.wait_until(lambda: {who(s.addr, "w.test") for _ in range(5)} == {"one", "two",
                                                                              "three"}, 8, 0.1),
         "both addresses of the name are servers")
    got = [who(s.addr, "w.test") for _ in range(50)]
    t.eq((got.count("one"), got.count("two"), got.count("three")), (20, 20, 10),
         "each address of a weight-2 name gets weight 2: 2:2:1 against the weight-1 server")

    before = tenants_map(s.addr)
    t.eq(set(before.values()), {"one", "two", "three"}, "tenants spread over the 3 addresses")
    on_two = sorted(k for k, v in before.items() if v == "two")

    dns.write("127.0.0.1 svc.sluice.test\n")
    t.ok(h.wait_until(lambda: who(s.addr, "h.test", [("X-Tenant", on_two[0])]) != "two", 8,
                      0.1), "the name lost 127.0.0.2: its tenants go elsewhere, no reload")
    after = tenants_map(s.addr)
    moved = sorted(k for k in TENANTS if after[k] != before[k])
    t.eq(moved, on_two, "only the %d tenants of the address that left moved" % len(on_two))

    dns.write(BOTH)
    t.ok(h.wait_until(lambda: tenants_map(s.addr) == before, 8, 0.2),
         "the address back: every tenant is where it was")
    t.ok(s.alive(), "daemon still running")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
