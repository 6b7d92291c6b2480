#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# WebSocket (issue 10, point 6): a handshake passes with Upgrade: websocket
# and Connection: upgrade forwarded, and after the upstream's 101 sluice
# relays bytes both ways (text frames, a 1 MiB binary frame, a 32 MiB flood
# to a client that does not read, held in bounded memory), passes a
# half-close on, closes the tunnel after the
# upstream's tunnel_idle_timeout, counts it in sluice_tunnels and logs it
# when it ends (status 101, bytes both ways, who closed). A limit applies to
# the handshake (429); websocket = false refuses it (403); an h2c upgrade,
# or an Upgrade that Connection does not name, goes up as plain HTTP; a 101
# to a request that asked for no upgrade is a 502; SIGTERM closes a tunnel
# at shutdown_timeout.
# Client: a hand-written WebSocket client on raw sockets (masked frames).
# Upstream: upstream.py's /ws echo. Daemon: routes "/" (tunnel idle
# timeout 1h), "/idle/" (600 ms), "/limited/" (burst 2), "/nows/"
# (websocket = false).

import base64
import json
import os
import signal
import socket
import time

import harness as h
from upstream import ws_accept, ws_frame, ws_parse

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
shutdown_timeout = "1s"
client = { header_timeout = "2s" }
upstreams = {
  app  = { servers = { "127.0.0.1:${up}" }, timeout = "2s" },
  idle = { servers = { "127.0.0.1:${up}" }, timeout = "2s", tunnel_idle_timeout = "600ms" },
}
limits = { two = { key = "ip", rate = 1, per = "1h", burst = 2 } }
routes = {
  { path = "/", upstream = "app" },
  { path = "/idle/", upstream = "idle" },
  { path = "/limited/", upstream = "app", limits = { "two" } },
  { path = "/nows/", upstream = "app", websocket = false },
}
"""


class WsClient:
    """A WebSocket client over h.Conn: handshake, masked frames out, frames in."""

    def __init__(self, addr, path="/ws", extra=()):
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.c = h.Conn(addr)
        self.c.send(h.request_bytes("GET", path, [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", "13")] + list(extra)))
        self.r = self.c.read_response(allow_1xx=True)

    def send(self, opcode, payload):
        self.c.send(ws_frame(opcode, payload, mask=os.urandom(4)))

    def recv(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            f = ws_parse(self.c.buf)
            if f is not None:
                self.c.buf = f[2]
                return f[0], f[1]
            if not self.c._fill(deadline):
                return None

    def close(self):
        self.c.close()


def tunnels(s):
    return h.metric(h.scrape(s.admin), "sluice_tunnels")


def access_lines(s, path):
    try:
        with open(path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except OSError:
        return []


def check_echo(t, s, up):
    n0 = up.snapshot()[0]
    ws = WsClient(s.addr)
    t.eq(ws.r.status, 101, "handshake: 101")
    t.eq((ws.r.header("upgrade") or "").lower(), "websocket", "101 carries Upgrade: websocket")
    t.eq((ws.r.header("connection") or "").lower(), "upgrade", "101 carries Connection: upgrade")
    t.eq(ws.r.header("sec-websocket-accept"), ws_accept(ws.key), "Sec-WebSocket-Accept passed")
    got = up.requests_since(n0)
    hs = {k.lower(): v for k, v in got[0]["headers"]} if got else {}
    t.eq(hs.get("upgrade", "").lower(), "websocket", "upstream got Upgrade: websocket")
    t.ok("upgrade" in hs.get("connection", "").lower(), "upstream got Connection: upgrade",
         repr(hs.get("connection")))
    t.eq(tunnels(s), 1, "sluice_tunnels is 1 while the tunnel is open")
    ws.send(1, b"hello")
    t.eq(ws.recv(), (1, b"hello"), "a text frame goes up and comes back")
    big = os.urandom(1 << 20)
    ws.send(2, big)
    f = ws.recv(timeout=10)
    t.ok(f is not None and f[0] == 2 and f[1] == big, "a 1 MiB binary frame comes back whole")
    ws.send(8, b"\x03\xe8")
    t.eq(ws.recv(), (8, b"\x03\xe8"), "a close frame is answered")
    t.ok(ws.c.wait_closed(3), "the tunnel closes after the close handshake")
    ws.close()
    t.ok(h.wait_until(lambda: tunnels(s) == 0, 3), "sluice_tunnels back to 0")
    return len(big)


def check_backpressure(t, s):
    """32 MiB from the upstream to a client that does not read for a while:
    sluice stops reading the upstream instead of buffering it."""
    ws = WsClient(s.addr)
    ws.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rss0 = h.rss_kb(s.pid)
    ws.send(1, b"flood:512")
    time.sleep(1.0)
    rss1 = h.rss_kb(s.pid)
    grew = (rss1 - rss0) if rss0 and rss1 else None
    t.ok(grew is not None and grew < 8 * 1024, "backpressure: sluice holds little of a 32 MiB "
         "flood to a client that does not read", "RSS grew by %s KiB" % grew)
    total, ok = 0, True
    while total < 512:
        f = ws.recv(timeout=10)
        if f is None or f[0] != 2 or len(f[1]) != 65536:
            ok = False
            break
        total += 1
    t.ok(ok, "backpressure: all 512 frames arrive whole once the client reads", "%d" % total)
    ws.close()


def check_half_close(t, s):
    ws = WsClient(s.addr)
    ws.send(1, b"before-fin")
    t.eq(ws.recv(), (1, b"before-fin"), "half-close: echo before the FIN")
    ws.c.sock.shutdown(socket.SHUT_WR)
    t.eq(ws.recv(), (1, b"eof-seen"),
         "half-close: the upstream saw our FIN and could still answer")
    t.ok(ws.c.wait_closed(3), "half-close: then the tunnel closes")
    ws.close()


def check_idle(t, s):
    ws = WsClient(s.addr, "/idle/ws")
    t.eq(ws.r.status, 101, "idle route: 101")
    for i in range(4):
        time.sleep(0.3)
        ws.send(1, b"ping%d" % i)
        if ws.recv() != (1, b"ping%d" % i):
            t.ok(False, "idle route: traffic every 300 ms keeps it open")
            break
    else:
        t.ok(True, "idle route: traffic every 300 ms keeps it open past 600 ms")
    start = time.monotonic()
    closed = ws.c.wait_closed(5)
    took = time.monotonic() - start
    t.ok(closed and 0.4 < took < 2.5, "idle route: closed after tunnel_idle_timeout",
         "closed=%s after %.2f s" % (closed, took))
    ws.close()


def check_refusals(t, s, up):
    codes = []
    for _ in range(3):
        ws = WsClient(s.addr, "/limited/ws")
        codes.append(ws.r.status)
        ws.close()
    t.eq(codes, [101, 101, 429], "a limit applies to handshakes: the third gets 429")
    n0 = up.snapshot()
    ws = WsClient(s.addr, "/nows/ws")
    h.problem_ok(t, ws.r, 403, "websocket = false")
    ws.close()
    t.eq(up.snapshot(), n0, "websocket = false: nothing forwarded")

    n0 = up.snapshot()[0]
    r = h.request(s.addr, "GET", "/ws", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                                         ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    t.eq(r.status, 200, "h2c upgrade: answered as plain HTTP")
    got = up.requests_since(n0)
    names = {k.lower() for k, _ in got[0]["headers"]} if got else {"?"}
    t.ok(not names & {"upgrade", "http2-settings", "connection"},
         "h2c: Upgrade, Connection and HTTP2-Settings removed on the way up", repr(names))

    n0 = up.snapshot()[0]
    r = h.request(s.addr, "GET", "/ws", [("Upgrade", "websocket")])
    t.eq(r.status, 200, "Upgrade not named by Connection: plain HTTP")
    got = up.requests_since(n0)
    names = {k.lower() for k, _ in got[0]["headers"]} if got else {"?"}
    t.ok("upgrade" not in names, "... and Upgrade removed", repr(names))

    r = h.request(s.addr, "GET", "/ws?always=1")
    h.problem_ok(t, r, 502, "a 101 to a request that asked for no upgrade")


def check_log(t, s, nbig):
    path = os.path.join(s.dir, "access.log")
    ok = h.wait_until(lambda: any(e.get("status") == 101 for e in access_lines(s, path)), 3)
    lines = [e for e in access_lines(s, path) if e.get("status") == 101]
    t.ok(ok, "the access log has a line with status 101")
    if lines:
        e = lines[0]
        t.ok(e.get("bytes_in", 0) > nbig and e.get("bytes_out", 0) > nbig,
             "the line counts the tunnel's bytes both ways", repr(e))
        # the echo's close handshake: the upstream closes first (RFC 6455 7.1.1)
        t.eq(e.get("reason"), "tunnel closed by upstream", "the line says who closed")
    if len(lines) > 1:
        t.eq(lines[1].get("reason"), "tunnel closed by client",
             "the half-closed tunnel's line: the client closed first")


def check_drain(t, s):
    ws = WsClient(s.addr)
    t.eq(ws.r.status, 101, "drain: a tunnel is open")
    start = time.monotonic()
    s.signal(signal.SIGTERM)
    closed = ws.c.wait_closed(6)
    took = time.monotonic() - start
    t.ok(closed and 0.7 < took < 4, "SIGTERM: the tunnel is closed at shutdown_timeout",
         "closed=%s after %.2f s" % (closed, took))
    ws.close()
    s.wait_exit(5)
    s.stop()


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})
    nbig = check_echo(t, s, up)
    check_backpressure(t, s)
    check_half_close(t, s)
    check_idle(t, s)
    check_refusals(t, s, up)
    check_log(t, s, nbig)
    check_drain(t, s)


if __name__ == "__main__":
    h.run(main, time_limit=90)
