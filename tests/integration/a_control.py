#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# `sluice -s reload|reopen|stop` (issue 16, point 4): the command reads the
# daemon's pid from the conf's pidfile and signals it. reopen: after the logs
# are renamed, new lines go to new files. reload: counted in /metrics
# (sluice_config_reloads_total); a conf that does not load is refused before
# any signal is sent. stop: the daemon drains, exits 0 and removes its
# pidfile. Error cases: no pidfile key, no pidfile, stale pid, not a pid,
# unknown signal name, -s with -t. Also -v (unchanged) and -V.
# Client: plain GETs. Upstream: the harness upstream. Daemon: one worker,
# access and error logs to files in its dir, a pidfile there.

import os
import subprocess

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
error_log = "${tmp}/error.log"
pidfile = "${tmp}/sluice.pid"
shutdown_timeout = "5s"
upstreams = { up = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "up" } }
"""


def get(addr, path="/echo"):
    with h.Conn(addr) as c:
        c.send(h.request_bytes("GET", path))
        return c.read_response().status


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def reloads(s):
    return h.metric(h.scrape(s.admin), "sluice_config_reloads_total", result="success")


def control(conf, name):
    return h.run_cli(["-s", name, "-c", conf])


def check_versions(t):
    rc, out, err = h.run_cli(["-v"])
    t.ok(rc == 0 and out.startswith("sluice ") and len(out.splitlines()) == 1,
         "-v prints one 'sluice VERSION' line", out + err)
    rc, out, err = h.run_cli(["-V"])
    t.eq(rc, 0, "-V exits 0")
    for word in ("build type", "sanitizers", "default conf", "libevent", "hiredis", "LuaJIT",
                 "cJSON", "http-parser", "OpenSSL"):
        t.ok(word in out, "-V names %s" % word, out)


def check_reopen(t, s, conf):
    log = os.path.join(s.dir, "access.log")
    errlog = os.path.join(s.dir, "error.log")
    t.eq(get(s.addr), 200, "a request before the rotation")
    t.ok(h.wait_until(lambda: "/echo" in read(log), 5), "its access-log line is written")
    os.rename(log, log + ".1")
    os.rename(errlog, errlog + ".1")
    rc, out, err = control(conf, "reopen")
    t.ok(rc == 0 and out + err == "", "-s reopen exits 0 silently", "exit %d: %s" % (rc, out + err))
    h.wait_until(lambda: os.path.exists(errlog), 5)
    t.eq(get(s.addr, "/echo?after"), 200, "a request after -s reopen")
    t.ok(h.wait_until(lambda: "/echo?after" in read(log), 5),
         "its line goes to a new access.log", "new %r old %r" % (read(log), read(log + ".1")))
    t.ok("/echo?after" not in read(log + ".1"), "and not to the rotated one")
    return errlog


def check_reload(t, s, conf, errlog):
    n0 = reloads(s)
    rc, out, err = control(conf, "reload")
    t.ok(rc == 0 and out + err == "", "-s reload exits 0 silently", "exit %d: %s" % (rc, out + err))
    t.ok(h.wait_until(lambda: reloads(s) == n0 + 1, 5),
         "/metrics sluice_config_reloads_total{result=success} goes up by one",
         "before %r after %r" % (n0, reloads(s)))
    t.ok(h.wait_until(lambda: "reloaded" in read(errlog), 5),
         "the reopened error.log gets the reload's line", read(errlog))

    good = read(conf)
    with open(conf, "w") as f:
        f.write(good + "routes = 42\n")
    rc, out, err = control(conf, "reload")
    t.ok(rc == 1 and conf + ":" in err, "-s reload with a broken conf: exit 1, file:line errors",
         "exit %d: %s" % (rc, err))
    with open(conf, "w") as f:
        f.write(good)
    t.eq(reloads(s), n0 + 1, "and no signal was sent (no reload counted)")
    t.ok(s.alive(), "the daemon still runs")


def check_errors(t, env, s, conf):
    nopid = env.path("nopid.conf")
    with open(nopid, "w") as f:
        f.write("\n".join(ln for ln in read(conf).splitlines() if not ln.startswith("pidfile")))
    rc, out, err = control(nopid, "reload")
    t.ok(rc == 1 and "sets no pidfile" in err, "a conf without pidfile: exit 1, says so",
         "exit %d: %s" % (rc, err))

    rc, out, err = control(conf, "restart")
    t.ok(rc == 2 and "unknown signal" in err, "-s restart: exit 2, unknown signal",
         "exit %d: %s" % (rc, err))
    rc, out, err = h.run_cli(["-t", "-s", "reload", "-c", conf])
    t.eq(rc, 2, "-s with -t: exit 2 (usage)")
    t.ok(s.alive(), "none of these touched the daemon")


def check_stale(t, env):
    pidfile = env.path("stale", "sluice.pid")
    conf = env.path("stale", "sluice.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write('listen = "127.0.0.1:1"\npidfile = "%s"\n' % pidfile
                + 'upstreams = { up = { servers = { "127.0.0.1:2" } } }\n'
                + 'routes = { { path = "/", upstream = "up" } }\n')
    rc, out, err = control(conf, "stop")
    t.ok(rc == 1 and pidfile in err and "No such file or directory" in err,
         "no pidfile: exit 1, names it", "exit %d: %s" % (rc, err))

    # a pid that existed a moment ago and has exited: what a crash leaves
    p = subprocess.Popen(["true"])
    p.wait()
    with open(pidfile, "w") as f:
        f.write("%d\n" % p.pid)
    rc, out, err = control(conf, "reload")
    t.ok(rc == 1 and "no such process" in err and str(p.pid) in err,
         "stale pid: exit 1, 'no such process'", "exit %d: %s" % (rc, err))

    for text in ("", "0\n", "-1\n", "12abc\n"):
        with open(pidfile, "w") as f:
            f.write(text)
        rc, out, err = control(conf, "stop")
        t.ok(rc == 1 and "not a pid" in err, "pidfile %r: exit 1, not a pid" % text,
             "exit %d: %s" % (rc, err))


def main(env):
    t = env.t
    check_versions(t)
    check_stale(t, env)
    up = env.upstream()
    s = env.sluice(CONF, values={"up": up.port})
    conf = s.conf_path
    pidfile = os.path.join(s.dir, "sluice.pid")
    t.ok(h.wait_until(lambda: os.path.exists(pidfile), 5), "the daemon wrote its pidfile")

    errlog = check_reopen(t, s, conf)
    check_reload(t, s, conf, errlog)
    check_errors(t, env, s, conf)

    rc, out, err = control(conf, "stop")
    t.ok(rc == 0 and out + err == "", "-s stop exits 0 silently", "exit %d: %s" % (rc, out + err))
    code = s.wait_exit(10 * h.SLOW)
    t.eq(code, 0, "after -s stop the daemon drains and exits 0")
    s.stop()  # exit status and sanitizer reports
    t.ok(not os.path.exists(pidfile), "and removes its pidfile")
    rc, out, err = control(conf, "reload")
    t.ok(rc == 1 and "is sluice running?" in err, "-s reload once it is gone: exit 1",
         "exit %d: %s" % (rc, err))


if __name__ == "__main__":
    h.run(main, time_limit=60)
