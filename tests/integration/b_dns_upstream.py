#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Upstream servers by host name (issue 10, point 1). A real DNS server,
# Debian's dnsmasq on a free loopback port, answers from a hosts file the
# test rewrites and then SIGHUPs. sluice resolves the names asynchronously
# (resolver = { servers = ..., valid = "1s" }): requests go to the address
# the name has; a changed address takes effect without a reload of sluice;
# a name unknown at start has no server (502) until the DNS knows it; with
# the DNS server gone, the last good addresses keep serving, and the failure
# is logged once; a reload naming a new host switches once it has its
# addresses; with 2 workers and no request sent, /readyz turns 200 (each
# worker takes the name's addresses on its own, not at its first request). -t takes names and refuses a malformed one at file:line.
# Client: raw requests. Upstream: two test upstreams on 127.0.0.1 and
# 127.0.0.2, the same port. Daemon: 1 worker.

import os
import shutil
import signal
import subprocess
import time

import harness as h
from upstream import Upstream

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
resolver = { servers = { "127.0.0.1:${dns}" }, valid = "1s", timeout = "1s" }
upstreams = {
  app = { servers = { "api.sluice.test:${port}" } },
  late = { servers = { "late.sluice.test:${port}" } },
}
routes = {
  { path = "/late/", upstream = "late" },
  { path = "/", upstream = "app" },
}
"""

# Two workers and only the named upstream: ready once both hold its address.
READY_CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
resolver = { servers = { "127.0.0.1:${dns}" }, valid = "1s", timeout = "1s" }
upstreams = { app = { servers = { "api.sluice.test:${port}" } } }
routes = { { path = "/", upstream = "app" } }
"""


class Dnsmasq:
    """dnsmasq answering from one hosts file, on a free loopback port."""

    def __init__(self, env, hosts):
        self.hosts = hosts
        self.port = h.free_port()
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--addn-hosts=" + hosts, "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                "--local-ttl=1", "--log-facility=" + env.path("dnsmasq.log")]
        if os.getuid() == 0:
            args.append("--user=root")  # the hosts file is in the test's 0700 dir
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(env.path("dnsmasq.err"), "w"))
        env.at_exit(self.stop)

    def write(self, text):
        with open(self.hosts + ".new", "w") as f:
            f.write(text)
        os.replace(self.hosts + ".new", self.hosts)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def served_by(s, ups, target="/echo"):
    """Which upstream of ups answers a request: its name, or the status."""
    before = [len(u.requests_since(0)) for u in ups]
    r = h.request(s.addr, "GET", target)
    if r.status != 200:
        return r.status
    for u, n in zip(ups, before):
        if len(u.requests_since(0)) > n:
            return u.name
    return "none"


def main(env):
    t = env.t
    if shutil.which("dnsmasq") is None:
        t.skip("dnsmasq upstream names", "dnsmasq not installed (Debian: dnsmasq-base)")
        return
    one = env.upstream("one")
    two = Upstream("two", one.port, "127.0.0.2").start()
    env.at_exit(two.stop)
    hosts = env.path("hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 api.sluice.test\n")
    dns = Dnsmasq(env, hosts)
    # /readyz with no request sent: a readinessProbe gates the traffic, so
    # the workers must take the name's address without it
    r = env.sluice(READY_CONF, name="sluice-ready", values={"dns": dns.port, "port": one.port})
    ready = h.wait_until(lambda: (h.admin_get(r.admin, "/readyz") or (0,))[0] == 200, 5, 0.1)
    t.ok(ready, "ready with no request sent: every worker took the name's address",
         h.admin_get(r.admin, "/readyz"))
    r.stop()
    s = env.sluice(CONF, values={"dns": dns.port, "port": one.port})

    t.eq(served_by(s, [one, two]), "one", "the name's address (127.0.0.1) gets the request")
    t.eq(served_by(s, [one, two], "/late/x"), 502, "a name the DNS does not know: 502")

    dns.write("127.0.0.2 api.sluice.test\n127.0.0.1 late.sluice.test\n")
    t.ok(h.wait_until(lambda: served_by(s, [one, two]) == "two", 8, 0.1),
         "a changed address takes effect without a reload of sluice")
    t.ok(h.wait_until(lambda: served_by(s, [one, two], "/late/x") == "one", 8, 0.1),
         "a name the DNS learned later gets its server")

    dns.write("127.0.0.1 api.sluice.test\n127.0.0.2 api.sluice.test\n127.0.0.1 late.sluice.test\n")
    t.ok(h.wait_until(lambda: {served_by(s, [one, two]) for _ in range(4)} == {"one", "two"},
                      8, 0.1), "every A record of a name becomes a server")

    # a reload naming a new host: its first answer comes before the switch
    dns.write("127.0.0.1 api.sluice.test\n127.0.0.2 api.sluice.test\n"
              "127.0.0.1 late.sluice.test\n127.0.0.2 new.sluice.test\n")
    time.sleep(0.5)  # dnsmasq has read it
    with open(s.conf_path) as f:
        conf = f.read()
    with open(s.conf_path, "w") as f:
        f.write(conf.replace('"api.sluice.test:', '"new.sluice.test:'))
    s.signal(signal.SIGHUP)
    t.ok(h.wait_until(lambda: "reloaded" in s.stderr_text(), 5, 0.05), "the reload is taken")
    t.eq([served_by(s, [one, two]) for _ in range(3)], ["two"] * 3,
         "the first requests after a reload go to the new name's address")

    dns.stop()
    time.sleep(3)  # past valid and a lookup timeout: the lookups have failed
    codes = [served_by(s, [one, two]) for _ in range(4)]
    t.eq(set(codes), {"two"}, "the DNS server gone: the last addresses keep serving")
    log = s.stderr_text()
    t.eq(log.count("resolver: new.sluice.test:"), 1,
         "the failing lookups are logged once, not at every retry")
    t.ok("keeping the last addresses" in log, "... saying the last addresses are kept",
         log[-400:])
    s.stop()

    bad = env.path("bad.conf")
    with open(bad, "w") as f:
        f.write('listen = "127.0.0.1:1"\n'
                'upstreams = {\n  app = { servers = { "-bad-.sluice.test:80" } },\n}\n'
                'routes = { { path = "/", upstream = "app" } }\n')
    rc, out, err = h.run_cli(["-t", "-c", bad])
    t.ok(rc == 1 and "%s:3: " % bad in err, "-t refuses a malformed host name at file:line", err)


if __name__ == "__main__":
    h.run(main, time_limit=90)
