#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# API versions and their end (issue 14, point 2): routing on a header value
# next to routing by path; Deprecation (RFC 9745), Sunset (RFC 8594) and
# Link headers with the right values before and after the deprecation date;
# 410 problem+json after the sunset and inside a brownout window, with no
# upstream call and no rate-limit token spent; who still calls a deprecated
# route, in /metrics (top N by consumer, the rest as "other") and in the
# access log, with a credential never shown as it is.
# Every date is made from the clock now, so the scenario means the same any day.
# Client: plain GETs. Upstreams: "v1", "v2", "old" (echo their name, count
# requests). Daemon: 1 worker, access log to a file.

import calendar
import email.utils
import hashlib
import json
import os
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
upstreams = {
  v1  = { servers = { "127.0.0.1:${v1}" } },
  v2  = { servers = { "127.0.0.1:${v2}" } },
  old = { servers = { "127.0.0.1:${old}" } },
}
limits = { one = { key = "ip", rate = 1, per = "1h", burst = 1 } }
routes = {
  { path = "/api/", upstream = "v1" },
  { path = "/api/", upstream = "v2", headers = { ["API-Version"] = "2024-06-01" } },
  { path = "/v2/", upstream = "v2" },
  { path = "/announced/", upstream = "old", deprecation = "${future1}", sunset = "${future2}",
    link = "https://example.com/migrate" },
  { path = "/deprecated/", upstream = "old", deprecation = "${past_offset}",
    sunset = "${future2}", link = "https://example.com/migrate",
    consumer = "header:X-Client-Id", consumer_top = 2 },
  { path = "/gone/", upstream = "old", deprecation = "${past2}", sunset = "${past1}",
    link = "https://example.com/migrate", limits = "one" },
  { path = "/brownout/", upstream = "old", deprecation = "${past2}", sunset = "${future2}",
    brownouts = { { from = "${past_minute}", to = "${future1}" } } },
  { path = "/brownout-later/", upstream = "old", deprecation = "${past2}", sunset = "${future2}",
    brownouts = { { from = "${past2}", to = "${past1}" },
                  { from = "${future1}", to = "${future1b}" } } },
  { path = "/secret/", upstream = "old", deprecation = "${past2}",
    consumer = "header:Authorization" },
}
"""

DAY = 86400
TOKEN = "Bearer s3cr3t-token-of-alice"


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def with_offset(t, hours):
    """The same instant written in a zone `hours` east of UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t + hours * 3600)) \
        + "+%02d:00" % hours


def get(s, path, headers=()):
    return h.request(s.addr, "GET", path, headers=list(headers))


def check_routing(t, s, ups):
    cases = [
        ("/api/x", [], "v1"),
        ("/api/x", [("API-Version", "2024-06-01")], "v2"),
        ("/api/x", [("api-version", "2024-06-01")], "v2"),
        ("/api/x", [("API-Version", "2024-01-01")], "v1"),
        ("/api/x", [("API-Version", "2024-06-01 ,x")], "v1"),
        ("/v2/x", [], "v2"),
    ]
    for path, hdrs, want in cases:
        r = get(s, path, hdrs)
        t.eq((r.status, r.json().get("upstream") if r.status == 200 else None), (200, want),
             "%s %s -> %s" % (path, hdrs, want))


def check_headers(t, s, now, dates):
    r = get(s, "/announced/a")
    t.eq(r.status, 200, "before the deprecation: passed")
    t.eq(r.header("Deprecation"), None, "before the deprecation: no Deprecation")
    t.eq(r.header("Sunset"), email.utils.formatdate(dates["future2"], usegmt=True),
         "Sunset from the start, as an IMF-fixdate")
    t.eq(r.header_all("Link"), ['<https://example.com/migrate>; rel="sunset"'],
         "before the deprecation: only the sunset link")

    r = get(s, "/deprecated/a", [("X-Client-Id", "alice")])
    t.eq(r.status, 200, "deprecated: still passed")
    t.eq(r.header("Deprecation"), "@%d" % dates["past1"], "Deprecation: @unix seconds (RFC 9745)")
    t.eq(sorted(r.header_all("Link")), sorted([
        '<https://example.com/migrate>; rel="sunset"',
        '<https://example.com/migrate>; rel="deprecation"']), "both links after the deprecation")
    t.eq(r.header("Sunset"), email.utils.formatdate(dates["future2"], usegmt=True),
         "Sunset after the deprecation too")
    t.ok(r.header("RateLimit-Policy") is None, "no limits on that route: no RateLimit fields")


def check_gone(t, s, ups, dates):
    before = ups["old"].snapshot()[0]
    for i in range(3):
        r = get(s, "/gone/x%d" % i)
        doc = h.problem_ok(t, r, 410, "after the sunset (%d)" % i)
        if doc is not None:
            t.eq(doc.get("link"), "https://example.com/migrate", "the 410 names the link")
            t.ok("https://example.com/migrate" in doc.get("detail", ""),
                 "the detail names the link", doc)
            t.eq(doc.get("sunset"), rfc3339(dates["past1"]), "the 410 says when it ended")
    t.eq(r.header("Sunset"), email.utils.formatdate(dates["past1"], usegmt=True),
         "410 carries Sunset")
    t.eq(r.header("Deprecation"), "@%d" % dates["past2"], "410 carries Deprecation")
    t.ok(r.header("RateLimit") is None and r.header("Retry-After") is None,
         "a 410 comes before the limits: no token spent, never a 429")

    r = get(s, "/brownout/x")
    doc = h.problem_ok(t, r, 410, "inside a brownout window")
    if doc is not None:
        t.eq(doc.get("brownout_until"), rfc3339(dates["future1"]), "the brownout's end is named")
    t.eq(r.header("Cache-Control"), "no-store", "a brownout 410 is not to be cached")
    time.sleep(0.05)
    t.eq(ups["old"].snapshot()[0], before, "no 410 reached the upstream")

    r = get(s, "/brownout-later/x")
    t.eq(r.status, 200, "outside every brownout window: passed")
    t.ok(ups["old"].wait_requests(before + 1), "... to the upstream")


