#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Issue 12, point 1: out of file descriptors, accept() fails with EMFILE and
# the connection stays in the kernel's queue. libevent's default retried at
# once, so workers spun on accept() and wrote a line per try. Now accepting
# pauses with a back-off, one line per interval counts the failures, and the
# soft RLIMIT_NOFILE is checked against max_connections at start.
# Client: more idle raw connections than the daemon has descriptors, and a
# few to the admin listener, then one request after they close. Daemon: 2 workers under RLIMIT_NOFILE
# 128:128 (a warning at start), then a daemon under 256:hard (raised).
# Upstream: /echo. Bounds are counts: CPU ticks from /proc/PID/stat and
# error-log lines over a few seconds, both far below what a spin gives.

import os
import resource
import socket
import time

import harness as h

NOFILE = 128
IDLE_CLIENTS = 300
WINDOW_S = 3.0
# A spinning worker burns ~100 ticks per second; the back-off, next to none.
MAX_TICKS = 60
MAX_ACCEPT_LINES = 10

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
client = { header_timeout = "60s", idle_timeout = "60s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "app" } }
"""


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def soft_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def accept_lines(s):
    return [ln for ln in s.stderr_text().splitlines() if "accept" in ln]


def limit_nofile(soft, hard):
    def fn():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return fn


def open_idle(addr, n):
    socks = []
    host, port = h.split_addr(addr)
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        socks.append(s)
    return socks


def exhaustion(env, up):
    t = env.t
    s = env.sluice(CONF, name="low", values={"up": up.port},
                   preexec_fn=limit_nofile(NOFILE, NOFILE))
    t.ok("open files limit is %d (hard limit %d)" % (NOFILE, NOFILE) in s.stderr_text(),
         "start: a warning names the low open files limit", s.stderr_text()[-2000:])
    r = h.request(s.addr, "GET", "/echo")
    t.eq(r.status, 200, "a request is served before the flood")

    idle = open_idle(s.addr, IDLE_CLIENTS)
    try:
        # the descriptors run out: wait until a failure was logged
        h.wait_until(lambda: "Too many open files" in s.stderr_text(), 10, 0.1)
        t.ok("Too many open files" in s.stderr_text(), "accept() ran out of descriptors",
             s.stderr_text()[-2000:])
        # the admin listener (evhttp, on the main thread) must not spin either
        idle += open_idle(s.admin, 3)
        ticks0, lines0 = cpu_ticks(s.pid), len(accept_lines(s))
        time.sleep(WINDOW_S)
        ticks, lines = cpu_ticks(s.pid) - ticks0, len(accept_lines(s)) - lines0
        t.note("over %.0f s: %d CPU ticks, %d accept lines" % (WINDOW_S, ticks, lines))
        t.ok(ticks <= MAX_TICKS, "idle under exhaustion: CPU ticks bounded",
             "%d ticks in %.0f s (max %d)" % (ticks, WINDOW_S, MAX_TICKS))
        t.ok(lines <= MAX_ACCEPT_LINES, "idle under exhaustion: log lines bounded",
             "%d lines in %.0f s (max %d)" % (lines, WINDOW_S, MAX_ACCEPT_LINES))
        counted = [ln for ln in accept_lines(s) if "failed accepts since the last line" in ln]
        t.ok(counted, "the log line counts the failed accepts", "\n".join(accept_lines(s)[:5]))
    finally:
        for c in idle:
            c.close()

    def served():
        try:
            return h.request(s.addr, "GET", "/echo", timeout=2).status == 200
        except (OSError, h.NoResponse, h.Timeout):
            return False
    t.ok(h.wait_until(served, 15, 0.2), "after the idle clients close, a request is served")
    t.ok(h.wait_until(s.healthy, 15, 0.2), "and the admin listener answers again")
    s.stop()


def raised(env, up):
    t = env.t
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 12000:
        t.skip("soft limit raised", "hard limit %d is below what the conf needs" % hard)
        return
    conf = CONF.replace('header_timeout = "60s", ', "")
    s = env.sluice(conf, name="raise", values={"up": up.port},
                   preexec_fn=limit_nofile(256, hard))
    soft = soft_nofile(s.pid)
    t.ok(soft is not None and soft >= 10000,
         "start: the soft limit is raised for max_connections", "soft limit %r" % soft)
    t.ok("open files limit raised from 256" in s.stderr_text(), "start: the raise is logged",
         s.stderr_text()[-2000:])
    s.stop()


def main(env):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < IDLE_CLIENTS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE_CLIENTS + 200), hard))
    up = env.upstream("up")
    exhaustion(env, up)
    raised(env, up)


if __name__ == "__main__":
    h.run(main, time_limit=120)
