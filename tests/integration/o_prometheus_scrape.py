#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A real Prometheus server scrapes sluice while the test sends admitted and
# limited requests (issue 4, point 4): the test starts `prometheus` (Debian
# package) on a free loopback port with its own conf and storage in the temp
# dir, scrape interval 1 s, job "sluice" on the admin listener; sends N
# admitted and M limited requests spread over about 3 s; waits until
# Prometheus has scraped after sluice counted the last one; then asks
# Prometheus's HTTP API (/api/v1/query) for up{job="sluice"} = 1, the
# admitted and limited counters = N and M, the 2xx/4xx request counters, the
# "share limited" PromQL of docs/metrics.md, and that the counter went up
# over several scrapes (it was scraped during the traffic, from 0).
# Client: one request per connection, keys k0..k3 each sent BURST+2 times.
# Upstream: /echo. Daemon: 2 workers, local store, per_key = 5 per hour.

import time

import harness as h
import obs_util as o

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-Key", rate = ${burst}, per = "1h" } }
routes = { { path = "/", upstream = "app", limits = "per_key" } }
"""
BURST = 5
KEYS = 4
EXTRA = 2                       # refused requests per key
N = KEYS * BURST                # admitted
M = KEYS * EXTRA                # limited
JOB = "sluice"


def decisions(samples):
    return (o.value(samples, "sluice_ratelimit_decisions_total", limit="per_key",
                    result="admitted"),
            o.value(samples, "sluice_ratelimit_decisions_total", limit="per_key",
                    result="limited"))


def main(env):
    t = env.t
    if not t.ok(o.tool("prometheus") is not None,
                "prometheus is installed (Debian package prometheus)",
                "prometheus not found on PATH: apt-get install prometheus"):
        return
    up = env.upstream("app")
    s = env.sluice(CONF, values={"up": up.port, "burst": BURST})
    prom = o.Prometheus(env, [s.admin], job=JOB).start()
    t.note("prometheus on %s scraping %s" % (prom.addr, s.admin))

    sel = '{job="%s",limit="per_key",result="%%s"}' % JOB
    q_adm = "sluice_ratelimit_decisions_total" + sel % "admitted"
    q_lim = "sluice_ratelimit_decisions_total" + sel % "limited"

    # A first scrape before any traffic, so the series starts at 0.
    first = h.wait_until(lambda: prom.scalar('up{job="%s"}' % JOB) is not None, 8, 0.1)
    t.ok(first, "prometheus scraped sluice once before the traffic (within 8 s)",
         prom.log_text()[-1500:])
    t.eq(prom.scalar(q_adm), 0.0, "admitted counter is 0 in the first scrape")

    # The traffic, spread over ~3 s so that scrapes happen while it runs.
    plan = [("k%d" % k, 200) for k in range(KEYS) for _ in range(BURST)] + \
           [("k%d" % k, 429) for k in range(KEYS) for _ in range(EXTRA)]
    got = []
    gap = 3.0 / len(plan)
    for key, _ in plan:
        got.append(h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status)
        time.sleep(gap)
    t.eq(got, [w for _, w in plan], "%d requests admitted then %d limited" % (N, M))

    _, samples = o.scrape_until(s.admin, lambda sm: decisions(sm) == (N, M))
    t.eq(decisions(samples), (float(N), float(M)), "sluice's own /metrics counts N and M")
    t_counted = time.time()

    def scraped_after():
        ts = prom.scalar('timestamp(up{job="%s"})' % JOB)
        return ts is not None and ts > t_counted + 0.01
    waited0 = time.monotonic()
    ok = h.wait_until(scraped_after, 5, 0.1)
    t.ok(ok, "prometheus scraped again after the traffic (%.1fs)"
         % (time.monotonic() - waited0), prom.log_text()[-1500:])

    t.eq(prom.scalar('up{job="%s"}' % JOB), 1.0, 'prometheus: up{job="%s"} == 1' % JOB)
    targets = prom.query('up{job="%s"}' % JOB)
    t.eq([r["metric"].get("instance") for r in targets], [s.admin],
         "prometheus: the one target is sluice's admin address")
    t.eq(prom.scalar(q_adm), float(N), "prometheus: admitted counter == %d sent" % N)
    t.eq(prom.scalar(q_lim), float(M), "prometheus: limited counter == %d sent" % M)
    t.eq(prom.scalar('sum(sluice_http_requests_total{job="%s",status_class="2xx"})' % JOB),
         float(N), "prometheus: 2xx requests == %d" % N)
    t.eq(prom.scalar('sum(sluice_http_requests_total{job="%s",status_class="4xx"})' % JOB),
         float(M), "prometheus: 4xx requests == %d" % M)
    share = prom.scalar(
        'sum by (limit) (sluice_ratelimit_decisions_total{job="%s",result="limited"}) / '
        'sum by (limit) (sluice_ratelimit_decisions_total{job="%s",result!="skipped"})'
        % (JOB, JOB))
    t.ok(share is not None and abs(share - M / (N + M)) < 1e-9,
         "prometheus: share limited (docs/metrics.md PromQL) == %d/%d" % (M, N + M), share)

    hist = prom.query(q_adm + "[1m]")
    vals = [float(v) for _, v in hist[0]["values"]] if len(hist) == 1 else []
    t.ok(len(vals) >= 3 and vals[0] == 0 and vals[-1] == N,
         "prometheus: admitted series goes from 0 to %d over %d scrapes" % (N, len(vals)), vals)
    t.ok(vals == sorted(vals) and any(0 < v < N for v in vals),
         "prometheus: scraped during the traffic (an intermediate value, never decreasing)",
         vals)

    prom.stop()
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=40)
