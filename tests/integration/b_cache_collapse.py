#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The cache under load (issue 15, points 2, 4, 5 and 6): 100 concurrent
# misses for one key send one request upstream and the others are served
# its response; an uncacheable response lets the waiters go on their own,
# as soon as its head shows it (a stream, a body past max_object, a
# WebSocket 101: not held for lock_timeout until the first one's exchange
# ends, a hostile-client probe found);
# a scan of thousands of cold URLs leaves the hot entries cached (TinyLFU
# admission) and the store under max_memory; purge by key and by prefix on
# the admin listener; limits apply to hits, except those with cache_hits =
# false.
# Client: raw requests, 100 threads. Upstream: /cache/... (slow for the
# collapse, streamed for the unstorable), /cache/u/ws (WebSocket). Daemon:
# cached routes, two workers, a small max_memory, lock_timeout 3s on /cache/u/.

import json
import socket
import threading
import time
import http.client

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { max_connections = 1000 }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s", max_inflight = 512 } }
limits = {
  strict = { key = "global", rate = 3, per = "1m" },
  loose = { key = "global", rate = 3, per = "1m", cache_hits = false },
}
routes = {
  { path = "/cache/l/", upstream = "app", limits = "strict", cache = {} },
  { path = "/cache/x/", upstream = "app", limits = "loose", cache = {} },
  { path = "/cache/p/", upstream = "app", cache = {} },
  { path = "/cache/u/", upstream = "app",
    cache = { max_object = "4k", lock_timeout = "${lock}s" } },
  { path = "/cache/", upstream = "app",
    cache = { ttl = "60s", max_memory = "1m", max_object = "4k" } },
}
"""


def get(s, target, headers=()):
    return h.request(s.addr, "GET", target, headers)


def count(up, target):
    with up.lock:
        return up.target_counts.get(target, 0)


def burst(s, target, n):
    out = [None] * n
    go = threading.Event()

    def one(i):
        go.wait()
        try:
            out[i] = h.request(s.addr, "GET", target, timeout=10)
        except Exception as e:  # noqa: BLE001 - the check below reports it
            out[i] = e

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in ths:
        th.start()
    go.set()
    for th in ths:
        th.join()
    return out


def purge(s, doc):
    host, port = h.split_addr(s.admin)
    c = http.client.HTTPConnection(host, port, timeout=3)
    try:
        c.request("POST", "/cache/purge", body=json.dumps(doc),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metric(s, line_start):
    _, body = h.admin_get(s.admin, "/metrics")
    for ln in body.decode().splitlines():
        if ln.startswith(line_start):
            return float(ln.rsplit(" ", 1)[1])
    return None


LOCK_S = 3

WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
              ("Sec-WebSocket-Version", "13")]


def read_head(c, timeout=10.0):
    """The response head only (a stream's body may not end for seconds)."""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in c.buf:
        if not c._fill(deadline):
            return None
    return c.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def not_held(s, target, headers=(), nwaiters=1):
    """A first request for target, then nwaiters more 0.1 s later, while the
    first one's upstream request is under way; the waiters' heads and the
    seconds each took to come, the first one's head, all connections kept
    open until then (a tunnel, a stream) and closed after."""
    first = h.Conn(s.addr, timeout=10)
    waiters = []
    try:
        first.send(h.request_bytes("GET", target, headers))
        time.sleep(0.1)
        for _ in range(nwaiters):
            c = h.Conn(s.addr, timeout=10)
            waiters.append(c)
            c.send(h.request_bytes("GET", target, headers))
        t0 = time.monotonic()
        heads = []
        for c in waiters:
            head = read_head(c)
            heads.append((head, time.monotonic() - t0))
        return read_head(first), heads
    finally:
        for c in [first] + waiters:
            c.close()


def unstorable_not_held(t, s, up):
    """Waiters on a claim go as soon as the first response is known not to
    be stored, not after lock_timeout: a stream with no-store, a chunked
    body past max_object, a WebSocket handshake (which claims nothing)."""
    limit = LOCK_S / 2.0
    for name, tgt in (("no-store stream", "/cache/u/sse?ms=300&stream_ms=4000&cc=no-store"),
                      ("body past max_object", "/cache/u/big?ms=300&size=8000&stream_ms=4000")):
        first, heads = not_held(s, tgt, nwaiters=4)
        t.ok(first is not None and first.startswith("HTTP/1.1 200"), name + ": first 200", first)
        slow = [round(dt, 2) for head, dt in heads
                if head is None or not head.startswith("HTTP/1.1 200") or dt >= limit]
        t.eq(slow, [], name + ": 4 waiters answered 200 in under lock_timeout/2")
        t.ok(all(head is not None and "fwd=uri-miss; fwd-status=200" in head
                 for head, _ in heads), name + ": the waiters went upstream (no hit)", heads)
        t.eq(count(up, tgt), 5, name + ": each request went upstream once")

    tgt = "/cache/u/ws?v=3"
    n0 = len([r for r in up.requests_since(0) if r["target"] == tgt])
    first, heads = not_held(s, tgt, WS_HEADERS)
    (head, dt), = heads
    t.ok(first is not None and first.startswith("HTTP/1.1 101"), "websocket: first 101", first)
    t.ok(head is not None and head.startswith("HTTP/1.1 101") and dt < limit,
         "websocket: second 101 in under lock_timeout/2", (round(dt, 2), head))
    t.ok(head is not None and "Cache-Status: sluice; fwd=bypass" in head,
         "websocket: the cache is bypassed", head)
    n = len([r for r in up.requests_since(0) if r["target"] == tgt])
    t.eq(n - n0, 2, "websocket: both handshakes went upstream")
    # a fresh entry for the URL is no answer to a handshake
    plain = "/cache/u/x/ws"
    t.eq([get(s, plain).status for _ in range(2)], [200, 200], "websocket: plain GETs")
    t.eq(count(up, plain), 1, "websocket: the plain GET was stored")
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", plain, WS_HEADERS))
        head = read_head(c, timeout=5)
    t.ok(head is not None and head.startswith("HTTP/1.1 101"),
         "websocket: a handshake for a cached URL goes upstream", head)


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port, "lock": LOCK_S})
    unstorable_not_held(t, s, up)

    # 100 concurrent misses: one upstream request
    tgt = "/cache/hot?ms=400"
    rs = burst(s, tgt, 100)
    ok = [r for r in rs if not isinstance(r, Exception) and r.status == 200]
    t.eq(len(ok), 100, "collapse: all 100 answered 200")
    t.eq(count(up, tgt), 1, "collapse: one request went upstream")
    t.ok(len(set(r.body for r in ok)) == 1, "collapse: all got the same response")
    collapsed = metric(s, 'sluice_cache_requests_total{route="/cache/",result="collapsed"}')
    t.ok(collapsed is not None and collapsed >= 90, "collapse: counted", collapsed)

    # an uncacheable response: the waiters do not queue one by one
    tgt = "/cache/nostore?ms=300&cc=no-store"
    rs = burst(s, tgt, 20)
    t.ok(all(not isinstance(r, Exception) and r.status == 200 for r in rs),
         "uncacheable: all 20 answered")
    t.ok(count(up, tgt) <= 20, "uncacheable: each went upstream at most once", count(up, tgt))

    # a scan of cold URLs leaves the hot entries cached, memory under max_memory
    hot = ["/cache/h%d?size=1000" % i for i in range(20)]
    for _ in range(6):
        for tg in hot:
            get(s, tg)
    before = sum(count(up, tg) for tg in hot)
    with h.Conn(s.addr) as c:
        for i in range(4000):
            c.send(h.request_bytes("GET", "/cache/cold%d?size=1000" % i))
            c.read_response()
            if i % 1000 == 0:
                for tg in hot:
                    c.send(h.request_bytes("GET", tg))
                    c.read_response()
    for tg in hot:
        get(s, tg)
    after = sum(count(up, tg) for tg in hot)
    t.ok(after - before <= 2, "scan: the hot entries stayed cached",
         "hot refetched %d times" % (after - before))
    stored = metric(s, 'sluice_cache_stored_bytes{route="/cache/"}')
    t.ok(stored is not None and 0 < stored <= 1024 * 1024, "scan: stored bytes under max_memory",
         stored)
    refused = metric(s, 'sluice_cache_admissions_refused_total{route="/cache/"}')
    t.ok(refused is not None and refused > 1000, "scan: cold entries refused admission", refused)

    # purge: an exact key, then a prefix (on a route of its own: the full
    # store above would refuse newcomers asked for once)
    get(s, "/cache/p/a")
    get(s, "/cache/p/b")
    get(s, "/cache/p/b?v=1")
    st, body = purge(s, {"key": "test/cache/p/a"})
    t.eq((st, json.loads(body)), (200, {"purged": 1}), "purge key: one entry")
    get(s, "/cache/p/a")
    t.eq(count(up, "/cache/p/a"), 2, "purge key: fetched again")
    get(s, "/cache/p/b")
    t.eq(count(up, "/cache/p/b"), 1, "purge key: the others stay")
    st, body = purge(s, {"prefix": "test/cache/p/"})
    t.eq((st, json.loads(body)), (200, {"purged": 3}), "purge prefix: three entries")
    get(s, "/cache/p/b?v=1")
    t.eq(count(up, "/cache/p/b?v=1"), 2, "purge prefix: fetched again")
    st, _ = purge(s, {"nothing": 1})
    t.eq(st, 400, "purge: a bad body is 400")
    host, port = h.split_addr(s.admin)
    c = http.client.HTTPConnection(host, port, timeout=3)
    c.request("GET", "/cache/purge")
    t.eq(c.getresponse().status, 405, "purge: GET is 405")
    c.close()

    # limits apply to hits; cache_hits = false exempts them
    codes = [get(s, "/cache/l/a").status for _ in range(5)]
    t.eq(codes, [200, 200, 200, 429, 429], "limits apply to hits by default")
    codes = [get(s, "/cache/x/a").status for _ in range(5)]
    t.eq(codes, [200, 200, 200, 200, 200], "cache_hits = false: hits are not limited")
    codes = [get(s, "/cache/x/m%d" % i).status for i in range(4)]
    t.eq(codes, [200, 200, 429, 429], "cache_hits = false: misses still are")


if __name__ == "__main__":
    h.run(main, time_limit=90)
