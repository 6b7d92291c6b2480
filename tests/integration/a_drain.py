#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Graceful drain (issue 2, point 6): on SIGTERM or SIGINT sluice stops
# accepting, finishes the requests in flight within shutdown_timeout, and
# exits 0; a request still running at shutdown_timeout does not hold the
# process longer; idle keep-alive connections do not delay the exit.
# Client: raw connections. Upstream: /slow?ms=N and /hang.
# Daemon: shutdown_timeout 5s (then 1s for the bound).

import signal
import socket
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
shutdown_timeout = "${grace}"
client = { header_timeout = "2s", idle_timeout = "30s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "30s" } }
routes = { { path = "/", upstream = "app" } }
"""


def connect_refused(addr):
    try:
        socket.create_connection(h.split_addr(addr), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def main(env):
    t = env.t
    up = env.upstream("app")

    # 1. in-flight request completes, new connections refused, exit 0
    s = env.sluice(CONF, name="drain", values={"up": up.port, "grace": "5s"})
    idle = h.Conn(s.addr)
    env.at_exit(idle.close)
    idle.send(h.request_bytes("GET", "/echo"))
    t.eq(idle.read_response().status, 200, "idle keep-alive connection served once")

    c = h.Conn(s.addr, timeout=10)
    env.at_exit(c.close)
    n0 = up.snapshot()[0]
    c.send(h.request_bytes("GET", "/slow?ms=1500"))
    t.ok(up.wait_requests(n0 + 1, 3) > n0, "slow request reached the upstream")
    t_sig = time.monotonic()
    s.signal(signal.SIGTERM)

    stopped = h.wait_until(lambda: connect_refused(s.addr), 1.0, 0.05)
    t.ok(stopped, "after SIGTERM new connections are refused within 1s")
    t.ok(h.wait_until(lambda: not idle.is_open(0.01), 1.0, 0.05),
         "idle keep-alive connection is closed by the drain")

    r = c.read_response(timeout=5)
    t.eq(r.status, 200, "in-flight request completes during the drain")
    t.ok(r.complete, "its body is complete", repr(r))
    code = s.wait_exit(4)
    elapsed = time.monotonic() - t_sig
    t.ok(code is not None, "daemon exits once the in-flight request is done",
         "still running %.1fs after SIGTERM" % elapsed)
    t.ok(code is not None and elapsed < 4.0,
         "exit does not wait for the whole shutdown_timeout (%.1fs)" % elapsed)
    s.stop()  # checks exit code 0 and sanitizers

    # 2. a request that never ends is cut at shutdown_timeout
    s = env.sluice(CONF, name="bound", values={"up": up.port, "grace": "1s"})
    c2 = h.Conn(s.addr, timeout=10)
    env.at_exit(c2.close)
    n0 = up.snapshot()[0]
    c2.send(h.request_bytes("GET", "/hang"))
    t.ok(up.wait_requests(n0 + 1, 3) > n0, "hanging request reached the upstream")
    t_sig = time.monotonic()
    s.signal(signal.SIGTERM)
    code = s.wait_exit(5)
    elapsed = time.monotonic() - t_sig
    t.ok(code is not None and elapsed < 3.0,
         "with a hanging request, exit within shutdown_timeout 1s + margin (%.1fs)" % elapsed)
    t.ok(c2.wait_closed(2), "the hanging client connection is closed")
    s.stop()

    # 3. SIGINT drains the same way
    s = env.sluice(CONF, name="sigint", values={"up": up.port, "grace": "5s"})
    t.eq(h.request(s.addr, "GET", "/echo").status, 200, "sigint daemon serves")
    s.signal(signal.SIGINT)
    code = s.wait_exit(3)
    t.ok(code is not None, "SIGINT with nothing in flight exits within 3s")
    s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
