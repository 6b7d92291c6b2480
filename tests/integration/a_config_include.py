#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# include() and env() in the conf (issue 16, point 5). A daemon whose conf
# takes its routes and limits from conf.d/*.conf and its upstream address
# from the environment serves them; a SIGHUP re-reads the included files
# (the main file unchanged); -t names an included file and its line in an
# error, and an unset variable without a default; -T prints the values they
# gave.
# Client: raw requests. Upstream: the test upstream. Confs: written below.

import os
import signal

import harness as h

MAIN = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = { app = { servers = { env("SL_IT_UPSTREAM") } } }
limits = {}
include("conf.d/*.conf")
"""

LIMITS = """\
limits.by_ip = { key = "ip", rate = 1, per = "1h", burst = 2 }
"""

ROUTES_A = """\
routes = { { path = "/a/", upstream = "app", limits = "by_ip" } }
"""

ROUTES_AB = """\
routes = { { path = "/a/", upstream = "app", limits = "by_ip" },
           { path = "/b/", upstream = "app" } }
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def main(env):
    t = env.t
    up = env.upstream("app")
    s = env.sluice(MAIN, start=False, extra_env={"SL_IT_UPSTREAM": up.addr})
    confd = os.path.join(s.dir, "conf.d")
    os.makedirs(confd, exist_ok=True)
    write(os.path.join(confd, "10-limits.conf"), LIMITS)
    write(os.path.join(confd, "20-routes.conf"), ROUTES_A)
    s.start()

    codes = [h.request(s.addr, "GET", "/a/x").status for _ in range(3)]
    t.eq(codes, [200, 200, 429], "a route and a limit from included files are in force")
    t.eq(h.request(s.addr, "GET", "/b/x").status, 404, "no /b/ route before the reload")

    # the main file stays the same: a reload must read conf.d again
    write(os.path.join(confd, "20-routes.conf"), ROUTES_AB)
    s.signal(signal.SIGHUP)
    t.ok(h.wait_until(lambda: h.request(s.addr, "GET", "/b/x").status == 200, 5, 0.05),
         "after SIGHUP the route added to an included file is served")
    s.stop()

    # -t: errors in an included file name it and its line
    cli_env = dict(os.environ, SL_IT_UPSTREAM=up.addr)
    bad = os.path.join(confd, "30-bad.conf")
    write(bad, "\nlimits.x = { key = \"ip\", rate = 0 }\nlimits.y = = 1\n")
    rc, out, err = h.run_cli(["-t", "-c", s.conf_path], env=cli_env)
    t.ok(rc == 1 and "%s:3: " % bad in err, "-t: a syntax error in an included file is "
         "reported at its file:line", "exit %d stderr %r" % (rc, err))
    write(bad, "upstreams.app.servers = { \"127.0.0.1:70000\" }\n")
    rc, out, err = h.run_cli(["-t", "-c", s.conf_path], env=cli_env)
    t.ok(rc == 1 and "bad address" in err, "-t: a bad value set in an included file is an "
         "error", "exit %d stderr %r" % (rc, err))
    os.unlink(bad)

    # env(): unset and no default is an error at its line; -T shows the value
    rc, out, err = h.run_cli(["-t", "-c", s.conf_path],
                             env={k: v for k, v in os.environ.items() if k != "SL_IT_UPSTREAM"})
    t.ok(rc == 1 and "%s:5: " % s.conf_path in err and "env \"SL_IT_UPSTREAM\": not set" in err,
         "-t: env() of an unset variable without a default fails at its line",
         "exit %d stderr %r" % (rc, err))
    rc, out, err = h.run_cli(["-T", "-c", s.conf_path], env=cli_env)
    t.ok(rc == 0 and 'servers = { "%s" }' % up.addr in out and '"/b/"' in out,
         "-T prints the environment's value and the included routes", out + err)


if __name__ == "__main__":
    h.run(main, time_limit=60)
