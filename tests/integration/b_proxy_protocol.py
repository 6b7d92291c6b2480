#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# PROXY protocol on a listener (issue 10, point 5): listen = { { address =
# ..., proxy_protocol = true } }. From a peer in trusted_proxies, a v1 or v2
# header names the client: X-Forwarded-For, the `ip` key and the access
# log's `client` use it (`peer` is the balancer), v2 LOCAL keeps the TCP
# peer, the v2 SSL TLV makes X-Forwarded-Proto https; the header bytes never
# reach the HTTP parser, also when they come in pieces, and keep-alive
# requests after it need none. Every connection must have one: none, a
# malformed one, or one that does not arrive within header_timeout closes
# the connection without an HTTP answer. An untrusted peer is closed before
# a byte is read, with a rate-limited log line. The plain listener of the
# same daemon is unaffected.
# Client: raw sockets from 127.0.0.2 (trusted) and 127.0.0.1. Upstream:
# /echo. Daemon: 1 worker, a PROXY listener and a plain one, header_timeout
# 1s, access log to a file, a burst-1 ip limit on /one/.

import json
import os
import socket
import struct
import time

import harness as h

CONF = """\
listen = { { address = "${listen}", proxy_protocol = true }, "127.0.0.1:${plain}" }
admin = "${admin}"
workers = 1
trusted_proxies = { "127.0.0.2/32" }
access_log = "${tmp}/access.log"
client = { header_timeout = "1s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { one = { key = "ip", rate = 1, per = "1h", burst = 1 } }
routes = {
  { path = "/one/", upstream = "app", limits = "one" },
  { path = "/", upstream = "app" },
}
"""

LB = "127.0.0.2"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /echo HTTP/1.1\r\nHost: test\r\n\r\n"


def v1(src, dst="127.0.0.1", sport=5555, dport=443, fam="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, dport=8443, local=False, ssl=False):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton("127.0.0.1")
        fam = 0x11
    body = addrs + struct.pack("!HH", 4242, dport)
    if ssl:
        body += bytes([0x20]) + struct.pack("!H", 5) + bytes([0x01, 0, 0, 0, 0])
    return SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def xff(r):
    for k, v in r.json()["headers"]:
        if k.lower() == "x-forwarded-for":
            return v
    return None


def field(r, name):
    vals = [v for k, v in r.json()["headers"] if k.lower() == name]
    return vals[0] if len(vals) == 1 else vals


def closed_silently(addr, data, source=LB, wait=3.0):
    """Sends data (may be empty); True when the server closes without a byte."""
    with h.Conn(addr, source=source) as c:
        try:
            if data:
                c.send(data)
            c.sock.settimeout(wait)
            got = c.sock.recv(4096)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True
        return got == b""


def main(env):
    t = env.t
    up = env.upstream("app")
    plain = h.free_port()
    s = env.sluice(CONF, values={"up": up.port, "plain": plain})

    # v1 from the trusted balancer, then a keep-alive request without a header
    with h.Conn(s.addr, source=LB) as c:
        c.send(v1("203.0.113.7") + GET)
        r = c.read_response()
        t.eq(r.status, 200, "v1: request after the header answered")
        t.eq(xff(r), "203.0.113.7", "v1: X-Forwarded-For is the PROXY source")
        t.eq(r.json()["target"], "/echo", "v1: the header did not reach the HTTP parser")
        t.eq(field(r, "x-forwarded-port"), "443", "v1: X-Forwarded-Port is the PROXY destination")
        c.send(GET)
        r = c.read_response()
        t.eq((r.status, xff(r)), (200, "203.0.113.7"),
             "keep-alive: next request needs no header, same client")

    # v1 TCP6, the header in pieces
    with h.Conn(s.addr, source=LB) as c:
        data = v1("2001:db8::7", "2001:db8::1", fam="TCP6") + GET
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.005)
        r = c.read_response()
        t.eq((r.status, xff(r)), (200, "2001:db8::7"), "v1 TCP6 sent in 7-byte pieces")

    # v2: IPv4, IPv6, SSL TLV, LOCAL
    with h.Conn(s.addr, source=LB) as c:
        c.send(v2("198.51.100.9") + GET)
        r = c.read_response()
        t.eq((r.status, xff(r), field(r, "x-forwarded-proto"), field(r, "x-forwarded-port")),
             (200, "198.51.100.9", "http", "8443"), "v2 TCP4: client, proto, port")
    with h.Conn(s.addr, source=LB) as c:
        c.send(v2("2001:db8::9", ssl=True) + GET)
        r = c.read_response()
        t.eq((r.status, xff(r), field(r, "x-forwarded-proto")), (200, "2001:db8::9", "https"),
             "v2 TCP6 with the SSL TLV: X-Forwarded-Proto https")
    with h.Conn(s.addr, source=LB) as c:
        c.send(v2(local=True) + GET)
        r = c.read_response()
        t.eq((r.status, xff(r)), (200, LB), "v2 LOCAL: the TCP peer is the client")

    # the ip key follows the PROXY source
    def one(src):
        with h.Conn(s.addr, source=LB) as c:
            c.send(v1(src) + b"GET /one/x HTTP/1.1\r\nHost: test\r\n\r\n")
            return c.read_response().status
    got = [one("192.0.2.1"), one("192.0.2.2"), one("192.0.2.1")]
    t.eq(got, [200, 200, 429], "ip limit keyed by the PROXY source, not the balancer")

    # required on every connection; the upstream sees none of these
    before = up.snapshot()
    t.ok(closed_silently(s.addr, GET), "trusted peer without a header: closed, no answer")
    t.ok(closed_silently(s.addr, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n" + GET),
         "malformed v1 header: closed")
    t.ok(closed_silently(s.addr, SIG + b"\x21\x12\x00\x0c" + bytes(12) + GET),
         "v2 datagram header: closed")
    t.ok(closed_silently(s.addr, b"PROXY TCP4 1.2.3.4 " + b"9" * 120),
         "v1 line past 107 bytes: closed")
    start = time.monotonic()
    t.ok(closed_silently(s.addr, b"PROXY TCP4 ", wait=4.0),
         "header never finished: closed")
    took = time.monotonic() - start
    t.ok(0.8 <= took <= 3.0, "... after header_timeout (1s)", "%.2f s" % took)
    # untrusted peers: closed at once, one log line for several
    t.ok(all(closed_silently(s.addr, v1("203.0.113.66") + GET, source="127.0.0.1")
             for _ in range(3)), "untrusted peer with a header: closed")
    time.sleep(0.2)
    t.eq(up.snapshot(), before, "the upstream got nothing from refused connections")
    lines = [ln for ln in s.stderr_text().splitlines() if "not in trusted_proxies" in ln]
    t.eq(len(lines), 1, "untrusted peers: one rate-limited log line")
    t.ok("127.0.0.1" in (lines[0] if lines else ""), "the log line names the peer", lines)

    # the plain listener next to it
    r = h.request("127.0.0.1:%d" % plain, "GET", "/echo")
    t.eq((r.status, xff(r)), (200, "127.0.0.1"), "plain listener: no header expected")

    # access log: client from the header, peer the balancer
    path = os.path.join(s.dir, "access.log")

    def docs():
        try:
            with open(path) as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            return []
    h.wait_until(lambda: any(d["client"] == "203.0.113.7" for d in docs()), 5)
    pairs = {(d["client"], d.get("peer")) for d in docs()}
    t.ok(("203.0.113.7", LB) in pairs and ("2001:db8::9", LB) in pairs,
         "access log: client is the PROXY source, peer the balancer", sorted(pairs))
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
