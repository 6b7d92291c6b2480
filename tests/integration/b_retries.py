#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Safe retries (issue 10, point 4): an idempotent request whose upstream
# resets the connection before answering goes again, to another server (to
# the same one when the pool has no other); a PUT's body goes again whole; a
# POST that reached the upstream is never sent twice (502); a POST to a
# server refusing connections goes to the next (none of it was sent); the
# upstream's own 503 is retried only when retry_on asks for it; retries = 0
# and a spent retry budget send nothing again, the budget's refusal counted;
# a timeout is not retried; a kept-alive connection the server closes as the
# next request comes (the classic stale connection) costs a GET nothing and
# a POST a 502. Every retry is counted by reason in /metrics.
# Client: one request per fresh connection. Upstreams: "a" (upstream.py),
# "rst" (reads a request head, then resets the connection), "busy" (answers
# 503 to everything), "ka" (answers the first request of a connection, closes
# on the second) and a port with nothing listening. Daemon: one worker,
# so each pool's round-robin starts at its first server; one pool per case.

import hashlib
import os
import socket
import struct
import threading
import time

import harness as h
import obs_util

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
client = { header_timeout = "2s", idle_timeout = "10s" }
upstreams = {
  pair    = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s" },
  put     = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s" },
  chunked = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s" },
  post    = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s" },
  single  = { servers = { "127.0.0.1:${rst}" }, timeout = "2s" },
  refused = { servers = { "127.0.0.1:${dead}", "127.0.0.1:${a}" }, timeout = "2s" },
  opt503  = { servers = { "127.0.0.1:${busy}", "127.0.0.1:${a}" }, timeout = "2s",
              retry_on = { "connect_failure", "reset", "503" } },
  no503   = { servers = { "127.0.0.1:${busy}", "127.0.0.1:${a}" }, timeout = "2s" },
  off     = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s",
              retries = 0 },
  broke   = { servers = { "127.0.0.1:${rst}", "127.0.0.1:${a}" }, timeout = "2s",
              retry_budget = { percent = 0, min = 0 } },
  ka      = { servers = { "127.0.0.1:${ka}" }, timeout = "2s" },
  slow    = { servers = { "127.0.0.1:${a}", "127.0.0.1:${a2}" }, timeout = "300ms" },
}
routes = {
  { path = "/pair/", upstream = "pair" },
  { path = "/put/", upstream = "put" },
  { path = "/chunked/", upstream = "chunked" },
  { path = "/post/", upstream = "post" },
  { path = "/single/", upstream = "single" },
  { path = "/refused/", upstream = "refused" },
  { path = "/opt503/", upstream = "opt503" },
  { path = "/no503/", upstream = "no503" },
  { path = "/off/", upstream = "off" },
  { path = "/broke/", upstream = "broke" },
  { path = "/hang", upstream = "slow" },
  { path = "/ka/", upstream = "ka" },
}
"""


class Misbehaving:
    """A listener that reads each request head and then resets the connection
    (SO_LINGER 0), answers 503 and closes, or ("keepalive") answers the first
    request of a connection and closes on the second; counts the heads."""

    def __init__(self, mode):
        self.mode = mode
        self.count = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.is_stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.is_stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        data = b""
        served = 0
        c.settimeout(5)
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    got = c.recv(65536)
                    if not got:
                        return
                    data += got
                with self.lock:
                    self.count += 1
                if self.mode != "keepalive" or served > 0:
                    break
                # the first request of a connection is answered and kept alive
                served += 1
                data = data[data.index(b"\r\n\r\n") + 4:]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if self.mode == "keepalive":
                pass  # the second one: closed unanswered, as a server ending keep-alive
            elif self.mode == "503":
                c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
                          b"Connection: close\r\n\r\nbusy")
            else:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        finally:
            c.close()

    def n(self):
        with self.lock:
            return self.count

    def stop(self):
        self.is_stopped = True
        self.sock.close()


def get(s, method, target, body=None, headers=()):
    with h.Conn(s.addr, timeout=5) as c:
        c.send(h.request_bytes(method, target, headers=headers, body=body))
        return c.read_response(method, timeout=5)


def main(env):
    t = env.t
    a = env.upstream("a")
    a2 = env.upstream("a2")
    rst = Misbehaving("reset")
    busy = Misbehaving("503")
    ka = Misbehaving("keepalive")
    env.at_exit(rst.stop)
    env.at_exit(busy.stop)
    env.at_exit(ka.stop)
    dead = h.free_port()
    s = env.sluice(CONF, values={"a": a.port, "a2": a2.port, "rst": rst.port,
                                 "busy": busy.port, "ka": ka.port, "dead": dead})

    # GETs on a pool of (reset, a): the first lands on the resetting server
    # and goes again to a; all four are answered, each reached a once
    na, nr = a.snapshot()[0], rst.n()
    sts = [get(s, "GET", "/pair/echo?i=%d" % i).status for i in range(4)]
    da, dr = a.snapshot()[0] - na, rst.n() - nr
    t.eq(sts, [200] * 4, "GET after a reset: every request answered 200")
    t.eq(da, 4, "GET after a reset: a answered each request once")
    t.ok(dr >= 1, "GET after a reset: the resetting server got %d of them" % dr)
    m = h.scrape(s.admin)
    t.eq(h.metric(m, "sluice_upstream_retries_total", upstream="pair", reason="reset"), dr,
         "/metrics: one retry (reason reset) per reset")

    # a PUT's body goes again whole, Content-Length and chunked
    body = bytes(range(256)) * 40
    want = hashlib.sha256(body).hexdigest()
    na, nr = a.snapshot()[0], rst.n()
    r = get(s, "PUT", "/put/echo", body=body)
    t.eq(r.status, 200, "PUT after a reset: 200 from the other server")
    doc = r.json() if r.status == 200 else {}
    t.eq((doc.get("body_length"), doc.get("body_sha256")), (len(body), want),
         "PUT after a reset: the body arrived whole")
    t.eq((rst.n() - nr, a.snapshot()[0] - na), (1, 1), "PUT: one reset, then one answer")
    r = get(s, "PUT", "/chunked/echo", body=h.chunk_body([body[:3000], body[3000:]]),
            headers=[("Transfer-Encoding", "chunked")])
    doc = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and doc.get("body_sha256") == want,
         "chunked PUT after a reset: 200, the body arrived whole", (r, doc))

    # a POST that reached the resetting server is not sent again
    nr, na = rst.n(), a.snapshot()[0]
    r = get(s, "POST", "/post/echo", body=b"x" * 1000)
    h.problem_ok(t, r, 502, "POST after a reset")
    time.sleep(0.1)
    t.eq((rst.n() - nr, a.snapshot()[0] - na), (1, 0), "POST: sent upstream exactly once")

    # one server only: the GET goes again to it, the POST does not
    nr = rst.n()
    r = get(s, "GET", "/single/echo")
    h.problem_ok(t, r, 502, "GET, one resetting server")
    t.eq(rst.n() - nr, 2, "GET, one server: retried once on the same server")
    nr = rst.n()
    r = get(s, "POST", "/single/echo", body=b"y" * 100)
    h.problem_ok(t, r, 502, "POST, one resetting server")
    time.sleep(0.1)
    t.eq(rst.n() - nr, 1, "POST, one server: sent once")

    # a PUT whose body is larger than sluice keeps for a retry (64 KiB)
    nr = rst.n()
    r = get(s, "PUT", "/single/echo", body=b"b" * (100 * 1024))
    h.problem_ok(t, r, 502, "PUT of 100 KiB after a reset")
    time.sleep(0.1)
    t.eq(rst.n() - nr, 1, "PUT of 100 KiB: not sent again (its body is gone)")

    # a POST to a server refusing connections: nothing was sent, so it goes on
    na = a.snapshot()[0]
    r = get(s, "POST", "/refused/echo", body=b"z" * 500)
    doc = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and doc.get("body_length") == 500,
         "POST to a refusing server: answered by the next one", (r, doc))
    t.eq(a.snapshot()[0] - na, 1, "POST to a refusing server: a got it once")

    # the upstream's own 503: passed on by default, retried when asked for
    nb, na = busy.n(), a.snapshot()[0]
    r = get(s, "GET", "/no503/echo")
    t.ok(r.status == 503 and r.body == b"busy", "503 without retry_on 503: passed on", r)
    t.eq((busy.n() - nb, a.snapshot()[0] - na), (1, 0), "503 without opt-in: sent once")
    nb, na = busy.n(), a.snapshot()[0]
    r = get(s, "GET", "/opt503/echo")
    t.eq(r.status, 200, "503 with retry_on 503: answered by the other server")
    t.eq((busy.n() - nb, a.snapshot()[0] - na), (1, 1), "503 with opt-in: one each")
    # a POST that the busy server answers (the balancer picks which server
    # comes first; one of a few lands there)
    landed = None
    for _ in range(4):
        nb, na = busy.n(), a.snapshot()[0]
        r = get(s, "POST", "/opt503/echo", body=b"p")
        if busy.n() - nb == 1:
            landed = (r, a.snapshot()[0] - na)
            break
    t.ok(landed is not None and landed[0].status == 503 and landed[0].body == b"busy"
         and landed[1] == 0, "POST answered 503: passed on, not retried", landed)

    # retries = 0, and a budget with no room
    nr = rst.n()
    r = get(s, "GET", "/off/echo")
    h.problem_ok(t, r, 502, "retries = 0")
    nr2 = rst.n()
    r = get(s, "GET", "/broke/echo")
    h.problem_ok(t, r, 502, "retry budget spent")
    time.sleep(0.1)
    t.eq((nr2 - nr, rst.n() - nr2), (1, 1), "retries = 0 and spent budget: sent once each")

    # the classic case: a kept-alive connection the server closes as the next
    # request arrives. A GET goes again on a new connection (the only server);
    # a POST, written to the closed connection, does not
    r1 = get(s, "GET", "/ka/one")
    n0 = ka.n()
    r2 = get(s, "GET", "/ka/two")
    t.eq((r1.status, r2.status, r2.body), (200, 200, b"ok"),
         "GET on a kept-alive connection closed by the server: retried, 200")
    t.eq(ka.n() - n0, 2, "GET on a stale connection: two attempts")
    n0 = ka.n()
    r = get(s, "POST", "/ka/three", body=b"q" * 10)
    h.problem_ok(t, r, 502, "POST on a stale connection")
    time.sleep(0.1)
    t.eq(ka.n() - n0, 1, "POST on a stale connection: sent once")

    # a timeout is not retried: the upstream may still be at work
    na, na2 = a.snapshot()[0], a2.snapshot()[0]
    r = get(s, "GET", "/hang")
    h.problem_ok(t, r, 504, "upstream timeout")
    time.sleep(0.1)
    t.eq(a.snapshot()[0] - na + a2.snapshot()[0] - na2, 1, "timeout: sent once, not retried")

    # the access log says how often each request went again
    lines, _ = obs_util.wait_access_lines(
        os.path.join(s.dir, "access.log"),
        lambda ls: any(ln.get("path") == "/ka/three" for ln in ls))
    by_path = {}
    for ln in lines:
        by_path.setdefault(ln.get("path"), []).append(ln)
    got = [(p, [ln.get("retries") for ln in by_path.get(p, [])])
           for p in ("/put/echo", "/single/echo", "/refused/echo", "/ka/two", "/ka/three",
                     "/off/echo")]
    t.eq(got, [("/put/echo", [1]), ("/single/echo", [1, 0, 0]), ("/refused/echo", [1]),
               ("/ka/two", [1]), ("/ka/three", [0]), ("/off/echo", [0])],
         "access log: retries per request")

    m = h.scrape(s.admin)
    want = [("pair", "reset", dr), ("put", "reset", 1), ("chunked", "reset", 1),
            ("post", "reset", 0), ("single", "reset", 1), ("refused", "connect_failure", 1),
            ("opt503", "503", 1), ("no503", "503", 0), ("off", "reset", 0),
            ("broke", "reset", 0), ("slow", "reset", 0), ("ka", "reset", 1)]
    for up, reason, n in want:
        t.eq(h.metric(m, "sluice_upstream_retries_total", upstream=up, reason=reason), n,
             "/metrics: retries_total{upstream=%s,reason=%s}" % (up, reason))
    for up, n in (("broke", 1), ("off", 0), ("pair", 0)):
        t.eq(h.metric(m, "sluice_upstream_retries_refused_total", upstream=up), n,
             "/metrics: retries_refused_total{upstream=%s}" % up)
    t.ok(s.alive(), "daemon alive")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
