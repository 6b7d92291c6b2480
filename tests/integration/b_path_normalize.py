#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Path normalisation (issue 12, point 4): routes match the normalised path,
# so "//v1/a", "/./v1/a", "/%76%31/a", "/x/../v1/a" and the like are all
# limited by the "/v1/" route instead of falling through to "/", and the
# upstream gets the path it was limited under; the query goes up untouched.
# Invalid %-escapes are refused with 400; an encoded slash is kept (default)
# or refused (path_encoded_slash = "reject"); path_forward = "original"
# sends the client's target as it came while still matching the normal form.
# Client: one request per check, each variant under its own X-Client key.
# Daemon: a "/v1/" route with a limit of burst 1 per X-Client, a "/" route
# without limits. Upstream: the echo (it reports the target it received).

import json
import os

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "${tmp}/access.log"
${extra}
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { v1 = { key = "header:X-Client", rate = 1, per = "1h", burst = 1 } }
routes = {
  { path = "/v1/", upstream = "app", limits = "v1" },
  { path = "/", upstream = "app" },
}
"""

# (as sent, what the upstream must see with the default path_forward)
VARIANTS = [
    ("/v1/a", "/v1/a"),
    ("//v1/a", "/v1/a"),
    ("/./v1/a", "/v1/a"),
    ("/%76%31/a", "/v1/a"),
    ("/x/../v1/a", "/v1/a"),
    ("/../v1/a", "/v1/a"),
    ("/v1//a", "/v1/a"),
    ("/%2E/v1/%2e%2E/v1/a", "/v1/a"),
    ("/v1/./b/../a/", "/v1/a/"),
    ("//v1/a?q=%2F..//x&y=./", "/v1/a?q=%2F..//x&y=./"),
    ("/x/..?", "/?"),
    ("/v1/a%2fb", "/v1/a%2Fb"),
]


def get(s, target, client):
    return h.request(s.addr, "GET", target, headers=[("X-Client", client)])


def upstream_target(r):
    return json.loads(r.body.decode())["target"]


def limited_twice(t, s, target, client, want_target, label):
    """The first request passes with want_target upstream, the second is
    refused by the /v1/ route's limit."""
    r = get(s, target, client)
    t.eq(r.status, 200, "%s: first request admitted" % label)
    if r.status == 200:
        t.eq(upstream_target(r), want_target, "%s: upstream sees %s" % (label, want_target))
    r = get(s, target, client)
    t.eq(r.status, 429, "%s: second request limited by the /v1/ route" % label)


def read_log(s):
    with open(os.path.join(s.dir, "access.log")) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def default_options(env, up):
    t = env.t
    s = env.sluice(CONF, name="default", values={"up": up.port, "extra": ""})
    for i, (target, want) in enumerate(VARIANTS):
        if want.startswith("/v1/"):
            limited_twice(t, s, target, "c%d" % i, want, target)
        else:
            r = get(s, target, "c%d" % i)
            t.eq((r.status, upstream_target(r) if r.status == 200 else None), (200, want),
                 "%s: the / route, upstream sees %s" % (target, want))
    for target in ("/v1/%zz", "/v1/a%2", "/%", "//%7"):
        r = get(s, target, "bad")
        h.problem_ok(t, r, 400, "%s: refused" % target)
    s.stop()
    lines = read_log(s)
    v1 = [ln for ln in lines if ln["status"] in (200, 429) and ln["route"] == "/v1/"]
    t.eq(len(v1), 2 * sum(1 for _, w in VARIANTS if w.startswith("/v1/")),
         "every variant's two requests are logged under the /v1/ route")
    t.ok(any(ln["path"] == "//v1/a" for ln in v1), "the access log keeps the target as sent")
    bad = [ln for ln in lines if ln["status"] == 400]
    t.ok(bad and all(ln["reason"] == "bad path encoding" for ln in bad),
         "bad escapes are logged as such", bad)


def reject_and_original(env, up):
    t = env.t
    extra = 'path_encoded_slash = "reject"\npath_forward = "original"'
    s = env.sluice(CONF, name="original", values={"up": up.port, "extra": extra})
    for target in ("/v1/a%2fb", "/v1/a%2Fb", "/%2F"):
        r = get(s, target, "slash")
        doc = h.problem_ok(t, r, 400, "reject: %s" % target)
        t.ok(doc is not None and "encoded slash" in doc.get("detail", ""),
             "reject: %s: the problem says why" % target, doc)
    r = get(s, "/v1/a%252Fb", "pct")
    t.eq(r.status, 200, "reject: an encoded %, then 2F, is not a slash")
    for i, target in enumerate(("//v1/a", "/%76%31/a?x=1", "/x/../v1/a")):
        limited_twice(t, s, target, "o%d" % i, target, "original: %s" % target)
    s.stop()


def main(env):
    up = env.upstream("up")
    default_options(env, up)
    reject_and_original(env, up)


if __name__ == "__main__":
    h.run(main, time_limit=120)
