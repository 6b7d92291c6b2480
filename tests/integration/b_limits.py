#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Client-side limits (issue 2, point 3): 431 for a head too large or too
# many header fields, 414 for a long URI, 413 past max_body_size (also before
# a 100 Continue), 408 and close for a slow head (slowloris) and a stalled
# body, keep-alive idle timeout, and max_connections (at the cap a further
# connection waits, and proceeds once one closes). Each error is problem+json
# and, for those decided on the head, the upstream gets nothing.
# Client: raw sockets. Upstream: /echo, /upload. Daemon: small limits.

import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "${header_timeout}", body_timeout = "1s", idle_timeout = "${idle}",
           max_header_size = "2k", max_uri_size = "512", max_headers = 10,
           max_body_size = "1k", max_connections = ${maxconn} }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
routes = { { path = "/", upstream = "app" } }
"""


def refused_on_head(t, s, up, label, data, status):
    """Sends data on a fresh connection; checks status, problem+json and that
    the upstream saw nothing."""
    before = up.snapshot()
    with h.Conn(s.addr) as c:
        c.send(data)
        try:
            r = c.read_response(timeout=3)
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "%s: answered %d" % (label, status), repr(e))
            return None
        h.problem_ok(t, r, status, label)
    time.sleep(0.05)
    t.eq(up.snapshot(), before, "%s: upstream got nothing" % label)
    return r


class Dribbler(threading.Thread):
    """Sends pieces with a pause between them until done, closed, or 4 s."""

    def __init__(self, conn, pieces, interval):
        super().__init__(daemon=True)
        self.conn, self.pieces, self.interval = conn, pieces, interval
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + 4
        for p in self.pieces:
            if self.stop.wait(self.interval) or time.monotonic() > deadline:
                return
            try:
                self.conn.sock.sendall(p)
            except OSError:
                return


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port, "maxconn": 100, "idle": "1s",
                                 "header_timeout": "1s"})

    t.eq(h.request(s.addr, "GET", "/echo").status, 200, "a normal request passes")

    big = "v" * 2500
    refused_on_head(t, s, up, "head of 2.5k > max_header_size 2k",
                    h.request_bytes("GET", "/echo", [("X-Big", big)]), 431)
    refused_on_head(t, s, up, "12 header fields > max_headers 10",
                    h.request_bytes("GET", "/echo", [("X-H%d" % i, "1") for i in range(12)]), 431)
    t.eq(h.request(s.addr, "GET", "/echo", [("X-H%d" % i, "1") for i in range(9)]).status, 200,
         "10 header fields (Host included) pass")
    refused_on_head(t, s, up, "URI of 600 bytes > max_uri_size 512",
                    h.request_bytes("GET", "/echo?" + "u" * 600), 414)
    t.eq(h.request(s.addr, "GET", "/echo?" + "u" * 400).status, 200, "URI of 406 bytes passes")

    # 413
    refused_on_head(t, s, up, "Content-Length 2000 > max_body_size 1k",
                    h.request_bytes("POST", "/upload", body=b"b" * 2000), 413)
    r = h.request(s.addr, "POST", "/upload", body=b"b" * 1024)
    t.ok(r.status == 200 and r.json().get("body_length") == 1024,
         "body of exactly max_body_size passes", r)
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("POST", "/upload", [("Expect", "100-continue"),
                                                    ("Content-Length", "2000")]))
        try:
            r = c.read_response(timeout=3, allow_1xx=True)
            t.eq(r.status, 413, "Expect: 100-continue with a too large body: 413, no 100 first")
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "Expect: 100-continue with a too large body: 413", repr(e))
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + h.chunk_body([b"c" * 700, b"c" * 700]))
        try:
            r = c.read_response(timeout=3)
            h.problem_ok(t, r, 413, "chunked body of 1400 bytes > 1k")
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "chunked body of 1400 bytes > 1k: 413", repr(e))

    # slowloris: the head dribbles in, one header line every 200 ms
    with h.Conn(s.addr) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: test\r\n")
        d = Dribbler(c, [b"X-Slow-%d: 1\r\n" % i for i in range(20)], 0.2)
        t0 = time.monotonic()
        d.start()
        try:
            r = c.read_response(timeout=4)
            el = time.monotonic() - t0
            h.problem_ok(t, r, 408, "slowloris head")
            t.ok(0.7 <= el <= 2.5, "slowloris: 408 after header_timeout 1s (%.2fs)" % el)
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "slowloris head: 408", repr(e))
        t.ok(c.wait_closed(2), "slowloris: connection closed after the 408")
        d.stop.set()
        d.join(2)

    # a request line that never ends
    with h.Conn(s.addr) as c:
        c.send(b"GET /ec")
        t0 = time.monotonic()
        try:
            r = c.read_response(timeout=4)
            t.eq(r.status, 408, "partial request line: 408 after header_timeout")
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "partial request line: 408 after header_timeout", repr(e))
        t.ok(c.wait_closed(2), "partial request line: connection closed")

    # a connection that sends nothing at all is closed too
    with h.Conn(s.addr) as c:
        t.ok(c.wait_closed(3), "silent new connection closed within header_timeout + margin")

    # stalled body
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("POST", "/upload", [("Content-Length", "100")]) + b"x" * 10)
        t0 = time.monotonic()
        try:
            r = c.read_response(timeout=4)
            el = time.monotonic() - t0
            t.eq(r.status, 408, "body stalled after 10 of 100 bytes: 408 (%.2fs)" % el)
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "body stalled after 10 of 100 bytes: 408", repr(e))
        t.ok(c.wait_closed(2), "stalled body: connection closed")

    # keep-alive idle timeout (1s)
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "idle: first request")
        t0 = time.monotonic()
        t.ok(c.is_open(0.5), "idle: connection still open after 0.5s")
        closed = c.wait_closed(3)
        el = time.monotonic() - t0
        t.ok(closed and el <= 2.5, "idle: closed after idle_timeout 1s (%.2fs)" % el)
    s.stop()

    # max_connections = 4 (one worker): the fifth waits, then proceeds
    s = env.sluice(CONF, name="maxconn", values={"up": up.port, "maxconn": 4, "idle": "30s",
                                                 "header_timeout": "10s"})
    conns = []
    for i in range(4):
        c = h.Conn(s.addr)
        env.at_exit(c.close)
        c.send(h.request_bytes("GET", "/echo?c=%d" % i))
        conns.append((c, c.read_response().status))
    t.ok(all(st == 200 for _, st in conns), "4 connections up to max_connections served")
    fifth = h.Conn(s.addr, timeout=5)
    env.at_exit(fifth.close)
    fifth.send(h.request_bytes("GET", "/echo?c=5"))
    try:
        r = fifth.read_response(timeout=0.8)
        t.ok(False, "fifth connection waits at the cap", "answered at once: %r" % r)
    except h.Timeout:
        t.ok(True, "fifth connection waits at the cap")
    except h.NoResponse as e:
        t.ok(False, "fifth connection waits at the cap", "closed instead: %r" % e)
    conns[0][0].close()
    t0 = time.monotonic()
    try:
        r = fifth.read_response(timeout=3)
        t.ok(r.status == 200, "fifth connection proceeds once one closes (%.2fs)"
             % (time.monotonic() - t0), r)
    except (h.Timeout, h.NoResponse) as e:
        t.ok(False, "fifth connection proceeds once one closes", repr(e))
    for c, _ in conns[1:]:
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "older connections still served")
    t.ok(s.healthy(), "admin listener answers while the proxy is at its cap")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
