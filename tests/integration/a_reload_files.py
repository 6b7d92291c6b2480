#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Regression (operations probe, findings 1 and 2): a reload that changed
# `error_log` or `pidfile` was silently ignored (lines kept going to the old
# file, the new pidfile was never written, and the exit removed the new path
# and left the old pidfile behind); and the restart-only warning compared
# with the last conf loaded, not with what the daemon runs.
# Now a reload applies both: the error log is reopened at its new path (one
# that cannot be opened refuses the whole reload, the old file keeps the
# lines), the new pidfile is written and the old one removed; the exit
# removes the pidfile that was written. The warning names a `listen` that
# differs from the one bound at start, for as long as it differs.
# Client: none but /metrics. Upstream: the harness upstream. Daemon: one
# worker, its error log and pidfile in its dir, reloaded by SIGHUP.

import os

import harness as h

CONF = """\
listen = "%(listen)s"
admin = "${admin}"
workers = 1
access_log = "off"
error_log = "%(errlog)s"
pidfile = "%(pidfile)s"
shutdown_timeout = "5s"
upstreams = { up = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "up" } }
"""

WARNING = "take effect at the next restart"


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def reloads(s, result):
    return h.metric(h.scrape(s.admin), "sluice_config_reloads_total", result=result) or 0


def reload(t, s, conf, result, label):
    """Reloads with conf (a dict for CONF) and waits for the outcome."""
    n0 = reloads(s, result)
    s.reload(CONF % conf)
    t.ok(h.wait_until(lambda: reloads(s, result) == n0 + 1, 8),
         "%s: counted as a %s" % (label, result), s.stderr_text()[-1000:])


def check_files(t, s, conf):
    old_log, old_pid = conf["errlog"], conf["pidfile"]
    t.ok(h.wait_until(lambda: os.path.exists(old_pid), 5), "the daemon wrote its pidfile")

    conf["errlog"] = os.path.join(s.dir, "error2.log")
    conf["pidfile"] = os.path.join(s.dir, "sluice2.pid")
    reload(t, s, conf, "success", "a reload that moves error_log and pidfile")
    t.ok(h.wait_until(lambda: "reloaded" in read(conf["errlog"]), 5),
         "the reload's line goes to the new error log", read(conf["errlog"]))
    t.ok("reloaded" not in read(old_log), "and not to the old one", read(old_log))
    t.eq(read(conf["pidfile"]), "%d\n" % s.pid, "the new pidfile holds the pid")
    t.ok(not os.path.exists(old_pid), "the old pidfile is removed")

    good = dict(conf)
    conf["errlog"] = os.path.join(s.dir, "no-such-dir", "error.log")
    conf["pidfile"] = os.path.join(s.dir, "sluice3.pid")
    reload(t, s, conf, "failure", "a reload whose error_log cannot be opened")
    log = read(good["errlog"])
    t.ok("refused" in log and "no-such-dir" in log,
         "is refused, and the running error log says why", log[-1000:])
    t.ok(not os.path.exists(conf["pidfile"]), "its pidfile is not written")
    t.ok(os.path.exists(good["pidfile"]), "the running pidfile stays")
    return good


def check_warning(t, s, conf, other):
    errlog = conf["errlog"]
    n0 = read(errlog).count(WARNING)
    reload(t, s, conf, "success", "a reload with the same listen")
    t.eq(read(errlog).count(WARNING), n0, "no restart-only warning")

    moved = dict(conf, listen="127.0.0.1:%d" % other)
    reload(t, s, moved, "success", "a reload with another listen")
    t.eq(read(errlog).count(WARNING), n0 + 1, "the restart-only warning")
    reload(t, s, moved, "success", "the same conf again (the new listen still unbound)")
    t.eq(read(errlog).count(WARNING), n0 + 2, "still warns")
    reload(t, s, conf, "success", "back to the listen in effect")
    t.eq(read(errlog).count(WARNING), n0 + 2, "does not warn")


def main(env):
    t = env.t
    up = env.upstream()
    s = env.sluice("", values={"up": up.port}, start=False)
    conf = {"listen": s.addr, "errlog": os.path.join(s.dir, "error.log"),
            "pidfile": os.path.join(s.dir, "sluice.pid")}
    s.write_conf(CONF % conf)
    s.start()

    conf = check_files(t, s, conf)
    check_warning(t, s, conf, h.free_port())

    s.stop()
    t.ok(not os.path.exists(conf["pidfile"]), "at exit the pidfile written is removed")
    t.ok(not [n for n in os.listdir(s.dir) if n.endswith(".pid")], "and no other is left",
         os.listdir(s.dir))


if __name__ == "__main__":
    h.run(main, time_limit=90)
