#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Unix socket listeners (issue 10, point 7, listener side): listen =
# "unix:/path" and { address = "unix:/path", mode = "0660" } next to a TCP
# address. A stale socket file is removed at start, a file that is not a
# socket (or a socket someone answers on) is refused; the socket gets its
# mode; both workers accept on it; the client is "unix:" (X-Forwarded-For,
# access log client and peer, the ip key: trusted_proxies never apply, so a
# unix client's X-Forwarded-For is not believed); the file is removed at
# exit. curl --unix-socket is used when installed, a Python AF_UNIX client
# otherwise and always.
# Client: AF_UNIX sockets, curl. Upstream: /echo. Daemon: 2 workers, a TCP
# listener and two unix ones, trusted_proxies covering all of loopback,
# a burst-1 ip limit on /one/.

import json
import os
import shutil
import socket
import stat
import subprocess

import harness as h

CONF = """\
listen = { "${listen}", { address = "unix:${sock}", mode = "0660" }, "unix:${sock2}" }
admin = "${admin}"
workers = 2
trusted_proxies = { "127.0.0.0/8" }
access_log = "${tmp}/access.log"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { one = { key = "ip", rate = 1, per = "1h", burst = 1 } }
routes = {
  { path = "/one/", upstream = "app", limits = "one" },
  { path = "/", upstream = "app" },
}
"""


class UnixConn(h.Conn):
    """harness.Conn over AF_UNIX."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.eof = False


def get(path, target="/echo", headers=()):
    with UnixConn(path) as c:
        c.send(h.request_bytes("GET", target, headers))
        return c.read_response()


def field(r, name):
    vals = [v for k, v in r.json()["headers"] if k.lower() == name]
    return vals[0] if len(vals) == 1 else vals


def main(env):
    t = env.t
    up = env.upstream("app")
    d = env.path("socks")
    os.makedirs(d, exist_ok=True)
    sock, sock2 = os.path.join(d, "sluice.sock"), os.path.join(d, "other.sock")
    # a stale socket file: bound, then its process "died" without removing it
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)
    stale.close()
    t.ok(stat.S_ISSOCK(os.lstat(sock).st_mode), "a stale socket file is in the way")
    s = env.sluice(CONF, values={"up": up.port, "sock": sock, "sock2": sock2})

    t.eq(stat.S_IMODE(os.stat(sock).st_mode), 0o660, "the socket file has mode 0660")
    r = get(sock, headers=[("X-Forwarded-For", "192.0.2.1")])
    t.eq(r.status, 200, "request over the unix socket answered")
    t.eq(field(r, "x-forwarded-for"), "192.0.2.1, unix:",
         "X-Forwarded-For: the unix client is \"unix:\"")
    t.eq(field(r, "x-forwarded-port"), [], "no X-Forwarded-Port for a unix client")
    t.eq(get(sock2).status, 200, "the second unix listener answers too")
    # many connections: both workers share one socket
    codes = [get(sock).status for _ in range(20)]
    t.eq(codes, [200] * 20, "20 connections over the shared socket")
    t.eq(h.request(s.addr, "GET", "/echo").status, 200, "the TCP listener still answers")

    # trusted_proxies do not apply: "unix:" is the key, whatever XFF says
    got = [get(sock, "/one/x", [("X-Forwarded-For", "198.51.100.%d" % i)]).status
           for i in (1, 2)]
    t.eq(got, [200, 429], "ip key of a unix client is \"unix:\", its XFF not believed")

    if shutil.which("curl"):
        p = subprocess.run(["curl", "-s", "--unix-socket", sock, "http://x/echo"],
                           capture_output=True, timeout=10)
        ok = p.returncode == 0 and json.loads(p.stdout.decode())["target"] == "/echo"
        t.ok(ok, "curl --unix-socket gets an answer", p.stderr[-300:])
    else:
        t.skip("curl --unix-socket", "curl not installed")

    path = os.path.join(s.dir, "access.log")

    def docs():
        try:
            with open(path) as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            return []
    h.wait_until(lambda: len(docs()) >= 24, 5)
    t.ok(any(dd["client"] == "unix:" and dd.get("peer") == "unix:" for dd in docs()),
         "access log: client and peer \"unix:\"")

    # a second daemon on the same path: refused, the file left alone
    s2 = env.sluice(CONF.replace("${listen}", "127.0.0.1:${p2}").replace("${admin}",
                                                                           "127.0.0.1:${a2}"),
                    name="second", start=False,
                    values={"up": up.port, "sock": sock, "sock2": sock + ".x",
                            "p2": h.free_port(), "a2": h.free_port()})
    try:
        s2.start(timeout=5)
        t.ok(False, "a second daemon on a socket in use is refused")
    except RuntimeError:
        t.ok("another process is listening on" in s2.stderr_text(),
             "a second daemon on a socket in use is refused", s2.stderr_text()[-300:])
    t.eq(get(sock).status, 200, "... and the first still answers on it")

    s.stop()
    t.ok(not os.path.exists(sock) and not os.path.exists(sock2),
         "the socket files are removed at exit")

    # a regular file at the path is not ours to remove
    with open(sock, "w") as f:
        f.write("not a socket")
    s3 = env.sluice(CONF, name="third", start=False,
                    values={"up": up.port, "sock": sock, "sock2": sock2})
    try:
        s3.start(timeout=5)
        t.ok(False, "a file that is not a socket is refused")
    except RuntimeError:
        t.ok("exists and is not a socket" in s3.stderr_text(),
             "a file that is not a socket is refused", s3.stderr_text()[-300:])
    t.ok(os.path.isfile(sock), "... and left where it was")


if __name__ == "__main__":
    h.run(main, time_limit=90)
