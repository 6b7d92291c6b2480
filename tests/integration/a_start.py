#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Regression (operations probe, findings 3 and 4).
# 3: a SIGHUP or SIGUSR1 (logrotate) during start-up killed the daemon (the
# default action), because its signal events were only in place once the
# upstream names had their first answers (up to twice the resolver's
# timeout). Now they are blocked from the start and handled once the daemon
# serves: a HUP during start-up is a reload right after it, a TERM a clean
# stop (exit 0).
# 4: with error_log set to a file, a failure at start (admin or listen port
# held by another program) went only to that file: exit 1, nothing on
# stderr, so systemd's journal showed no reason. Start-up warnings and
# errors now also go to stderr, until the daemon serves.
# Client: none but /healthz. Upstream: a host name that a name server that
# never answers (a bound UDP socket) cannot resolve. Daemon: one worker.

import os
import signal
import socket
import subprocess
import threading

import harness as h

SLOW_START = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
error_log = "stderr"
shutdown_timeout = "5s"
resolver = { servers = { "127.0.0.1:${dns}" }, timeout = "2s" }
upstreams = { api = { servers = { "api.example.test:19000" } } }
routes = { { path = "/", upstream = "api" } }
"""

FILE_LOG = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
error_log = "${tmp}/error.log"
shutdown_timeout = "5s"
upstreams = { up = { servers = { "127.0.0.1:1" } } }
routes = { { path = "/", upstream = "up" } }
"""


def mute_dns(env):
    """A UDP port that takes queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    env.at_exit(sock.close)
    return sock.getsockname()[1]


def later(s, delay, sig):
    def send():
        try:
            s.signal(sig)
        except ProcessLookupError:
            pass  # dead already: the check below says so
    timer = threading.Timer(delay, send)
    timer.start()
    return timer


def check_hup(t, env, dns):
    s = env.sluice(SLOW_START, name="hup", values={"dns": dns}, start=False)
    timers = [later(s, 1.0, signal.SIGHUP), later(s, 1.3, signal.SIGUSR1)]
    try:
        s.start(timeout=15)
    except RuntimeError as e:
        t.ok(False, "SIGHUP and SIGUSR1 during start-up: the daemon lives on", str(e))
        return
    finally:
        for timer in timers:
            timer.join()
    t.ok(s.alive(), "SIGHUP and SIGUSR1 during start-up: the daemon lives on")
    t.ok(h.wait_until(lambda: "reloaded" in s.stderr_text(), 10),
         "and reloads once started", s.stderr_text()[-1500:])
    s.stop()


def check_term(t, env, dns):
    s = env.sluice(SLOW_START, name="term", values={"dns": dns}, start=False)
    argv = [h.sluice_bin(), "-c", s.conf_path]
    with open(s.stderr_path, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        timer = threading.Timer(1.0, lambda: p.send_signal(signal.SIGTERM))
        timer.start()
        try:
            code = p.wait(20 * h.SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait(5)
        timer.join()
    text = s.stderr_text()
    t.eq(code, 0, "SIGTERM during start-up: exit 0")
    t.ok("started" in text and "sluice stopped" in text,
         "after a start and a clean stop", text[-1500:])
    t.ok(not any(m in text for m in h.SANITIZER_MARKS), "no sanitizer report", text[-1500:])


def held_port():
    """A port a plain (not SO_REUSEPORT) listener holds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


def check_stderr(t, env):
    s = env.sluice(FILE_LOG, name="files", start=False)
    errlog = os.path.join(s.dir, "error.log")
    for what in ("admin", "listen"):
        sock, port = held_port()
        env.at_exit(sock.close)
        s.values.update({what: "127.0.0.1:%d" % port})
        s.write_conf(FILE_LOG)
        rc, out, err = h.run_cli(["-c", s.conf_path], timeout=15 * h.SLOW)
        sock.close()
        del s.values[what]
        t.eq(rc, 1, "%s port held by another program: exit 1" % what)
        t.ok(" error " in err and str(port) in err,
             "%s: stderr says why, at level error" % what, err)
        with open(errlog) as f:
            t.ok(str(port) in f.read(), "%s: so does the error log" % what)

    s.write_conf(FILE_LOG)
    s.start()
    t.ok(h.wait_until(lambda: "started" in open(errlog).read(), 5), "a good start is logged")
    s.stop()
    t.ok("started" not in s.stderr_text() and "stopped" not in s.stderr_text(),
         "to the error log only", s.stderr_text())


def main(env):
    t = env.t
    dns = mute_dns(env)
    check_hup(t, env, dns)
    check_term(t, env, dns)
    check_stderr(t, env)


if __name__ == "__main__":
    h.run(main, time_limit=120)
