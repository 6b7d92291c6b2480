#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Key selectors, cost and shadow limits (issue 3, point 4), end to end with
# the embedded store: ip (X-Forwarded-For believed only from trusted_proxies,
# right-most untrusted hop), header, query, cookie, path, method, global, a
# composite key, a Lua key function, a numeric cost and a cost function; a
# limit whose key is absent does not apply; a shadow limit never refuses but
# is logged as shadow_limited.
# Client: raw requests, some from 127.0.0.2 (an untrusted peer; 127.0.0.1 is
# trusted). Upstream: /echo for any path. Daemon: one route per limit, every
# limit 2 tokens per minute unless said otherwise.

import json

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "${tmp}/access.log"
trusted_proxies = { "127.0.0.1" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
local function tenant(r) return r.header["x-tenant"] end
limits = {
  by_ip     = { key = "ip", rate = 2, per = "1m" },
  by_header = { key = "header:X-K", rate = 2, per = "1m" },
  by_query  = { key = "query:k", rate = 2, per = "1m" },
  by_cookie = { key = "cookie:sid", rate = 2, per = "1m" },
  by_path   = { key = "path", rate = 2, per = "1m" },
  by_method = { key = "method", rate = 2, per = "1m" },
  by_all    = { key = "global", rate = 2, per = "1m" },
  by_pair   = { key = { "header:X-A", "method" }, rate = 2, per = "1m" },
  by_fn     = { key = tenant, rate = 2, per = "1m" },
  by_cost3  = { key = "header:X-K", rate = 10, per = "1m", cost = 3 },
  by_costfn = { key = "header:X-K", rate = 10, per = "1m",
                cost = function(r) return r.method == "POST" and 4 or 1 end },
  dry       = { key = "header:X-K", rate = 1, per = "1m", shadow = true },
}
routes = {
  { path = "/ip/", upstream = "app", limits = { "by_ip" } },
  { path = "/hdr/", upstream = "app", limits = { "by_header" } },
  { path = "/q/", upstream = "app", limits = { "by_query" } },
  { path = "/ck/", upstream = "app", limits = { "by_cookie" } },
  { path = "/p/", upstream = "app", limits = { "by_path" } },
  { path = "/m/", upstream = "app", limits = { "by_method" } },
  { path = "/g/", upstream = "app", limits = { "by_all" } },
  { path = "/pair/", upstream = "app", limits = { "by_pair" } },
  { path = "/fn/", upstream = "app", limits = { "by_fn" } },
  { path = "/cost3/", upstream = "app", limits = { "by_cost3" } },
  { path = "/costfn/", upstream = "app", limits = { "by_costfn" } },
  { path = "/dry/", upstream = "app", limits = { "dry" } },
}
"""


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port})

    def seq(label, reqs, want):
        """reqs: list of (method, target, headers, source); want: statuses."""
        got = [h.request(s.addr, m, tg, hd, body=b"" if m == "POST" else None,
                         source=src).status for m, tg, hd, src in reqs]
        t.eq(got, want, label)

    def same(n, m, tg, hd=(), src=None):
        return [(m, tg, list(hd), src)] * n

    # ip: direct peer, trusted proxy's XFF, untrusted peer's XFF ignored
    seq("ip: peer 127.0.0.2 gets 2 then 429", same(3, "GET", "/ip/x", src="127.0.0.2"),
        [200, 200, 429])
    seq("ip: XFF from an untrusted peer is ignored (still 127.0.0.2)",
        same(1, "GET", "/ip/x", [("X-Forwarded-For", "198.51.100.9")], "127.0.0.2"), [429])
    xff = [("X-Forwarded-For", "198.51.100.1")]
    seq("ip: XFF from the trusted 127.0.0.1 names the client", same(3, "GET", "/ip/x", xff),
        [200, 200, 429])
    seq("ip: another XFF client has its own bucket",
        same(1, "GET", "/ip/x", [("X-Forwarded-For", "198.51.100.2")]), [200])
    seq("ip: right-most untrusted hop counts (spoofed left part ignored)",
        same(1, "GET", "/ip/x", [("X-Forwarded-For", "198.51.100.2, 198.51.100.1")]), [429])
    seq("ip: trusted hops are skipped from the right",
        same(1, "GET", "/ip/x", [("X-Forwarded-For", "198.51.100.1, 127.0.0.1")]), [429])

    seq("header: 2 then 429, name case-insensitive",
        [("GET", "/hdr/", [("X-K", "a")], None), ("GET", "/hdr/", [("x-k", "a")], None),
         ("GET", "/hdr/", [("X-k", "a")], None)], [200, 200, 429])
    seq("header: another value, its own bucket", same(1, "GET", "/hdr/", [("X-K", "b")]), [200])
    seq("header: absent, the limit does not apply", same(4, "GET", "/hdr/"), [200] * 4)

    seq("query: 2 then 429 (other parameters do not matter)",
        [("GET", "/q/?k=a", [], None), ("GET", "/q/?x=1&k=a", [], None),
         ("GET", "/q/?k=a&y=2", [], None)], [200, 200, 429])
    seq("query: k=b is another bucket", same(1, "GET", "/q/?k=b"), [200])
    seq("query: absent, the limit does not apply", same(4, "GET", "/q/?x=1"), [200] * 4)

    seq("cookie: 2 then 429",
        [("GET", "/ck/", [("Cookie", "sid=s1")], None),
         ("GET", "/ck/", [("Cookie", "a=1; sid=s1; b=2")], None),
         ("GET", "/ck/", [("Cookie", "sid=s1")], None)], [200, 200, 429])
    seq("cookie: another value", same(1, "GET", "/ck/", [("Cookie", "sid=s2")]), [200])
    seq("cookie: absent (other cookies only)",
        same(4, "GET", "/ck/", [("Cookie", "other=s1")]), [200] * 4)

    seq("path: 2 then 429, the query is not part of it",
        [("GET", "/p/a", [], None), ("GET", "/p/a?x=1", [], None), ("GET", "/p/a", [], None)],
        [200, 200, 429])
    seq("path: another path", same(1, "GET", "/p/b"), [200])

    seq("method: GET twice then 429, POST apart",
        same(3, "GET", "/m/") + same(1, "POST", "/m/"), [200, 200, 429, 200])

    seq("global: 2 for everybody then 429",
        [("GET", "/g/", [("X-K", "1")], None), ("GET", "/g/", [], "127.0.0.2"),
         ("GET", "/g/?k=3", [], None)], [200, 200, 429])

    seq("composite: (a, GET) twice then 429; (a, POST) and (b, GET) apart",
        same(3, "GET", "/pair/", [("X-A", "a")]) + same(1, "POST", "/pair/", [("X-A", "a")])
        + same(1, "GET", "/pair/", [("X-A", "b")]), [200, 200, 429, 200, 200])
    seq("composite: a part absent, the limit does not apply", same(4, "GET", "/pair/"),
        [200] * 4)

    seq("function key: tenant t1 twice then 429, t2 apart",
        same(3, "GET", "/fn/", [("X-Tenant", "t1")]) + same(1, "GET", "/fn/",
                                                            [("X-Tenant", "t2")]),
        [200, 200, 429, 200])
    seq("function key returning nil: the limit does not apply", same(4, "GET", "/fn/"),
        [200] * 4)

    seq("cost = 3, burst 10: three pass, the fourth is refused",
        same(4, "GET", "/cost3/", [("X-K", "c")]), [200, 200, 200, 429])
    seq("cost function: POST costs 4 (2 pass), then GETs cost 1 (2 more pass)",
        same(3, "POST", "/costfn/", [("X-K", "c")]) + same(3, "GET", "/costfn/", [("X-K", "c")]),
        [200, 200, 429, 200, 200, 429])

    seq("shadow: never refuses", same(4, "GET", "/dry/", [("X-K", "d")]), [200] * 4)
    path = env.path("sluice", "access.log")

    def dry_lines():
        try:
            with open(path) as f:
                return [json.loads(ln) for ln in f if '"/dry/' in ln]
        except (OSError, ValueError):
            return []
    lines = h.wait_until(lambda: len(dry_lines()) >= 4 and dry_lines(), 4, 0.1) or dry_lines()
    outcomes = sorted(str(d.get("limit")) for d in lines)
    t.eq(outcomes, ["admitted", "shadow_limited", "shadow_limited", "shadow_limited"],
         "shadow: access log says admitted once, then shadow_limited")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
