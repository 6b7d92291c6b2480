#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Client identity behind a balancer (issue 10, point 5): X-Forwarded-Proto,
# -Host and -Port kept from a peer in trusted_proxies and set by sluice for
# anyone else; RFC 7239 Forwarded from a trusted peer names the client (for=,
# proto=, host=; IPv6 in brackets; obfuscated nodes hide it) and sluice
# appends its own element; the client after trust is the `ip` key, the
# access log's `client` (the TCP peer is `peer`); ipv6_prefix = 64 puts a
# /64 in one bucket; X-Forwarded-For over 1 KiB goes up whole.
# Client: raw requests from 127.0.0.1 (untrusted) and 127.0.0.2 (the trusted
# "balancer"). Upstream: /echo (headers as received). Daemon: 1 worker,
# trusted_proxies = 127.0.0.2, access log to a file, limits of burst 1 per
# ip, one of them with ipv6_prefix = 64.

import json
import os

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
trusted_proxies = { "127.0.0.2" }
access_log = "${tmp}/access.log"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = {
  one = { key = "ip", rate = 1, per = "1h", burst = 1 },
  net = { key = "ip", rate = 1, per = "1h", burst = 1, ipv6_prefix = 64 },
}
routes = {
  { path = "/one/", upstream = "app", limits = "one" },
  { path = "/net/", upstream = "app", limits = "net" },
  { path = "/", upstream = "app" },
}
"""

LB = "127.0.0.2"


def echo(s, target="/echo", headers=(), source=None, host="api.example:8443"):
    r = h.request(s.addr, "GET", target, headers, host=host, source=source)
    if r.status != 200:
        return r, {}
    hs = {}
    for k, v in r.json()["headers"]:
        hs.setdefault(k.lower(), []).append(v)
    return r, hs


def one(hs, name):
    v = hs.get(name, [])
    return v[0] if len(v) == 1 else v


def access_lines(s, n):
    path = os.path.join(s.dir, "access.log")

    def lines():
        try:
            with open(path) as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            return []
    h.wait_until(lambda: len(lines()) >= n, 5)
    return lines()


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})
    spoof = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
             ("X-Forwarded-Port", "1"), ("X-Forwarded-For", "192.0.2.99")]

    # an untrusted client: its X-Forwarded-* are replaced, XFF appended to
    r, hs = echo(s, headers=spoof)
    t.eq(one(hs, "x-forwarded-proto"), "http", "untrusted: X-Forwarded-Proto set by sluice")
    t.eq(one(hs, "x-forwarded-host"), "api.example:8443",
         "untrusted: X-Forwarded-Host is the request's Host")
    t.eq(one(hs, "x-forwarded-port"), str(s.port), "untrusted: X-Forwarded-Port is sluice's port")
    t.eq(one(hs, "x-forwarded-for"), "192.0.2.99, 127.0.0.1",
         "untrusted: X-Forwarded-For appended with the peer")

    # the trusted balancer: kept as it sent them
    r, hs = echo(s, headers=spoof, source=LB)
    t.eq(one(hs, "x-forwarded-proto"), "https", "trusted: X-Forwarded-Proto kept")
    t.eq(one(hs, "x-forwarded-host"), "evil.example", "trusted: X-Forwarded-Host kept")
    t.eq(one(hs, "x-forwarded-port"), "1", "trusted: X-Forwarded-Port kept")
    t.eq(one(hs, "x-forwarded-for"), "192.0.2.99, 127.0.0.2", "trusted: X-Forwarded-For appended")
    # a list longer than 1 KiB goes up whole, every field in order (it was
    # cut to its right-most 1 KiB, mid-address: "4, 127.0.0.4, ...")
    hops = "1.2.3.4, " + ", ".join(["127.0.0.4"] * 200)
    r, hs = echo(s, headers=[("X-Forwarded-For", hops), ("X-Forwarded-For", "192.0.2.7")],
                 source=LB)
    t.eq(one(hs, "x-forwarded-for"), hops + ", 192.0.2.7, 127.0.0.2",
         "trusted: an X-Forwarded-For over 1 KiB is passed whole")

    # RFC 7239 from the trusted balancer, no X-Forwarded-For
    fwd = [("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host=api.example.com')]
    r, hs = echo(s, headers=fwd, source=LB, host="internal")
    t.eq(one(hs, "x-forwarded-for"), "2001:db8:cafe::17, 127.0.0.2",
         "Forwarded: for= is the client, first in X-Forwarded-For")
    t.eq(one(hs, "x-forwarded-proto"), "https", "Forwarded: proto= becomes X-Forwarded-Proto")
    t.eq(one(hs, "x-forwarded-host"), "api.example.com",
         "Forwarded: host= becomes X-Forwarded-Host")
    t.eq(one(hs, "x-forwarded-port"), "443", "Forwarded: X-Forwarded-Port from proto=")
    t.eq(hs.get("forwarded"), [fwd[0][1], 'for=127.0.0.2;host="internal";proto=http'],
         "Forwarded: sluice appends its own element")
    # the same from an untrusted client is not believed
    r, hs = echo(s, headers=fwd, host="internal")
    t.eq(one(hs, "x-forwarded-for"), "127.0.0.1", "Forwarded from an untrusted client: ignored")
    t.eq(one(hs, "x-forwarded-proto"), "http", "Forwarded from an untrusted client: proto set")
    # an obfuscated node hides the client: the balancer stands
    r, hs = echo(s, headers=[("Forwarded", "for=_hidden;proto=https")], source=LB)
    t.eq(one(hs, "x-forwarded-for"), "127.0.0.2", "Forwarded for=_hidden: the balancer stands")

    # the ip key is the client after trust
    def status(target, headers, source=LB):
        return h.request(s.addr, "GET", target, headers, source=source).status
    a = [("X-Forwarded-For", "198.51.100.1")]
    b = [("Forwarded", "for=198.51.100.2")]
    got = [status("/one/x", a), status("/one/x", b), status("/one/x", a), status("/one/x", b)]
    t.eq(got, [200, 200, 429, 429], "ip key: one bucket per forwarded client (XFF, Forwarded)")

    # ipv6_prefix = 64: a /64 is one client; "one" (128) tells them apart
    v6 = [[("Forwarded", 'for="[2001:db8:1:2::%s]"' % x)] for x in ("a", "b")]
    other = [("Forwarded", 'for="[2001:db8:1:3::a]"')]
    got = [status("/net/x", v6[0]), status("/net/x", v6[1]), status("/net/x", other)]
    t.eq(got, [200, 429, 200], "ipv6_prefix = 64: two addresses of one /64 share a bucket")
    got = [status("/one/y", v6[0]), status("/one/y", v6[1])]
    t.eq(got, [200, 200], "without ipv6_prefix: each IPv6 address has its own bucket")

    # access log: client after trust, peer the TCP peer
    docs = access_lines(s, 16)
    by_client = {d["client"]: d for d in docs}
    t.ok("198.51.100.1" in by_client and by_client["198.51.100.1"].get("peer") == LB,
         "access log: client from X-Forwarded-For, peer the balancer",
         [(d["client"], d.get("peer")) for d in docs])
    t.ok("2001:db8:cafe::17" in by_client
         and by_client["2001:db8:cafe::17"].get("peer") == LB,
         "access log: client from Forwarded, peer the balancer")
    t.ok(any(d["client"] == "127.0.0.1" and d.get("peer") == "127.0.0.1" for d in docs),
         "access log: an untrusted client is its own peer")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