def check_consumers(t, s):
    calls = [("alice", 4), ("bob", 3), ("carol", 1), ("dave", 1), (None, 1)]
    for who, n in calls:
        for _ in range(n):
            get(s, "/deprecated/b", [("X-Client-Id", who)] if who else [])
    # alice also made the request of check_headers
    samples = h.scrape(s.admin)
    route = "/deprecated/"
    shown = {ls["consumer"]: v for n, ls, v in samples
             if n == "sluice_route_consumer_requests" and ls.get("route") == route}
    t.eq(shown, {"alice": 5, "bob": 3, "other": 3},
         "top 2 consumers by name, carol, dave and (none) summed as other")
    for _ in range(2):
        get(s, "/secret/x", [("Authorization", TOKEN)])
    digest = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
    samples = h.scrape(s.admin)
    t.eq(h.metric(samples, "sluice_route_consumer_requests", route="/secret/", consumer=digest),
         2, "an Authorization consumer is shown hashed")
    text = h.admin_get(s.admin, "/metrics")[1].decode()
    t.ok("s3cr3t" not in text, "the credential is not in /metrics")
    t.eq(h.metric(samples, "sluice_route_consumer_requests", route="/api/"), 0,
         "routes that do not end are not counted by consumer")

    # hostile callers: hundreds of made-up ids and a huge one stay two series and "other"
    with h.Conn(s.addr) as c:
        for i in range(300):
            c.send(h.request_bytes("GET", "/deprecated/c", [("X-Client-Id", "mallory-%d" % i)]))
            c.read_response()
        c.send(h.request_bytes("GET", "/deprecated/c", [("X-Client-Id", "x" * 4000)]))
        c.read_response()
    samples = h.scrape(s.admin)
    shown = {ls["consumer"]: v for n, ls, v in samples
             if n == "sluice_route_consumer_requests" and ls.get("route") == "/deprecated/"}
    t.eq(len(shown), 3, "300 distinct consumers: still top 2 and other")
    t.eq(sum(shown.values()), 5 + 3 + 3 + 301, "the series add up to the route's requests")
    t.ok(all(len(k) <= 64 for k in shown), "no label over 64 bytes", shown)
    return digest


def check_reload(t, s):
    """A reload that moves a route's dates takes effect; consumer counts stay."""
    before = h.scrape(s.admin)
    conf = CONF.replace('{ path = "/announced/", upstream = "old", deprecation = "${future1}", '
                        'sunset = "${future2}",',
                        '{ path = "/announced/", upstream = "old", deprecation = "${past2}", '
                        'sunset = "${past1}",')
    t.ok(conf != CONF, "the reloaded conf differs")
    s.reload(conf)
    t.ok(h.wait_until(lambda: get(s, "/announced/r").status == 410, 5, 0.05),
         "after a reload that put the sunset in the past: 410")
    after = h.scrape(s.admin)
    t.eq(h.metric(after, "sluice_route_consumer_requests", route="/deprecated/"),
         h.metric(before, "sluice_route_consumer_requests", route="/deprecated/"),
         "consumer counts survive a reload")


def check_log(t, s, digest):
    with open(os.path.join(s.dir, "access.log")) as f:
        raw = f.read()
    lines = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
    t.ok("s3cr3t" not in raw, "the credential is not in the access log")

    def first(prefix):
        return next((ln for ln in lines if (ln.get("path") or "").startswith(prefix)), {})

    got = {p: (first(p).get("lifecycle"), first(p).get("consumer"), first(p).get("reason"))
           for p in ("/api/", "/announced/", "/deprecated/", "/gone/", "/brownout/",
                     "/brownout-later/", "/secret/")}
    t.eq(got, {
        "/api/": (None, None, None),
        "/announced/": ("active", "127.0.0.1", None),
        "/deprecated/": ("deprecated", "alice", None),
        "/gone/": ("sunset", "127.0.0.1", "sunset"),
        "/brownout/": ("brownout", "127.0.0.1", "brownout"),
        "/brownout-later/": ("deprecated", "127.0.0.1", None),
        "/secret/": ("deprecated", digest, None),
    }, "access log: lifecycle, consumer and reason")


def main(env):
    t = env.t
    ups = {n: env.upstream(n) for n in ("v1", "v2", "old")}
    now = int(time.time())
    dates = {
        "past2": now - 60 * DAY, "past1": now - 30 * DAY, "past_minute": now - 60,
        "future1": now + 30 * DAY, "future1b": now + 31 * DAY, "future2": now + 90 * DAY,
    }
    values = {n: u.port for n, u in ups.items()}
    values.update({k: rfc3339(v) for k, v in dates.items()})
    # the deprecation of /deprecated/ written with an offset: same instant as past1
    values["past_offset"] = with_offset(dates["past1"], 2)
    s = env.sluice(CONF, values=values)

    check_routing(t, s, ups)
    check_headers(t, s, now, dates)
    check_gone(t, s, ups, dates)
    digest = check_consumers(t, s)
    check_reload(t, s)
    s.stop()
    check_log(t, s, digest)


if __name__ == "__main__":
    h.run(main, time_limit=60)
