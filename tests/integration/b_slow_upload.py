#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The upstream timeout does not run against a slow upload: while the client
# is still sending the body, its gaps are the client's body_timeout (408);
# the upstream's `timeout` counts from the request's last byte (as nginx's
# proxy_read_timeout), or from the last bytes the upstream was handed.
# Found by a chaos run: an upload slower than the upstream timeout got 504.
# Client: raw connection, body sent a byte at a time. Upstream: /upload
# (echoes the body length) and /hang. Daemon: upstream timeout 1 s, client
# body_timeout 3 s.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { body_timeout = "3s" }
upstreams = {
  app = { servers = { "127.0.0.1:${up}" }, timeout = "1s" },
}
routes = {
  { path = "/", upstream = "app" },
}
"""

BODY = b"0123456789abcdefghij"  # 20 bytes, sent over ~3 s: three upstream timeouts


def slow_post(s, target, gap):
    with h.Conn(s.addr, timeout=10) as c:
        c.send(h.request_bytes("POST", target, headers=[("Content-Length", str(len(BODY)))]))
        t0 = time.monotonic()
        for b in BODY:
            time.sleep(gap)
            c.send(bytes([b]))
        sent = time.monotonic()
        r = c.read_response(timeout=10)
        return r, sent - t0, time.monotonic() - sent


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    r, took, _ = slow_post(s, "/upload", 0.15)
    t.eq(r.status, 200, "upload slower than the upstream timeout (%.1fs): 200" % took)
    if r.status == 200:
        t.eq(r.json().get("body_length"), len(BODY), "upload: the upstream got the whole body")

    # the response wait still ends: 504 about 1 s after the body's last byte
    r, took, waited = slow_post(s, "/hang", 0.1)
    h.problem_ok(t, r, 504, "upstream silent after a slow upload")
    t.ok(0.7 <= waited <= 3.0, "504 counted from the request's last byte (%.2fs after it, "
         "upload took %.1fs)" % (waited, took))

    # Expect: 100-continue, and the body only after longer than the upstream timeout
    with h.Conn(s.addr, timeout=10) as c:
        c.send(h.request_bytes("POST", "/upload", headers=[("Content-Length", str(len(BODY))),
                                                           ("Expect", "100-continue")]))
        r = c.read_response(timeout=5, allow_1xx=True)
        t.eq(r.status, 100, "100-continue: interim 100 first")
        time.sleep(1.5)
        c.send(BODY)
        r = c.read_response(timeout=5)
        t.eq(r.status, 200, "100-continue, body sent 1.5s later: 200 (no upstream timeout while "
             "the client has not sent it)")

    # a client that stops sending its body gets 408 from body_timeout, not a 504
    with h.Conn(s.addr, timeout=10) as c:
        c.send(h.request_bytes("POST", "/upload", headers=[("Content-Length", "10")]) + b"abc")
        r = c.read_response(timeout=10)
        h.problem_ok(t, r, 408, "client stalls mid-body")


if __name__ == "__main__":
    h.run(main)
