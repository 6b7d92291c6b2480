#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Redis Sentinel (issue 11, point 3): store.url = "redis-sentinel://.../NAME/0"
# with sentinel AUTH from store.sentinel.password_file. The master is asked of
# the sentinels (the first address listed has nothing listening: the next is
# asked), then SENTINEL FAILOVER under load: both daemons follow the new
# master within seconds (their buckets land there), nothing crashes, requests
# during the switch follow on_error ("allow": only 200; "deny": 200 or 503),
# and afterwards the fleet bound holds on a fresh key. A wrong sentinel
# password: on_error decides, the refusal is logged without the password;
# the right one written to the file is used after a reload.
# Client: 2 load threads per daemon with fresh keys; then 4 threads on one
# key. Upstream: /echo. Redis: a master, a replica (--replicaof), three
# sentinels (redis-sentinel, or redis-server --sentinel when that package is
# not installed: the same binary; each its own conf file), requirepass on
# the sentinels. Depending on timing sluice follows through the
# +switch-master message or through asking the sentinel once subscribed;
# the note at the end says which. Daemons: on_error allow and deny, 2 workers each, limit
# rate 20 per 1s, burst 20 on header:X-Key.

import os
import shutil
import subprocess
import time

import harness as h

NAME = "mymaster"
SENTINEL_PW = "s3ntinel-Pw"
RATE, BURST, DURATION = 20.0, 20.0, 2.0

CONF = """\
listen = "${listen}"
admin = "${admin}"
workers = 2
access_log = "off"
store = { kind = "redis", url = "${url}", timeout = "200ms", on_error = "${policy}",
          sentinel = { password_file = "${pwfile}" } }
upstreams = { app = { servers = { "127.0.0.1:${up}" }, keepalive = 16 } }
limits = { per_key = { key = "header:X-Key", rate = 20, per = "1s", burst = 20 } }
routes = { { path = "/", upstream = "app", limits = { "per_key" } } }
"""

SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
daemonize no
dir {dir}
requirepass {pw}
sentinel sentinel-pass {pw}
sentinel monitor {name} 127.0.0.1 {master} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 6000
sentinel parallel-syncs {name} 1
"""


class Sentinel:
    """redis-server --sentinel on a free port, with a conf of its own (a
    sentinel rewrites it); stopped by pid."""

    def __init__(self, env, i, master_port):
        self.port = h.free_port()
        self.dir = env.path("sentinel-%d" % i)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(SENTINEL_CONF.format(port=self.port, dir=self.dir, pw=SENTINEL_PW,
                                         name=NAME, master=master_port))
        self.log = open(os.path.join(self.dir, "sentinel.log"), "ab")
        # Debian's redis-sentinel is the redis-server binary started in
        # sentinel mode: use it when installed, else the same thing by flag
        exe = shutil.which("redis-sentinel")
        args = [exe, self.conf] if exe else [shutil.which("redis-server"), self.conf,
                                             "--sentinel"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        env.at_exit(self.stop)

    def cmd(self, *args):
        r = h.Redis.__new__(h.Redis)
        r.port, r.password = self.port, SENTINEL_PW
        return r.cmd(*args, timeout=2.0)

    def ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except (OSError, h.RedisError):
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()


def role(redis):
    try:
        return redis.cmd("ROLE")[0]
    except (OSError, h.RedisError):
        return None


def has_key(redis, part):
    try:
        return len(redis.cmd("KEYS", "*%s*" % part)) > 0
    except (OSError, h.RedisError):
        return False


def failover(t, sentinel):
    """SENTINEL FAILOVER, again while the sentinel has no fresh view of the
    replica yet (NOGOODSLAVE)."""
    deadline = time.monotonic() + 15
    last = None
    while time.monotonic() < deadline:
        try:
            return sentinel.cmd("SENTINEL", "FAILOVER", NAME) == "OK"
        except h.RedisError as e:
            last = str(e)
            time.sleep(0.3)
    t.ok(False, "SENTINEL FAILOVER accepted", last)
    return False


def fleet_bound(t, s, label):
    """4 threads on one fresh key for DURATION seconds: admitted <= burst +
    rate x T, T measured from the first request sent to the last answer."""
    key = "fleet-%s-%f" % (label, time.monotonic())
    load = h.Load(s.addr, 4, lambda i, n: h.request_bytes("GET", "/echo", [("X-Key", key)]))
    t0 = time.monotonic()
    load.start()
    time.sleep(DURATION)
    counts = load.stop()
    T = time.monotonic() - t0
    admitted = counts.get(200, 0)
    bound = BURST + RATE * T
    t.note("%s: fleet key statuses %s over %.2fs, bound %.1f" % (label, counts, T, bound))
    t.ok(set(counts) <= {200, 429}, "%s: afterwards only 200 and 429" % label, counts)
    t.ok(counts.get(429, 0) > 0, "%s: the load exceeded the limit" % label, counts)
    t.ok(admitted <= bound, "%s: admitted %d <= burst + rate x T = %.1f"
         % (label, admitted, bound))
    t.ok(admitted >= 0.8 * BURST, "%s: admitted %d, at least most of the burst"
         % (label, admitted))


def main(env):
    t = env.t
    up = env.upstream("app")
    master = h.Redis(env, "master")
    master.start()
    replica = h.Redis(env, "replica", extra_args=["--replicaof", "127.0.0.1", str(master.port)])
    replica.start()
    t.ok(h.wait_until(lambda: "master_link_status:up" in replica.cmd("INFO", "replication"),
                      10, 0.1), "the replica is in sync")
    sentinels = [Sentinel(env, i, master.port) for i in range(3)]
    t.ok(h.wait_until(lambda: all(x.ping() for x in sentinels), 5, 0.05), "sentinels answer")

    pwfile = env.path("sentinel.pw")
    with open(pwfile, "w") as f:
        f.write(SENTINEL_PW + "\n")
    os.chmod(pwfile, 0o600)
    dead = h.free_port()   # nothing listens there: the next sentinel is asked
    url = "redis-sentinel://127.0.0.1:%d,%s/%s/0" % (
        dead, ",".join("127.0.0.1:%d" % x.port for x in sentinels), NAME)
    daemons = {p: env.sluice(CONF, name="sluice-" + p,
                             values={"up": up.port, "url": url, "policy": p, "pwfile": pwfile})
               for p in ("allow", "deny")}

    for p, s in daemons.items():
        def first_ok(s=s, p=p):
            key = "base-%s-%f" % (p, time.monotonic())
            return (h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status == 200
                    and has_key(master, key))
        t.ok(h.wait_until(first_ok, 10, 0.1), "%s: the master found through the sentinels, "
             "its buckets in the master" % p)

    loads = {p: h.Load(s.addr, 2, lambda i, n, p=p: h.request_bytes(
        "GET", "/echo", [("X-Key", "load-%s-%d-%d" % (p, i, n))])).start()
        for p, s in daemons.items()}
    time.sleep(0.3)
    t_fail = time.monotonic()
    failed_over = failover(t, sentinels[1])
    t.ok(h.wait_until(lambda: role(replica) == "master", 15, 0.05), "the replica is promoted")
    t_promoted = time.monotonic()

    for p, s in daemons.items():
        def follows(s=s, p=p):
            key = "new-%s-%f" % (p, time.monotonic())
            return (h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status == 200
                    and has_key(replica, key))
        ok = h.wait_until(follows, 5, 0.1)
        t.ok(ok and failed_over, "%s: follows the failover within seconds (%.1fs after the "
             "promotion, %.1fs after SENTINEL FAILOVER)"
             % (p, time.monotonic() - t_promoted, time.monotonic() - t_fail))
    time.sleep(0.3)
    allowed = {"allow": {200}, "deny": {200, 503}}
    for p, load in loads.items():
        counts = load.stop()
        t.note("%s: load statuses during the switch %s" % (p, counts))
        bad = {k: v for k, v in counts.items() if k not in allowed[p]}
        t.ok(not bad and counts.get(200, 0) > 0, "%s: during the switch only %s (on_error)"
             % (p, sorted(allowed[p])), counts)

    for p, s in daemons.items():
        fleet_bound(t, s, p)
        t.ok(s.alive(), "%s: the same daemon process is still running" % p)
        log = s.stderr_text()
        t.ok("master at 127.0.0.1:%d" % replica.port in log,
             "%s: the new master is logged" % p, log[-2000:])
        t.ok(SENTINEL_PW not in log, "%s: the sentinel password is in no log line" % p)
        t.note("%s: followed by %s" % (p, "+switch-master" if "+switch-master)" in log
                                       else "rediscovery"))
        s.stop()

    # a wrong sentinel password: no sentinel answers, on_error decides, the
    # refusal is logged once with the sentinel's words and without the password
    badpw = env.path("bad.pw")
    with open(badpw, "w") as f:
        f.write("wr0ng-S3cret\n")
    os.chmod(badpw, 0o600)
    s = env.sluice(CONF, name="sluice-badpw",
                   values={"up": up.port, "url": url, "policy": "deny", "pwfile": badpw})
    r = h.request(s.addr, "GET", "/echo", [("X-Key", "badpw")])
    t.eq(r.status, 503, "wrong sentinel password: on_error = deny answers 503")
    t.ok(h.wait_until(lambda: "no sentinel named the master" in s.stderr_text(), 5, 0.05),
         "wrong sentinel password: logged", s.stderr_text()[-1500:])
    log = s.stderr_text()
    t.ok("AUTH" in log and "wr0ng-S3cret" not in log,
         "wrong sentinel password: the AUTH refusal is logged, the password is not", log[-1500:])
    # the right password in the file: a reload reads it, the new stores find
    # the current master, the old ones go (valgrind: no leak)
    with open(badpw, "w") as f:
        f.write(SENTINEL_PW + "\n")
    s.reload(CONF)

    def fixed():
        key = "reload-%f" % time.monotonic()
        return (h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status == 200
                and has_key(replica, key))
    t.ok(h.wait_until(fixed, 5, 0.1), "after a reload with the right sentinel password the "
         "current master is used")
    s.stop()

    # the sentinels by host name (a headless Service): every address of the
    # name is a sentinel, looked up by the daemon's resolver (dnsmasq here)
    if shutil.which("dnsmasq") is not None:
        from b_dns_upstream import Dnsmasq
        hosts = env.path("hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 sentinels.sluice.test\n")
        dns = Dnsmasq(env, hosts)
        by_name = "redis-sentinel://%s/%s/0" % (
            ",".join("sentinels.sluice.test:%d" % x.port for x in sentinels), NAME)
        s = env.sluice(CONF.replace("access_log = \"off\"\n", "access_log = \"off\"\n"
                                    "resolver = { servers = { \"127.0.0.1:${dns}\" } }\n"),
                       name="sluice-byname",
                       values={"up": up.port, "url": by_name, "policy": "deny",
                               "pwfile": pwfile, "dns": dns.port})

        def by_name_ok():
            key = "byname-%f" % time.monotonic()
            return (h.request(s.addr, "GET", "/echo", [("X-Key", key)]).status == 200
                    and has_key(replica, key))
        t.ok(h.wait_until(by_name_ok, 5, 0.1), "sentinels by host name: the current master "
             "is found through the resolver's addresses")
        s.stop()
    else:
        t.skip("sentinels by host name", "dnsmasq not installed (Debian: dnsmasq-base)")

    # -T prints store.sentinel: the file's name, never the password
    conf = env.path("check.conf")
    with open(conf, "w") as f:
        f.write(CONF.replace("${listen}", "127.0.0.1:1").replace("${admin}", "127.0.0.1:2")
                .replace("${url}", url).replace("${policy}", "allow")
                .replace("${pwfile}", pwfile).replace("${up}", str(up.port)))
    rc, out, err = h.run_cli(["-T", "-c", conf])
    t.eq(rc, 0, "-T exits 0")
    t.ok('password_file = "%s"' % pwfile in out and SENTINEL_PW not in out + err,
         "-T prints sentinel.password_file, not the password", out)


if __name__ == "__main__":
    h.run(main, time_limit=60)
