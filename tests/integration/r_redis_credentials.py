#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis credentials (issue 11, point 2): an ACL user with its password in
# store.password_file, over TCP and over a unix socket; the file read again
# at reload, so a rotated password is picked up; and the password in no log
# line, no -t/-T output and no /metrics sample, even when Redis refuses it;
# a refusal after a dropped connection is logged (WRONGPASS), not hidden by
# the drop's line.
# With on_error = "deny" a failed AUTH shows as 503, so 200 plus the bucket
# in Redis proves the password reached AUTH.
# Client: single requests. Upstream: /echo. Redis: an ACL user, requirepass
# on the default user, a unix socket. Daemon: one limit on header:X-K.

import os

import harness as h

SECRET = "pw-Rot4te-me-1"
SECRET2 = "pw-Rot4te-me-2"
ADMIN_PW = "adm1n-s3cret"

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${url}", password_file = "${pwfile}", timeout = "300ms",
          on_error = "deny" }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-K", rate = 5, per = "1m" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def no_secret(t, label, *texts):
    for s in (SECRET, SECRET2):
        leaked = [x for x in texts if s in x]
        t.ok(not leaked, "%s: the password appears nowhere" % label, leaked[:1])


def main(env):
    t = env.t
    up = env.upstream("app")
    sock = env.path("redis.sock")
    redis = h.Redis(env, "redis", password=ADMIN_PW,
                    extra_args=["--unixsocket", sock, "--unixsocketperm", "700"])
    redis.start()
    redis.cmd("ACL", "SETUSER", "sl", "on", ">" + SECRET, "~*", "+@all")
    pwfile = env.path("redis.pw")
    write(pwfile, SECRET + "\n")

    # TCP and a unix socket, the same user and password file
    urls = [("TCP", "redis://sl@127.0.0.1:%d/2" % redis.port, 2),
            ("unix socket", "unix://sl@%s?db=4" % sock, 4)]
    for i, (label, url, db) in enumerate(urls):
        before = redis.cmd("DBSIZE", db=db)
        s = env.sluice(CONF, name="sluice-%d" % i,
                       values={"up": up.port, "url": url, "pwfile": pwfile})
        r = h.request(s.addr, "GET", "/echo", [("X-K", "k%d" % i)])
        t.eq(r.status, 200, "%s: ACL user with password_file admitted through redis" % label)
        t.ok(redis.cmd("DBSIZE", db=db) > before, "%s: the bucket is in db %d" % (label, db))
        s.stop()
        no_secret(t, label + " log", s.stderr_text())

    # -t and -T: the file's name, never its content
    conf = env.path("check.conf")
    write(conf, CONF.replace("${listen}", "127.0.0.1:1").replace("${admin}", "127.0.0.1:2")
          .replace("${url}", urls[0][1]).replace("${pwfile}", pwfile)
          .replace("${up}", str(up.port)))
    rc, out, err = h.run_cli(["-T", "-c", conf])
    t.eq(rc, 0, "-T exits 0")
    t.ok('password_file = "%s"' % pwfile in out, "-T prints password_file", out)
    no_secret(t, "-T", out, err)
    rc, out, err = h.run_cli(["-t", "-c", conf])
    t.eq(rc, 0, "-t exits 0")
    no_secret(t, "-t", out, err)
    # an unreadable file is a conf error at its line
    os.chmod(pwfile, 0)
    if os.geteuid() != 0:
        rc, out, err = h.run_cli(["-t", "-c", conf])
        t.ok(rc != 0 and "check.conf:5:" in err and "Permission denied" in err,
             "-t: unreadable password_file refused at file:line", err)
    os.chmod(pwfile, 0o600)
    missing = conf + ".missing"
    write(missing, open(conf).read().replace(pwfile, env.path("nope.pw")))
    rc, out, err = h.run_cli(["-t", "-c", missing])
    t.ok(rc != 0 and "check.conf.missing:5:" in err and "No such file" in err,
         "-t: missing password_file refused at file:line", err)
    # a password in the url is masked in errors
    bad = conf + ".bad"
    write(bad, open(conf).read().replace('password_file = "%s", ' % pwfile, "")
          .replace("redis://sl@127.0.0.1:%d/2" % redis.port,
                   "redis://sl:%s@127.0.0.1:99999/2" % SECRET))
    rc, out, err = h.run_cli(["-t", "-c", bad])
    t.ok(rc != 0 and "bad port" in err, "-t: bad url refused", err)
    no_secret(t, "-t error", out, err)

    # rotation: the password changes in Redis and in the file; a reload reads it
    s = env.sluice(CONF, name="sluice-rotate",
                   values={"up": up.port, "url": urls[0][1], "pwfile": pwfile})
    t.eq(h.request(s.addr, "GET", "/echo", [("X-K", "r1")]).status, 200,
         "rotation: admitted with the first password")
    redis.cmd("ACL", "SETUSER", "sl", "resetpass", ">" + SECRET2)
    redis.cmd("CLIENT", "KILL", "USER", "sl")
    # the old password is refused now: on_error deny answers 503
    ok = h.wait_until(lambda: h.request(s.addr, "GET", "/echo", [("X-K", "r2")]).status == 503,
                      5)
    # past the drop itself: reconnections with the old password keep failing
    ok = ok and not h.wait_until(
        lambda: h.request(s.addr, "GET", "/echo", [("X-K", "r2")]).status != 503, 0.5)
    t.ok(ok, "rotation: the old password is refused (503 with on_error deny)")
    # the outage was logged for the drop first; the refusal that follows is
    # the line that says what to fix, so it is logged too
    ok = h.wait_until(lambda: "WRONGPASS" in s.stderr_text(), 3)
    t.ok(ok, "rotation: the AUTH refusal is logged after the dropped connection's line",
         s.stderr_text()[-1500:])
    write(pwfile, SECRET2 + "\n")
    s.reload(CONF)
    ok = h.wait_until(lambda: h.request(s.addr, "GET", "/echo", [("X-K", "r3")]).status == 200,
                      5)
    t.ok(ok, "rotation: after a reload the new password from the file is used")
    metrics = h.admin_get(s.admin, "/metrics")
    s.stop()
    no_secret(t, "rotation log and /metrics", s.stderr_text(),
              metrics[1].decode() if metrics else "")
    refusals_logged_once(t, env, redis, up, pwfile)


def refusals_logged_once(t, env, redis, up, pwfile):
    """Reply errors interleaved with good replies (a user that may touch
    some keys only: NOPERM for the others, as CLUSTERDOWN or OOM come and go
    on a failing server) are one log line, not one per error."""
    redis.cmd("ACL", "SETUSER", "part", "on", ">" + SECRET, "~*ok-*", "+@all")
    write(pwfile, SECRET + "\n")
    url = "redis://part@127.0.0.1:%d/2" % redis.port
    s = env.sluice(CONF, name="sluice-part", values={"up": up.port, "url": url,
                                                     "pwfile": pwfile})
    got = {}
    for i in range(10):
        for k in ("ok-%d" % i, "no-%d" % i):
            st = h.request(s.addr, "GET", "/echo", [("X-K", k)]).status
            got[(k[:2], st)] = got.get((k[:2], st), 0) + 1
    s.stop()
    t.eq(got, {("ok", 200): 10, ("no", 503): 10}, "part user: its keys decided, NOPERM "
         "for the others (on_error deny)")
    lines = [x for x in s.stderr_text().splitlines() if "NOPERM" in x]
    t.ok(len(lines) == 1, "part user: ten refusals between good replies logged once "
         "(%d lines)" % len(lines), lines[:3])


if __name__ == "__main__":
    h.run(main, time_limit=60)
