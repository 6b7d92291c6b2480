# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A real Redis Cluster on loopback for the r_redis_cluster scenario: N
# redis-server in cluster mode (each with its bus on a free port of its own:
# port + 10000 may be past 65535 for a high ephemeral port), joined by
# `redis-cli --cluster create`, and read back through CLUSTER SLOTS and
# CLUSTER NODES. Also the key slot computed here (CRC16/XMODEM mod 16384,
# hash tags respected), so a test can choose key values by the master that
# holds them without one CLUSTER KEYSLOT round trip per candidate.
# Every wait is bounded; processes are stopped by pid (harness.Redis).

import shutil
import subprocess
import time

import harness as h

SLOTS = 16384


def _crc16_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data):
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


def key_slot(key):
    """The slot Redis Cluster gives `key` (str or bytes): CRC16 of the hash
    tag (the bytes between the first `{` and the next `}`, when not empty),
    else of the whole key, mod 16384."""
    k = key.encode() if isinstance(key, str) else key
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % SLOTS


class Cluster:
    """`n` cluster-mode redis-servers, then `redis-cli --cluster create` with
    `replicas` replicas per master. Node objects are harness.Redis."""

    def __init__(self, env, n=6, replicas=1, node_timeout_ms=1000):
        self.env = env
        self.replicas = replicas
        self.nodes = []
        for i in range(n):
            bus = h.free_port()
            node = h.Redis(env, "cluster-%d" % i, extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % i,
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-port", str(bus)])
            self.nodes.append(node)
        for node in self.nodes:
            node.start()

    @staticmethod
    def addr(node):
        return "127.0.0.1:%d" % node.port

    def by_port(self, port):
        return next(x for x in self.nodes if x.port == int(port))

    def seeds_url(self, seeds):
        return "redis-cluster://" + ",".join(self.addr(x) for x in seeds)

    def create(self, timeout=30):
        """Joins the nodes; True once every node reports cluster_state:ok and
        agrees on all 16384 slots being served."""
        args = [shutil.which("redis-cli"), "--cluster", "create"]
        args += [self.addr(x) for x in self.nodes]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        self.create_output = p.stdout.decode("utf-8", "replace")
        if p.returncode != 0:
            return False
        return h.wait_until(self.all_ok, timeout, 0.1)

    def info(self, node):
        try:
            text = node.cmd("CLUSTER", "INFO", timeout=1.0)
        except (OSError, h.RedisError):
            return {}
        out = {}
        for ln in text.splitlines():
            k, _, v = ln.partition(":")
            out[k.strip()] = v.strip()
        return out

    def all_ok(self):
        for node in self.nodes:
            i = self.info(node)
            if i.get("cluster_state") != "ok" or i.get("cluster_slots_ok") != str(SLOTS):
                return False
        return True

    def cli(self, args, timeout=60):
        """redis-cli --cluster ...; (exit code, output)."""
        p = subprocess.run([shutil.which("redis-cli"), "--cluster"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def slot_owners(self, via=None):
        """{slot: master port} from CLUSTER SLOTS asked of `via` (default:
        the first node that answers)."""
        for node in ([via] if via else self.nodes):
            try:
                ranges = node.cmd("CLUSTER", "SLOTS", timeout=1.0)
            except (OSError, h.RedisError):
                continue
            owners = {}
            for r in ranges:
                lo, hi, master = r[0], r[1], r[2]
                for s in range(lo, hi + 1):
                    owners[s] = int(master[1])
            return owners
        return {}

    def node_table(self, via):
        """CLUSTER NODES of `via`: {port: (id, flags set, master id or '-')}."""
        out = {}
        for ln in via.cmd("CLUSTER", "NODES", timeout=1.0).splitlines():
            f = ln.split()
            if len(f) < 8:
                continue
            port = int(f[1].split("@")[0].rpartition(":")[2])
            out[port] = (f[0], set(f[2].split(",")), f[3])
        return out

    def masters(self):
        """Ports of the masters that serve slots, as the nodes now agree."""
        return sorted(set(self.slot_owners().values()))

    def node_id(self, node):
        return node.cmd("CLUSTER", "MYID", timeout=1.0)

    def replica_of(self, master):
        """A node that replicates `master` (by its own CLUSTER NODES)."""
        mid = self.node_id(master)
        for node in self.nodes:
            if node is master:
                continue
            try:
                t = self.node_table(node)
            except (OSError, h.RedisError):
                continue
            me = t.get(node.port)
            if me and "slave" in me[1] and me[2] == mid:
                return node
        return None

    def role(self, node):
        try:
            return node.cmd("ROLE", timeout=1.0)[0]
        except (OSError, h.RedisError):
            return None

    def dbsize(self, node):
        return node.cmd("DBSIZE", timeout=1.0)

    def get(self, key):
        """GET of `key` from the master that owns its slot now (READONLY is
        not used: a replica's copy may lag)."""
        owner = self.slot_owners().get(key_slot(key))
        return self.by_port(owner).cmd("GET", key, timeout=1.0)

    def wait_converged(self, timeout=15):
        """True once every node agrees on one owner per slot for all slots
        and says cluster_state:ok."""
        def same():
            if not self.all_ok():
                return False
            maps = [self.slot_owners(via=x) for x in self.nodes]
            return all(m == maps[0] and len(m) == SLOTS for m in maps)
        return h.wait_until(same, timeout, 0.1)


def values_where(key_of, want, count, prefix="v"):
    """`count` value strings v ("<prefix>0", "<prefix>1", ...) for which
    want(key_slot(key_of(v))) is true; fewer if 200000 candidates do not
    give them."""
    out = []
    for i in range(200000):
        if len(out) >= count:
            break
        v = "%s%d" % (prefix, i)
        if want(key_slot(key_of(v))):
            out.append(v)
    return out


def wait_time(fn, timeout, interval=0.05):
    """(value, seconds taken) of h.wait_until."""
    t0 = time.monotonic()
    v = h.wait_until(fn, timeout, interval)
    return v, time.monotonic() - t0
