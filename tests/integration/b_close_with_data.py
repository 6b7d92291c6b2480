#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A close that arrives together with the last data is seen at once, on both
# sides, and a client's reset that arrives with its request within a second. Sockets are edge-triggered, and data with the FIN right behind it
# make one readable edge: a short read must not be taken for "drained" when
# the peer has closed (found by a chaos run: close-delimited responses
# stalled for the whole upstream timeout, and a request followed at once by
# a close held its upstream connection until the timeout).
# sluice is stopped (SIGSTOP) while the peer sends and closes, so both reach
# its socket before it reads: timing-independent.
# Client: raw connections. Upstream: /eof (a 200 framed by the close, sent
# after delay_ms) and /hang. Daemon: one route, upstream timeout 10 s.

import os
import signal
import socket
import struct
import time

import harness as h
from upstream import EOF_BODY

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
client = { header_timeout = "5s", idle_timeout = "20s" }
upstreams = {
  app = { servers = { "127.0.0.1:${up}" }, timeout = "10s" },
}
routes = {
  { path = "/", upstream = "app" },
}
"""

UPSTREAM_TIMEOUT_S = 10


def stopped(pid, seconds):
    """Keeps sluice stopped for `seconds`; it resumes whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def gauges(s):
    m = h.scrape(s.admin)
    return (h.metric(m, "sluice_client_connections"),
            h.metric(m, "sluice_upstream_connections", upstream="app", state="active"))


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # control: the same response, read as it comes
    r = h.request(s.addr, "GET", "/eof")
    t.eq(r.status, 200, "close-delimited response: 200")
    t.ok(r.complete and r.body == EOF_BODY, "close-delimited response: whole body, complete",
         repr(r))

    # upstream side: response bytes and the upstream's close reach sluice together
    for i in range(3):
        with h.Conn(s.addr, timeout=UPSTREAM_TIMEOUT_S / 2) as c:
            n0 = up.snapshot()[0]
            c.send(h.request_bytes("GET", "/eof?delay_ms=200"))
            t.ok(up.wait_requests(n0 + 1) > n0, "round %d: the request reached the upstream" % i)
            stopped(s.pid, 0.6)  # the upstream answers and closes meanwhile
            t0 = time.monotonic()
            try:
                r = c.read_response(timeout=UPSTREAM_TIMEOUT_S / 2)
            except (h.Timeout, h.NoResponse) as e:
                t.ok(False, "round %d: response completed after the close" % i, repr(e))
                continue
            el = time.monotonic() - t0
            t.ok(r.status == 200 and r.complete and r.body == EOF_BODY,
                 "round %d: response completed by the upstream's close (%.2fs, not the %ds "
                 "upstream timeout)" % (i, el, UPSTREAM_TIMEOUT_S), repr(r))

    # client side: requests whose client closed right after sending them
    socks = []
    os.kill(s.pid, signal.SIGSTOP)
    try:
        for _ in range(4):
            sk = socket.create_connection(h.split_addr(s.addr), timeout=2)
            sk.sendall(h.request_bytes("GET", "/hang"))
            socks.append(sk)
        for sk in socks:
            sk.close()
        time.sleep(0.2)
    finally:
        os.kill(s.pid, signal.SIGCONT)
    ok = h.wait_until(lambda: gauges(s) == (0, 0), timeout=UPSTREAM_TIMEOUT_S / 2)
    t.ok(ok, "clients that closed right after their request: connections dropped at once, "
             "upstream connections freed (not after the %ds upstream timeout)"
         % UPSTREAM_TIMEOUT_S, "client, upstream active = %s" % (gauges(s),))

    # a reset instead of a close, arriving with the request: no event of its
    # own reaches sluice; the wait for the response head looks at the client
    # every second, so the upstream connection is freed long before its timeout
    socks = []
    os.kill(s.pid, signal.SIGSTOP)
    try:
        for _ in range(4):
            sk = socket.create_connection(h.split_addr(s.addr), timeout=2)
            sk.sendall(h.request_bytes("GET", "/hang"))
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks.append(sk)
        for sk in socks:
            sk.close()
        time.sleep(0.2)
    finally:
        os.kill(s.pid, signal.SIGCONT)
    ok = h.wait_until(lambda: gauges(s) == (0, 0), timeout=UPSTREAM_TIMEOUT_S / 2)
    t.ok(ok, "clients that reset right after their request: upstream connections freed "
             "within seconds (not after the %ds upstream timeout)" % UPSTREAM_TIMEOUT_S,
         "client, upstream active = %s" % (gauges(s),))

    # and sluice still serves
    r = h.request(s.addr, "GET", "/echo")
    t.eq(r.status, 200, "still serving afterwards")


if __name__ == "__main__":
    h.run(main)
