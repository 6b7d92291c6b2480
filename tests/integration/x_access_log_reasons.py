#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Issue 12, point 5: every non-2xx response sluice makes itself has a
# `reason` in the access log; it was null on 408 (body timeout) and on 502
# from a malformed upstream response, among others. A status the upstream
# sent is passed on with no reason: sluice did not make it.
# Client: one raw connection per case (bad heads, slow heads and bodies,
# oversized parts, a refused expectation, a limited route). Daemon: 1 worker,
# access log to a file, short client and upstream timeouts, routes for host
# "known" only. Upstream: /echo, /upload, /malformed, /status/NNN, /close,
# /hang, and a dead port.

import json
import os

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
client = { header_timeout = "500ms", body_timeout = "500ms", max_body_size = "1k",
           max_header_size = "2k", max_uri_size = "1k" }
upstreams = {
  app  = { servers = { "127.0.0.1:${up}" }, timeout = "500ms" },
  dead = { servers = { "127.0.0.1:${dead}" }, connect_timeout = "500ms" },
}
limits = { one = { key = "ip", rate = 1, per = "1h", burst = 1 } }
routes = {
  { path = "/", host = "known", upstream = "app" },
  { path = "/dead/", host = "known", upstream = "dead" },
  { path = "/limited/", host = "known", upstream = "app", limits = "one" },
}
"""


def head(target, *lines, method="GET", version="HTTP/1.1"):
    return ("%s %s %s\r\nHost: known\r\n%s\r\n" % (
        method, target, version, "".join(ln + "\r\n" for ln in lines))).encode("latin-1")


# (label, bytes sent, expected status, path in the log or None, expected reason)
CASES = [
    ("no route", head("/x").replace(b"known", b"other"), 404, "/x", "no route"),
    ("malformed header name", head("/bad", "Bad Name: 1"), 400, None, "malformed request"),
    ("bare LF", b"GET /lf HTTP/1.1\nHost: known\n\n", 400, None, "bad line ends"),
    ("chunked in HTTP/1.0",
     head("/echo", "Transfer-Encoding: chunked", method="POST", version="HTTP/1.0")
     + b"0\r\n\r\n", 400, "/echo", "invalid request framing"),
    ("HTTP/2.0 on HTTP/1 framing", head("/v2", version="HTTP/2.0"), 505, "/v2",
     "http version not supported"),
    ("body over max_body_size", head("/upload", "Content-Length: 5000", method="POST"), 413,
     "/upload", "request body too large"),
    ("target over max_uri_size", head("/" + "u" * 1500), 414, None, "request target too long"),
    ("head over max_header_size", head("/big-head", "X-Pad: " + "p" * 3000), 431, None,
     "request head too large"),
    ("unknown expectation", head("/echo", "Expect: magic"), 417, "/echo",
     "expectation not supported"),
    ("bad chunked body",
     head("/upload", "Transfer-Encoding: chunked", method="POST") + b"zz\r\n", 400, "/upload",
     "bad chunked body"),
    ("slow head", b"GET /slow-head HTTP/1.1\r\nHost: known\r\n", 408, None,
     "client header timeout"),
    ("slow body", head("/upload", "Content-Length: 100", method="POST") + b"0123456789", 408,
     "/upload", "client body timeout"),
    ("malformed upstream response", head("/malformed"), 502, "/malformed",
     "upstream sent a malformed response"),
    ("upstream switches protocols", head("/status/101"), 502, "/status/101",
     "upstream switched protocols"),
    ("upstream closes without answering", head("/close"), 502, "/close",
     "upstream closed without answering"),
    ("upstream does not answer", head("/hang"), 504, "/hang", "upstream timed out"),
    ("upstream unreachable", head("/dead/x"), 502, "/dead/x", "upstream unreachable"),
    ("first request on a limited route", head("/limited/a"), 200, "/limited/a", None),
    ("second request on a limited route", head("/limited/b"), 429, "/limited/b",
     "rate limited"),
    ("the upstream's own 404", head("/status/404"), 404, "/status/404", None),
    ("the upstream's own 503", head("/status/503"), 503, "/status/503", None),
    ("a plain 200", head("/echo"), 200, "/echo", None),
]


def read_log(path):
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def main(env):
    t = env.t
    up = env.upstream("up")
    s = env.sluice(CONF, values={"up": up.port, "dead": h.free_port()})
    for label, data, status, _, _ in CASES:
        with h.Conn(s.addr, timeout=5) as c:
            c.send(data)
            r = c.read_response(timeout=5)
            t.eq(r.status, status, "%s: status" % label)
    s.stop()

    lines = read_log(os.path.join(s.dir, "access.log"))
    t.eq(len(lines), len(CASES), "one access log line per case")
    for (label, _, status, path, reason), line in zip(CASES, lines):
        t.eq((line.get("status"), line.get("path") if path else None, line.get("reason")),
             (status, path, reason), "%s: access log status, path and reason" % label)
    own = [ln for ln in lines if ln.get("status", 0) >= 400
           and not (ln.get("path") or "").startswith("/status/")]
    t.ok(all(ln.get("reason") for ln in own), "every status sluice made has a reason",
         [ln for ln in own if not ln.get("reason")])


if __name__ == "__main__":
    h.run(main, time_limit=120)
