#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Fleet-wide bound (DESIGN "Token bucket semantics", issue 3 point 7): three
# sluice processes sharing one Redis, hammered concurrently on one key for
# about 3 seconds, admit no more than burst + rate x T in total and no fewer
# than 95 % of it. T is measured around the whole run (first request sent to
# last answer), so it can only make the upper bound looser, never wrong.
# Client: 4 threads per instance, keep-alive connections, one key.
# Upstream: /echo. Daemon x3: store redis, limit rate 40 per 1s, burst 40.

import os
import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${redis}", timeout = "500ms", on_error = "deny" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
limits = { fleet = { key = "header:X-Key", rate = 40, per = "1s", burst = 40 } }
routes = { { path = "/", upstream = "app", limits = { "fleet" } } }
"""

RATE, BURST, DURATION = 40.0, 40.0, 3.0


def main(env):
    t = env.t
    if os.environ.get("SLUICE_ADDR"):
        t.skip("fleet bound", "needs three daemons: cannot attach")
        return
    up = env.upstream("app")
    redis = env.redis()
    fleet = [env.sluice(CONF, name="sluice-%d" % i, values={"up": up.port, "redis": redis.url})
             for i in range(3)]

    lock = threading.Lock()
    counts = {}
    first = [None]
    last = [0.0]
    stop_at = [0.0]
    go = threading.Event()

    def worker(addr):
        go.wait(5)
        c = None
        while time.monotonic() < stop_at[0]:
            try:
                if c is None:
                    c = h.Conn(addr, timeout=3)
                t0 = time.monotonic()
                c.send(h.request_bytes("GET", "/echo", [("X-Key", "fleet-key")]))
                r = c.read_response(timeout=3)
                t1 = time.monotonic()
                with lock:
                    if first[0] is None or t0 < first[0]:
                        first[0] = t0
                    last[0] = max(last[0], t1)
                    counts[r.status] = counts.get(r.status, 0) + 1
                if r.header("connection", "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:
                with lock:
                    counts[type(e).__name__] = counts.get(type(e).__name__, 0) + 1
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    ths = [threading.Thread(target=worker, args=(s.addr,), daemon=True)
           for s in fleet for _ in range(4)]
    for th in ths:
        th.start()
    stop_at[0] = time.monotonic() + DURATION
    go.set()
    for th in ths:
        th.join(DURATION + 10)
    T = last[0] - first[0] if first[0] else 0
    admitted = counts.get(200, 0)
    bound = BURST + RATE * T
    t.note("T %.2fs, statuses %s, bound %.1f" % (T, counts, bound))
    t.ok(sum(v for k, v in counts.items() if k != 200) > admitted,
         "the load exceeded the limit (more refused than admitted)", counts)
    t.ok(set(counts) <= {200, 429}, "only 200 and 429 answers", counts)
    t.ok(admitted <= bound, "admitted %d <= burst + rate x T = %.1f" % (admitted, bound))
    t.ok(admitted >= 0.95 * bound, "admitted %d >= 95%% of %.1f" % (admitted, bound))
    t.eq(up.snapshot()[0], admitted, "upstream saw exactly the admitted requests")
    per = [h.request(s.addr, "GET", "/echo").status for s in fleet]
    t.eq(per, [200, 200, 200], "all three instances still serve")
    for s in fleet:
        s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
