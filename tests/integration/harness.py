# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# What every integration scenario shares: free loopback ports, a redis-server
# in a temp dir, the real upstream (upstream.py), the sluice daemon started
# with a conf written inline by the test, raw-socket HTTP/1.1 client helpers,
# RSS sampling, and the check reporter ("ok - ..." / "FAIL - ..." lines and a
# final "N passed, M failed"). Standard library only.
#
# Environment:
#   SLUICE_BIN     the sluice binary (required unless SLUICE_ADDR is set)
#   SL_SOURCE_DIR  the repository root (for conf/ and lua/)
#   SLUICE_ADDR    host:port of a daemon you start yourself (e.g. under gdb):
#                  the harness writes the conf with that listen address, prints
#                  the command to run, and waits for it instead of spawning;
#                  SLUICE_ADMIN (default port+1) and SLUICE_PID (for signals)
#                  complete it. Scenarios needing several daemons cannot attach.
#   SL_KEEP_TMP=1  keep the temp dir (its path is printed)
#   SL_VALGRIND=1  run the daemon under valgrind (memcheck, full leak check);
#                  a stop then also fails on any valgrind error or definite or
#                  indirect leak. Waits on the daemon and the scenario's time
#                  limit are stretched. Not with a sanitized binary.
#
# Every wait here is bounded in time; nothing loops forever.

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import upstream as _upstream  # noqa: E402

Upstream = _upstream.Upstream
pattern_sha256 = _upstream.pattern_sha256

VALGRIND = os.environ.get("SL_VALGRIND", "") not in ("", "0")
# Leaks of these kinds count as errors, so exit code 99 covers them too.
VALGRIND_ARGS = ("--error-exitcode=99", "--leak-check=full",
                 "--errors-for-leak-kinds=definite,indirect",
                 "--show-leak-kinds=definite,indirect")
VALGRIND_EXIT = 99
# How much longer the daemon's start, stop and the whole scenario may take
# under valgrind (the JIT, the guest's threads serialised).
SLOW = 6 if VALGRIND else 1

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")
PROBLEM_TYPE = "application/problem+json"


# ---------------------------------------------------------------------------
# reporting

class Checks:
    """Collects checks; one line each, then a summary and the exit status."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.failures = []

    def ok(self, cond, label, detail=""):
        if cond:
            self.passed += 1
            print("ok - %s" % label, flush=True)
        else:
            self.failed += 1
            self.failures.append(label)
            msg = "FAIL - %s" % label
            if detail:
                msg += ": %s" % _short(detail)
            print(msg, flush=True)
        return bool(cond)

    def eq(self, got, want, label):
        return self.ok(got == want, label, "got %r, want %r" % (_short(got), _short(want)))

    def skip(self, label, why):
        print("skip - %s: %s" % (label, why), flush=True)

    def note(self, text):
        print("# %s" % text, flush=True)

    def summary(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0


def _short(v, n=600):
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "...(%d more)" % (len(s) - n)


class ScenarioTimeout(Exception):
    pass


class Env:
    """One scenario run: temp dir, checks, and everything to clean up."""

    def __init__(self, name, time_limit):
        self.name = name
        self.t = Checks(name)
        self.tmp = tempfile.mkdtemp(prefix="sl-it-%s-" % name)
        self.cleanups = []
        self.time_limit = time_limit

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def at_exit(self, fn):
        self.cleanups.append(fn)

    # convenience constructors that register their own cleanup
    def upstream(self, name="up", port=0, unix_path=None):
        up = Upstream(name, port, unix_path=unix_path).start()
        self.at_exit(up.stop)
        return up

    def redis(self, name="redis"):
        r = Redis(self, name)
        r.start()
        return r

    def sluice(self, conf, name="sluice", start=True, **kw):
        s = Sluice(self, conf, name, **kw)
        if start:
            s.start()
        return s


def run(fn, time_limit=150):
    """Runs scenario fn(env); prints the summary and exits with its status."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    time_limit *= SLOW
    env = Env(name, time_limit)
    print("# %s (tmp %s)%s" % (name, env.tmp, " under valgrind" if VALGRIND else ""),
          flush=True)

    def on_alarm(signum, frame):
        raise ScenarioTimeout("scenario exceeded %ds" % time_limit)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(time_limit)
    try:
        fn(env)
    except ScenarioTimeout as e:
        env.t.ok(False, "scenario finished in time", str(e) + "\n" + traceback.format_exc())
    except Exception as e:  # a crash of the test is a failure, with its trace
        env.t.ok(False, "scenario ran to the end", "%s: %s\n%s" % (
            type(e).__name__, e, traceback.format_exc()))
    finally:
        signal.alarm(0)
        for fn_ in reversed(env.cleanups):
            try:
                fn_()
            except Exception as e:
                env.t.ok(False, "cleanup", "%s: %s" % (type(e).__name__, e))
    rc = env.t.summary()
    if rc == 0 and not os.environ.get("SL_KEEP_TMP"):
        shutil.rmtree(env.tmp, ignore_errors=True)
    else:
        print("# temp dir kept: %s" % env.tmp, flush=True)
    sys.exit(rc)


