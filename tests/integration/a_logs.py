#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Logs (issue 2, point 7): one JSON access-log line per request with time,
# client, method, path, status, bytes_in, bytes_out, duration_ms, upstream_ms,
# upstream, request_id, trace_id; a separate error log; SIGUSR1 reopens both
# after a rename (log rotation); access_log = "stderr" also works.
# Client: raw requests (GET with X-Request-Id and traceparent, POST with a
# body, a 404). Upstream: /echo, /slow. Daemon: access and error log files.

import json
import os
import signal
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "${access}"
error_log = "${error}"
client = { header_timeout = "2s" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, timeout = "5s" } }
routes = { { path = "/app/", upstream = "app" }, { path = "/echo", upstream = "app" },
           { path = "/slow", upstream = "app" } }
"""

FIELDS = ("time", "client", "method", "path", "status", "bytes_in", "bytes_out",
          "duration_ms", "upstream_ms", "upstream", "request_id", "trace_id")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = "00-%s-00f067aa0ba902b7-01" % TRACE


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return []


def wait_lines(path, n, timeout=4.0):
    """Access logs are buffered (flushed about once a second): poll."""
    h.wait_until(lambda: len(read_lines(path)) >= n, timeout, 0.05)
    return read_lines(path)


def parse(t, lines, label):
    docs = []
    for ln in lines:
        try:
            docs.append(json.loads(ln))
        except ValueError:
            t.ok(False, "%s: every line is JSON" % label, ln)
            return docs
    t.ok(True, "%s: every line is JSON" % label)
    return docs


def find(docs, pred):
    for d in docs:
        if pred(d):
            return d
    return None


def main(env):
    t = env.t
    up = env.upstream("app")
    d = env.path("sluice")
    access = os.path.join(d, "access.log")
    error = os.path.join(d, "error.log")
    s = env.sluice(CONF, values={"up": up.port, "access": access, "error": error})

    t0 = time.time()
    get = h.request_bytes("GET", "/echo?x=1", [("X-Request-Id", "req-log-1"),
                                                ("traceparent", TP)])
    with h.Conn(s.addr) as c:
        c.send(get)
        r1 = c.read_response()
        t.eq(r1.status, 200, "GET /echo answered")
        body = b"z" * 1234
        post = h.request_bytes("POST", "/app/upload", [("X-Request-Id", "req-log-2")], body)
        c.send(post)
        r2 = c.read_response()
        t.eq(r2.status, 200, "POST /app/upload answered")
        c.send(h.request_bytes("GET", "/nothing-here", [("X-Request-Id", "req-log-3")]))
        r3 = c.read_response()
        t.eq(r3.status, 404, "GET /nothing-here is 404")

    lines = wait_lines(access, 3)
    t.eq(len(lines), 3, "three requests give three access-log lines")
    docs = parse(t, lines, "access log")

    g = find(docs, lambda x: x.get("request_id") == "req-log-1")
    t.ok(g is not None, "line for the GET found by request_id", lines)
    if g:
        missing = [f for f in FIELDS if f not in g]
        t.ok(not missing, "GET line has every field", "missing %s in %r" % (missing, g))
        t.eq(g.get("method"), "GET", "GET line: method")
        t.ok(str(g.get("path", "")).startswith("/echo"), "GET line: path", g.get("path"))
        t.eq(g.get("status"), 200, "GET line: status")
        t.ok(str(g.get("client", "")).startswith("127.0.0.1"), "GET line: client address",
             g.get("client"))
        t.eq(g.get("trace_id"), TRACE, "GET line: trace_id from the traceparent sent")
        t.eq(g.get("upstream"), up.addr, "GET line: upstream address")
        t.ok(isinstance(g.get("bytes_in"), int) and g["bytes_in"] >= len(get),
             "GET line: bytes_in >= request size %d" % len(get), g.get("bytes_in"))
        t.ok(isinstance(g.get("bytes_out"), int) and g["bytes_out"] >= len(r1.body),
             "GET line: bytes_out >= body size %d" % len(r1.body), g.get("bytes_out"))
        t.ok(isinstance(g.get("duration_ms"), (int, float)) and g["duration_ms"] >= 0,
             "GET line: duration_ms is a number", g.get("duration_ms"))
        t.ok(isinstance(g.get("upstream_ms"), (int, float)) and 0 <= g["upstream_ms"]
             <= g["duration_ms"] + 1, "GET line: 0 <= upstream_ms <= duration_ms",
             (g.get("upstream_ms"), g.get("duration_ms")))
        tv = g.get("time")
        ok_time = False
        if isinstance(tv, (int, float)):
            ok_time = abs(tv - t0) < 60
        elif isinstance(tv, str):
            ok_time = tv[:4].isdigit() and ("T" in tv or " " in tv)
        t.ok(ok_time, "GET line: time is the current time", tv)

    p = find(docs, lambda x: x.get("request_id") == "req-log-2")
    t.ok(p is not None, "line for the POST found by request_id", lines)
    if p:
        t.eq(p.get("method"), "POST", "POST line: method")
        t.ok(isinstance(p.get("bytes_in"), int) and p["bytes_in"] >= len(post),
             "POST line: bytes_in counts head and body (>= %d)" % len(post), p.get("bytes_in"))
        tid = p.get("trace_id")
        t.ok(isinstance(tid, str) and len(tid) == 32 and tid != TRACE,
             "POST line: a trace_id was started for it", tid)

    n = find(docs, lambda x: x.get("status") == 404)
    t.ok(n is not None, "the 404 is logged too", lines)
    if n:
        t.ok(str(n.get("path", "")).startswith("/nothing-here"), "404 line: path", n)

    t.ok(os.path.exists(error), "error log file exists")
    t.ok(not any(ln.lstrip().startswith("{\"time\"") and "request_id" in ln
                 for ln in read_lines(error)), "access lines do not go to the error log")

    # rotation: rename, SIGUSR1, new lines go to a new file
    os.rename(access, access + ".1")
    os.rename(error, error + ".1")
    s.signal(signal.SIGUSR1)
    reopened = h.wait_until(lambda: os.path.exists(error) or os.path.exists(access), 3, 0.05)
    t.ok(reopened, "SIGUSR1 reopens the logs (a new file appears)")
    for i in range(3):
        t.eq(h.request(s.addr, "GET", "/echo", [("X-Request-Id", "after-%d" % i)]).status, 200,
             "request %d after rotation" % i)
    new = wait_lines(access, 3)
    t.eq(len(new), 3, "the 3 requests after SIGUSR1 are in the new access.log")
    old = read_lines(access + ".1")
    t.ok(not any("after-" in ln for ln in old), "nothing new was written to access.log.1")
    t.eq(len(old), 3, "access.log.1 kept its 3 lines")
    t.ok(os.path.exists(error), "SIGUSR1 reopened error.log as a new file")
    t.ok(s.alive(), "daemon alive after SIGUSR1")
    s.stop()

    # access_log = "stderr"
    s2 = env.sluice(CONF, name="stderr-log", values={"up": up.port, "access": "stderr",
                                                     "error": "stderr"})
    t.eq(h.request(s2.addr, "GET", "/echo", [("X-Request-Id", "on-stderr")]).status, 200,
         "request with access_log = stderr")
    found = h.wait_until(lambda: [ln for ln in s2.stderr_text().splitlines()
                                  if "on-stderr" in ln], 4, 0.05)
    ok = False
    if found:
        try:
            ok = json.loads(found[0][found[0].index("{"):]).get("request_id") == "on-stderr"
        except ValueError:
            ok = False
    t.ok(ok, "access_log = stderr writes the JSON line to stderr", s2.stderr_text()[-1000:])
    s2.stop()


if __name__ == "__main__":
    h.run(main, time_limit=60)
