# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Helpers for the observability scenarios (o_*.py) that harness.py does not
# offer: a parser for the Prometheus text format (so a test reads counters
# back by name and labels), promtool and a real Prometheus server from the
# Debian package (started by pid on a loopback port with a conf of its own in
# the test's temp dir), /readyz polling, and reading the JSON access log and
# the error log. Standard library only; every wait is bounded.

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import harness as h


# ---------------------------------------------------------------------------
# Prometheus text format 0.0.4

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v):
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            n = v[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_metrics(text):
    """Samples of an exposition as a list of (name, {label: value}, float).
    Raises ValueError on a line it cannot read (promtool is the real judge;
    this only has to read back what it accepted)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (n, line))
        labels = {}
        body = m.group(2)
        if body:
            inner = body[1:-1]
            pos = 0
            while pos < len(inner):
                lm = _LABEL.match(inner, pos)
                if not lm:
                    raise ValueError("line %d: bad labels: %r" % (n, line))
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def series(samples, name, **labels):
    """{frozen label set: value} of the samples of `name` whose labels include
    `labels` (label names that are Python keywords: pass via **{...})."""
    res = {}
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == val for k, val in labels.items()):
            res[tuple(sorted(lab.items()))] = v
    return res


def value(samples, name, **labels):
    """The value of the one sample of `name` with exactly these labels, or
    None when there is no such sample."""
    want = tuple(sorted(labels.items()))
    for n, lab, v in samples:
        if n == name and tuple(sorted(lab.items())) == want:
            return v
    return None


def scrape(admin, timeout=2.0):
    """(status, content-type, text) of GET /metrics on the admin listener."""
    host, port = h.split_addr(admin)
    req = urllib.request.Request("http://%s:%d/metrics" % (host, port))
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode("utf-8")


def scrape_until(admin, pred, timeout=3.0):
    """Scrapes until pred(samples) holds or timeout; returns (text, samples)
    of the last scrape. Workers count a request as it finishes, which may be
    a moment after the client read the response, hence the retry."""
    deadline = time.monotonic() + timeout
    while True:
        _, _, text = scrape(admin)
        samples = parse_metrics(text)
        if pred(samples) or time.monotonic() >= deadline:
            return text, samples
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# promtool and prometheus (Debian package "prometheus")

def tool(name):
    """Path of a Prometheus tool, or None. Scenarios must fail, not skip,
    when it is missing: the project installs the package."""
    return shutil.which(name) or next(
        (p for p in ("/usr/bin/" + name, "/usr/local/bin/" + name) if os.access(p, os.X_OK)),
        None)


def promtool_check_metrics(text, timeout=20):
    """Runs `promtool check metrics` on text; (exit code, output)."""
    p = subprocess.run([tool("promtool"), "check", "metrics"], input=text.encode("utf-8"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


class Prometheus:
    """A prometheus server on a free loopback port, scraping `targets` (admin
    addresses) as job `job` every second; data and logs in its own dir.
    Stopped by pid (SIGTERM, then SIGKILL) at the end of the scenario."""

    def __init__(self, env, targets, job="sluice", name="prometheus"):
        self.env = env
        self.job = job
        self.port = h.free_port()
        self.dir = env.path(name)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.conf_path = os.path.join(self.dir, "prometheus.yml")
        self.log_path = os.path.join(self.dir, "prometheus.log")
        with open(self.conf_path, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: %s\n"
                    "    static_configs:\n"
                    "      - targets: [%s]\n"
                    % (json.dumps(job), ", ".join(json.dumps(t) for t in targets)))
        self.proc = None
        self.log = None
        env.at_exit(self.stop)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=15.0):
        exe = tool("prometheus")
        if not exe:
            raise RuntimeError("prometheus not found: install the Debian package prometheus")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [exe, "--config.file=" + self.conf_path,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=" + self.addr,
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            cwd=self.dir)
        ok = h.wait_until(lambda: self.proc.poll() is not None or self._ready(), timeout, 0.1)
        if self.proc.poll() is not None or not ok:
            tail = self.log_text()[-2000:]
            self.stop()
            raise RuntimeError("prometheus did not become ready on %s within %.0fs; log:\n%s"
                               % (self.addr, timeout, tail))
        return self

    def _ready(self):
        try:
            with urllib.request.urlopen("http://%s/-/ready" % self.addr, timeout=0.5) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def query(self, promql, timeout=3.0):
        """The result list of an instant query (/api/v1/query), each item a
        dict with "metric" and "value" [ts, "string"]; raises on an error."""
        url = "http://%s/api/v1/query?%s" % (self.addr, urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.loads(r.read().decode("utf-8"))
        if doc.get("status") != "success":
            raise RuntimeError("query %r: %r" % (promql, doc))
        return doc["data"]["result"]

    def scalar(self, promql):
        """The value of a query that returns one series, or None (none or
        several series)."""
        res = self.query(promql)
        if len(res) != 1:
            return None
        return float(res[0]["value"][1])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None


# ---------------------------------------------------------------------------
# /readyz

def readyz(admin):
    """(status, parsed JSON body or the raw bytes) of GET /readyz, or None."""
    r = h.admin_get(admin, "/readyz", timeout=1.0)
    if r is None:
        return None
    status, body = r
    try:
        return status, json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return status, body


def wait_readyz(admin, status, timeout, interval=0.05):
    """Polls /readyz until it answers `status`; returns (seconds waited, last
    answer)."""
    t0 = time.monotonic()
    last = [None]

    def pred():
        last[0] = readyz(admin)
        return last[0] is not None and last[0][0] == status
    h.wait_until(pred, timeout, interval)
    return time.monotonic() - t0, last[0]


# ---------------------------------------------------------------------------
# logs

def read_json_lines(path):
    """The complete JSON lines of a file, and the lines that do not parse."""
    good, bad = [], []
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return good, bad
    for line in data.split("\n")[:-1]:     # the last piece may be a partial line
        try:
            good.append(json.loads(line))
        except ValueError:
            bad.append(line)
    return good, bad


def wait_access_lines(path, pred, timeout=3.0):
    """Waits (the access log is flushed about once a second) until pred(lines)
    holds; returns (lines, bad lines)."""
    res = [([], [])]

    def ok():
        res[0] = read_json_lines(path)
        return pred(res[0][0])
    h.wait_until(ok, timeout, 0.1)
    return res[0]
