#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis Cluster (issue 11, points 4 and 5): store.url =
# "redis-cluster://seed1,seed2,seed3" against a real cluster of 6
# redis-servers (3 masters, 1 replica each) made by `redis-cli --cluster
# create` on loopback. The url's seeds are one master and two replicas: the
# other masters are learned from CLUSTER SLOTS. Every daemon first reports
# ready and decides a key on each master.
#  1. the fleet bound with three daemons and keys spread over every master
#     (DBSIZE > 0 on each): per key, admitted <= burst + rate x T;
#  2. all-or-nothing across nodes: limits a and b on one route with their
#     keys on different masters; b's refusals leave a's tokens (GET of a's
#     bucket, and a's RateLimit r), a's refusals leave b's;
#  3. `redis-cli --cluster reshard` of 1000 slots holding live buckets,
#     under load: no crash, only 200/429 (plus 503 with on_error = "deny"),
#     the bound held meanwhile and afterwards, the moved keys decided on
#     their new master within seconds;
#  4. `CLUSTER FAILOVER` sent to a replica under load: followed within
#     seconds, outcomes as above meanwhile, the bound (plus one burst, the
#     documented failover allowance) meanwhile and the exact bound after;
#  5. the per-node metrics: every master with calls, an up connection and
#     call durations, on every daemon;
#  6. a master killed (SIGKILL; cluster-require-full-coverage no, so the
#     other masters go on serving): its keys follow on_error (503), while
#     fresh keys on the other masters, asked in between, are still decided
#     (200), /readyz stays 200, and the dead seed's failed map reads are
#     logged once per worker.
# T in a bound is measured from the first request sent to the last answer,
# so it can only loosen the bound, never make it wrong; no other slack.
# Client: per-key load threads (2 per daemon, keep-alive connections, keys
# taken in turn); through the reshard and the failover also one thread per
# daemon on fresh keys in the slots concerned (nearly every request a store
# call, where the bounded keys are mostly answered by the deny cache). The
# note lines give the MOVED/ASK redirects each daemon counted. Upstream: any path answers 200. Daemons: three with
# on_error = "deny" (the fleet) and one with "allow" on keys of its own (its
# store errors admit, so it stays off the fleet's keys); 2 workers each;
# timeout 200ms.

import os
import re
import threading
import time

import cluster_util as cu
import harness as h

