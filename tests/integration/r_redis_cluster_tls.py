#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis Cluster over TLS: store.url = "rediss-cluster://127.0.0.1:P1" with
# store.tls applying to every node. A real cluster of 3 masters (no
# replicas) that speaks TLS only: each redis-server has --port 0, a
# --tls-port, --tls-cluster and --tls-replication, and its bus on a free
# port of its own; `redis-cli --tls --cluster create` joins them. The PKI
# is r_redis_tls.make_pki's (CA, server certificate with IP SAN 127.0.0.1,
# since nodes are reached by the address CLUSTER SLOTS gives; a client
# certificate; an unrelated CA).
#  1. the cluster forms over TLS (cluster_state:ok on every node);
#  2. a daemon with the right CA: a key on each master decided (burst, then
#     429), its bucket written on that master (DBSIZE over TLS), every
#     master in sluice_redis_node_up;
#  3. a daemon with the other CA: on_error applies (deny: 503, allow: 200),
#     the verification failure logged once per store, no crash;
#  4. mutual TLS: `CONFIG SET tls-auth-clients yes` on every node; a daemon
#     with cert_file/key_file decides on every master, one without a client
#     certificate is refused and on_error applies.
# Client: single requests. Upstream: any path answers 200. Daemons: one
# worker, one limit of burst 3 per minute, timeout 500ms.

import os
import shutil
import socket
import ssl
import subprocess
import time

import cluster_util as cu
import harness as h
from r_redis_tls import make_pki

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


def bucket_key(v):
    return "sluice:per_key:" + v


class TlsNode(h.Redis):
    """A cluster-mode redis-server with TLS only: `port` (from h.Redis) is
    its TLS port, so cluster_util's address and slot-map helpers apply
    unchanged; cmd() speaks RESP over TLS, presenting the client
    certificate (accepted whether the node asks for one or not)."""

    def __init__(self, env, name, pki, bus_port, index):
        super().__init__(env, name)
        self.pki = pki
        self.bus_port = bus_port
        self.index = index
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        ctx.load_cert_chain(os.path.join(pki, "client.crt"), os.path.join(pki, "client.key"))
        self.ssl_ctx = ctx

    def start(self, timeout=5.0):
        pki = self.pki
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        args = [shutil.which("redis-server"), "--port", "0", "--tls-port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no",
                "--tls-cluster", "yes", "--tls-replication", "yes",
                "--tls-cert-file", os.path.join(pki, "server.crt"),
                "--tls-key-file", os.path.join(pki, "server.key"),
                "--tls-ca-cert-file", os.path.join(pki, "ca.crt"),
                "--tls-auth-clients", "optional",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % self.index,
                "--cluster-node-timeout", "1000",
                "--cluster-port", str(self.bus_port)]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        ok = h.wait_until(lambda: self.proc.poll() is not None or self._ping(), timeout, 0.02)
        if self.proc.poll() is not None or not ok:
            raise RuntimeError("redis-server did not answer PING over TLS on port %d (log %s)"
                               % (self.port, os.path.join(self.dir, "redis.log")))
        return self

    def cmd(self, *args, timeout=5.0, db=0):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        with self.ssl_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            f = s.makefile("rb")
            s.sendall(h.resp_encode(args))
            return h.resp_read(f)


class TlsCluster(cu.Cluster):
    """cluster_util.Cluster made of TlsNodes and joined by redis-cli --tls."""

    def __init__(self, env, pki, n=3):
        self.env = env
        self.pki = pki
        self.replicas = 0
        self.nodes = [TlsNode(env, "cluster-tls-%d" % i, pki, h.free_port(), i)
                      for i in range(n)]
        for node in self.nodes:
            node.start()

    def tls_args(self):
        p = self.pki
        return ["--tls", "--cacert", os.path.join(p, "ca.crt"),
                "--cert", os.path.join(p, "client.crt"), "--key", os.path.join(p, "client.key")]

    def create(self, timeout=30):
        args = [shutil.which("redis-cli")] + self.tls_args() + ["--cluster", "create"]
        args += [self.addr(x) for x in self.nodes]
        args += ["--cluster-replicas", "0", "--cluster-yes"]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        self.create_output = p.stdout.decode("utf-8", "replace")
        if p.returncode != 0:
            return False
        return h.wait_until(self.all_ok, timeout, 0.1)


def tls_keys(pki, ca="ca.crt", client=False):
    keys = 'ca_file = "%s"' % os.path.join(pki, ca)
    if client:
        keys += ', cert_file = "%s", key_file = "%s"' % (os.path.join(pki, "client.crt"),
                                                         os.path.join(pki, "client.key"))
    return keys


def start_sluice(env, name, up, url, tls, on_error="deny"):
    return env.sluice(CONF, name=name, values={
        "up": up.port, "url": url, "on_error": on_error, "tls": tls})