# ---------------------------------------------------------------------------
# small utilities

_PORTS_GIVEN = set()


def free_port():
    """A port free on 127.0.0.1 right now (bind to 0, read it, release it).
    Never the same port twice in one scenario: the kernel may hand a just
    released port out again, and two listeners of one test must differ."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no fresh free port after 100 tries")


def wait_until(pred, timeout, interval=0.02):
    """Polls pred() until truthy or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(interval)
        v = pred()
    return v


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler:
    """Samples a pid's RSS in a thread; .max_kb after stop()."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            v = rss_kb(self.pid)
            if v is not None:
                self.max_kb = max(self.max_kb, v)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join(2)
        return False


def binary_is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__ubsan_handle" in data or b"__tsan_init" in data


def source_dir():
    d = os.environ.get("SL_SOURCE_DIR")
    if d:
        return d
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sluice_bin():
    b = os.environ.get("SLUICE_BIN")
    if not b:
        raise RuntimeError("SLUICE_BIN is not set (path of the sluice binary)")
    if not os.access(b, os.X_OK):
        raise RuntimeError("SLUICE_BIN=%s is not an executable" % b)
    return b


def run_cli(args, timeout=10, env=None):
    """Runs sluice with args; returns (exit code, stdout, stderr) as text."""
    p = subprocess.run([sluice_bin()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# raw HTTP/1.1 client

class NoResponse(Exception):
    """The connection closed before a complete response head arrived."""

    def __init__(self, partial):
        super().__init__("connection closed before a response head (got %r)" % partial[:200])
        self.partial = partial


class Timeout(Exception):
    pass


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []       # [(name, value)] in order
        self.body = b""
        self.body_len = 0       # bytes of body seen (also when sunk elsewhere)
        self.framing = None     # "length", "chunked", "close", "none"
        self.complete = False   # framing said the body ended
        self.trailers = []
        self.raw_head = b""

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%s %s %s, %d body bytes%s>" % (self.version, self.status, self.reason,
                                                 self.body_len,
                                                 "" if self.complete else ", incomplete")


class Conn:
    """A client connection with a read buffer (so pipelined responses parse)."""

    def __init__(self, addr, timeout=5.0, source=None):
        """source: a local address to connect from (e.g. "127.0.0.2"), so a
        test can be a different client on loopback."""
        host, port = addr if isinstance(addr, tuple) else split_addr(addr)
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads more into buf; returns False at EOF. Raises Timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("no data within the timeout")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise Timeout("no data within the timeout")
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, method="GET", timeout=5.0, sink=None, allow_1xx=False):
        """Reads one response. 1xx interim responses are skipped unless allow_1xx.
        sink(bytes) receives the body instead of Response.body when given.
        An incomplete body (EOF early) returns with complete=False."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_one(method, deadline, sink)
            if r.status is not None and 100 <= r.status < 200 and not allow_1xx \
                    and r.status != 101:
                continue
            return r

    def _read_one(self, method, deadline, sink):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if not self._fill(deadline):
                raise NoResponse(self.buf)
        head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
        r = Response()
        r.raw_head = head
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        r.version = parts[0]
        r.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        r.reason = parts[2] if len(parts) > 2 else ""
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            r.headers.append((k, v.strip(" \t")))

        def take(data):
            r.body_len += len(data)
            if sink:
                sink(data)
            else:
                r.body += data

        if r.status is None:
            r.framing = "none"
            return r
        if method == "HEAD" or 100 <= r.status < 200 or r.status in (204, 304):
            r.framing = "none"
            r.complete = True
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if "chunked" in te:
            r.framing = "chunked"
            while True:
                line = self._line(deadline)
                if line is None:
                    return r
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return r
                if size == 0:
                    while True:
                        t = self._line(deadline)
                        if t is None:
                            return r
                        if t == b"":
                            r.complete = True
                            return r
                        k, _, v = t.decode("latin-1").partition(":")
                        r.trailers.append((k, v.strip()))
                left = size
                while left > 0:
                    if not self.buf and not self._fill(deadline):
                        return r
                    piece, self.buf = self.buf[:left], self.buf[left:]
                    take(piece)
                    left -= len(piece)
                if self._line(deadline) is None:
                    return r
        elif cl is not None:
            r.framing = "length"
            left = int(cl)
            while left > 0:
                if not self.buf and not self._fill(deadline):
                    return r
                piece, self.buf = self.buf[:left], self.buf[left:]
                take(piece)
                left -= len(piece)
            r.complete = True
            return r
        else:
            r.framing = "close"
            while True:
                if self.buf:
                    take(self.buf)
                    self.buf = b""
                if not self._fill(deadline):
                    r.complete = True
                    return r

    def _line(self, deadline):
        """One CRLF line without its end, or None at EOF."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2:]
                return out
            if not self._fill(deadline):
                return None

    def wait_closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within timeout; bytes that
        arrive meanwhile are kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
            return True
        except Timeout:
            return False
        except OSError:
            return True

    def is_open(self, wait=0.05):
        """True if the connection is still open (no EOF within `wait`)."""
        return not self.wait_closed(wait)


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def request_bytes(method, target, headers=(), body=None, version="HTTP/1.1", host="test"):
    """Builds a request; headers is a list of (name, value); Host first unless
    host is None or headers already carry one."""
    lines = ["%s %s %s" % (method, target, version)]
    names = [k.lower() for k, _ in headers]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def request(addr, method, target, headers=(), body=None, timeout=5.0, host="test", source=None):
    """One request on a fresh connection; returns the Response."""
    with Conn(addr, timeout, source) as c:
        c.send(request_bytes(method, target, headers, body, host=host))
        return c.read_response(method, timeout)


def chunk_body(pieces):
    out = b""
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n\r\n"


def problem_ok(t, r, status, label):
    """Checks that r is a problem+json error with that status."""
    t.eq(r.status, status, "%s: status %d" % (label, status))
    ctype = (r.header("content-type") or "").split(";")[0].strip().lower()
    t.eq(ctype, PROBLEM_TYPE, "%s: content-type problem+json" % label)
    try:
        doc = json.loads(r.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        t.ok(False, "%s: body is JSON" % label, "%s; body %r" % (e, r.body[:200]))
        return None
    missing = [k for k in ("type", "title", "status", "detail") if k not in doc]
    t.ok(not missing, "%s: problem has type/title/status/detail" % label,
         "missing %s in %r" % (missing, doc))
    t.eq(doc.get("status"), status, "%s: problem status field" % label)
    return doc


def admin_get(addr, path, timeout=2.0):
    """GET on the admin listener through http.client; (status, body) or None."""
    host, port = split_addr(addr)
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


# ---------------------------------------------------------------------------
# redis-server

class Redis:
    """redis-server on a free port in a temp dir; a tiny RESP client for tests."""

    def __init__(self, env, name="redis", extra_args=(), password=None):
        """extra_args go to redis-server (e.g. ("--unixsocket", path));
        password: requirepass, also used by cmd()."""
        self.env = env
        self.name = name
        self.extra_args = list(extra_args)
        self.password = password
        self.port = free_port()
        self.dir = env.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.log = None
        env.at_exit(self.stop)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=5.0):
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server not found: install redis-server (the suite "
                               "does not skip)")
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if _redis_major(exe) >= 7:
            args += ["--enable-debug-command", "yes"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        ok = wait_until(lambda: self.proc.poll() is not None or self._ping(), timeout, 0.02)
        if self.proc.poll() is not None or not ok:
            raise RuntimeError("redis-server did not answer PING on port %d" % self.port)
        return self

    def _ping(self):
        try:
            return self.cmd("PING", timeout=0.5) == "PONG"
        except (OSError, RedisError):
            return False

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s."""
        self._end(signal.SIGTERM)

    def kill(self):
        self._end(signal.SIGKILL)

    def _end(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def restart(self):
        self.stop()
        return self.start()

    def cmd(self, *args, timeout=5.0, db=0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(resp_encode(("AUTH", self.password)))
                resp_read(f)
            if db:
                s.sendall(resp_encode(("SELECT", db)))
                resp_read(f)
            s.sendall(resp_encode(args))
            return resp_read(f)


class RedisError(Exception):
    pass


def _redis_major(exe):
    try:
        out = subprocess.run([exe, "--version"], stdout=subprocess.PIPE, timeout=5).stdout
        m = re.search(rb"v=(\d+)\.", out)
        return int(m.group(1)) if m else 0
    except (OSError, subprocess.SubprocessError):
        return 0


def resp_encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def resp_read(f):
    line = f.readline()
    if not line:
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [resp_read(f) for _ in range(n)]
    raise RedisError("bad reply %r" % line)


# ---------------------------------------------------------------------------
# the daemon

class Sluice:
    """sluice started with an inline conf. The conf is a string.Template:
    ${listen} ${admin} (addresses), ${port} ${admin_port}, ${tmp} (the
    daemon's own dir) plus any keyword given in `values`."""

    def __init__(self, env, conf, name="sluice", values=None, extra_env=None, preexec_fn=None):
        """preexec_fn runs in the child before exec (e.g. to set rlimits)."""
        self.env = env
        self.preexec_fn = preexec_fn
        self.t = env.t
        self.name = name
        self.dir = env.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "sluice.conf")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.values = dict(values or {})
        self.extra_env = extra_env or {}
        self.proc = None
        self.attached = bool(os.environ.get("SLUICE_ADDR"))
        if self.attached:
            host, port = split_addr(os.environ["SLUICE_ADDR"])
            self.port = port
            adm = os.environ.get("SLUICE_ADMIN")
            self.admin_port = split_addr(adm)[1] if adm else port + 1
        else:
            self.port = free_port()
            self.admin_port = free_port()
        self.stopped = False
        self.starts = 0
        self.valgrind_log = None
        self.write_conf(conf)
        env.at_exit(self._cleanup)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    @property
    def admin(self):
        return "127.0.0.1:%d" % self.admin_port

    @property
    def pid(self):
        if self.proc:
            return self.proc.pid
        p = os.environ.get("SLUICE_PID")
        return int(p) if p else None

    def render(self, conf):
        v = {"listen": self.addr, "admin": self.admin, "port": self.port,
             "admin_port": self.admin_port, "tmp": self.dir}
        v.update(self.values)
        return string.Template(conf).substitute(v)

    def write_conf(self, conf):
        text = self.render(conf)
        tmp = self.conf_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)
        return self.conf_path

    def start(self, timeout=10.0):
        if self.attached:
            print("# attach mode: start `sluice -c %s` (listen %s, admin %s); waiting"
                  % (self.conf_path, self.addr, self.admin), flush=True)
            wait = float(os.environ.get("SLUICE_WAIT", "300"))
            if not wait_until(self.healthy, wait, 0.2):
                raise RuntimeError("no daemon answered /healthz on %s" % self.admin)
            return self
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(self.extra_env)
        self.stderr_file = open(self.stderr_path, "ab")
        argv = [sluice_bin(), "-c", self.conf_path]
        self.starts += 1
        self.stopped = False
        if VALGRIND:
            argv = self._valgrind_argv() + argv
            timeout *= SLOW
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.stderr_file,
                                     stderr=self.stderr_file, env=env,
                                     preexec_fn=self.preexec_fn)
        ok = wait_until(lambda: self.proc.poll() is not None or self.healthy(), timeout, 0.02)
        if self.proc.poll() is not None or not ok:
            was_running = self.proc.poll() is None
            if was_running:
                self.proc.kill()
                self.proc.wait(5)
            self.stopped = True
            self.stderr_file.close()
            self.check_sanitizers()
            self.check_valgrind(self.proc.returncode, killed=was_running)
            raise RuntimeError("%s did not become healthy on %s (exit %r); stderr:\n%s" % (
                self.name, self.admin, self.proc.poll(), self.stderr_text()[-3000:]))
        return self

    def _valgrind_argv(self):
        exe = shutil.which("valgrind")
        if not exe:
            raise RuntimeError("SL_VALGRIND is set but valgrind is not installed")
        if binary_is_sanitized(sluice_bin()):
            raise RuntimeError("SL_VALGRIND is set but %s is built with sanitizers; valgrind "
                               "needs a plain build" % sluice_bin())
        # one log per start: a restarted daemon must not hide the first run's report
        self.valgrind_log = os.path.join(self.dir, "valgrind-%d.log" % self.starts)
        supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")
        args = [exe, "--log-file=%s" % self.valgrind_log] + list(VALGRIND_ARGS)
        if os.path.exists(supp):
            args.append("--suppressions=%s" % supp)
        return args

    def healthy(self):
        r = admin_get(self.admin, "/healthz", timeout=0.5 * SLOW)
        return r is not None and r[0] == 200

    def alive(self):
        if self.proc:
            return self.proc.poll() is None
        return True

    def signal(self, sig):
        pid = self.pid
        if pid is None:
            raise RuntimeError("attach mode without SLUICE_PID: cannot send signals")
        os.kill(pid, sig)

    def reload(self, conf):
        self.write_conf(conf)
        self.signal(signal.SIGHUP)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its code or None."""
        if not self.proc:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0, expect_code=0, check=True):
        """SIGTERM, wait up to timeout, SIGKILL; checks exit status and sanitizers
        (and valgrind's report under SL_VALGRIND). Returns the exit code
        (negative: killed by that signal)."""
        if self.stopped:
            return self.proc.returncode if self.proc else None
        self.stopped = True
        if not self.proc:
            return None
        timeout *= SLOW
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        killed = False
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self.proc.kill()
            self.proc.wait(5)
        self.stderr_file.close()
        code = self.proc.returncode
        if check:
            self.check_exit(code, killed, expect_code)
        return code

    def check_exit(self, code, killed=False, expect_code=0):
        t = self.t
        t.ok(not killed, "%s exited within the stop bound after SIGTERM" % self.name,
             "had to SIGKILL it")
        if not killed:
            t.ok(code is not None and code >= 0, "%s did not die on a signal" % self.name,
                 "exit %r; stderr tail:\n%s" % (code, self.stderr_text()[-2000:]))
            if expect_code is not None and not (VALGRIND and code == VALGRIND_EXIT):
                t.eq(code, expect_code, "%s exit code" % self.name)
        self.check_sanitizers()
        self.check_valgrind(code, killed)

    def valgrind_text(self):
        if not self.valgrind_log:
            return ""
        try:
            with open(self.valgrind_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check_valgrind(self, code, killed=False):
        """Under SL_VALGRIND: exit code 99 (valgrind found errors, leaks of the
        kinds counted included) or any error or definite/indirect leak in the
        log fails. A daemon that had to be killed leaves no report to read."""
        if not VALGRIND or not self.valgrind_log:
            return
        t = self.t
        text = self.valgrind_text()
        if killed or code is None or code < 0:
            t.ok(False, "%s: valgrind report" % self.name,
                 "the daemon was killed (exit %r), so valgrind wrote no report; log:\n%s"
                 % (code, text[-3000:]))
            return
        problems = []
        if code == VALGRIND_EXIT:
            problems.append("exit code %d (valgrind errors)" % VALGRIND_EXIT)
        m = re.search(r"ERROR SUMMARY: ([\d,]+) errors", text)
        if not m:
            problems.append("no ERROR SUMMARY in the log (valgrind did not finish)")
        elif int(m.group(1).replace(",", "")) > 0:
            problems.append("ERROR SUMMARY: %s errors" % m.group(1))
        for kind in ("definitely", "indirectly"):
            m = re.search(r"%s lost: ([\d,]+) bytes" % kind, text)
            if m and int(m.group(1).replace(",", "")) > 0:
                problems.append("%s lost: %s bytes" % (kind, m.group(1)))
        if re.search(r"^==\d+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|"
                     r"Mismatched free|Source and destination overlap)", text, re.M):
            problems.append("memcheck error reports in the log")
        if not t.ok(not problems, "%s: no valgrind errors or definite/indirect leaks"
                    % self.name, "%s; log %s" % ("; ".join(problems), self.valgrind_log)):
            # the reports themselves, past valgrind's banner
            lines = text.splitlines()
            start = next((i + 1 for i, ln in enumerate(lines) if "Parent PID:" in ln), 0)
            for ln in lines[start:start + 300]:
                t.note(ln)

    def check_sanitizers(self):
        text = self.stderr_text()
        hits = [m for m in SANITIZER_MARKS if m in text]
        i = min([text.find(m) for m in hits]) if hits else 0
        self.t.ok(not hits, "%s: no sanitizer report on stderr" % self.name,
                  text[max(0, i - 200):i + 3000])

    def _cleanup(self):
        if self.proc and not self.stopped:
            self.stop()


# ---------------------------------------------------------------------------
# background load

class Load:
    """Requests from `nthreads` threads over keep-alive connections until
    stop(); make(i, n) returns the request bytes for thread i's n-th request.
    Results are (monotonic time, status or exception name) in .results."""

    def __init__(self, addrs, nthreads, make, timeout=3.0):
        self.addrs = addrs if isinstance(addrs, list) else [addrs]
        self.make = make
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ths = [threading.Thread(target=self._run, args=(i,), daemon=True)
                     for i in range(nthreads)]

    def _run(self, i):
        addr = self.addrs[i % len(self.addrs)]
        c = None
        n = 0
        deadline = time.monotonic() + 120   # a hard bound on any load
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if c is None:
                    c = Conn(addr, timeout=self.timeout)
                c.send(self.make(i, n))
                r = c.read_response(timeout=self.timeout)
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
            n += 1
            with self.lock:
                self.results.append((time.monotonic(), res))
        if c:
            c.close()

    def start(self):
        for th in self._ths:
            th.start()
        return self

    def stop(self):
        self._stop.set()
        for th in self._ths:
            th.join(self.timeout + 2)
        return self.counts()

    def counts(self, since=None, until=None):
        out = {}
        with self.lock:
            for ts, res in self.results:
                if (since is None or ts >= since) and (until is None or ts < until):
                    out[res] = out.get(res, 0) + 1
        return out


# ---------------------------------------------------------------------------
# /metrics, read back (obs_util.py has the strict parser the o_ scenarios use)

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(admin, timeout=2.0):
    """Samples of GET /metrics as [(name, {labels}, value)]; [] if unreachable."""
    r = admin_get(admin, "/metrics", timeout)
    if r is None or r[0] != 200:
        return []
    out = []
    for ln in r[1].decode("utf-8", "replace").splitlines():
        m = _SAMPLE_RE.match(ln)
        if ln.startswith("#") or not m:
            continue
        out.append((m.group(1), dict(_LABEL_RE.findall(m.group(3) or "")), float(m.group(4))))
    return out


def metric(samples, name, **labels):
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(v for n, ls, v in samples
               if n == name and all(ls.get(k) == w for k, w in labels.items()))
