#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Startup and conf checking from the command line (issue 2, point 2):
# `sluice -t -c FILE` prints "configuration OK" and exits 0 for a good file,
# and for a bad one prints a "file:line: message" for every error on stderr
# and exits 1; `-v` prints the version, `-h` the usage.
# Client: none (the CLI only). Upstream: none. Confs: written below, one
# error kind per file, each on a known line.

import os
import re

import harness as h

GOOD = """\
-- a complete conf using every top-level key
listen = { "127.0.0.1:18080", "127.0.0.1:18081" }
admin = "127.0.0.1:19901"
workers = 2
trusted_proxies = { "10.0.0.0/8", "192.168.0.1" }
shutdown_timeout = "5s"
access_log = "off"
error_log = "stderr"
client = { header_timeout = "1s", body_timeout = "2s", idle_timeout = "3s",
           max_header_size = "8k", max_uri_size = "4k", max_headers = 50,
           max_body_size = "1m", max_connections = 100 }
store = { kind = "local" }
upstreams = {
  api = { servers = { "127.0.0.1:9000", "127.0.0.1:9001" }, keepalive = 8,
          connect_timeout = "500ms", timeout = "10s", idle_timeout = "30s",
          max_inflight = 64, queue = 128 },
}
limits = {
  per_ip = { key = "ip", rate = 100, per = "1s", burst = 200 },
}
routes = {
  { path = "/v1/", upstream = "api", limits = { "per_ip" } },
  { host = "example.com", path = "/", upstream = "api" },
  { path = "/", upstream = "api" },
}
"""

# A valid base; each bad case replaces one line of it (1-based), so the
# expected line number is known exactly.
BASE = [
    'listen = "127.0.0.1:18080"',                                       # 1
    'admin = "127.0.0.1:19901"',                                        # 2
    'workers = 1',                                                      # 3
    'client = { header_timeout = "1s" }',                               # 4
    'upstreams = { api = { servers = { "127.0.0.1:9000" } } }',         # 5
    'routes = { { path = "/", upstream = "api" } }',                    # 6
    '-- end',                                                           # 7
]

BAD = [
    ("unknown top-level key", 3, 'wrokers = 1'),
    ("unknown key in client", 4, 'client = { header_timout = "1s" }'),
    ("bad duration unit", 4, 'client = { header_timeout = "10x" }'),
    ("duration without unit", 4, 'client = { header_timeout = "10" }'),
    ("bad size", 4, 'client = { max_header_size = "lots" }'),
    ("wrong type for workers", 3, 'workers = { 1 }'),
    ("bad listen address", 1, 'listen = "127.0.0.1:99999"'),
    ("bad listen host", 1, 'listen = "not an address"'),
    ("bad upstream server address", 5,
     'upstreams = { api = { servers = { "127.0.0.1:70000" } } }'),
    ("unknown key in upstream", 5,
     'upstreams = { api = { servers = { "127.0.0.1:9000" }, keepalives = 3 } }'),
    ("route to an unknown upstream", 6, 'routes = { { path = "/", upstream = "nope" } }'),
    ("unknown key in route", 6, 'routes = { { path = "/", upstream = "api", hots = "a" } }'),
    ("lua syntax error", 3, 'workers = = 1'),
    ("sandbox: no os", 3, 'workers = os.getenv("HOME") and 1'),
    ("sandbox: no io", 3, 'workers = io.open("/etc/passwd") and 1'),
    ("sandbox: no require", 3, 'workers = require("os") and 1'),
    ("bad access_log type", 3, 'access_log = 42'),
    ("bad shutdown_timeout", 3, 'shutdown_timeout = "soon"'),
    ("bad store kind", 3, 'store = { kind = "memcached" }'),
    ("bad max_headers type", 4, 'client = { max_headers = "many" }'),
]


def conf_with(lineno, text):
    lines = list(BASE)
    lines[lineno - 1] = text
    return "\n".join(lines) + "\n"


