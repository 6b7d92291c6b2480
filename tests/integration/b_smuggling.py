#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Request smuggling (issue 2, point 3): every ambiguous framing is refused
# with 400 (problem+json), the connection is closed, and the upstream
# receives nothing at all. A control request before the vectors proves the
# upstream does see what sluice forwards, and a pipelined case proves the
# request before a smuggled one is still forwarded once.
# Client: raw bytes, one fresh connection per vector. Upstream: /echo,
# counting every byte it reads. Daemon: one route "/".

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "2s", body_timeout = "2s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
routes = { { path = "/", upstream = "app" } }
"""

R = "POST /echo HTTP/1.1\r\nHost: test\r\n"
G = "GET /echo HTTP/1.1\r\nHost: test\r\n"

VECTORS = [
    # Content-Length together with Transfer-Encoding
    ("CL + TE", R + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE + CL", R + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("CL 0 + TE", R + "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    # duplicate or invalid Content-Length
    ("duplicate CL, same value", R + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("duplicate CL, different values", R + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("CL list '5, 5'", R + "Content-Length: 5, 5\r\n\r\nhello"),
    ("CL not a number", R + "Content-Length: abc\r\n\r\n"),
    ("CL negative", R + "Content-Length: -1\r\n\r\n"),
    ("CL with plus sign", R + "Content-Length: +5\r\n\r\nhello"),
    ("CL hex", R + "Content-Length: 0x5\r\n\r\nhello"),
    ("CL with inner space", R + "Content-Length: 1 2\r\n\r\nhello world!"),
    ("CL overflows 64 bits", R + "Content-Length: 99999999999999999999999\r\n\r\n"),
    ("CL empty", R + "Content-Length: \r\n\r\n"),
    # Transfer-Encoding other than a final chunked
    ("TE gzip only", R + "Transfer-Encoding: gzip\r\n\r\nhello"),
    ("TE identity", R + "Transfer-Encoding: identity\r\n\r\n"),
    ("TE chunked, gzip (chunked not final)", R + "Transfer-Encoding: chunked, gzip\r\n\r\n"
     "0\r\n\r\n"),
    ("TE chunked twice in one field", R + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    ("TE chunked in two fields", R + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
     "\r\n\r\n0\r\n\r\n"),
    ("TE xchunked", R + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("TE chunked with a vertical tab", R + "Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n"),
    ("TE chunked then gzip field", R + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip"
     "\r\n\r\n0\r\n\r\n"),
    # invalid chunk sizes or extensions
    ("chunk size not hex", R + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk size negative", R + "Transfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n"),
    ("chunk size 0x prefix", R + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size overflows 64 bits", R + "Transfer-Encoding: chunked\r\n\r\n"
     "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("chunk size empty", R + "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n"),
    ("chunk data longer than its size", R + "Transfer-Encoding: chunked\r\n\r\n"
     "5\r\nhelloXX\r\n0\r\n\r\n"),
    ("chunk extension with a control char", R + "Transfer-Encoding: chunked\r\n\r\n"
     "5;\x01\r\nhello\r\n0\r\n\r\n"),
    ("chunk extension with an unterminated quote", R + "Transfer-Encoding: chunked\r\n\r\n"
     "5;a=\"b\r\nhello\r\n0\r\n\r\n"),
    ("chunk extension without a name", R + "Transfer-Encoding: chunked\r\n\r\n"
     "5;=x\r\nhello\r\n0\r\n\r\n"),
    # bare LF
    ("bare LF after the request line", "GET /echo HTTP/1.1\nHost: test\r\n\r\n"),
    ("bare LF after a header", G + "X-A: 1\nX-B: 2\r\n\r\n"),
    ("bare LF ending the head", G + "X-A: 1\r\n\n"),
    ("bare LF everywhere", "GET /echo HTTP/1.1\nHost: test\n\n"),
    ("bare LF after a chunk size", R + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    # obs-fold
    ("obs-fold with a space", G + "X-A: 1\r\n folded\r\n\r\n"),
    ("obs-fold with a tab", G + "X-A: 1\r\n\tfolded\r\n\r\n"),
    ("obs-fold of Transfer-Encoding", R + "Transfer-Encoding: gzip,\r\n chunked\r\n\r\n"
     "0\r\n\r\n"),
    # invalid header names, whitespace before the colon
    ("header name with a space inside", G + "X A: 1\r\n\r\n"),
    ("header name with '['", G + "X[A]: 1\r\n\r\n"),
    ("header name with a control char", G + "X\x01A: 1\r\n\r\n"),
    ("empty header name", G + ": 1\r\n\r\n"),
    ("header line without a colon", G + "XA\r\n\r\n"),
    ("space before the colon", G + "X-A : 1\r\n\r\n"),
    ("tab before the colon", G + "X-A\t: 1\r\n\r\n"),
    ("space before the colon of Content-Length", R + "Content-Length : 5\r\n\r\nhello"),
    ("space before the colon of Transfer-Encoding", R + "Transfer-Encoding : chunked\r\n\r\n"
     "0\r\n\r\n"),
    # Host
    ("missing Host in HTTP/1.1", "GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    ("two Host fields (RFC 9112 3.2)", G + "Host: other\r\n\r\n"),
]


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # controls: what the vectors are variations of does reach the upstream
    for label, data in (
            ("control: GET", G + "\r\n"),
            ("control: POST with Content-Length", R + "Content-Length: 5\r\n\r\nhello"),
            ("control: chunked POST", R + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
             "0\r\n\r\n"),
            ("control: chunk extension", R + "Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello"
             "\r\n0\r\n\r\n"),
            ("control: HTTP/1.0 without Host", "GET /echo HTTP/1.0\r\n\r\n")):
        before = up.snapshot()[0]
        with h.Conn(s.addr) as c:
            c.send(data.encode("latin-1"))
            try:
                r = c.read_response(timeout=3)
                t.eq(r.status, 200, "%s: 200" % label)
            except (h.Timeout, h.NoResponse) as e:
                t.ok(False, "%s: 200" % label, repr(e))
        t.eq(up.snapshot()[0] - before, 1, "%s: upstream got it once" % label)

    for label, data in VECTORS:
        before = up.snapshot()
        with h.Conn(s.addr) as c:
            c.send(data.encode("latin-1"))
            try:
                r = c.read_response(timeout=3)
            except (h.Timeout, h.NoResponse) as e:
                t.ok(False, "%s: 400" % label, "sent %r; %r" % (data, e))
                r = None
            if r is not None:
                ok = t.ok(r.status == 400, "%s: 400" % label,
                          "sent %r; got %s %s %r" % (data, r.status, r.reason, r.body[:200]))
                if ok:
                    ct = (r.header("content-type") or "").split(";")[0].strip()
                    t.eq(ct, h.PROBLEM_TYPE, "%s: problem+json" % label)
            t.ok(c.wait_closed(2), "%s: connection closed" % label, "sent %r" % data)
        time.sleep(0.03)
        after = up.snapshot()
        t.ok(after == before, "%s: upstream got nothing" % label,
             "sent %r; upstream requests %d -> %d, bytes %d -> %d; last head %r" % (
                 data, before[0], after[0], before[1], after[1],
                 up.requests[-1]["raw_head"] if after[0] > before[0] else b""))

    # pipelined: a good request, then a smuggled one in the same write
    before = up.snapshot()[0]
    with h.Conn(s.addr) as c:
        c.send((G + "\r\n" + R + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n").encode())
        try:
            r1 = c.read_response(timeout=3)
            t.eq(r1.status, 200, "pipelined: the good request first is answered")
            r2 = c.read_response(timeout=3)
            t.eq(r2.status, 400, "pipelined: the CL+TE request after it gets 400")
        except (h.Timeout, h.NoResponse) as e:
            t.ok(False, "pipelined: 200 then 400", repr(e))
        t.ok(c.wait_closed(2), "pipelined: connection closed after the 400")
    time.sleep(0.03)
    recs = up.requests_since(before)
    t.eq([x["target"] for x in recs], ["/echo"],
         "pipelined: upstream got only the good request, never /smuggled")

    t.ok(s.alive(), "daemon alive after all vectors")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
