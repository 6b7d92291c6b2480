#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The response cache (issue 15, points 1 and 4): a hit within ttl with Age
# and Cache-Status; the upstream's max-age over the route's ttl; Vary (one
# variant per value set, Vary: * not stored); no-store, private,
# Authorization and Set-Cookie not stored; 304 from the cache to
# If-None-Match and If-Modified-Since; a stale entry revalidated with the
# upstream's ETag (a 304 refreshes it); HEAD served from a GET's entry;
# bodies over max_object not stored; a reload keeps the store; a route
# without cache is untouched.
# Client: raw requests. Upstream: /cache/... (counts requests per target,
# headers from the query). Daemon: one cached route, one not.

import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
routes = {
  { path = "/cache/", upstream = "app",
    cache = { ttl = "2s", max_memory = "4m", max_object = "16k" } },
  { path = "/", upstream = "app" },
}
"""


def get(s, target, headers=(), method="GET"):
    return h.request(s.addr, method, target, headers)


def count(up, target):
    with up.lock:
        return up.target_counts.get(target, 0)


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # a hit within ttl
    r1 = get(s, "/cache/a")
    r2 = get(s, "/cache/a")
    t.eq(r1.status, 200, "first GET answered")
    t.ok((r1.header("cache-status") or "").startswith("sluice; fwd=uri-miss; fwd-status=200"),
         "miss: Cache-Status fwd=uri-miss", r1.header("cache-status"))
    t.eq(r2.body, r1.body, "hit: same body")
    t.ok((r2.header("cache-status") or "").startswith("sluice; hit"), "hit: Cache-Status hit",
         r2.header("cache-status"))
    t.ok(r2.header("age") is not None, "hit: Age present", r2.headers)
    t.eq(count(up, "/cache/a"), 1, "hit: the upstream asked once")
    t.eq(r2.header("content-type"), "application/json", "hit: stored headers replayed")
    time.sleep(1.1)
    r3 = get(s, "/cache/a")
    t.ok(int(r3.header("age", "-1")) >= 1, "Age grows", r3.header("age"))
    # HEAD from the GET's entry
    r = get(s, "/cache/a", method="HEAD")
    t.ok(r.status == 200 and r.body == b"" and (r.header("cache-status") or "").find("hit") > 0,
         "HEAD: served from the GET's entry without a body", r.headers)
    t.eq(count(up, "/cache/a"), 1, "HEAD: upstream not asked")
    # the query is part of the key
    get(s, "/cache/a?x=1")
    t.eq(count(up, "/cache/a?x=1"), 1, "another query: another key")

    # ttl runs out (no validators: fetched again)
    time.sleep(1.2)
    get(s, "/cache/a")
    t.eq(count(up, "/cache/a"), 2, "after ttl: fetched again")

    # the upstream's own freshness wins over ttl
    tgt = "/cache/m?cc=max-age=0"
    get(s, tgt)
    get(s, tgt)
    t.eq(count(up, tgt), 2, "max-age=0 without validators: not served from the cache")
    tgt = "/cache/m?cc=s-maxage=60,max-age=0"
    get(s, tgt)
    get(s, tgt)
    t.eq(count(up, tgt), 1, "s-maxage wins over max-age for a shared cache")

    # not stored
    for q, label in (("cc=no-store", "no-store"), ("cc=private", "private"),
                     ("cookie=1", "Set-Cookie"), ("vary=*", "Vary: *"),
                     ("status=500", "a 500"), ("size=20000", "over max_object")):
        tgt = "/cache/n?" + q
        r = get(s, tgt)
        get(s, tgt)
        t.eq(count(up, tgt), 2, "%s: not stored" % label)
    r = get(s, "/cache/n?cookie=1")
    t.eq(r.header("set-cookie"), "s=3", "Set-Cookie passed to the client")
    tgt = "/cache/n?status=404"
    get(s, tgt)
    get(s, tgt)
    t.eq(count(up, tgt), 1, "a 404 is stored (heuristically cacheable)")

    # Authorization: neither served from nor stored, unless public
    get(s, "/cache/auth")
    r = get(s, "/cache/auth", [("Authorization", "Bearer x")])
    t.eq(count(up, "/cache/auth"), 2, "Authorization: not served from the cache")
    t.ok("fwd=bypass" in (r.header("cache-status") or ""), "Authorization: fwd=bypass",
         r.header("cache-status"))
    tgt = "/cache/auth2"
    get(s, tgt, [("Authorization", "Bearer x")])
    get(s, tgt)
    t.eq(count(up, tgt), 2, "Authorization: response not stored")
    tgt = "/cache/auth3?cc=public"
    get(s, tgt, [("Authorization", "Bearer x")])
    get(s, tgt, [("Authorization", "Bearer y")])
    t.eq(count(up, tgt), 1, "Authorization + public: stored and served")

    # Vary: one variant per value set
    tgt = "/cache/v?vary=Accept-Language"
    en = get(s, tgt, [("Accept-Language", "en")])
    de = get(s, tgt, [("Accept-Language", "de")])
    en2 = get(s, tgt, [("Accept-Language", "en")])
    de2 = get(s, tgt, [("Accept-Language", "de")])
    t.eq(count(up, tgt), 2, "Vary: two variants, two upstream requests")
    t.eq((en2.json()["lang"], de2.json()["lang"]), ("en", "de"), "Vary: each variant served")
    t.eq((en2.body, de2.body), (en.body, de.body), "Vary: bodies as stored")
    t.ok("vary-miss" in (de.header("cache-status") or ""), "Vary: fwd=vary-miss",
         de.header("cache-status"))

    # conditional requests answered 304 from the cache
    tgt = "/cache/c?etag=%22v1%22&lm=1700000000&cc=max-age=60"
    get(s, tgt)
    r = get(s, tgt, [("If-None-Match", '"v1"')])
    t.eq(r.status, 304, "If-None-Match: 304 from the cache")
    t.eq(r.header("etag"), '"v1"', "304 carries ETag")
    t.eq(r.body, b"", "304 has no body")
    r = get(s, tgt, [("If-None-Match", 'W/"v0", W/"v1"')])
    t.eq(r.status, 304, "If-None-Match with a list, weak: 304")
    r = get(s, tgt, [("If-None-Match", '"v2"')])
    t.eq(r.status, 200, "If-None-Match not matching: 200")
    r = get(s, tgt, [("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT")])
    t.eq(r.status, 304, "If-Modified-Since after Last-Modified: 304")
    r = get(s, tgt, [("If-Modified-Since", "Mon, 13 Nov 2023 00:00:00 GMT")])
    t.eq(r.status, 200, "If-Modified-Since before Last-Modified: 200")
    t.eq(count(up, tgt), 1, "conditionals: upstream asked once")

    # revalidation: a stale entry with an ETag is revalidated, a 304 refreshes it
    tgt = "/cache/r?etag=%22r1%22&cc=max-age=1"
    r1 = get(s, tgt)
    time.sleep(1.2)
    r2 = get(s, tgt)
    t.eq(count(up, tgt), 2, "stale: the upstream asked again")
    up_req = [q for q in up.requests if q["target"] == tgt][-1]
    inm = [v for k, v in up_req["headers"] if k.lower() == "if-none-match"]
    t.eq(inm, ['"r1"'], "revalidation sent If-None-Match with the stored ETag")
    t.eq(r2.status, 200, "revalidated: the client gets 200")
    t.eq(r2.body, r1.body, "revalidated: the stored body")
    t.ok("fwd=stale; fwd-status=304" in (r2.header("cache-status") or ""),
         "revalidated: Cache-Status fwd=stale, fwd-status=304", r2.header("cache-status"))
    r3 = get(s, tgt)
    t.eq(count(up, tgt), 2, "refreshed: fresh again, upstream not asked")
    t.ok("hit" in (r3.header("cache-status") or ""), "refreshed: a hit", r3.header("cache-status"))

    # a miss with the client's conditional: filled without it, answered 200
    tgt = "/cache/cm?etag=%22m1%22&cc=max-age=1"
    r = get(s, tgt, [("If-None-Match", '"m1"')])
    up_req = [q for q in up.requests if q["target"] == tgt][-1]
    t.eq([v for k, v in up_req["headers"] if k.lower() == "if-none-match"], [],
         "miss: the client's If-None-Match is not sent up")
    t.eq(r.status, 200, "miss with If-None-Match: 200 (filled)")
    r = get(s, tgt, [("If-None-Match", '"m1"')])
    t.eq(r.status, 304, "then 304 from the cache")
    # stale, revalidated for a client with its own condition: ours goes up
    time.sleep(1.2)
    r = get(s, tgt, [("If-None-Match", '"m1"')])
    up_req = [q for q in up.requests if q["target"] == tgt][-1]
    t.eq([v for k, v in up_req["headers"] if k.lower() == "if-none-match"], ['"m1"'],
         "stale: the cache's own If-None-Match goes up, once")
    t.eq(r.status, 304, "stale, confirmed: the client's condition answered 304")
    t.eq(count(up, tgt), 2, "conditional fill and revalidation: two upstream requests")

    # a reload that keeps the route keeps its store (and its entries)
    tgt = "/cache/keep?cc=max-age=60"
    get(s, tgt)
    s.reload(CONF.replace('max_object = "16k"', 'max_object = "32k"'))
    done = h.wait_until(lambda: (h.admin_get(s.admin, "/metrics") or (0, b""))[1].find(
        b'sluice_config_reloads_total{result="success"} 1') >= 0, 5)
    t.ok(done, "reload: the new conf (max_object changed) is in use")
    r = get(s, tgt)
    t.eq(count(up, tgt), 1, "reload: the entry is still served")
    t.ok("hit" in (r.header("cache-status") or ""), "reload: a hit", r.header("cache-status"))

    # a route without cache is untouched
    r = get(s, "/echo")
    t.ok(r.header("cache-status") is None, "uncached route: no Cache-Status", r.headers)
    # POST on a cached route goes upstream, marked
    r = get(s, "/cache/a", method="POST")
    t.ok("fwd=method" in (r.header("cache-status") or ""), "POST: fwd=method",
         r.header("cache-status"))


if __name__ == "__main__":
    h.run(main, time_limit=60)
