#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The Redis host by name (issue 10, point 1): store.url names its host, and
# the daemon's resolver (evdns on the main loop, as for upstream names)
# looks it up, never the workers. A real DNS server, Debian's dnsmasq on a
# free loopback port, answers from a hosts file the test rewrites and then
# SIGHUPs. Decisions go to the Redis the name points at; after the name
# moves to another Redis and the first one dies, sluice reconnects to the
# new address without a reload.
# Client: raw requests. Redis: two redis-servers on the same port, one on
# 127.0.0.1 and one on 127.0.0.2. Daemon: 1 worker, on_error = "allow".

import shutil
import socket

import harness as h
from b_dns_upstream import Dnsmasq

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
resolver = { servers = { "127.0.0.1:${dns}" }, valid = "1s", timeout = "1s" }
store = { kind = "redis", url = "redis://redis.sluice.test:${port}/0", timeout = "200ms" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = 1, per = "1h", burst = 2 } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


class RedisAt(h.Redis):
    """A redis-server bound to another loopback address, on a given port."""

    def __init__(self, env, name, host, port):
        super().__init__(env, name, extra_args=("--bind", host, "--port", str(port)))
        self.host = host
        self.port = port

    def cmd(self, *args, timeout=5.0, db=0):
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            s.sendall(h.resp_encode(args))
            return h.resp_read(f)


def statuses(s, key, n):
    return [h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status for _ in range(n)]


def main(env):
    t = env.t
    up = env.upstream("app")
    first = env.redis("redis-a")
    second = RedisAt(env, "redis-b", "127.0.0.2", first.port).start()
    if shutil.which("dnsmasq") is None:
        t.skip("the Redis host by name", "dnsmasq not installed (Debian: dnsmasq-base)")
        return
    with open(env.path("hosts"), "w") as f:
        f.write("127.0.0.1 redis.sluice.test\n")
    dns = Dnsmasq(env, env.path("hosts"))
    s = env.sluice(CONF, values={"dns": dns.port, "port": first.port, "up": up.port})

    t.eq(statuses(s, "k1", 3), [200, 200, 429], "decisions through the name's Redis")
    t.ok(len(first.cmd("KEYS", "sluice:*")) > 0 and second.cmd("KEYS", "sluice:*") == [],
         "the buckets are in the Redis the name points at")

    dns.write("127.0.0.2 redis.sluice.test\n")
    h.wait_until(lambda: False, 1.5)  # the resolver's next look (valid = 1s)
    first.kill()
    moved = h.wait_until(lambda: statuses(s, "k2", 1) == [200]
                         and len(second.cmd("KEYS", "sluice:*")) > 0, 10, 0.2)
    t.ok(moved, "after the name moved and its Redis died: decisions through the new address")
    t.eq(statuses(s, "k3", 3), [200, 200, 429], "the new Redis enforces the limit")

    rc, out, err = h.run_cli(["-t", "-c", s.conf_path])
    t.ok(rc == 0, "-t takes a store url with a host name", err)
    s.stop()
    # the link's own lookup would say "resolve redis.sluice.test: ..." on a
    # name the system resolver does not know
    t.ok("resolve redis.sluice.test" not in s.stderr_text(),
         "the name was never looked up by the store itself", s.stderr_text()[-600:])


if __name__ == "__main__":
    h.run(main, time_limit=60)
