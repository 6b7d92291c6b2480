#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis over TLS (issue 11, point 1): store.url = "rediss://..." with
# store.tls. The test makes a CA, a server certificate (SAN 127.0.0.1 and
# localhost), a client certificate and a second, unrelated CA with openssl,
# and starts redis-server with --tls-port (its plaintext port only drives
# the test). Decisions work over TLS (429 after the burst), with the
# server's name checked by address and by DNS name (SNI); mutual TLS with
# --tls-auth-clients yes; an ACL user with password_file over TLS; a wrong
# CA, a wrong server_name or a missing client certificate are refused with
# one clear log line per store and on_error applies
# (deny: 503, allow: 200); verify = false (tests only) connects anyway; a
# bad certificate file is a conf error at its file:line.
# Client: single requests. Upstream: /echo. Redis: two TLS servers, one
# asking for client certificates. Daemon: one limit, burst 3 per minute.

import os
import subprocess
import time

import harness as h

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 1
access_log = "off"
store = { kind = "redis", url = "${url}", timeout = "500ms", on_error = "${on_error}",
          tls = { ${tls} } }
upstreams = { app = { servers = { "127.0.0.1:${up}" } } }
limits = { per_key = { key = "header:X-K", rate = 3, per = "1m" } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def make_pki(d):
    """ca.crt (+ server and client certs it signed) and other-ca.crt."""
    os.makedirs(d, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca + ".key",
                "-out", ca + ".crt", "-days", "2", "-subj", "/CN=sluice test " + ca)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", "/CN=" + name)
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2",
                "-extfile", name + ".ext")


def tls_redis(env, name, pki, auth_clients):
    port = h.free_port()
    r = h.Redis(env, name, extra_args=[
        "--tls-port", str(port), "--tls-cert-file", os.path.join(pki, "server.crt"),
        "--tls-key-file", os.path.join(pki, "server.key"),
        "--tls-ca-cert-file", os.path.join(pki, "ca.crt"),
        "--tls-auth-clients", "yes" if auth_clients else "no"])
    r.start()
    r.tls_port = port
    return r


def tls_keys(pki, ca="ca.crt", client=False, extra=""):
    keys = 'ca_file = "%s"' % os.path.join(pki, ca)
    if client:
        keys += ', cert_file = "%s", key_file = "%s"' % (os.path.join(pki, "client.crt"),
                                                         os.path.join(pki, "client.key"))
    return keys + (", " + extra if extra else "")


def burst(t, s, key, label):
    codes = [h.request(s.addr, "GET", "/echo", [("X-K", key)]).status for _ in range(4)]
    t.eq(codes, [200, 200, 200, 429], "%s: 3 admitted, the 4th limited" % label)


def refused(t, env, name, up, url, tls, want_log, label):
    """A conf whose TLS must fail: on_error deny gives 503, allow gives 200,
    and the reason is logged once."""
    for policy, status in (("deny", 503), ("allow", 200)):
        s = env.sluice(CONF, name="%s-%s" % (name, policy), values={
            "up": up.port, "url": url, "on_error": policy, "tls": tls})
        logged = h.wait_until(lambda: want_log in s.stderr_text(), 5)
        r = h.request(s.addr, "GET", "/echo", [("X-K", name)])
        time.sleep(0.4)  # a few reconnections, refused the same way
        t.eq(r.status, status, "%s: on_error %s answers %d" % (label, policy, status))
        s.stop()
        text = s.stderr_text()
        t.ok(logged, "%s: the log says why (%r)" % (label, want_log), text[-1500:])
        # retries went on meanwhile (100 ms backoff, doubling): each store
        # (the worker's, the admin API's) logs the failure once
        lines = [ln for ln in text.splitlines() if want_log in ln]
        t.ok(1 <= len(lines) <= 2, "%s: one log line per store while it stays down, not one "
             "per retry" % label, lines)


