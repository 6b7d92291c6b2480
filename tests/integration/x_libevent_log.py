#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Regression (deployment probe, libevent's own messages bypass error_log):
# with error_log set to a file, evdns wrote "[msg] Nameserver 127.0.0.1:N
# has failed: request timed out." and "[msg] All nameservers have failed"
# raw to stderr, without time or level. libevent's messages now go through
# sluice's log: "<time> warn libevent: Nameserver ... has failed: ..." in the
# error log file, nothing raw on stderr.
# Client: none needed (the resolver asks at start). Upstream: a host name.
# DNS: a UDP socket of the test's that never answers. Daemon: 1 worker,
# resolver timeout 1s, error_log to a file.

import os
import re
import socket

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
error_log = "${tmp}/error.log"
resolver = { servers = { "127.0.0.1:${dns}" }, valid = "1s", timeout = "1s" }
upstreams = { app = { servers = { "api.sluice.test:${up}" } } }
routes = { { path = "/", upstream = "app" } }
"""

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def main(env):
    t = env.t
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing, answers nothing
    dead.bind(("127.0.0.1", 0))
    env.at_exit(dead.close)
    dns_port = dead.getsockname()[1]
    s = env.sluice(CONF, values={"dns": dns_port, "up": h.free_port()})
    error_log = os.path.join(s.dir, "error.log")

    def log_text():
        try:
            with open(error_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    failed = re.compile(r"^%s warn libevent: Nameserver 127\.0\.0\.1:%d has failed: .+$"
                        % (STAMP, dns_port), re.M)
    all_failed = re.compile(r"^%s warn libevent: All nameservers have failed$" % STAMP, re.M)
    h.wait_until(lambda: failed.search(log_text()) and all_failed.search(log_text()), 15)
    text = log_text()
    t.ok(failed.search(text), "error log: evdns's nameserver failure, in sluice's format",
         text[-2000:])
    t.ok(all_failed.search(text), "error log: evdns's all-nameservers-failed, in sluice's format",
         text[-2000:])
    t.ok(not re.search(r"^\[(debug|msg|warn|err)\] ", text, re.M),
         "error log: no line in libevent's own format", text[-2000:])
    s.stop()
    err = s.stderr_text()
    t.ok(not re.search(r"^\[(debug|msg|warn|err)\] ", err, re.M),
         "stderr: no raw libevent line", err[-2000:])


if __name__ == "__main__":
    h.run(main, time_limit=60)
