#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Unix socket upstreams (issue 10, point 7, server side): servers =
# { "unix:/path" } next to a TCP server. Requests reach the unix server,
# keep-alive connections to it are reused, an HTTP/1.0 request without Host
# goes up with "Host: localhost" (a socket path is no host name), a socket
# nobody listens on is a 502 and the next request fails over; -t refuses a
# relative or too long path at its file:line.
# Client: raw requests. Upstream: the test upstream on a unix socket and on
# TCP. Daemon: 1 worker.

import os

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = {
  unix = { servers = { "unix:${sock}" } },
  both = { servers = { "unix:${gone}", "127.0.0.1:${tcp}" } },
}
routes = {
  { path = "/both/", upstream = "both" },
  { path = "/", upstream = "unix" },
}
"""


def main(env):
    t = env.t
    d = env.path("socks")
    os.makedirs(d, exist_ok=True)
    sock, gone = os.path.join(d, "app.sock"), os.path.join(d, "gone.sock")
    up = env.upstream("unix", unix_path=sock)
    tcp = env.upstream("tcp")
    s = env.sluice(CONF, values={"sock": sock, "gone": gone, "tcp": tcp.port})

    r = h.request(s.addr, "GET", "/echo")
    t.eq(r.status, 200, "a request reaches the unix socket server")
    t.eq(len(up.requests_since(0)), 1, "... which recorded it")

    with h.Conn(s.addr) as c:
        for i in range(3):
            c.send(h.request_bytes("GET", "/echo?n=%d" % i))
            t.eq(c.read_response().status, 200, "keep-alive request %d answered" % i)
    t.eq(up.connections, 1, "one upstream connection for every request so far (reused)")

    with h.Conn(s.addr) as c:
        c.send(h.request_bytes("GET", "/echo", version="HTTP/1.0", host=None))
        r = c.read_response()
    hosts = [v for k, v in r.json()["headers"] if k.lower() == "host"] if r.status == 200 else []
    t.eq(hosts, ["localhost"], "HTTP/1.0 without Host goes up with Host: localhost")

    codes = [h.request(s.addr, "GET", "/both/x").status for _ in range(2)]
    t.eq(codes, [200, 200], "a unix server nobody listens on fails over to the TCP one")
    t.ok(len(tcp.requests_since(0)) == 2, "the TCP server got both requests")
    s.stop()

    bad = env.path("bad.conf")
    for addr, why in (("unix:rel.sock", "a relative path"),
                      ("unix:/" + "x" * 120, "a path longer than sun_path")):
        with open(bad, "w") as f:
            f.write('listen = "127.0.0.1:1"\n'
                    'upstreams = {\n  app = { servers = { "%s" } },\n}\n'
                    'routes = { { path = "/", upstream = "app" } }\n' % addr)
        rc, out, err = h.run_cli(["-t", "-c", bad])
        t.ok(rc == 1 and "%s:3: " % bad in err and "bad address" in err and "unix:/absolute/path" in err,
             "-t refuses %s at its file:line" % why, err)


if __name__ == "__main__":
    h.run(main, time_limit=60)
