#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# The bucket API and the admin token (issue 16, point 6). For the redis
# store and the embedded one: a client exhausts its bucket through the
# proxy; GET /ratelimit/buckets shows it empty, with a Retry-After, the
# store and the key requests use (in Redis, the very key); looking takes
# nothing; DELETE makes it full and the client's next request passes (the
# workers' deny cache included). A key never used reads full. Bad requests
# are 400, an unknown limit 404, other methods 405 with Allow; with Redis
# stopped, 503. Then admin.token_file: 401 without the token or with a
# wrong one, 200 with it, /healthz and /readyz open, a reload reads the
# file again, and an empty token file is an error at the conf's line.
# Nothing here depends on timing: the limit refills one token a minute.
# Client: raw requests from 127.0.0.1. Upstream: /echo. Daemon: 2 workers,
# limit "per_ip" (ip, 1 per 1m, burst 3), "pair" (ip + header X-Key).

import os
import signal

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = ${store}
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = {
  per_ip = { key = "ip", rate = 1, per = "1m", burst = 3 },
  pair = { key = { "ip", "header:X-Key" }, rate = 1, per = "1m", burst = 2 },
}
routes = { { path = "/", upstream = "app", limits = { "per_ip" } } }
"""

PATH = "/ratelimit/buckets"


def admin_req(s, method, target, headers=()):
    return h.request(s.admin, method, target, list(headers))


def look(s, query, headers=()):
    return admin_req(s, "GET", PATH + "?" + query, headers)


def check_store(env, label, store_lua, up, redis=None):
    t = env.t
    s = env.sluice(CONF, name="sluice-" + label, values={"up": up.port, "store": store_lua})

    sts = [h.request(s.addr, "GET", "/echo").status for _ in range(4)]
    t.eq(sts, [200, 200, 200, 429], "%s: burst 3 admitted, the 4th refused" % label)

    r = look(s, "limit=per_ip&key=127.0.0.1")
    t.eq(r.status, 200, "%s: GET bucket 200" % label)
    t.eq((r.header("content-type") or "").split(";")[0], "application/json",
         "%s: GET bucket is application/json" % label)
    doc = r.json() if r.status == 200 else {}
    t.ok(doc.get("tokens", 9) < 1, "%s: tokens ~0 after the burst" % label, doc)
    t.ok((doc.get("retry_after") or 0) > 0, "%s: retry_after > 0" % label, doc)
    t.ok(doc.get("seconds_until_full", 0) > 0, "%s: seconds_until_full > 0" % label, doc)
    t.eq(doc.get("store"), "redis" if redis else "local", "%s: store named" % label)
    t.eq((doc.get("limit"), doc.get("key"), doc.get("burst"), doc.get("rate"),
          doc.get("per_seconds"), doc.get("cost")),
         ("per_ip", "127.0.0.1", 3, 1, 60, 1), "%s: limit, key and numbers" % label)
    t.eq(doc.get("store_key"), "sluice:per_ip:127.0.0.1", "%s: store_key" % label)
    if redis:
        t.eq(redis.cmd("EXISTS", "sluice:per_ip:127.0.0.1"), 1,
             "%s: store_key is the key in Redis" % label)

    again = look(s, "limit=per_ip&key=127.0.0.1").json()
    t.ok(again.get("tokens", -1) >= doc.get("tokens", 0),
         "%s: looking takes no token" % label, (doc, again))
    t.eq(h.request(s.addr, "GET", "/echo").status, 429, "%s: still refused after looking" % label)

    r = admin_req(s, "DELETE", PATH + "?limit=per_ip&key=127.0.0.1")
    t.eq(r.status, 200, "%s: DELETE 200" % label)
    t.eq(r.status == 200 and r.json().get("tokens"), 3, "%s: DELETE shows it full" % label)
    if redis:
        t.eq(redis.cmd("EXISTS", "sluice:per_ip:127.0.0.1"), 0,
             "%s: the Redis key is gone" % label)
    sts = [h.request(s.addr, "GET", "/echo").status for _ in range(4)]
    t.eq(sts, [200, 200, 200, 429], "%s: after DELETE a full burst again" % label)

    fresh = look(s, "limit=per_ip&key=10.9.8.7").json()
    t.eq((fresh.get("tokens"), fresh.get("seconds_until_full"), fresh.get("retry_after")),
         (3, 0, 0), "%s: a key never used reads full" % label)
    if redis:
        t.eq(redis.cmd("EXISTS", "sluice:per_ip:10.9.8.7"), 0,
             "%s: looking at a new key writes nothing" % label)

    r = look(s, "limit=pair&key=127.0.0.1&key=a%3Ab%20c")
    doc = r.json() if r.status == 200 else {}
    t.eq((r.status, doc.get("key"), doc.get("store_key")),
         (200, ["127.0.0.1", "a:b c"], "sluice:pair:127.0.0.1:a%3Ab%20c"),
         "%s: composite key: one key= per part, escaped as requests are" % label)

    for query, why in (("limit=per_ip", "missing key"), ("key=1.2.3.4", "missing limit"),
                       ("", "no parameters"), ("limit=per_ip&key=1&bogus=2", "unknown parameter"),
                       ("limit=per_ip&key=%zz", "bad escape"),
                       ("limit=pair&key=1.2.3.4", "too few key parts")):
        h.problem_ok(t, look(s, query), 400, "%s: %s" % (label, why))
    h.problem_ok(t, look(s, "limit=nope&key=1"), 404, "%s: unknown limit" % label)
    for method in ("POST", "PUT"):
        r = admin_req(s, method, PATH + "?limit=per_ip&key=1")
        h.problem_ok(t, r, 405, "%s: %s" % (label, method))
        t.ok("DELETE" in (r.header("allow") or ""), "%s: %s 405 has Allow" % (label, method),
             r.headers)

    if redis:
        redis.stop()
        r = None
        for _ in range(20):   # each try is bounded by store.timeout
            r = look(s, "limit=per_ip&key=127.0.0.1")
            if r.status == 503:
                break
        h.problem_ok(t, r, 503, "%s: Redis down: 503" % label)
        h.problem_ok(t, admin_req(s, "DELETE", PATH + "?limit=per_ip&key=127.0.0.1"), 503,
                     "%s: Redis down: DELETE 503" % label)
    s.stop()


TOKEN_CONF = """\
listen = "${listen}"
admin = { listen = "${admin}", token_file = "${token_file}" }
workers = 1
access_log = "off"
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_ip = { key = "ip", rate = 1, per = "1m", burst = 3 } }
routes = { { path = "/", upstream = "app", limits = { "per_ip" } } }
"""


def check_token(env, up):
    t = env.t
    token_file = env.path("admin.token")
    with open(token_file, "w") as f:
        f.write("first-Secret.123\n")
    os.chmod(token_file, 0o600)
    s = env.sluice(TOKEN_CONF, name="sluice-token",
                   values={"up": up.port, "token_file": token_file})
    bucket = PATH + "?limit=per_ip&key=127.0.0.1"

    for path in ("/healthz", "/readyz"):
        r = admin_req(s, "GET", path)
        t.eq(r.status, 200, "token: %s open without a token" % path)
    for path in (bucket, "/metrics", "/nope"):
        r = admin_req(s, "GET", path)
        h.problem_ok(t, r, 401, "token: %s without a token" % path)
        t.ok((r.header("www-authenticate") or "").startswith("Bearer"),
             "token: %s 401 has a Bearer challenge" % path, r.headers)
    r = admin_req(s, "DELETE", bucket)
    t.eq(r.status, 401, "token: DELETE without a token 401")
    for value in ("Bearer first-Secret.12", "Bearer first-Secret.1234", "Bearer ",
                  "Basic Zmlyc3Q6U2VjcmV0", "first-Secret.123"):
        r = admin_req(s, "GET", bucket, [("Authorization", value)])
        t.eq(r.status, 401, "token: %r refused" % value)
    r = admin_req(s, "GET", bucket, [("Authorization", "Bearer wrong")])
    t.ok("invalid_token" in (r.header("www-authenticate") or ""),
         "token: a wrong token is named invalid_token", r.headers)
    good = [("Authorization", "Bearer first-Secret.123")]
    t.eq(admin_req(s, "GET", bucket, good).status, 200, "token: bucket 200 with the token")
    t.eq(admin_req(s, "GET", bucket, [("Authorization", "bearer first-Secret.123")]).status,
         200, "token: the scheme is case-insensitive")
    t.eq(admin_req(s, "GET", "/metrics", good).status, 200, "token: /metrics 200 with it")

    # a reload reads the file again
    with open(token_file, "w") as f:
        f.write("second-Secret\n")
    s.signal(signal.SIGHUP)
    new = [("Authorization", "Bearer second-Secret")]
    t.ok(h.wait_until(lambda: admin_req(s, "GET", bucket, new).status == 200, 5, 0.05),
         "token: after a reload the new token works")
    t.eq(admin_req(s, "GET", bucket, good).status, 401, "token: the old one no longer does")

    # an empty token file: an error naming the conf line; a reload keeps the old token
    with open(token_file, "w") as f:
        f.write("\n")
    code, out, err = h.run_cli(["-t", "-c", s.conf_path])
    t.ok(code != 0 and (s.conf_path + ":2:") in err and "token_file" in err,
         "token: empty token file is a conf error at file:line", (code, out, err))
    s.signal(signal.SIGHUP)
    t.ok(h.wait_until(lambda: "refused" in s.stderr_text(), 5, 0.05),
         "token: reload with an empty token file is refused", s.stderr_text()[-800:])
    t.eq(admin_req(s, "GET", bucket, new).status, 200, "token: the running token stays")
    s.stop()


def main(env):
    up = env.upstream("app")
    redis = env.redis()
    check_store(env, "redis", '{ kind = "redis", url = "redis://127.0.0.1:%d", timeout = "200ms" }'
                % redis.port, up, redis)
    check_store(env, "local", '{ kind = "local" }', up)
    check_token(env, up)


if __name__ == "__main__":
    h.run(main, time_limit=90)
