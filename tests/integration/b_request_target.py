#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# RFC 9112 request targets (issue 10, point 8): an absolute-form target is
# routed by its authority (which overrides Host, section 3.2.2) and goes up
# in origin-form with that authority as Host; "OPTIONS *" is answered by
# sluice (200 with Allow, nothing forwarded, the connection kept); a Host
# that is no uri-host[:port] gets 400 problem+json and nothing goes up; a
# request line without a version (HTTP/0.9) gets 400 and the connection
# closes at once; CONNECT gets 400 with an authority-form target, 501 with
# any other, and the connection closes; client.request_timeout caps reading
# a whole request, head or body, however it trickles: 408 problem+json.
# Client: raw sockets. Upstreams: "main" and "host" (/echo, /upload).
# Time a request waits in sluice (for an upstream connection) is not the
# client's: a whole request queued longer than request_timeout still goes up.
# Daemon: a host route for example.com, one for queue.test (max_inflight 1),
# a catch-all, request_timeout 1s with header and body timeouts well above.

import socket
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "8s", body_timeout = "8s", request_timeout = "1s" }
upstreams = {
  main = { servers = { "127.0.0.1:${main}" } },
  host = { servers = { "127.0.0.1:${host}" } },
  one  = { servers = { "127.0.0.1:${main}" }, max_inflight = 1, queue = 8 },
}
routes = {
  { path = "/", upstream = "main" },
  { host = "example.com", path = "/", upstream = "host" },
  { host = "queue.test", path = "/", upstream = "one" },
}
"""


def raw(s, data, timeout=5.0):
    with h.Conn(s.addr, timeout) as c:
        c.send(data)
        return c.read_response(timeout=timeout)


def check_absolute(t, s, ups):
    n0 = ups["host"].snapshot()[0]
    r = raw(s, b"GET http://Example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: other.org\r\n\r\n")
    t.eq(r.status, 200, "absolute-form: 200")
    doc = r.json() if r.status == 200 else {}
    t.eq(doc.get("upstream"), "host", "absolute-form: routed by its authority, not by Host")
    t.eq(doc.get("target"), "/a/b?q=1", "absolute-form: forwarded in origin-form")
    hosts = [v for k, v in doc.get("headers", []) if k.lower() == "host"]
    t.eq(hosts, ["Example.com:8080"], "absolute-form: the authority goes up as the one Host")
    t.eq(ups["host"].snapshot()[0], n0 + 1, "absolute-form: one request upstream")

    r = raw(s, b"GET http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    t.eq(r.json().get("target") if r.status == 200 else r.status, "/?x=1",
         "absolute-form without a path: \"/\" and the query")
    r = raw(s, b"GET http://other.org/z HTTP/1.1\r\nHost: example.com\r\n\r\n")
    t.eq(r.json().get("upstream") if r.status == 200 else r.status, "main",
         "absolute-form: another authority takes the catch-all even with Host example.com")


def check_options(t, s, ups):
    before = {n: u.snapshot() for n, u in ups.items()}
    with h.Conn(s.addr) as c:
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response("OPTIONS")
        t.eq(r.status, 200, "OPTIONS *: 200")
        allow = {m.strip() for m in (r.header("allow") or "").split(",")}
        t.ok({"GET", "POST", "OPTIONS"} <= allow, "OPTIONS *: Allow lists the methods",
             repr(r.header("allow")))
        t.eq(r.header("content-length"), "0", "OPTIONS *: empty body")
        c.send(h.request_bytes("GET", "/echo"))
        r2 = c.read_response()
        t.eq(r2.status, 200, "OPTIONS *: the connection goes on")
    t.eq(before["host"], ups["host"].snapshot(), "OPTIONS *: nothing forwarded")
    r = raw(s, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
    h.problem_ok(t, r, 400, "GET *")


def check_bad_host(t, s, ups):
    before = {n: u.snapshot() for n, u in ups.items()}
    for host in ("evil.com/x", "u@example.com", "example.com:8x", "a b", "[::1", "a\"b"):
        r = raw(s, b"GET /echo HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
        h.problem_ok(t, r, 400, "Host %r" % host)
    r = raw(s, b"GET http://u@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    h.problem_ok(t, r, 400, "absolute-form with userinfo")
    time.sleep(0.05)
    t.eq({n: u.snapshot() for n, u in ups.items()}, before, "bad Host: nothing forwarded")
    r = raw(s, b"GET /echo HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
    t.eq(r.status, 200, "Host [::1]:80 is valid")


def check_connect(t, s, ups):
    """docs/configuration.md: the authority-form is 400, CONNECT with any
    other target 501; nothing forwarded, the connection closed."""
    before = {n: u.snapshot() for n, u in ups.items()}
    for target, status in ((b"example.com:443", 400), (b"/echo", 501),
                           (b"http://example.com/", 501)):
        with h.Conn(s.addr) as c:
            c.send(b"CONNECT " + target + b" HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            label = "CONNECT %s" % target.decode()
            h.problem_ok(t, c.read_response(), status, label)
            t.ok(c.wait_closed(2), "%s: connection closed" % label)
    time.sleep(0.05)
    t.eq({n: u.snapshot() for n, u in ups.items()}, before, "CONNECT: nothing forwarded")


def check_http09(t, s):
    with h.Conn(s.addr) as c:
        start = time.monotonic()
        c.send(b"GET /\r\n")
        try:
            r = c.read_response(timeout=3)
            status = r.status
        except (h.NoResponse, h.Timeout):
            status = None
        closed = c.wait_closed(3)
        took = time.monotonic() - start
    t.eq(status, 400, "HTTP/0.9 request line: 400")
    t.ok(closed and took < 1.0, "HTTP/0.9: the connection closes at once",
         "closed=%s after %.2f s" % (closed, took))


def trickle(s, data, every):
    """Sends data a byte at a time; returns (response or None, seconds)."""
    c = h.Conn(s.addr, 10)
    start = time.monotonic()
    try:
        for b in data:
            c.send(bytes([b]))
            time.sleep(every)
            c.sock.settimeout(0.001)
            try:
                got = c.sock.recv(65536, socket.MSG_PEEK)
            except (socket.timeout, BlockingIOError):
                got = None
            except OSError:
                got = b""
            if got is not None:
                break
    except OSError:
        pass
    try:
        r = c.read_response(timeout=5)
    except (h.NoResponse, h.Timeout, OSError):
        r = None
    took = time.monotonic() - start
    closed = c.wait_closed(2)
    c.close()
    return r, took, closed


def check_request_timeout(t, s):
    body = b"x" * 60
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    r, took, closed = trickle(s, head + body, 0.05)
    t.ok(r is not None and r.status == 408, "a trickling body: 408",
         "got %r" % (r and r.status))
    if r is not None and r.status == 408:
        h.problem_ok(t, r, 408, "a trickling body")
    t.ok(0.8 < took < 2.5, "a trickling body: stopped at request_timeout", "%.2f s" % took)
    t.ok(closed, "a trickling body: connection closed")

    r, took, closed = trickle(s, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 60
                              + b"\r\n\r\n", 0.05)
    t.ok(r is not None and r.status == 408, "a trickling head: 408", "got %r" % (r and r.status))
    t.ok(0.8 < took < 2.5, "a trickling head: stopped at request_timeout", "%.2f s" % took)

    r = h.request(s.addr, "POST", "/upload", body=b"z" * 1000)
    t.eq(r.status, 200, "a request that arrives in time is not affected")

    # the one upstream slot is busy for 1.6 s; the POST waits in the queue
    busy = h.Conn(s.addr, 10)
    busy.send(h.request_bytes("GET", "/slow?ms=1600", host="queue.test"))
    time.sleep(0.2)
    start = time.monotonic()
    r = h.request(s.addr, "POST", "/upload", body=b"q" * 100, host="queue.test", timeout=8)
    took = time.monotonic() - start
    t.eq(r.status, 200, "queued longer than request_timeout: not a 408 (the wait was ours)")
    t.ok(took > 1.1, "... it did wait for the slot", "%.2f s" % took)
    t.eq(busy.read_response(timeout=8).status, 200, "the request holding the slot: 200")
    busy.close()


def main(env):
    t = env.t
    ups = {n: env.upstream(n) for n in ("main", "host")}
    s = env.sluice(CONF, values={n: u.port for n, u in ups.items()})
    check_absolute(t, s, ups)
    check_options(t, s, ups)
    check_bad_host(t, s, ups)
    check_connect(t, s, ups)
    check_http09(t, s)
    check_request_timeout(t, s)
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
