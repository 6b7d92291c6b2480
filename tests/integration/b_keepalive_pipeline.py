#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Keep-alive and pipelining (issue 2, point 3): many requests on one
# connection; pipelined requests, slow ones first, answered in order, with
# bodies and errors mixed in; HTTP/1.0 and Connection: close end the
# connection after the response; upstream connections are reused.
# sluice's own answers (404, 429, 403, OPTIONS *) carry the Connection
# header that matches what it does next (RFC 9112 sections 9.3, 9.6):
# "close" when it closes, "keep-alive" only to an HTTP/1.0 client that
# asked for it and is kept.
# Client: one raw connection per case. Upstream: /echo, /slow, /upload.
# Daemon: routes /echo, /slow, /upload, /limited (one request an hour per
# client), /nows (WebSocket refused); anything else 404.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "2s", idle_timeout = "10s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16, timeout = "5s" } }
routes = {
  { path = "/echo", upstream = "app" },
  { path = "/slow", upstream = "app" },
  { path = "/upload", upstream = "app" },
  { path = "/limited", upstream = "app", limits = { "once" } },
  { path = "/nows", upstream = "app", websocket = false },
}
limits = { once = { key = "ip", rate = 1, per = "1h", burst = 1 } }
"""

WS = [("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
      ("Sec-WebSocket-Version", "13")]

# (label, method, target, headers, version, status, Connection wanted, kept)
LOCAL_ANSWERS = [
    ("1.0 404", "GET", "/missing", [], "HTTP/1.0", 404, "close", False),
    ("1.0 OPTIONS *", "OPTIONS", "*", [], "HTTP/1.0", 200, "close", False),
    ("1.0 429", "GET", "/limited", [], "HTTP/1.0", 429, "close", False),
    ("1.0 keep-alive 404", "GET", "/missing", [("Connection", "keep-alive")], "HTTP/1.0",
     404, "keep-alive", True),
    ("1.0 keep-alive OPTIONS *", "OPTIONS", "*", [("Connection", "keep-alive")], "HTTP/1.0",
     200, "keep-alive", True),
    ("1.0 keep-alive 429", "GET", "/limited", [("Connection", "keep-alive")], "HTTP/1.0",
     429, "keep-alive", True),
    ("1.1 close 404", "GET", "/missing", [("Connection", "close")], "HTTP/1.1",
     404, "close", False),
    ("1.1 close OPTIONS *", "OPTIONS", "*", [("Connection", "close")], "HTTP/1.1",
     200, "close", False),
    ("1.1 close 429", "GET", "/limited", [("Connection", "close")], "HTTP/1.1",
     429, "close", False),
    ("1.1 close 403", "GET", "/nows", [("Connection", "Upgrade, close")] + WS, "HTTP/1.1",
     403, "close", False),
    ("1.1 404", "GET", "/missing", [], "HTTP/1.1", 404, None, True),
    ("1.1 429", "GET", "/limited", [], "HTTP/1.1", 429, None, True),
    ("1.1 403", "GET", "/nows", [("Connection", "Upgrade")] + WS, "HTTP/1.1", 403, None, True),
]


def check_local_answers(t, s):
    """Each case on a fresh connection: the status, the Connection header
    (None: absent) and whether the connection stays open."""
    h.request(s.addr, "GET", "/limited")  # spends the one request of the hour
    for label, method, target, headers, version, status, want, kept in LOCAL_ANSWERS:
        with h.Conn(s.addr) as c:
            c.send(h.request_bytes(method, target, headers, version=version))
            r = c.read_response(method)
            got = r.header("connection")
            got = got.lower() if got is not None else None
            t.ok(r.status == status and got == want,
                 "%s: %d with Connection: %s" % (label, status, want), (r.status, got))
            if kept:
                t.ok(c.is_open(0.2), "%s: connection kept" % label)
            else:
                t.ok(c.wait_closed(2), "%s: connection closed" % label)


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # sequential keep-alive
    with h.Conn(s.addr) as c:
        statuses = []
        for i in range(20):
            c.send(h.request_bytes("GET", "/echo?i=%d" % i))
            r = c.read_response()
            statuses.append((r.status, r.json().get("target") if r.status == 200 else None))
        t.ok(all(st == 200 for st, _ in statuses), "20 sequential requests on one connection",
             statuses)
        t.ok(all(tg == "/echo?i=%d" % i for i, (_, tg) in enumerate(statuses)),
             "each answered with its own target")
        t.ok(c.is_open(), "connection still open after 20 requests")
    conns = up.connections
    for i in range(10):
        h.request(s.addr, "GET", "/echo")
    t.ok(up.connections - conns <= 4,
         "upstream connections are kept alive and reused (%d new for 10 requests)"
         % (up.connections - conns))

    # pipelining, slow first: order kept
    with h.Conn(s.addr, timeout=10) as c:
        reqs = [h.request_bytes("GET", "/slow?ms=300&i=0")]
        reqs += [h.request_bytes("GET", "/echo?i=%d" % i) for i in range(1, 10)]
        c.send(b"".join(reqs))
        got = []
        for i in range(10):
            r = c.read_response(timeout=5)
            got.append(r.json().get("target") if r.status == 200 else r.status)
        want = ["/slow?ms=300&i=0"] + ["/echo?i=%d" % i for i in range(1, 10)]
        t.eq(got, want, "10 pipelined requests (slow first) answered in order")
        t.ok(c.is_open(), "connection open after the pipeline")

    # pipelining with bodies, a 404 and a chunked upload in the middle
    with h.Conn(s.addr, timeout=10) as c:
        data = (h.request_bytes("POST", "/upload?i=0", body=b"a" * 5000)
                + h.request_bytes("GET", "/missing?i=1")
                + h.request_bytes("POST", "/upload?i=2", [("Transfer-Encoding", "chunked")])
                + h.chunk_body([b"b" * 100, b"c" * 7000])
                + h.request_bytes("GET", "/slow?ms=100&i=3")
                + h.request_bytes("HEAD", "/echo?i=4")
                + h.request_bytes("GET", "/echo?i=5"))
        c.send(data)
        r = c.read_response()
        t.ok(r.status == 200 and r.json()["body_length"] == 5000, "pipeline[0] POST 5000 bytes",
             r)
        r = c.read_response()
        t.eq(r.status, 404, "pipeline[1] unknown path 404, in order")
        r = c.read_response()
        t.ok(r.status == 200 and r.json()["body_length"] == 7100,
             "pipeline[2] chunked POST 7100 bytes", r.body[:300])
        r = c.read_response()
        t.ok(r.status == 200 and r.json()["target"] == "/slow?ms=100&i=3", "pipeline[3] slow",
             r.body[:300])
        r = c.read_response("HEAD")
        t.ok(r.status == 200 and r.body_len == 0, "pipeline[4] HEAD, no body", r)
        r = c.read_response()
        t.ok(r.status == 200 and r.json()["target"] == "/echo?i=5",
             "pipeline[5] after HEAD parsed cleanly", r.body[:300])

    # a pipeline sent byte by byte is still parsed
    with h.Conn(s.addr, timeout=10) as c:
        data = h.request_bytes("GET", "/echo?i=a") + h.request_bytes("GET", "/echo?i=b")
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)
        got = [c.read_response().json().get("target") for _ in range(2)]
        t.eq(got, ["/echo?i=a", "/echo?i=b"], "pipeline dribbled in 7-byte pieces")

    # Connection: close
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo", [("Connection", "close")]))
        r = c.read_response()
        t.eq(r.status, 200, "Connection: close request answered")
        t.ok("close" in (r.header("connection") or "").lower(),
             "response says Connection: close", r.headers)
        t.ok(c.wait_closed(2), "server closes after Connection: close")

    # HTTP/1.0 without keep-alive
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo", version="HTTP/1.0"))
        r = c.read_response()
        t.eq(r.status, 200, "HTTP/1.0 request answered")
        t.ok(c.wait_closed(2), "HTTP/1.0 connection closed after the response")

    # HTTP/1.0 with Connection: keep-alive
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo", [("Connection", "keep-alive")],
                               version="HTTP/1.0"))
        r = c.read_response()
        t.eq(r.status, 200, "HTTP/1.0 keep-alive request answered")
        if c.is_open(0.2):
            c.send(h.request_bytes("GET", "/echo", [("Connection", "keep-alive")],
                                   version="HTTP/1.0"))
            t.eq(c.read_response().status, 200, "HTTP/1.0 keep-alive: second request")
        else:
            t.note("server closed the HTTP/1.0 keep-alive connection (allowed)")

    check_local_answers(t, s)
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
