#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Stale responses (issue 15, point 3, RFC 5861): within
# stale_while_revalidate, a stale entry is served at once while one
# background request refreshes it (a 304 to its ETag too); within stale_if_error, an upstream that
# answers 500, times out, or is gone (killed) is replaced by the stale copy;
# past the window, or without it, the client gets the error.
# Client: raw requests, some concurrent. Upstream: /cache/... with
# cache_mode "500" / "hang", then stopped. Daemon: cached routes with and
# without the windows.

import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "700ms",
                      connect_timeout = "300ms" } }
routes = {
  { path = "/cache/s/", upstream = "app",
    cache = { ttl = "1s", stale_while_revalidate = "30s", stale_if_error = "5m" } },
  { path = "/cache/e/", upstream = "app", cache = { ttl = "1s", stale_if_error = "5m" } },
  { path = "/cache/", upstream = "app", cache = { ttl = "1s" } },
  { path = "/", upstream = "app" },
}
"""


def get(s, target, headers=()):
    return h.request(s.addr, "GET", target, headers)


def count(up, target):
    with up.lock:
        return up.target_counts.get(target, 0)


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    # stale-while-revalidate: stale served at once, one background refresh
    tgt = "/cache/s/swr?ms=600"
    first = get(s, tgt)
    time.sleep(1.1)
    t0 = time.monotonic()
    r = get(s, tgt)
    r2 = get(s, tgt)
    took = time.monotonic() - t0
    t.eq((r.status, r2.status), (200, 200), "swr: stale served")
    t.eq((r.body, r2.body), (first.body, first.body), "swr: the stale body, twice")
    t.ok(took < 0.4, "swr: served at once, not after the refresh", "%.3f s" % took)
    t.ok("stale-while-revalidate" in (r.header("cache-status") or ""),
         "swr: Cache-Status says so", r.header("cache-status"))
    h.wait_until(lambda: count(up, tgt) >= 2, 3)
    time.sleep(0.8)
    t.eq(count(up, tgt), 2, "swr: one background refresh upstream")
    up_req = [q for q in up.requests if q["target"] == tgt][-1]
    t.eq([v for k, v in up_req["headers"] if k.lower() == "host"], ["test"],
         "swr: the refresh asks for the same host")
    r = get(s, tgt)
    t.eq(r.json()["n"], 2, "swr: the refreshed entry is served after")
    t.ok((r.header("cache-status") or "").startswith("sluice; hit"), "swr: a fresh hit",
         r.header("cache-status"))
    # with validators: the refresh is a revalidation
    tgt = "/cache/s/swr-etag?etag=%22e1%22&cc=max-age=1"
    get(s, tgt)
    time.sleep(1.1)
    get(s, tgt)
    h.wait_until(lambda: count(up, tgt) >= 2, 3)
    time.sleep(0.2)
    up_req = [q for q in up.requests if q["target"] == tgt][-1]
    t.eq([v for k, v in up_req["headers"] if k.lower() == "if-none-match"], ['"e1"'],
         "swr: the background refresh revalidates with the ETag")
    r = get(s, tgt)
    t.ok((r.header("cache-status") or "").startswith("sluice; hit; ttl=0"),
         "swr: refreshed by the 304", r.header("cache-status"))

    # a reload while a background refresh waits on the upstream: dropped
    tgt = "/cache/s/reload?ms=500"
    get(s, tgt)
    time.sleep(1.1)
    r = get(s, tgt)
    t.eq(r.status, 200, "reload during a refresh: stale served")
    s.reload(CONF.replace('cache = { ttl = "1s" } }', 'cache = { ttl = "1s", max_object = "512k" } }'))
    done = h.wait_until(lambda: b'sluice_config_reloads_total{result="success"} 1' in
                        (h.admin_get(s.admin, "/metrics") or (0, b""))[1], 5)
    t.ok(done, "reload during a refresh: the reload went through")
    time.sleep(1.0)
    r = get(s, tgt)
    t.eq(r.status, 200, "after the reload: still answered from the store")

    # stale-if-error: a 500
    tgt = "/cache/e/sie"
    first = get(s, tgt)
    time.sleep(1.1)
    up.cache_mode = "500"
    r = get(s, tgt)
    t.eq(r.status, 200, "sie: a 500 replaced by the stale entry")
    t.eq(r.body, first.body, "sie: the stale body")
    t.ok("fwd=stale; fwd-status=500" in (r.header("cache-status") or ""),
         "sie: Cache-Status fwd-status=500", r.header("cache-status"))
    t.eq(get(s, "/cache/nosie").status, 500, "without stale_if_error: the 500 passes")
    # a timeout
    up.cache_mode = "hang"
    r = get(s, tgt)
    t.eq(r.status, 200, "sie: an upstream timeout replaced by the stale entry")
    t.ok("fwd-status=504" in (r.header("cache-status") or ""), "sie: fwd-status=504",
         r.header("cache-status"))
    up.cache_mode = None
    # the upstream killed
    get(s, "/cache/gone")
    up.stop()
    time.sleep(1.1)
    r = get(s, tgt)
    t.eq(r.status, 200, "sie: upstream gone, the stale entry served")
    t.ok("fwd-status=502" in (r.header("cache-status") or ""), "sie: fwd-status=502",
         r.header("cache-status"))
    r = get(s, "/cache/gone")
    t.eq(r.status, 502, "without stale_if_error: 502 when the upstream is gone")
    r = get(s, "/cache/e/never-stored")
    t.eq(r.status, 502, "nothing stored: 502")
    _, body = h.admin_get(s.admin, "/metrics")
    text = body.decode()

    def stale_of(route):
        key = 'sluice_cache_requests_total{route="%s",result="stale"} ' % route
        for ln in text.splitlines():
            if ln.startswith(key):
                return float(ln[len(key):])
        return None

    # /cache/s/: 3 above, 1 or 2 around the reload; /cache/e/: the 500, 504 and 502
    t.ok((stale_of("/cache/s/") or 0) >= 4 and stale_of("/cache/e/") == 3,
         "metrics: stale served counted", (stale_of("/cache/s/"), stale_of("/cache/e/")))


if __name__ == "__main__":
    h.run(main, time_limit=60)
