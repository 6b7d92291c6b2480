#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Header handling (issue 2, point 4): hop-by-hop fields (Connection and the
# fields it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-*) removed in both
# directions; X-Forwarded-For appended, X-Forwarded-Proto set, Host passed;
# X-Request-Id kept or created; W3C traceparent kept (same trace id) or
# started (00-<32hex>-<16hex>-<2hex>); HEAD, 204 and 304 carry no body and
# leave the connection usable; repeated end-to-end fields survive.
# Client: raw requests. Upstream: /echo (headers as received), /hop (a
# response full of hop-by-hop fields), /big (HEAD), /status/204 and 304.
# Daemon: one route "/", no trusted proxies.

import re

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "2s", idle_timeout = "10s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
routes = { { path = "/", upstream = "app" } }
"""

HOP = ("keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate",
       "proxy-connection", "x-hop", "x-up-hop", "proxy-foo", "transfer-encoding")
TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def echo(s, headers, c=None, method="GET", body=None, host="test"):
    data = h.request_bytes(method, "/echo", headers, body, host=host)
    if c is None:
        with h.Conn(s.addr) as cc:
            cc.send(data)
            r = cc.read_response()
    else:
        c.send(data)
        r = c.read_response()
    doc = r.json()
    hs = doc["headers"]
    return r, hs


def all_of(hs, name):
    return [v for k, v in hs if k.lower() == name]


def conn_tokens(values):
    out = set()
    for v in values:
        out.update(x.strip().lower() for x in v.split(",") if x.strip())
    return out


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # request direction
    r, hs = echo(s, [("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
                     ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X-T"),
                     ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic eDp5"),
                     ("Proxy-Connection", "keep-alive"), ("Proxy-Foo", "bar"),
                     ("X-Keep", "yes")])
    names = set(k.lower() for k, _ in hs)
    leaked = sorted(n for n in HOP if n in names)
    t.ok(not leaked, "request: hop-by-hop fields removed", "upstream got %s" % leaked)
    toks = conn_tokens(all_of(hs, "connection"))
    t.ok(toks <= {"keep-alive", "close"}, "request: Connection upstream only sluice's own",
         all_of(hs, "connection"))
    t.eq(all_of(hs, "x-keep"), ["yes"], "request: end-to-end field X-Keep kept")

    # response direction
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/hop"))
        r = c.read_response()
        names = set(k.lower() for k, _ in r.headers)
        leaked = sorted(n for n in HOP if n in names and n != "transfer-encoding")
        t.eq(r.status, 200, "response: /hop answered")
        t.ok(not leaked, "response: hop-by-hop fields removed", "client got %s" % leaked)
        t.ok(conn_tokens(r.header_all("connection")) <= {"keep-alive", "close"},
             "response: Connection is sluice's own", r.header_all("connection"))
        t.eq(r.header_all("x-keep"), ["yes"], "response: X-Keep kept")
        t.eq(r.header_all("set-cookie"), ["a=1", "b=2"], "response: both Set-Cookie kept in order")
        t.eq(r.body, b"hop\n", "response: body intact")
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "response: connection usable after /hop")

    # X-Forwarded-For, -Proto, Host
    r, hs = echo(s, [])
    t.eq(all_of(hs, "x-forwarded-for"), ["127.0.0.1"], "XFF set to the peer address")
    t.eq(all_of(hs, "x-forwarded-proto"), ["http"], "X-Forwarded-Proto: http")
    r, hs = echo(s, [("X-Forwarded-For", "203.0.113.7")])
    t.eq(all_of(hs, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"], "XFF appended")
    r, hs = echo(s, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.1")])
    xff = ", ".join(all_of(hs, "x-forwarded-for"))
    t.eq(xff, "203.0.113.7, 198.51.100.1, 127.0.0.1", "XFF from two fields appended in order")
    r, hs = echo(s, [("X-Forwarded-Proto", "https")])
    t.eq(all_of(hs, "x-forwarded-proto"), ["http"],
         "X-Forwarded-Proto from an untrusted client replaced")
    r, hs = echo(s, [], host="Example.COM:8080")
    t.eq(all_of(hs, "host"), ["Example.COM:8080"], "Host passed as sent")

    # X-Request-Id
    r, hs = echo(s, [("X-Request-Id", "abc-123")])
    t.eq(all_of(hs, "x-request-id"), ["abc-123"], "X-Request-Id kept")
    _, hs1 = echo(s, [])
    _, hs2 = echo(s, [])
    id1, id2 = all_of(hs1, "x-request-id"), all_of(hs2, "x-request-id")
    t.ok(len(id1) == 1 and len(id1[0]) >= 8, "X-Request-Id created when absent", id1)
    t.ok(id1 != id2, "created request ids differ", (id1, id2))

    # traceparent
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, hs = echo(s, [("traceparent", tp)])
    got = all_of(hs, "traceparent")
    m = TP_RE.match(got[0]) if len(got) == 1 else None
    t.ok(m is not None, "traceparent passed on in valid form", got)
    if m:
        t.eq(m.group(1), "0af7651916cd43dd8448eb211c80319c", "traceparent keeps the trace id")
    _, hs = echo(s, [])
    got = all_of(hs, "traceparent")
    m = TP_RE.match(got[0]) if len(got) == 1 else None
    t.ok(m is not None, "traceparent started when absent", got)
    if m:
        t.ok(m.group(1) != "0" * 32 and m.group(2) != "0" * 16, "started trace id is not zero",
             got)
    _, hs = echo(s, [("traceparent", "garbage")])
    got = all_of(hs, "traceparent")
    t.ok(len(got) == 1 and TP_RE.match(got[0]), "invalid traceparent replaced by a valid one",
         got)

    # no-body responses
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("HEAD", "/big?bytes=1000"))
        r = c.read_response("HEAD")
        t.ok(r.status == 200 and r.header("content-length") == "1000",
             "HEAD: 200 with the upstream's Content-Length", r.headers)
        c.send(h.request_bytes("GET", "/status/204"))
        r = c.read_response()
        t.ok(r.status == 204 and r.header("content-length") in (None, "0")
             and r.header("transfer-encoding") is None, "204: no body framing", r.headers)
        c.send(h.request_bytes("GET", "/status/304"))
        r = c.read_response()
        t.ok(r.status == 304 and r.header("transfer-encoding") is None, "304: no body",
             r.headers)
        c.send(h.request_bytes("GET", "/echo"))
        try:
            r = c.read_response(timeout=3)
            ok = r.status == 200 and r.json().get("target") == "/echo"
            t.ok(ok, "connection clean after HEAD, 204, 304 (no stray body bytes)", repr(r))
        except Exception as e:
            t.ok(False, "connection clean after HEAD, 204, 304 (no stray body bytes)", repr(e))
        t.eq(c.buf, b"", "no bytes left over after the four responses")

    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