def main(env):
    t = env.t
    pki = env.path("pki")
    make_pki(pki)
    up = env.upstream("app")
    redis = tls_redis(env, "redis", pki, auth_clients=False)
    mtls = tls_redis(env, "redis-mtls", pki, auth_clients=True)
    url = "rediss://127.0.0.1:%d/0" % redis.tls_port

    # decisions over TLS; the name checked as an address, then as a DNS name
    s = env.sluice(CONF, name="sluice-tls", values={
        "up": up.port, "url": url, "on_error": "deny", "tls": tls_keys(pki)})
    burst(t, s, "a", "rediss:// to 127.0.0.1")
    t.ok(redis.cmd("EXISTS", "sluice:per_key:a") == 1, "the bucket is in the TLS Redis")
    s.stop()
    s = env.sluice(CONF, name="sluice-sni", values={
        "up": up.port, "url": "rediss://localhost:%d/0" % redis.tls_port, "on_error": "deny",
        "tls": tls_keys(pki, extra='server_name = "localhost"')})
    burst(t, s, "b", "rediss:// to localhost")
    s.stop()

    # an ACL user over TLS, its password from a file, a database: the
    # managed-Redis case
    redis.cmd("ACL", "SETUSER", "sl", "on", ">tls-pw-1", "~*", "+@all")
    pwfile = env.path("redis.pw")
    with open(pwfile, "w") as f:
        f.write("tls-pw-1\n")
    s = env.sluice(CONF.replace("on_error = ", 'password_file = "%s", on_error = ' % pwfile),
                   name="sluice-acl", values={
                       "up": up.port, "url": "rediss://sl@127.0.0.1:%d/3" % redis.tls_port,
                       "on_error": "deny", "tls": tls_keys(pki)})
    burst(t, s, "e", "ACL user and password_file over TLS")
    t.ok(redis.cmd("EXISTS", "sluice:per_key:e", db=3) == 1, "the bucket is in db 3")
    s.stop()

    # mutual TLS
    s = env.sluice(CONF, name="sluice-mtls", values={
        "up": up.port, "url": "rediss://127.0.0.1:%d/0" % mtls.tls_port, "on_error": "deny",
        "tls": tls_keys(pki, client=True)})
    burst(t, s, "c", "mutual TLS")
    s.stop()

    # refusals: wrong CA, wrong name, no client certificate
    refused(t, env, "wrongca", up, url, tls_keys(pki, ca="other-ca.crt"),
            "certificate verify failed", "wrong CA")
    refused(t, env, "wrongname", up, url, tls_keys(pki, extra='server_name = "wrong.example"'),
            "hostname mismatch", "wrong server_name")
    refused(t, env, "nocert", up, "rediss://127.0.0.1:%d/0" % mtls.tls_port, tls_keys(pki),
            "TLS", "no client certificate for a server that asks for one")

    # verify = false (tests only): the wrong CA is let through
    s = env.sluice(CONF, name="sluice-noverify", values={
        "up": up.port, "url": url, "on_error": "deny",
        "tls": tls_keys(pki, ca="other-ca.crt", extra="verify = false")})
    burst(t, s, "d", "verify = false")
    s.stop()

    # -t checks the files: a bad ca_file or key is an error at its line
    conf = env.path("check.conf")
    bad_key = os.path.join(pki, "ca.crt")  # a certificate where the key should be
    with open(conf, "w") as f:
        f.write(CONF.replace("${listen}", "127.0.0.1:1").replace("${admin}", "127.0.0.1:2")
                .replace("${url}", url).replace("${on_error}", "deny")
                .replace("${up}", str(up.port))
                .replace("${tls}", 'ca_file = "%s",\n  cert_file = "%s", key_file = "%s"' % (
                    env.path("nope.crt"), os.path.join(pki, "client.crt"), bad_key)))
    rc, out, err = h.run_cli(["-t", "-c", conf])
    t.ok(rc != 0 and "check.conf:6:" in err and "nope.crt" in err,
         "-t: a missing ca_file is refused at its file:line", err)
    t.ok("check.conf:7:" in err and "key_file" in err,
         "-t: a key_file that holds no key is refused at its file:line", err)
    with open(conf, "w") as f:
        f.write(CONF.replace("${listen}", "127.0.0.1:1").replace("${admin}", "127.0.0.1:2")
                .replace("${url}", url).replace("${on_error}", "deny")
                .replace("${up}", str(up.port)).replace("${tls}", tls_keys(pki, client=True)))
    rc, out, err = h.run_cli(["-T", "-c", conf])
    t.ok(rc == 0 and "tls = {" in out and "verify = true" in out
         and "-- server_name: none (the url's host)" in out, "-T prints store.tls", out)


if __name__ == "__main__":
    h.run(main, time_limit=60)
