#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A conf that spends its time inside C (issue 12, point 3): the pattern of
# the issue backtracks in string.find for tens of seconds without a Lua
# instruction. `sluice -t` refuses it with the bound's message and exit 1
# (run_cli gives up after 20 s, so an unbounded check fails this test); a
# SIGHUP to it is refused the same way while the old conf keeps serving,
# and the daemon still stops cleanly.
# Client: raw requests. Upstream: the test upstream. Confs: below.

import harness as h

GOOD = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = { app = { servers = { "${upstream}" } } }
routes = { { path = "/", upstream = "app" } }
"""

SLOW = GOOD + """\
local s = string.rep("a", 30) .. "b"
local found = s:find(string.rep("a*", 10) .. "c")
"""

WANT = "conf still running after 3000 ms, refused"


def main(env):
    t = env.t
    up = env.upstream("app")

    slow = env.path("slow.conf")
    with open(slow, "w") as f:
        f.write(SLOW.replace("${listen}", "127.0.0.1:1").replace("${admin}", "127.0.0.1:2")
                .replace("${upstream}", up.addr))
    rc, out, err = h.run_cli(["-t", "-c", slow], timeout=20)
    t.ok(rc == 1 and "%s: %s" % (slow, WANT) in err,
         "-t refuses the backtracking conf within the bound", "exit %d stderr %r" % (rc, err))

    s = env.sluice(GOOD, values={"upstream": up.addr})
    t.eq(h.request(s.addr, "GET", "/").status, 200, "the good conf serves")
    before = len(s.stderr_text())
    s.reload(SLOW)
    refused = h.wait_until(lambda: WANT in s.stderr_text()[before:], 20, 0.1)
    t.ok(refused, "a reload to the backtracking conf is refused within the bound",
         s.stderr_text()[before:])
    t.ok(s.alive(), "the daemon is still running")
    t.eq(h.request(s.addr, "GET", "/").status, 200, "the old conf keeps serving")
    t.ok(s.healthy(), "/healthz answers after the refused reload")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=90)
