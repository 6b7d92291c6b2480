#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Request and response bodies (issue 2, points 3, 4 and 9): Content-Length
# and chunked uploads arrive intact; Expect: 100-continue gets sluice's own
# "100 Continue" before the body is sent; a 64 MiB upload and a 64 MiB
# download stream through with sluice's RSS under 32 MiB even when the far
# side stops reading for a second (backpressure, not buffering).
# Client: raw sockets, hashing what it sends and gets. Upstream: /upload
# (hashes, can pause), /big (pattern bytes, can pause), /chunked.
# Daemon: one route "/" with generous timeouts.

import hashlib
import os
import socket
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "2s", body_timeout = "10s", idle_timeout = "10s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "10s" } }
routes = { { path = "/", upstream = "app" } }
"""

MIB = 1 << 20
RSS_LIMIT_KB = 32 * 1024


def pattern(n, seed):
    block = hashlib.sha256(seed).digest() * 8192   # 256 KiB
    while n > 0:
        k = min(n, len(block))
        yield block[:k]
        n -= k


def upload(t, s, up, label, total, chunked, pause_ms):
    """Streams `total` bytes to /upload; returns (status, doc, seconds, sha)."""
    sha = hashlib.sha256()
    headers = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(total))]
    n0 = up.snapshot()[0]
    t0 = time.monotonic()
    with h.Conn(s.addr, timeout=30) as c:
        c.send(h.request_bytes("POST", "/upload?pause_ms=%d" % pause_ms, headers))
        for piece in pattern(total, label.encode()):
            sha.update(piece)
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=30)
    secs = time.monotonic() - t0
    doc = r.json() if r.status == 200 else {}
    recs = up.requests_since(n0)
    t.eq(len(recs), 1, "%s: upstream got exactly one request" % label)
    return r.status, doc, secs, sha.hexdigest()


def main(env):
    t = env.t
    up = env.upstream("app")
    sanitized = h.binary_is_sanitized(h.sluice_bin()) if not os.environ.get(
        "SLUICE_ADDR") else False
    extra = {"ASAN_OPTIONS": "detect_leaks=1:quarantine_size_mb=4"} if sanitized else {}
    s = env.sluice(CONF, values={"up": up.port}, extra_env=extra)

    # small bodies
    body = bytes(range(256)) * 4096  # 1 MiB
    r = h.request(s.addr, "POST", "/upload", body=body, timeout=10)
    doc = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and doc.get("body_length") == len(body)
         and doc.get("body_sha256") == hashlib.sha256(body).hexdigest(),
         "1 MiB Content-Length upload arrives intact", (r, doc))

    pieces = [b"a", b"b" * 15, b"c" * 4096, b"d" * 70000, b"e" * 3]
    whole = b"".join(pieces)
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + h.chunk_body(pieces))
        r = c.read_response()
        doc = r.json() if r.status == 200 else {}
        t.ok(r.status == 200 and doc.get("body_length") == len(whole)
             and doc.get("body_sha256") == hashlib.sha256(whole).hexdigest(),
             "chunked upload of odd-sized chunks arrives intact", (r, doc))
        # chunked with a trailer section
        c.send(h.request_bytes("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")
        r = c.read_response()
        doc = r.json() if r.status == 200 else {}
        t.ok(r.status == 200 and doc.get("body_length") == 5,
             "chunked upload with a trailer section", (r, doc))
        c.send(h.request_bytes("POST", "/upload", body=b""))
        r = c.read_response()
        t.ok(r.status == 200 and r.json().get("body_length") == 0,
             "POST with Content-Length: 0", r)

    # Expect: 100-continue
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("POST", "/upload", [("Expect", "100-continue"),
                                                    ("Content-Length", "10000")]))
        try:
            r = c.read_response(timeout=2, allow_1xx=True)
            first = r.status
            line = r.raw_head.split(b"\r\n")[0]
        except (h.Timeout, h.NoResponse) as e:
            first, line = None, repr(e)
        t.eq(first, 100, "Expect: 100-continue gets a 100 before the body is sent")
        t.ok(line.startswith(b"HTTP/1.1 100"), "the interim line is 'HTTP/1.1 100 Continue'",
             line)
        c.send(b"q" * 10000)
        r = c.read_response(timeout=5)
        t.ok(r.status == 200 and r.json().get("body_length") == 10000,
             "after 100 Continue the body is forwarded and answered", r)
        # the same connection stays usable
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "connection reusable after 100-continue")

    with h.Conn(s.addr) as c:
        # a client that does not wait for 100 Continue
        c.send(h.request_bytes("POST", "/upload", [("Expect", "100-continue")], b"w" * 3000))
        r = c.read_response(timeout=5)
        t.ok(r.status == 200 and r.json().get("body_length") == 3000,
             "Expect: 100-continue with the body sent at once also works", r)

    # big transfers, RSS sampled
    time.sleep(0.2)
    base_kb = h.rss_kb(s.pid) if s.pid else None
    if base_kb is None:
        t.skip("RSS checks", "no pid of the daemon (attach mode without SLUICE_PID)")
    limit = RSS_LIMIT_KB if not sanitized else base_kb + RSS_LIMIT_KB
    what = "RSS < 32 MiB" if not sanitized else "RSS growth < 32 MiB (sanitized build)"
    t.note("baseline RSS %s kB%s" % (base_kb, ", sanitized build" if sanitized else ""))

    for label, total, chunked in (("64 MiB Content-Length upload", 64 * MIB, False),
                                  ("16 MiB chunked upload", 16 * MIB, True)):
        with h.RssSampler(s.pid or 0) as rs:
            st, doc, secs, sha = upload(t, s, up, label, total, chunked, 1000)
        t.ok(st == 200 and doc.get("body_length") == total and doc.get("body_sha256") == sha,
             "%s arrives intact (%.1fs)" % (label, secs), (st, doc))
        if base_kb is not None:
            t.ok(rs.max_kb < limit, "%s: %s (max %d kB over %d samples)"
                 % (label, what, rs.max_kb, rs.samples), "max %d kB" % rs.max_kb)

    for label, total, chunked in (("64 MiB Content-Length download", 64 * MIB, False),
                                  ("16 MiB chunked download", 16 * MIB, True)):
        sha = hashlib.sha256()
        seen = [0]

        def sink(b):
            sha.update(b)
            if seen[0] < MIB <= seen[0] + len(b):
                time.sleep(1.0)  # stop reading: sluice must not buffer what keeps coming
            seen[0] += len(b)

        t0 = time.monotonic()
        with h.RssSampler(s.pid or 0) as rs:
            with h.Conn(s.addr, timeout=30) as c:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
                c.send(h.request_bytes("GET", "/big?bytes=%d%s" % (
                    total, "&chunked=1" if chunked else "")))
                r = c.read_response(timeout=30, sink=sink)
        secs = time.monotonic() - t0
        t.ok(r.status == 200 and r.complete and r.body_len == total
             and sha.hexdigest() == h.pattern_sha256(total),
             "%s arrives intact (%.1fs)" % (label, secs), r)
        if base_kb is not None:
            t.ok(rs.max_kb < limit, "%s: %s (max %d kB over %d samples)"
                 % (label, what, rs.max_kb, rs.samples), "max %d kB" % rs.max_kb)

    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=120)
