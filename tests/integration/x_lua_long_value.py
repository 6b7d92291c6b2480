#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Issue 12, point 2: a key function's string library calls run in C, where
# the instruction budget does not see them; the trim idiom on a header of
# 15,000 spaces cost about 0.5 s of worker CPU per request, and requests
# behind it waited. Values now reach Lua cut to lua_max_value_size (1 KiB).
# Client: requests with a 15,000-space header, then an unrelated request.
# Daemon: 1 worker, a limit keyed by a function that trims X-Spaces.
# Upstream: /echo. The bound is a count: the daemon's CPU ticks
# (/proc/PID/stat) over the long requests, far below 0.5 s each; the
# unrelated request's latency is printed, not asserted.

import time

import harness as h

REQUESTS = 8
# Uncut, each request burns ~50 ticks; cut to 1 KiB, well under one.
MAX_TICKS = 60

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
local function trimmed(r)
  local v = r.header["x-spaces"]
  return v and (v:match("^%s*(.-)%s*$$") .. "|" .. #v) or nil
end
limits = { trim = { key = trimmed, rate = 1000, per = "1s" } }
routes = { { path = "/", upstream = "app", limits = "trim" } }
"""


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main(env):
    t = env.t
    up = env.upstream("up")
    s = env.sluice(CONF, values={"up": up.port})
    # sluice trims the ends of a field value: the spaces go inside
    spaces = "a" + " " * 15000 + "b"
    t0 = cpu_ticks(s.pid)
    with h.Conn(s.addr, timeout=30) as c:
        for _ in range(REQUESTS):
            c.send(h.request_bytes("GET", "/echo", headers=[("X-Spaces", spaces)]))
            r = c.read_response(timeout=30)
            t.eq(r.status, 200, "a request with 15,000 spaces in a keyed header is served")
    ticks = cpu_ticks(s.pid) - t0
    t.note("%d requests: %d CPU ticks" % (REQUESTS, ticks))
    t.ok(ticks <= MAX_TICKS, "the trim idiom's CPU is bounded",
         "%d ticks for %d requests (max %d)" % (ticks, REQUESTS, MAX_TICKS))
    start = time.monotonic()
    r = h.request(s.addr, "GET", "/echo")
    t.note("an unrelated request took %.1f ms" % ((time.monotonic() - start) * 1000))
    t.eq(r.status, 200, "an unrelated request is served")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=120)