def main(env):
    t = env.t

    rc, out, err = h.run_cli(["-v"])
    t.eq(rc, 0, "-v exits 0")
    t.ok(re.search(r"\d+\.\d+\.\d+", out + err), "-v prints a version number",
         "stdout %r stderr %r" % (out, err))

    rc, out, err = h.run_cli(["-h"])
    t.eq(rc, 0, "-h exits 0")
    usage = out + err
    t.ok("-c" in usage and "-t" in usage, "-h usage mentions -c and -t", usage)

    rc, out, err = h.run_cli(["--no-such-option"])
    t.ok(rc != 0, "an unknown option exits non-zero", "exit %d" % rc)

    good = env.path("good.conf")
    with open(good, "w") as f:
        f.write(GOOD)
    rc, out, err = h.run_cli(["-t", "-c", good])
    t.eq(rc, 0, "-t on a good conf exits 0")
    t.ok("configuration OK" in out + err, "-t on a good conf prints 'configuration OK'",
         "stdout %r stderr %r" % (out, err))

    base = env.path("base.conf")
    with open(base, "w") as f:
        f.write("\n".join(BASE) + "\n")
    rc, out, err = h.run_cli(["-t", "-c", base])
    t.ok(rc == 0 and "configuration OK" in out + err, "the base of the bad cases is valid",
         "exit %d stdout %r stderr %r" % (rc, out, err))

    shipped = os.path.join(h.source_dir(), "conf", "sluice.conf")
    if os.path.exists(shipped):
        rc, out, err = h.run_cli(["-t", "-c", shipped])
        t.ok(rc == 0 and "configuration OK" in out + err, "-t on conf/sluice.conf",
             "exit %d stderr %r" % (rc, err))
    else:
        t.ok(False, "conf/sluice.conf exists", shipped)

    rc, out, err = h.run_cli(["-t", "-c", env.path("missing.conf")])
    t.eq(rc, 1, "-t on a missing file exits 1")
    t.ok("missing.conf" in err, "-t on a missing file names it on stderr", err)

    for i, (label, lineno, text) in enumerate(BAD):
        path = env.path("bad%02d.conf" % i)
        with open(path, "w") as f:
            f.write(conf_with(lineno, text))
        rc, out, err = h.run_cli(["-t", "-c", path])
        want = "%s:%d: " % (path, lineno)
        lines = [ln for ln in err.splitlines() if ln.startswith(path + ":")]
        t.ok(rc == 1 and want in err,
             "%s: exit 1 and '%s:%d: ...' on stderr" % (label, os.path.basename(path), lineno),
             "exit %d, stderr %r" % (rc, err))
        t.ok("configuration OK" not in out + err, "%s: no 'configuration OK'" % label)
        t.ok(lines and all(re.match(re.escape(path) + r":\d+: \S", ln) for ln in lines),
             "%s: every error line reads file:line: message" % label, err)

    # every error is reported, not just the first
    lines = list(BASE)
    lines[2] = 'workers = { 1 }'
    lines[3] = 'client = { header_timeout = "10x" }'
    lines[5] = 'routes = { { path = "/", upstream = "nope" } }'
    path = env.path("multi.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    rc, out, err = h.run_cli(["-t", "-c", path])
    t.eq(rc, 1, "three errors: exit 1")
    for ln in (3, 4, 6):
        t.ok("%s:%d: " % (path, ln) in err, "three errors: line %d reported" % ln, err)

    # a conf that -t accepts also starts and answers /healthz
    s = env.sluice(BASE_RUN)
    t.ok(s.healthy(), "daemon started from a checked conf answers /healthz")
    s.stop()


BASE_RUN = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
upstreams = { api = { servers = { "127.0.0.1:9" } } }
routes = { { path = "/", upstream = "api" } }
"""

if __name__ == "__main__":
    h.run(main, time_limit=60)
