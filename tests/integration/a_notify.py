#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# systemd's notify protocol (issue 16, Type=notify in the shipped unit): the
# test plays the service manager, with a datagram socket named by
# $NOTIFY_SOCKET. READY=1 comes once the listener accepts (not before); a
# SIGHUP gives RELOADING=1 (with MONOTONIC_USEC) then READY=1, and so does a
# refused reload (the old conf still serves); with $WATCHDOG_USEC set the
# daemon pings WATCHDOG=1 steadily, and not at all when $WATCHDOG_PID names
# another process; SIGTERM gives STOPPING=1 before the exit.
# Client: plain GETs. Upstream: the harness upstream. Daemon: two workers.

import os
import signal
import socket
import threading
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
shutdown_timeout = "5s"
upstreams = { up = { servers = { "127.0.0.1:${up}" } } }
routes = { { path = "/", upstream = "up" } }
"""


class Manager:
    """The service manager's end: every datagram, split into fields, with the
    time it came and whether the proxy port accepted a connection then."""

    def __init__(self, path, port):
        self.path = path
        self.port = port
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _loop(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            accepting = self._accepts() if fields.get("READY") == "1" else None
            with self.lock:
                self.messages.append((time.monotonic(), fields, accepting))

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()

    def all(self):
        with self.lock:
            return list(self.messages)

    def count(self, key, since=0):
        return sum(1 for _, f, _ in self.all()[since:] if key in f)

    def keys(self, since=0):
        """The sequence of READY/RELOADING/STOPPING events, watchdog left out."""
        out = []
        for _, f, _ in self.all()[since:]:
            out += [k for k in ("RELOADING", "READY", "STOPPING") if k in f]
        return out

    def last_status(self):
        st = [f["STATUS"] for _, f, _ in self.all() if "STATUS" in f]
        return st[-1] if st else ""


def check_start(t, m):
    t.ok(h.wait_until(lambda: m.count("READY") >= 1, 10 * h.SLOW), "READY=1 at start")
    first = next(x for x in m.all() if "READY" in x[1])
    t.ok(first[2], "the listener accepts connections when READY=1 comes")
    t.ok("serving: 2 workers" in m.last_status(), "STATUS says it serves", m.last_status())


def check_watchdog(t, m):
    n0 = m.count("WATCHDOG")
    time.sleep(1.5)
    n = m.count("WATCHDOG") - n0
    # WATCHDOG_USEC is 0.5 s: a ping every 0.25 s, about 6 in 1.5 s
    t.ok(n >= 3, "WATCHDOG=1 keeps coming at half the interval", "%d pings in 1.5 s" % n)


def check_reloads(t, s, m):
    mark = len(m.all())
    os.kill(s.pid, signal.SIGHUP)
    t.ok(h.wait_until(lambda: m.keys(mark) == ["RELOADING", "READY"], 10 * h.SLOW),
         "SIGHUP: RELOADING=1 then READY=1", m.keys(mark))
    reloading = next(f for _, f, _ in m.all()[mark:] if "RELOADING" in f)
    mono = int(reloading.get("MONOTONIC_USEC", "0"))
    now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    t.ok(0 < mono <= now and now - mono < 60e6, "RELOADING=1 carries MONOTONIC_USEC", reloading)
    t.ok("reloaded" in m.last_status(), "STATUS says it reloaded", m.last_status())

    good = open(s.conf_path).read()
    with open(s.conf_path, "w") as f:
        f.write(good + "routes = 42\n")
    mark = len(m.all())
    os.kill(s.pid, signal.SIGHUP)
    t.ok(h.wait_until(lambda: m.keys(mark) == ["RELOADING", "READY"], 10 * h.SLOW),
         "a refused reload: RELOADING=1 then READY=1 (the old conf serves)", m.keys(mark))
    t.ok("refused" in m.last_status(), "STATUS says why", m.last_status())
    with open(s.conf_path, "w") as f:
        f.write(good)
    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo"))
        t.eq(c.read_response().status, 200, "and it still serves")


def check_stop(t, s, m):
    mark = len(m.all())
    os.kill(s.pid, signal.SIGTERM)
    t.eq(s.wait_exit(10 * h.SLOW), 0, "SIGTERM: drains and exits 0")
    s.stop()
    t.eq(m.keys(mark), ["STOPPING"], "STOPPING=1 before the exit")


def check_other_pid(t, env, up):
    path = env.path("notify-other")
    m = Manager(path, 0)
    env.at_exit(m.stop)
    s = env.sluice(CONF, name="other", values={"up": up.port},
                   extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000",
                              "WATCHDOG_PID": "1"})
    h.wait_until(lambda: m.count("READY") >= 1, 10 * h.SLOW)
    time.sleep(1.0)
    t.eq(m.count("WATCHDOG"), 0, "WATCHDOG_PID of another process: no pings")
    t.eq(m.count("READY"), 1, "but READY=1 all the same")
    s.stop()


def main(env):
    t = env.t
    up = env.upstream()
    path = env.path("notify")
    s = env.sluice(CONF, values={"up": up.port}, start=False,
                   extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000"})
    m = Manager(path, s.port)
    env.at_exit(m.stop)
    s.start()
    check_start(t, m)
    check_watchdog(t, m)
    check_reloads(t, s, m)
    check_stop(t, s, m)
    check_other_pid(t, env, up)


if __name__ == "__main__":
    h.run(main, time_limit=60)