def decides_every_master(t, cluster, s, label):
    """/readyz, then per master a fresh key: 3 admitted and the 4th limited,
    its bucket on that master."""
    ok, took = cu.wait_time(lambda: (h.admin_get(s.admin, "/readyz") or (0,))[0] == 200,
                            10, 0.05)
    t.ok(ok, "%s: /readyz 200 (%.1fs)" % (label, took))
    owners = cluster.slot_owners()
    masters = cluster.masters()
    t.eq(len(masters), 3, "%s: the slot map has 3 masters" % label)
    before = {m: cluster.dbsize(cluster.by_port(m)) for m in masters}
    for m in masters:
        v = cu.values_where(bucket_key, lambda x, m=m: owners[x] == m, 1,
                            prefix="%s-%d-" % (s.name, m))[0]
        codes = [h.request(s.addr, "GET", "/", [("X-K", v)], timeout=3).status
                 for _ in range(4)]
        t.eq(codes, [200, 200, 200, 429], "%s: key on master %d: 3 admitted, the 4th "
             "limited" % (label, m))
        t.ok(cluster.by_port(m).cmd("EXISTS", bucket_key(v), timeout=1.0) == 1,
             "%s: its bucket is on master %d" % (label, m))
    after = {m: cluster.dbsize(cluster.by_port(m)) for m in masters}
    t.ok(all(after[m] > before[m] for m in masters),
         "%s: DBSIZE over TLS grew on every master (before %s, after %s)"
         % (label, before, after))
    samples = h.scrape(s.admin)
    up_by = {m: h.metric(samples, "sluice_redis_node_up", node="127.0.0.1:%d" % m)
             for m in masters}
    t.ok(all(v >= 1 for v in up_by.values()),
         "%s: sluice_redis_node_up shows every master (%s)" % (label, up_by), up_by)


def refused(t, env, up, url, tls, want_log, label):
    """A TLS setup the nodes (or sluice) refuse: on_error deny gives 503,
    allow gives 200, the reason logged once per store, no crash."""
    for policy, status in (("deny", 503), ("allow", 200)):
        s = start_sluice(env, "sluice-%s-%s" % (label.replace(" ", "-"), policy), up, url,
                         tls, policy)
        logged = h.wait_until(lambda: want_log in s.stderr_text(), 5)
        codes = [h.request(s.addr, "GET", "/", [("X-K", "refused-%d" % i)], timeout=3).status
                 for i in range(3)]
        time.sleep(0.4)  # a few more asks of the slot map, refused the same way
        t.eq(codes, [status] * 3, "%s: on_error %s answers %d" % (label, policy, status))
        t.ok(s.alive(), "%s: %s still running" % (label, s.name))
        s.stop()
        text = s.stderr_text()
        t.ok(logged, "%s: the log says why (%r)" % (label, want_log), text[-1500:])
        # each store (the worker's, the admin API's) says it once while the
        # seed keeps refusing, not once per retry
        lines = [ln for ln in text.splitlines() if want_log in ln]
        t.ok(1 <= len(lines) <= 2, "%s: one log line per store, not one per retry" % label,
             lines)


def main(env):
    t = env.t
    if os.environ.get("SLUICE_ADDR"):
        t.skip("redis cluster over TLS", "needs several daemons: cannot attach")
        return
    pki = env.path("pki")
    make_pki(pki)
    up = env.upstream("app")
    t0 = time.monotonic()
    cluster = TlsCluster(env, pki)
    if not t.ok(cluster.create(), "redis-cli --tls --cluster create: 3 masters over TLS, "
                "cluster_state:ok on every node",
                getattr(cluster, "create_output", "")[-2000:]):
        return
    t.note("cluster up in %.1fs, masters %s" % (time.monotonic() - t0, cluster.masters()))
    url = "rediss-cluster://127.0.0.1:%d" % cluster.nodes[0].port

    s = start_sluice(env, "sluice-tls", up, url, tls_keys(pki))
    decides_every_master(t, cluster, s, "right CA")
    t.ok(s.alive(), "right CA: still running")
    s.stop()

    refused(t, env, up, url, tls_keys(pki, ca="other-ca.crt"), "certificate verify failed",
            "wrong CA")

    for node in cluster.nodes:
        node.cmd("CONFIG", "SET", "tls-auth-clients", "yes")
    t.ok(all(n.cmd("CONFIG", "GET", "tls-auth-clients")[1] == "yes" for n in cluster.nodes),
         "mutual TLS: every node now asks for a client certificate")
    s = start_sluice(env, "sluice-mtls", up, url, tls_keys(pki, client=True))
    decides_every_master(t, cluster, s, "mutual TLS")
    s.stop()
    # TLS 1.3: the client's handshake is over before the node refuses, so the
    # refusal shows at the first I/O, as the node's alert ("TLS read: ...
    # certificate required") or, when the write comes first, as "TLS write:
    # Connection reset by peer": either way a TLS error
    refused(t, env, up, url, tls_keys(pki), ": TLS ", "no client certificate")
    t.ok(cluster.all_ok(), "the cluster is still ok at the end")


if __name__ == "__main__":
    h.run(main, time_limit=60)
