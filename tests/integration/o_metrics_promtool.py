#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A live /metrics scrape after known traffic passes `promtool check metrics`
# and counts exactly what was sent (issue 4, points 1 and 4): requests by
# route, method and status class; rate-limit decisions by result (admitted,
# limited, skipped); an unknown method counted as "other", an unmatched
# request under route "(none)"; a route name with `"` and `\` escaped so that
# promtool accepts it and it reads back unchanged. The admin listener's own
# requests are not counted.
# Client: one request per connection (keys a, b, none; GET, POST, PURGE).
# Upstream: /echo. Daemon: 2 workers, local store, per_key = 3 per hour on
# X-Key, routes /api/ (limited), /free/ and /q"uo\te/ (unlimited, cached).

import harness as h
import obs_util as o

CONF = r"""
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = 3, per = "1h" } }
routes = {
  { path = "/api/", upstream = "app", limits = "per_key" },
  { path = "/free/", upstream = "app" },
  { path = "/q\"uo\\te/", upstream = "app", cache = {} },
}
"""
ODD_ROUTE = '/q"uo\\te/'

# (method, target, X-Key or None, expected status)
TRAFFIC = (
    [("GET", "/api/x", "a", 200)] * 3 + [("GET", "/api/x", "a", 429)] * 2
    + [("POST", "/api/x", "b", 200)] * 3 + [("POST", "/api/x", "b", 429)]
    + [("GET", "/api/x", None, 200)] * 2
    + [("GET", "/free/x", None, 200)] * 2
    + [("PURGE", "/free/x", None, 200)]
    + [("GET", '/q"uo\\te/x', None, 200)]
)
# (route, method, status_class) -> count, the whole sluice_http_requests_total
WANT_REQUESTS = {
    ("/api/", "GET", "2xx"): 5, ("/api/", "GET", "4xx"): 2,
    ("/api/", "POST", "2xx"): 3, ("/api/", "POST", "4xx"): 1,
    ("/free/", "GET", "2xx"): 2, ("/free/", "other", "2xx"): 1,
    (ODD_ROUTE, "GET", "2xx"): 1,
}
WANT_DECISIONS = {"admitted": 6, "limited": 3, "skipped": 2, "shadow_limited": 0,
                  "store_error": 0, "delayed": 0}


def requests_table(samples):
    return {(lab.get("route"), lab.get("method"), lab.get("status_class")): v
            for n, lab, v in samples if n == "sluice_http_requests_total"}


def decisions_table(samples):
    return {lab.get("result"): v for n, lab, v in samples
            if n == "sluice_ratelimit_decisions_total" and lab.get("limit") == "per_key"}


def main(env):
    t = env.t
    if not t.ok(o.tool("promtool") is not None,
                "promtool is installed (Debian package prometheus)",
                "promtool not found on PATH: apt-get install prometheus"):
        return
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    status, ctype, text = o.scrape(s.admin)
    t.eq(status, 200, "GET /metrics answers 200")
    t.ok(ctype is not None and ctype.replace(" ", "").lower().startswith(
        "text/plain;version=0.0.4"), "content type is text/plain; version=0.0.4", ctype)
    rc, out = o.promtool_check_metrics(text)
    t.ok(rc == 0 and not out.strip(), "promtool accepts the scrape before any traffic",
         "exit %d: %s" % (rc, out))

    statuses = []
    for method, target, key, _ in TRAFFIC:
        hdrs = [("X-Key", key)] if key else []
        body = b"hello" if method == "POST" else None
        statuses.append(h.request(s.addr, method, target, hdrs, body).status)
    t.eq(statuses, [w for *_, w in TRAFFIC], "the traffic got the expected statuses")
    t.eq(h.request(s.addr, "GET", "/nope").status, 404, "an unmatched path is 404")
    want_req = dict(WANT_REQUESTS)
    want_req[("(none)", "GET", "4xx")] = 1

    # Scrape the admin listener a few times first: it must not count itself.
    for _ in range(3):
        o.scrape(s.admin)
    text, samples = o.scrape_until(
        s.admin,
        lambda sm: requests_table(sm) == want_req and decisions_table(sm) == WANT_DECISIONS)

    with open(env.path("scrape.prom"), "w") as f:
        f.write(text)
    rc, out = o.promtool_check_metrics(text)
    t.ok(rc == 0 and not out.strip(), "promtool check metrics accepts the live scrape after "
         "traffic", "exit %d: %s (scrape in %s)" % (rc, out, env.path("scrape.prom")))

    got_req = requests_table(samples)
    t.eq(got_req, want_req, "sluice_http_requests_total: exactly the series and counts sent")
    t.eq(decisions_table(samples), WANT_DECISIONS,
         "sluice_ratelimit_decisions_total{limit=\"per_key\"} by result")
    t.ok(ODD_ROUTE in {k[0] for k in got_req},
         "route label with \" and \\ reads back unescaped as %s" % ODD_ROUTE, sorted(got_req))
    raw_odd = 'route="/q\\"uo\\\\te/"'
    t.ok(raw_odd in text, "route label is escaped in the exposition as %s" % raw_odd)
    t.ok(o.value(samples, "sluice_cache_max_bytes", route=ODD_ROUTE) == 64.0 * 1024 * 1024,
         "sluice_cache_max_bytes of the cached route, its label escaped alike")
    methods = {k[1] for k in got_req}
    t.ok(methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"},
         "method label values come from the fixed set", methods)

    dur = o.value(samples, "sluice_http_request_duration_seconds_count", route="/api/")
    t.eq(dur, 11.0, "sluice_http_request_duration_seconds_count{route=\"/api/\"} = 11")
    lim = o.value(samples, "sluice_limiter_duration_seconds_count", route="/api/")
    t.eq(lim, 11.0, "sluice_limiter_duration_seconds_count{route=\"/api/\"} = 11")
    acc = o.value(samples, "sluice_client_connections_accepted_total")
    t.eq(acc, float(len(TRAFFIC) + 1), "sluice_client_connections_accepted_total = "
         "connections made (admin ones excluded)")
    ups = o.value(samples, "sluice_upstream_responses_total", upstream="app", status_class="2xx")
    proxied = sum(1 for *_, w in TRAFFIC if w == 200)
    t.eq(ups, float(proxied),
         "sluice_upstream_responses_total{upstream=\"app\",2xx} = proxied requests")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=30)
