#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# `sluice -T -c FILE` (issue 16, point 4): checks the conf as -t does and
# prints it on stdout with every default filled in, passwords masked, as
# conf text that itself passes -t; "configuration OK" goes to stderr so that
# stdout can be saved. A bad conf: the errors as with -t, exit 1, nothing on
# stdout. And the printed text is the same config: a daemon started from it
# enforces the conf's key-function limit.
# Client: raw requests with an X-Tenant header. Upstream: the test upstream.
# Confs: written below.

import os

import harness as h

FUNCS = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
local header = "x-tenant"
local function tenant(r) return r.header[header] end
upstreams = { app = { servers = { "${upstream}" } } }
limits = { per_tenant = { key = tenant, rate = 1, per = "1h", burst = 2 } }
routes = { { path = "/", upstream = "app", limits = "per_tenant" } }
"""

SECRET = """\
listen = "127.0.0.1:18080"
store = { kind = "redis", url = "redis://sluice:s3cr3t-pw@127.0.0.1:6379/1",
          on_error = "local" }
upstreams = { api = { servers = "127.0.0.1:9000" } }
routes = { { path = "/", upstream = "api" } }
"""

DEFAULTS = ['admin = "127.0.0.1:9901"', 'workers = "auto"', 'shutdown_timeout = "30s"',
            'header_timeout = "10s"', 'max_header_size = "16k"', 'max_connections = 10000',
            'timeout = "20ms"', 'prefix = "sluice"', 'keepalive = 64',
            'connect_timeout = "1s"', 'max_inflight = 1024', 'queue = 4096',
            'ratelimit_headers = true', 'server_timing = false']


def main(env):
    t = env.t

    secret = env.path("secret.conf")
    with open(secret, "w") as f:
        f.write(SECRET)
    rc, out, err = h.run_cli(["-T", "-c", secret])
    t.eq(rc, 0, "-T on a good conf exits 0")
    t.ok("configuration OK" in err and "configuration OK" not in out,
         "-T says 'configuration OK' on stderr, not in the printed conf", err)
    t.ok("s3cr3t-pw" not in out and "s3cr3t-pw" not in err, "-T masks the Redis password", out)
    t.ok('url = "redis://sluice:********@127.0.0.1:6379/1"' in out,
         "-T keeps the rest of the URL", out)
    missing = [d for d in DEFAULTS if d not in out]
    t.ok(not missing, "-T writes out every default", "missing %r in\n%s" % (missing, out))
    dumped = env.path("dumped.conf")
    with open(dumped, "w") as f:
        f.write(out)
    rc, out2, err2 = h.run_cli(["-t", "-c", dumped])
    t.ok(rc == 0 and "configuration OK" in out2, "the printed conf passes -t",
         "exit %d stderr %r" % (rc, err2))

    bad = env.path("bad.conf")
    with open(bad, "w") as f:
        f.write(SECRET.replace('"127.0.0.1:9000"', '"127.0.0.1:99999"'))
    rc, out, err = h.run_cli(["-T", "-c", bad])
    t.eq(rc, 1, "-T on a bad conf exits 1")
    t.ok("%s:4: " % bad in err, "-T on a bad conf prints file:line errors", err)
    t.eq(out, "", "-T on a bad conf prints no conf")

    rc, out, err = h.run_cli(["-T", "-c", env.path("missing.conf")])
    t.eq(rc, 1, "-T on a missing file exits 1")

    # the printed conf is the same config: its key function limits per tenant
    up = env.upstream("app")
    s = env.sluice(FUNCS, start=False, values={"upstream": up.addr})
    rc, out, err = h.run_cli(["-T", "-c", s.conf_path])
    t.ok(rc == 0 and "function(r) return r.header[header] end" in out,
         "-T prints the key function with its source text", out)
    s.write_conf(out)
    s.start()
    codes = [h.request(s.addr, "GET", "/", [("X-Tenant", "a")]).status for _ in range(3)]
    t.eq(codes, [200, 200, 429], "a daemon run from the printed conf limits tenant a")
    t.eq(h.request(s.addr, "GET", "/", [("X-Tenant", "b")]).status, 200,
         "... and counts tenant b apart")
    s.stop()
    os.unlink(dumped)


if __name__ == "__main__":
    h.run(main, time_limit=60)