FLEET_RATE, FLEET_BURST = 5.0, 5.0
A_BURST, B_BURST = 10, 2
LOAD_SECONDS = 2.5

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = { kind = "redis", url = "${url}", timeout = "200ms", on_error = "${policy}" }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
limits = {
  fleet = { key = "header:X-Key", rate = 5, per = "1s", burst = 5 },
  a = { key = "header:X-A", rate = 1, per = "1h", burst = 10 },
  b = { key = "header:X-B", rate = 1, per = "1h", burst = 2 },
}
routes = {
  { path = "/fleet", upstream = "app", limits = { "fleet" } },
  { path = "/ab", upstream = "app", limits = { "a", "b" } },
}
"""

# what a store error may turn into, by on_error (429 and 200 are decisions)
OUTCOMES = {"deny": {200, 429, 503}, "allow": {200, 429}}


def fleet_key(v):
    return "sluice:fleet:" + v


class KeyLoad:
    """Threads (per_addr per daemon) sending GET /fleet with X-Key taken in
    turn from `keys` over keep-alive connections; counts by (daemon, key,
    status) and the span from the first send to the last answer."""

    def __init__(self, addrs, keys, per_addr=2, bound_s=60):
        self.keys = list(keys)
        self.counts = {}
        self.first = None
        self.last = 0.0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.bound_s = bound_s
        self._ths = [threading.Thread(target=self._run, args=(a, j * 7 + i), daemon=True)
                     for i, a in enumerate(addrs) for j in range(per_addr)]

    def _run(self, addr, offset):
        c = None
        n = offset
        deadline = time.monotonic() + self.bound_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            key = self.keys[n % len(self.keys)]
            n += 1
            t0 = time.monotonic()
            try:
                if c is None:
                    c = h.Conn(addr, timeout=3)
                c.send(h.request_bytes("GET", "/fleet", [("X-Key", key)]))
                r = c.read_response(timeout=3)
                res = r.status
                if (r.header("connection") or "").lower() == "close" or not r.complete:
                    c.close()
                    c = None
            except Exception as e:
                res = type(e).__name__
                if c:
                    c.close()
                c = None
                self._stop.wait(0.01)
            t1 = time.monotonic()
            with self.lock:
                if self.first is None or t0 < self.first:
                    self.first = t0
                self.last = max(self.last, t1)
                k = (addr, key, res)
                self.counts[k] = self.counts.get(k, 0) + 1
        if c:
            c.close()

    def start(self):
        for th in self._ths:
            th.start()
        return self

    def stop(self):
        self._stop.set()
        for th in self._ths:
            th.join(5)
        return self

    @property
    def span(self):
        return self.last - self.first if self.first is not None else 0.0

    def by_status(self, addr=None):
        out = {}
        with self.lock:
            for (a, _, res), n in self.counts.items():
                if addr is None or a == addr:
                    out[res] = out.get(res, 0) + n
        return out

    def admitted(self, key):
        with self.lock:
            return sum(n for (_, k, res), n in self.counts.items() if k == key and res == 200)


def check_bound(t, load, label, extra_bursts=0):
    """Per key: admitted <= (1 + extra_bursts) x burst + rate x T."""
    T = load.span
    bound = (1 + extra_bursts) * FLEET_BURST + FLEET_RATE * T
    worst = max(load.keys, key=load.admitted)
    over = {k: load.admitted(k) for k in load.keys if load.admitted(k) > bound}
    t.note("%s: statuses %s over %.2fs, %d keys, most admitted %d (%s), bound %.1f"
           % (label, load.by_status(), T, len(load.keys), load.admitted(worst), worst, bound))
    bursts = "%d x burst" % (1 + extra_bursts) if extra_bursts else "burst"
    t.ok(not over, "%s: per key admitted <= %s + rate x T = %.1f" % (label, bursts, bound),
         over)
    t.ok(load.by_status().get(429, 0) > 0, "%s: the load exceeded the limit" % label,
         load.by_status())


def check_outcomes(t, load, daemons, label):
    """Each daemon answered only what its on_error allows."""
    for policy, s in daemons:
        got = load.by_status(s.addr)
        bad = {k: v for k, v in got.items() if k not in OUTCOMES[policy]}
        t.ok(not bad and got.get(200, 0) > 0, "%s: %s (on_error = %s) answered only %s"
             % (label, s.name, policy, sorted(OUTCOMES[policy])), got)


class Churn:
    """A store call per request: GET /fleet with keys from `values` taken in
    turn (mostly fresh buckets, so few answers come from the deny cache),
    one thread per daemon; statuses by daemon."""

    def __init__(self, daemons, values):
        self.loads = [(policy, s, h.Load(s.addr, 1, lambda i, n, v=values, o=j * 500: (
            h.request_bytes("GET", "/fleet", [("X-Key", v[(o + n) % len(v)])]))).start())
            for j, (policy, s) in enumerate(daemons)]

    def stop(self, t, label):
        for policy, s, load in self.loads:
            got = load.stop()
            bad = {k: v for k, v in got.items() if k not in OUTCOMES[policy]}
            t.ok(not bad and got.get(200, 0) > 0, "%s: %s (on_error = %s) answered only %s "
                 "to calls on fresh keys" % (label, s.name, policy, sorted(OUTCOMES[policy])),
                 got)
            t.note("%s: %s fresh-key statuses %s" % (label, s.name, got))


def run_load(addrs, keys, seconds):
    load = KeyLoad(addrs, keys).start()
    time.sleep(seconds)
    return load.stop()


def decides_on(cluster, s, node, label_prefix, owned):
    """A fresh key whose slot `node` owns now is decided (200) and its bucket
    written there."""
    v = cu.values_where(fleet_key, owned, 1, prefix="%s-%f-" % (label_prefix, time.monotonic()))
    if not v:
        return False
    r = h.request(s.addr, "GET", "/fleet", [("X-Key", v[0])], timeout=3)
    try:
        return r.status == 200 and node.cmd("EXISTS", fleet_key(v[0]), timeout=1.0) == 1
    except (OSError, h.RedisError):
        return False


def ready(t, cluster, daemons):
    """Before any bound: /readyz (deny: every worker's store has its map),
    then a fresh key on each master decided there, by every daemon."""
    for policy, s in daemons:
        if policy == "deny":
            ok, took = cu.wait_time(lambda s=s: (h.admin_get(s.admin, "/readyz") or (0,))[0]
                                    == 200, 10, 0.05)
            t.ok(ok, "%s: /readyz 200 (%.1fs)" % (s.name, took))
        owners = cluster.slot_owners()
        for m in cluster.masters():
            ok, took = cu.wait_time(lambda s=s, m=m: decides_on(
                cluster, s, cluster.by_port(m), "warm", lambda x: owners[x] == m), 10, 0.05)
            t.ok(ok, "%s: decides a key on master %d, its bucket written there (%.1fs)"
                 % (s.name, m, took))


# ---------------------------------------------------------------------------
# 1. the fleet bound over every master

def fleet_over_masters(t, cluster, fleet):
    owners = cluster.slot_owners()
    masters = cluster.masters()
    keys = []
    for m in masters:
        keys += cu.values_where(fleet_key, lambda s, m=m: owners[s] == m, 8, prefix="f1-")
    load = KeyLoad([s.addr for s in fleet], keys).start()
    time.sleep(LOAD_SECONDS / 2)
    sizes = {m: cluster.dbsize(cluster.by_port(m)) for m in masters}
    time.sleep(LOAD_SECONDS / 2)
    load.stop()
    t.ok(all(n > 0 for n in sizes.values()), "fleet: every master holds buckets (DBSIZE %s)"
         % sizes, sizes)
    check_bound(t, load, "fleet")
    low = {k: load.admitted(k) for k in keys if load.admitted(k) < FLEET_BURST}
    t.ok(not low, "fleet: every key admitted at least its burst", low)
    t.eq(set(load.by_status()), {200, 429}, "fleet: only 200 and 429 while the cluster is "
         "stable")


# ---------------------------------------------------------------------------
# 2. all-or-nothing across masters

def bucket_milli(cluster, key):
    """Milli-tokens stored in a bucket (None: no key, i.e. full)."""
    v = cluster.get(key)
    if v is None:
        return None
    m = re.match(r"^(\d+) (\d+) (\d+)", v)
    return int(m.group(1)) if m else v


def r_of(resp, name):
    m = re.search(r'"%s";r=(\d+)' % name, resp.header("ratelimit") or "")
    return int(m.group(1)) if m else None


def violated(resp):
    try:
        return resp.json().get("violated-policies")
    except (ValueError, AttributeError):
        return None


def all_or_nothing(t, cluster, s):
    owners = cluster.slot_owners()
    m_a, m_b = cluster.masters()[:2]
    a_vals = cu.values_where(lambda v: "sluice:a:" + v, lambda x: owners[x] == m_a, 2, "aon-a")
    b_vals = cu.values_where(lambda v: "sluice:b:" + v, lambda x: owners[x] == m_b, 3 + A_BURST,
                             "aon-b")
    t.note("all-or-nothing: a's keys on master %d, b's on %d" % (m_a, m_b))

    # b refuses: a keeps the refused requests' tokens
    va, vb = a_vals[0], b_vals[0]
    got = [h.request(s.addr, "GET", "/ab", [("X-A", va), ("X-B", vb)]) for _ in range(6)]
    t.eq([r.status for r in got], [200] * B_BURST + [429] * (6 - B_BURST),
         "all-or-nothing: b admits its burst of %d, then refuses" % B_BURST)
    t.eq([violated(r) for r in got[B_BURST:]], [["b"]] * (6 - B_BURST),
         "all-or-nothing: the refusals name only b")
    time.sleep(0.5)   # refunds in flight land
    left = bucket_milli(cluster, "sluice:a:" + va)
    t.ok(isinstance(left, int) and (A_BURST - B_BURST) * 1000 <= left < (A_BURST - B_BURST + 1)
         * 1000, "all-or-nothing: a's bucket on its own master lost only the %d admitted "
         "(%d milli-tokens stored)" % (B_BURST, (A_BURST - B_BURST) * 1000), left)
    r = h.request(s.addr, "GET", "/ab", [("X-A", va), ("X-B", b_vals[1])])
    t.eq((r.status, r_of(r, "a")), (200, A_BURST - B_BURST - 1),
         "all-or-nothing: with a fresh b key, a's RateLimit r shows nothing taken by b's "
         "refusals")

    # a refuses: b keeps its tokens
    va2, vb2 = a_vals[1], b_vals[2]
    got = [h.request(s.addr, "GET", "/ab", [("X-A", va2), ("X-B", b_vals[3 + i])]).status
           for i in range(A_BURST)]
    t.eq(got, [200] * A_BURST, "all-or-nothing: a second a key spends its burst over fresh "
         "b keys")
    got = [h.request(s.addr, "GET", "/ab", [("X-A", va2), ("X-B", vb2)]) for _ in range(4)]
    t.eq([(r.status, violated(r)) for r in got], [(429, ["a"])] * 4,
         "all-or-nothing: then a refuses, naming only a")
    time.sleep(0.5)
    left = bucket_milli(cluster, "sluice:b:" + vb2)
    t.ok(left is None or (isinstance(left, int) and left >= B_BURST * 1000),
         "all-or-nothing: b's bucket on the other master is full after a's refusals", left)
    r = h.request(s.addr, "GET", "/ab", [("X-B", vb2)])
    t.eq((r.status, r_of(r, "b")), (200, B_BURST - 1),
         "all-or-nothing: b alone then admits from a full bucket")


# ---------------------------------------------------------------------------
# 3. resharding under load

def reshard_under_load(t, cluster, fleet, spare):
    owners = cluster.slot_owners()
    masters = cluster.masters()
    src, dst = cluster.by_port(masters[0]), cluster.by_port(masters[1])
    # redis-cli moves the source's lowest slots first: keys there are caught
    # mid-migration (ASK), keys elsewhere on the source stay
    src_slots = sorted(s for s, p in owners.items() if p == src.port)
    head = set(src_slots[:1000])
    keys = cu.values_where(fleet_key, lambda x: x in head, 12, prefix="rs-")
    keys += cu.values_where(fleet_key, lambda x: owners[x] == dst.port, 4, prefix="rs-dst-")
    spare_keys = cu.values_where(fleet_key, lambda x: x in head, 6, prefix="rs-allow-")
    pairs = [("deny", s) for s in fleet] + [("allow", spare)]
    churn = Churn(pairs, cu.values_where(fleet_key, lambda x: x in head, 2000, prefix="rs-c-"))
    load = KeyLoad([s.addr for s in fleet], keys).start()
    spare_load = KeyLoad([spare.addr], spare_keys).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, out = cluster.cli(["reshard", cluster.addr(src), "--cluster-from", cluster.node_id(src),
                           "--cluster-to", cluster.node_id(dst), "--cluster-slots", "1000",
                           "--cluster-yes"], timeout=90)
    took = time.monotonic() - t0
    time.sleep(0.5)
    load.stop()
    spare_load.stop()
    churn.stop(t, "reshard")
    t.ok(rc == 0, "reshard: redis-cli --cluster reshard of 1000 slots succeeded (%.1fs)" % took,
         out[-1500:])
    t.ok(cluster.wait_converged(), "reshard: the nodes agree on the new slot map")
    after = cluster.slot_owners()
    moved = {s for s in head if after.get(s) == dst.port}
    t.ok(len(moved) == 1000, "reshard: the source's first 1000 slots moved to the target",
         "%d moved" % len(moved))
    migrated = [k for k in keys if cu.key_slot(fleet_key(k)) in moved]
    t.ok(len(migrated) >= 12, "reshard: 12 loaded keys were in the moved slots",
         len(migrated))
    for _, s in pairs:
        t.ok(s.alive(), "reshard: %s still running" % s.name)
    check_outcomes(t, load, [("deny", s) for s in fleet], "reshard")
    check_outcomes(t, spare_load, [("allow", spare)], "reshard")
    check_bound(t, load, "reshard, during")

    for _, s in pairs:
        ok, took = cu.wait_time(lambda s=s: decides_on(
            cluster, s, dst, "rs-new", lambda x: x in moved), 5, 0.1)
        t.ok(ok, "reshard: %s decides keys of the moved slots on their new master (%.1fs "
             "after)" % (s.name, took))
    fresh = cu.values_where(fleet_key, lambda x: x in moved, 12, prefix="rs-after-")
    check_bound(t, run_load([s.addr for s in fleet], fresh, LOAD_SECONDS), "reshard, after")
    return dst


# ---------------------------------------------------------------------------
# 4. failover under load

def failover_under_load(t, cluster, fleet, spare, master):
    replica = cluster.replica_of(master)
    if not t.ok(replica is not None, "failover: master %d has a replica" % master.port):
        return
    owners = cluster.slot_owners()
    theirs = {s for s, p in owners.items() if p == master.port}
    keys = cu.values_where(fleet_key, lambda x: x in theirs, 12, prefix="fo-")
    spare_keys = cu.values_where(fleet_key, lambda x: x in theirs, 6, prefix="fo-allow-")
    h.wait_until(lambda: "master_link_status:up" in replica.cmd("INFO", "replication"), 5, 0.1)
    pairs = [("deny", s) for s in fleet] + [("allow", spare)]
    churn = Churn(pairs, cu.values_where(fleet_key, lambda x: x in theirs, 2000, prefix="fo-c-"))
    load = KeyLoad([s.addr for s in fleet], keys).start()
    spare_load = KeyLoad([spare.addr], spare_keys).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    reply = replica.cmd("CLUSTER", "FAILOVER")
    promoted = h.wait_until(lambda: cluster.role(replica) == "master", 15, 0.05)
    t.ok(reply == "OK" and promoted, "failover: CLUSTER FAILOVER promoted replica %d "
         "(%.1fs)" % (replica.port, time.monotonic() - t0), reply)
    t.ok(cluster.wait_converged(), "failover: the nodes agree on the new slot map")
    for _, s in pairs:
        ok, took = cu.wait_time(lambda s=s: decides_on(
            cluster, s, replica, "fo-new", lambda x: x in theirs), 5, 0.1)
        t.ok(ok, "failover: %s follows to the promoted replica (%.1fs after the promotion)"
             % (s.name, took))
    time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))   # load on the new master too
    load.stop()
    spare_load.stop()
    churn.stop(t, "failover")
    for _, s in pairs:
        t.ok(s.alive(), "failover: %s still running" % s.name)
    check_outcomes(t, load, [("deny", s) for s in fleet], "failover")
    check_outcomes(t, spare_load, [("allow", spare)], "failover")
    # docs/rate-limiting.md: around a failover a key may get one extra burst
    check_bound(t, load, "failover, during", extra_bursts=1)
    fresh = cu.values_where(fleet_key, lambda x: x in theirs, 12, prefix="fo-after-")
    check_bound(t, run_load([s.addr for s in fleet], fresh, LOAD_SECONDS), "failover, after")


# ---------------------------------------------------------------------------
# 5. per-node metrics

def node_metrics(t, cluster, daemons):
    masters = cluster.masters()
    for s in daemons:
        samples = h.scrape(s.admin)
        per = {}
        for m in masters:
            node = "127.0.0.1:%d" % m
            per[m] = (h.metric(samples, "sluice_redis_node_calls_total", node=node),
                      h.metric(samples, "sluice_redis_node_up", node=node),
                      h.metric(samples, "sluice_redis_node_call_duration_seconds_bucket",
                               node=node, le="+Inf"))
        bad = {m: v for m, v in per.items() if not (v[0] > 0 and v[1] >= 1 and v[2] > 0)}
        t.note("%s: redirects moved %d, ask %d; node errors %s" % (
            s.name, h.metric(samples, "sluice_redis_node_redirects_total", kind="moved"),
            h.metric(samples, "sluice_redis_node_redirects_total", kind="ask"),
            {k: h.metric(samples, "sluice_redis_node_errors_total", kind=k)
             for k in ("timeout", "connection", "reply")}))
        t.ok(not bad, "metrics: %s shows every master with calls, an up connection and "
             "call durations (calls, up, durations: %s)" % (s.name, per), bad)


# ---------------------------------------------------------------------------
# 6. a master down fails its own keys only

def master_down(t, cluster, s):
    for node in cluster.nodes:
        node.cmd("CONFIG", "SET", "cluster-require-full-coverage", "no", timeout=1.0)
    owners = cluster.slot_owners()
    victim = cluster.by_port(cluster.masters()[0])
    n = 40
    theirs = cu.values_where(fleet_key, lambda x: owners[x] == victim.port, n, prefix="md-v-")
    others = cu.values_where(fleet_key, lambda x: owners[x] != victim.port, n, prefix="md-o-")
    victim.kill()
    got = {"victim": {}, "others": {}}
    for v, o in zip(theirs, others):
        for label, key in (("victim", v), ("others", o)):
            r = h.request(s.addr, "GET", "/fleet", [("X-Key", key)], timeout=3)
            got[label][r.status] = got[label].get(r.status, 0) + 1
    ready = (h.admin_get(s.admin, "/readyz") or (0,))[0]
    # the dead master is the url's first seed: every map read (each 100 ms
    # while a master is down) asks it first
    time.sleep(1.5)
    asks = [x for x in s.stderr_text().splitlines()
            if "CLUSTER SLOTS from 127.0.0.1:%d" % victim.port in x]
    t.ok(got["victim"].get(503, 0) > 0 and set(got["victim"]) <= {200, 503},
         "master down: its keys follow on_error = deny (503) until the replica takes "
         "over: %s" % got["victim"], got)
    t.eq(got["others"], {200: n}, "master down: fresh keys on the other masters, asked "
         "between those, are all decided")
    t.eq(ready, 200, "master down: /readyz stays 200 while other masters answer")
    t.ok(1 <= len(asks) <= 3, "master down: the dead seed's failed map reads logged once "
         "per store: 2 workers and the bucket API (%d lines)" % len(asks), asks[:4])
    t.ok(s.alive(), "master down: %s still running" % s.name)


def main(env):
    t = env.t
    if os.environ.get("SLUICE_ADDR"):
        t.skip("redis cluster", "needs four daemons: cannot attach")
        return
    up = env.upstream("app")
    t0 = time.monotonic()
    cluster = cu.Cluster(env, n=6, replicas=1)
    if not t.ok(cluster.create(), "redis-cli --cluster create: 3 masters, 3 replicas, "
                "cluster_state:ok on every node", getattr(cluster, "create_output", "")[-2000:]):
        return
    t.note("cluster up in %.1fs, masters %s" % (time.monotonic() - t0, cluster.masters()))
    # seeds: one master and two replicas, so two masters are only learned
    # from CLUSTER SLOTS
    masters = cluster.masters()
    replicas = [x for x in cluster.nodes if x.port not in masters]
    url = cluster.seeds_url([cluster.by_port(masters[0])] + replicas[:2])
    t.note("store url %s" % url)
    fleet = [env.sluice(CONF, name="sluice-deny-%d" % i,
                        values={"up": up.port, "url": url, "policy": "deny"})
             for i in range(3)]
    spare = env.sluice(CONF, name="sluice-allow",
                       values={"up": up.port, "url": url, "policy": "allow"})

    ready(t, cluster, [("deny", s) for s in fleet] + [("allow", spare)])
    fleet_over_masters(t, cluster, fleet)
    all_or_nothing(t, cluster, fleet[0])
    moved_to = reshard_under_load(t, cluster, fleet, spare)
    failover_under_load(t, cluster, fleet, spare, moved_to)
    node_metrics(t, cluster, fleet + [spare])
    master_down(t, cluster, fleet[0])
    for s in fleet + [spare]:
        t.ok(s.alive(), "%s: the same process ran throughout" % s.name)
        s.stop()


if __name__ == "__main__":
    h.run(main, time_limit=180)
