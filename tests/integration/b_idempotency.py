#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Idempotency-Key (issue 14 point 1, docs/idempotency.md): a response kept
# by one instance is replayed by another sharing the Redis (the upstream
# counts one request) with Idempotent-Replayed: true; 409 while the first
# request is in flight; 422 for the same key with another body; 400 when
# required and missing, or with two keys; eight at once: one goes up, seven
# get 409; a record expires after ttl; a 5xx releases the key (the retry
# reaches the upstream); the scope keeps one
# Authorization's keys from another's; a chunked body fingerprints like the
# same bytes with Content-Length; a 64 MiB body is hashed as it streams (and
# read, not forwarded, for a replay) while sluice's RSS stays small; the
# embedded store on one instance; Redis down: 503, nothing forwarded;
# Expect: 100-continue and a client leaving mid-body on a replay; a response
# kept by a generation a reload replaced.
# Client: raw requests. Upstream: /echo, /slow, /upload, force_status.
# Daemons: two on one Redis, one with the embedded store.

import json
import os
import threading
import time

import harness as h

ROUTES = """\
routes = {
  { path = "/req/", upstream = "app",
    idempotency = { required = true, ttl = "1s" } },
  { path = "/", upstream = "app",
    idempotency = { methods = { "POST", "PATCH" }, ttl = "1m", max_response = "64k",
                    scope = "header:Authorization" } },
}
"""

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { max_body_size = "128m" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "10s" } }
""" + ROUTES

REDIS = 'store = { kind = "redis", url = "${redis}", timeout = "1s" }\n'

MIB = 1 << 20


def count(up, target):
    with up.lock:
        return sum(1 for r in up.requests if r["target"] == target)


def post(s, target, key, body=b"{}", headers=(), method="POST"):
    hs = list(headers)
    if key is not None:
        hs.append(("Idempotency-Key", key))
    return h.request(s.addr, method, target, hs, body=body)


def retry(s, target, key, body=b"{}"):
    """A client's retry of a request whose response it has: the record (or
    the release) goes to the store as that response's last bytes go out, so
    a retry on another instance in the same instant may still meet the claim
    (409, docs/idempotency.md); a client then retries again."""
    r = post(s, target, key, body)
    if r.status == 409:
        time.sleep(0.1)
        r = post(s, target, key, body)
    return r


def upload(s, target, key, total, chunked=False):
    """Streams `total` bytes of a pattern; returns the response."""
    piece = bytes(range(256)) * (MIB // 256)
    with h.Conn(s.addr, timeout=30) as c:
        hs = [("Idempotency-Key", key)]
        hs.append(("Transfer-Encoding", "chunked") if chunked
                  else ("Content-Length", str(total)))
        head = "POST %s HTTP/1.1\r\nHost: test\r\n" % target
        head += "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
        c.send(head.encode())
        sent = 0
        while sent < total:
            n = min(MIB, total - sent)
            c.send((b"%x\r\n" % n + piece[:n] + b"\r\n") if chunked else piece[:n])
            sent += n
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=30)
        # the body was consumed: the connection serves another request
        c.send(h.request_bytes("GET", "/echo"))
        r.next_ok = c.read_response(timeout=5).status == 200
        return r


def metric(s, name):
    st, body = h.admin_get(s.admin, "/metrics") or (0, b"")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def check_store(t, a, b, up, label):
    # stored by a, replayed by b
    r1 = post(a, "/echo?k=1", "k1", b'{"x":1}')
    r2 = retry(b, "/echo?k=1", "k1", b'{"x":1}')
    t.eq(r1.status, 200, "%s: first request answered" % label)
    t.eq(r2.status, 200, "%s: same key again: the kept status" % label)
    t.eq(r2.body, r1.body, "%s: the kept body replayed" % label)
    t.eq(r2.header("idempotent-replayed"), "true", "%s: Idempotent-Replayed: true" % label)
    t.eq(r1.header("idempotent-replayed"), None, "%s: the first is not a replay" % label)
    t.eq(r2.header("content-type"), r1.header("content-type"),
         "%s: kept headers replayed" % label)
    t.eq(count(up, "/echo?k=1"), 1, "%s: the upstream saw one request" % label)
    # chunked, same bytes: the same fingerprint
    with h.Conn(b.addr) as c:
        c.send(h.request_bytes("POST", "/echo?k=1", [("Idempotency-Key", "k1"),
                                                      ("Transfer-Encoding", "chunked")],
                               h.chunk_body([b'{"x"', b':1}'])))
        r = c.read_response()
        t.ok(r.status == 200 and r.header("idempotent-replayed") == "true",
             "%s: a chunked body of the same bytes is replayed" % label, r)
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "%s: keep-alive after a replay with a body" % label)
    # Expect: 100-continue on a replay: the body is read for the fingerprint
    with h.Conn(b.addr) as c:
        c.send(h.request_bytes("POST", "/echo?k=1", [("Idempotency-Key", "k1"),
                                                      ("Expect", "100-continue")],
                               b'{"x":1}'))
        r = c.read_response()
        t.ok(r.status == 200 and r.header("idempotent-replayed") == "true",
             "%s: Expect: 100-continue, replayed" % label, r)
    # a client that leaves while its body is read for a replay
    with h.Conn(b.addr) as c:
        c.send(b"POST /echo?k=1 HTTP/1.1\r\nHost: test\r\nIdempotency-Key: k1\r\n"
               b"Content-Length: 100\r\n\r\n{\"x\"")
        time.sleep(0.1)
    t.eq(post(b, "/echo", None).status, 200, "%s: serves on after a client left mid-body" % label)
    # 422: same key, another body
    r = post(b, "/echo?k=1", "k1", b'{"x":2}')
    doc = h.problem_ok(t, r, 422, "%s: another body" % label)
    t.eq((doc or {}).get("title"), "Idempotency-Key is already used", "%s: 422 title" % label)
    # the scope: another Authorization's key is another key
    r = post(a, "/echo?k=1", "k1", b'{"x":1}', [("Authorization", "Bearer other")])
    t.ok(r.status == 200 and r.header("idempotent-replayed") is None,
         "%s: another scope is not replayed" % label, r)
    t.eq(count(up, "/echo?k=1"), 2, "%s: another scope reached the upstream" % label)
    # 400: required and missing; two keys; an invalid one
    doc = h.problem_ok(t, post(a, "/req/echo", None), 400, "%s: required, missing" % label)
    t.eq((doc or {}).get("title"), "Idempotency-Key is missing", "%s: 400 title" % label)
    r = h.request(a.addr, "POST", "/echo", [("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
                  body=b"{}")
    h.problem_ok(t, r, 400, "%s: two keys" % label)
    h.problem_ok(t, post(a, "/echo", '"a\\"b"'), 400, "%s: an invalid key" % label)
    t.eq(post(a, "/echo", None).status, 200, "%s: not required: no key passes" % label)
    t.eq(h.request(a.addr, "GET", "/echo?g=1", [("Idempotency-Key", "k1")]).status, 200,
         "%s: an unlisted method passes" % label)
    # expiry after ttl
    post(a, "/req/echo?e=1", "k2")
    r = retry(b, "/req/echo?e=1", "k2")
    t.eq(r.header("idempotent-replayed"), "true", "%s: within ttl: replayed" % label)
    time.sleep(1.2)
    r = post(b, "/req/echo?e=1", "k2")
    t.ok(r.status == 200 and r.header("idempotent-replayed") is None,
         "%s: after ttl: not replayed" % label, r.headers)
    t.eq(count(up, "/req/echo?e=1"), 2, "%s: after ttl: the upstream asked again" % label)
    # a 5xx releases the key
    up.force_status = 500
    r = post(a, "/echo?f=1", "k3")
    up.force_status = None
    t.eq(r.status, 500, "%s: the upstream's 500 passes" % label)
    r = retry(b, "/echo?f=1", "k3")
    t.ok(r.status == 200 and r.header("idempotent-replayed") is None,
         "%s: after a 5xx the retry goes upstream" % label, r)
    t.eq(count(up, "/echo?f=1"), 2, "%s: the retry reached the upstream" % label)
    # over max_response: not kept, released
    post(a, "/big?bytes=100000", "k4")
    r = retry(b, "/big?bytes=100000", "k4")
    t.ok(r.status == 200 and r.header("idempotent-replayed") is None,
         "%s: a response over max_response is not kept" % label, r.headers)


def check_conflict(t, a, b, label):
    first = {}

    def slow():
        first["r"] = post(a, "/slow?ms=1500", "k5")

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.4)
    r = post(b, "/slow?ms=1500", "k5")
    doc = h.problem_ok(t, r, 409, "%s: while in flight" % label)
    t.eq((doc or {}).get("title"), "A request is outstanding for this Idempotency-Key",
         "%s: 409 title" % label)
    th.join(10)
    t.eq(first.get("r") and first["r"].status, 200, "%s: the first completes" % label)
    r = retry(b, "/slow?ms=1500", "k5")
    t.eq(r.header("idempotent-replayed"), "true", "%s: then replayed" % label)
    # eight at once, through both instances: one goes up, seven get 409
    go = threading.Event()
    got = []

    def racer(s):
        go.wait(5)
        got.append(post(s, "/slow?ms=400&race=1", "k8").status)

    ths = [threading.Thread(target=racer, args=(a if i % 2 else b,)) for i in range(8)]
    for th in ths:
        th.start()
    go.set()
    for th in ths:
        th.join(10)
    t.ok(sorted(got) == [200] + [409] * 7, "%s: eight at once: one 200, seven 409" % label,
         got)


def main(env):
    t = env.t
    up = env.upstream("app")
    redis = env.redis()
    vals = {"up": up.port, "redis": redis.url}
    # ASan's quarantine would hold every freed piece of 128 MiB of bodies
    sanitized = h.binary_is_sanitized(h.sluice_bin())
    extra = {"ASAN_OPTIONS": "detect_leaks=1:quarantine_size_mb=4"} if sanitized else {}
    a = env.sluice(REDIS + CONF, name="sluice-a", values=vals, extra_env=extra)
    b = env.sluice(REDIS + CONF, name="sluice-b", values=vals)
    check_store(t, a, b, up, "redis")
    check_conflict(t, a, b, "redis")
    t.eq(count(up, "/slow?ms=400&race=1"), 1, "redis: eight at once: the upstream saw one")
    # a response that completes as its generation goes (a reload): still kept
    first = {}
    th = threading.Thread(target=lambda: first.update(r=post(a, "/slow?ms=800", "k7")))
    th.start()
    time.sleep(0.3)
    a.reload(REDIS + CONF.replace('max_response = "64k"', 'max_response = "65k"'))
    th.join(10)
    r = retry(b, "/slow?ms=800", "k7")
    t.ok(first.get("r") is not None and first["r"].status == 200
         and r.header("idempotent-replayed") == "true",
         "redis: kept by the generation a reload replaced", r)
    keys = redis.cmd("KEYS", "*idem*")
    t.ok(keys and all(len(k) == len("sluice:idem:") + 64 for k in keys),
         "redis: records named by a digest only", keys)

    # 64 MiB, hashed as it streams up, then read and hashed for the replay
    total = 64 * MIB
    time.sleep(0.2)
    base_kb = h.rss_kb(a.pid) if a.pid else 0
    limit = base_kb + 32 * 1024
    with h.RssSampler(a.pid or 0) as rs:
        r1 = upload(a, "/upload", "big", total)
        r2 = upload(a, "/upload", "big", total, chunked=True)
    t.ok(r1.status == 200 and r1.json().get("body_length") == total,
         "64 MiB body forwarded whole", r1)
    t.ok(r2.status == 200 and r2.header("idempotent-replayed") == "true" and r2.body == r1.body,
         "64 MiB body again (chunked): replayed", r2)
    t.ok(r1.next_ok and r2.next_ok, "the connection serves on after both")
    t.eq(count(up, "/upload"), 1, "64 MiB: the upstream got one")
    t.ok(rs.max_kb < limit, "64 MiB twice: RSS growth < 32 MiB (max %d kB, base %d kB)"
         % (rs.max_kb, base_kb))
    t.ok((metric(a, 'sluice_idempotency_total{result="replayed"}') or 0) >= 1,
         "metrics: replayed counted")
    # without its store a keyed request is refused, never forwarded unprotected
    redis.stop()
    r = post(a, "/echo?down=1", "k6")
    h.problem_ok(t, r, 503, "redis down")
    t.eq(r.header("retry-after"), "1", "redis down: Retry-After: 1")
    t.eq(count(up, "/echo?down=1"), 0, "redis down: the upstream got nothing")
    t.eq(post(a, "/echo?down=2", None).status, 200, "redis down: a request without a key passes")
    a.stop()
    b.stop()

    # the embedded store, one instance
    up2 = env.upstream("app2")
    e = env.sluice(CONF.replace('access_log = "off"', 'access_log = "${tmp}/access.log"'),
                   name="sluice-e", values={"up": up2.port})
    check_store(t, e, e, up2, "embedded")
    check_conflict(t, e, e, "embedded")
    t.eq(count(up2, "/slow?ms=400&race=1"), 1, "embedded: eight at once: the upstream saw one")
    for res in ("stored", "replayed", "conflict", "mismatch", "released", "missing"):
        t.ok((metric(e, 'sluice_idempotency_total{result="%s"}' % res) or 0) >= 1,
             "metrics: %s counted" % res)
    e.stop()
    with open(os.path.join(e.dir, "access.log")) as f:
        lines = [json.loads(ln) for ln in f if ln.strip()]
    words = [ln.get("idempotency") for ln in lines if ln.get("path") == "/echo?k=1"]
    # each worker writes its own lines: no order across them
    t.ok(words.count("stored") == 2 and words.count("replayed") >= 3,
         "access log: stored once per scope, then replayed", words)
    t.ok("mismatch" in words, "access log: mismatch", words)
    t.ok(any(ln.get("idempotency") == "released" for ln in lines), "access log: released")
    t.ok(all(ln.get("idempotency") is None for ln in lines if ln.get("method") == "GET"),
         "access log: null where no key was looked at")


if __name__ == "__main__":
    h.run(main, time_limit=60)
