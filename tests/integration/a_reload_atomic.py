#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A reload is all or nothing (issue 9, point 2): when a step that runs on a
# worker fails for the new conf, no worker switches, the error log says why
# and sluice_config_reloads_total{result="failure"} counts it. Before, each
# worker applied the new conf on its own, so one that failed kept the old conf
# while the others ran the new one.
# Client: fresh connections, spread over both SO_REUSEPORT workers.
# Upstreams: "a" and "b" (/echo names the one that answered).
# Daemons: workers = 2; one with the test hook SLUICE_FAULT_PREPARE_WORKER=1
# (worker 1 fails every reload), one whose new conf names an access log it
# cannot open (every worker fails), which then takes a good reload.

import signal
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "%s"
error_log = "stderr"
upstreams = {
  a = { servers = { "127.0.0.1:${a}" } },
  b = { servers = { "127.0.0.1:${b}" } },
}
routes = { { path = "/", upstream = "%s" }, { path = "/other/", upstream = "%s" } }
"""

FRESH = 40  # fresh connections per check: both workers get some


def answers(addr):
    """The set of upstreams that answered FRESH requests on fresh connections."""
    seen = set()
    for _ in range(FRESH):
        r = h.request(addr, "GET", "/echo")
        seen.add(r.json().get("upstream") if r.status == 200 else "status %d" % r.status)
    return seen


def reloads(s):
    m = h.scrape(s.admin)
    return (h.metric(m, "sluice_config_reloads_total", result="success"),
            h.metric(m, "sluice_config_reloads_total", result="failure"))


def refused(t, s, before, what, label):
    new = lambda: s.stderr_text()[len(before):]
    ok = h.wait_until(lambda: "refused" in new() and what in new(), 5, 0.05)
    t.ok(ok, label, "new stderr: %r" % new()[-1500:])
    time.sleep(0.3)  # a worker that switched on its own would have done so by now


def one_worker_fails(env, a, b):
    t = env.t
    s = env.sluice(CONF % ("off", "a", "b"), name="fault", values={"a": a.port, "b": b.port},
                   extra_env={"SLUICE_FAULT_PREPARE_WORKER": "1"})
    t.eq(answers(s.addr), {"a"}, "one worker fails: before the reload every request reaches a")
    before = s.stderr_text()
    s.reload(CONF % ("off", "b", "a"))
    refused(t, s, before, "worker 1: failure injected",
            "one worker fails: the error log says the reload was refused and why")
    t.eq(answers(s.addr), {"a"}, "one worker fails: every worker still answers with the old conf")
    t.eq(reloads(s), (0, 1), "one worker fails: reloads success 0, failure 1")
    s.stop()


def all_workers_fail_then_succeed(env, a, b):
    t = env.t
    s = env.sluice(CONF % ("off", "a", "b"), name="log", values={"a": a.port, "b": b.port})
    bad_log = env.path("log", "no-such-dir", "access.log")
    before = s.stderr_text()
    s.reload(CONF % (bad_log, "b", "a"))
    refused(t, s, before, "access log \"%s\"" % bad_log,
            "unopenable access log: the reload is refused, naming the file")
    t.eq(answers(s.addr), {"a"}, "unopenable access log: every worker keeps the old conf")
    t.eq(reloads(s), (0, 1), "unopenable access log: reloads success 0, failure 1")

    good_log = env.path("log", "access.log")
    s.reload(CONF % (good_log, "b", "a"))
    t.ok(h.wait_until(lambda: reloads(s)[0] == 1, 5, 0.05), "a good reload after it succeeds")
    t.eq(answers(s.addr), {"b"}, "after the good reload every worker answers with the new conf")
    t.ok(h.wait_until(lambda: open(good_log).read().count("\n") >= FRESH, 5, 0.05),
         "the new access log is written")

    # SIGHUPs faster than reloads complete: coalesced, never half-applied
    s.write_conf(CONF % ("off", "a", "b"))
    for _ in range(5):
        s.signal(signal.SIGHUP)
    t.ok(h.wait_until(lambda: answers(s.addr) == {"a"}, 5, 0.1),
         "a burst of SIGHUPs ends with every worker on the last conf")
    ok, failed = reloads(s)
    t.ok(2 <= ok <= 6 and failed == 1, "the burst counts only successes (%d, %d)" % (ok, failed))
    t.ok(s.alive(), "daemon still running")
    s.stop()


def main(env):
    a = env.upstream("a")
    b = env.upstream("b")
    one_worker_fails(env, a, b)
    all_workers_fail_then_succeed(env, a, b)


if __name__ == "__main__":
    h.run(main, time_limit=90)
