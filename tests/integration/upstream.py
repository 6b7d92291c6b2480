#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# A small real HTTP/1.1 upstream for the integration tests and the README demo.
# One thread per connection, keep-alive, Content-Length and chunked request
# bodies read as a stream and hashed (never held whole), and behaviours picked
# by path so a test can make the upstream misbehave on purpose:
#
#   /echo, anything else   JSON: method, target, version, headers as received,
#                          body length and sha256, the upstream's name and port
#   /upload[?pause_ms=N]   like /echo; pauses N ms after the first MiB of body
#   /big?bytes=N[&chunked=1][&pause_ms=M]
#                          N pattern bytes (see pattern_sha256), streamed;
#                          pauses M ms after the first MiB
#   /chunked?n=N&size=S[&break=1]
#                          chunked response of N chunks; break=1 closes before
#                          the last chunk
#   /status/NNN            that status; 1xx/204/304 without a body
#   /slow?ms=N[&only=NAME] waits N ms, then answers like /echo; with only=,
#                          waits only in the upstream of that name (so that
#                          one server of a pool is the slow one)
#   /hang                  reads the request, never answers
#   /stall                 Content-Length 1000, sends 100 bytes, then hangs
#   /close-mid-body        Content-Length 1000, sends 100 bytes, closes
#   /close                 closes without answering
#   /malformed             a response head with a status line that is not HTTP, then closes
#   /reset                 resets the connection (SO_LINGER 0) without answering
#   /hop                   a response carrying hop-by-hop headers and two Set-Cookie
#   /health                status health_status (an attribute a test may flip; 200)
#   /cache/...?cc=&etag=&lm=&vary=&cookie=1&status=N&size=N&ms=N&stream_ms=N
#                          a response for cache tests: Cache-Control cc, ETag etag,
#                          Last-Modified lm (epoch seconds), Vary vary, a
#                          Set-Cookie, status N (200), waits ms first; the JSON body
#                          says how many requests this target got ("n") and the
#                          Accept-Language seen, padded to size bytes. A request
#                          whose If-None-Match holds etag gets 304. cache_mode
#                          "500" answers 500 instead, "hang" never answers.
#                          stream_ms: the body chunked, its end stream_ms after
#                          the rest (a stream, a slow download)
#   /eof?delay_ms=N        waits N ms, then a 200 without Content-Length (the
#                          body ends where the connection does), sent with
#                          the close right behind it
#   /ws, */ws[?always=1]   a WebSocket echo server (RFC 6455): a handshake
#                          (Upgrade: websocket) gets 101 and every data frame
#                          is sent back; "close-now" closes the connection, a
#                          close frame is answered and the connection closed;
#                          at EOF it sends the text "eof-seen" and closes;
#                          "flood:N" sends N binary frames of 64 KiB.
#                          always=1: 101 even to a request that asked for no
#                          upgrade (a broken upstream). No handshake: /echo
#
# force_status (None by default): when a test sets it, every path but /health
# gets that status, a sick server behind a healthy health endpoint.
#
# Every request head it receives is recorded (raw bytes included), and the
# bytes read on every connection are counted, so a test can assert that the
# upstream got nothing. Runnable on its own: `upstream.py --port 9000`.

import argparse
import base64
import hashlib
import json
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

MAX_HEAD = 1 << 20
BLOCK = bytes(i % 251 for i in range(65536))
EOF_BODY = b"a body framed by the end of the connection"


def pattern_chunks(n):
    """The bytes /big sends, as successive blocks."""
    while n > 0:
        k = min(n, len(BLOCK))
        yield BLOCK[:k]
        n -= k


def pattern_sha256(n):
    h = hashlib.sha256()
    for b in pattern_chunks(n):
        h.update(b)
    return h.hexdigest()


class _Closed(Exception):
    pass


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, mask=None):
    """One final frame; mask: 4 bytes (a client's frames are masked)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def ws_parse(buf):
    """(opcode, payload, rest) for the first whole frame in buf, or None."""
    if len(buf) < 2:
        return None
    opcode, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
    masked = buf[1] & 0x80
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack("!Q", buf[2:10])[0], 10
    mask = None
    if masked:
        if len(buf) < i + 4:
            return None
        mask, i = buf[i:i + 4], i + 4
    if len(buf) < i + n:
        return None
    payload = buf[i:i + n]
    if mask:
        payload = bytes(b ^ mask[j % 4] for j, b in enumerate(payload))
    return opcode, payload, buf[i + n:]


def ws_serve(sock, rd, key):
    """The /ws echo after the handshake: see the header of this file."""
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                  % ws_accept(key)).encode())
    while True:
        f = ws_parse(rd.buf)
        if f is None:
            try:
                rd.fill()
            except _Closed:
                try:
                    sock.sendall(ws_frame(1, b"eof-seen"))
                except OSError:
                    pass
                return
            continue
        opcode, payload, rd.buf = f
        if opcode == 8:
            sock.sendall(ws_frame(8, payload))
            return
        if payload == b"close-now":
            return
        if payload.startswith(b"flood:"):
            chunk = ws_frame(2, bytes(range(256)) * 256)
            for _ in range(int(payload[6:])):
                sock.sendall(chunk)
            continue
        sock.sendall(ws_frame(opcode, payload))


class _Reader:
    """Buffered reads from a socket that give up when the server stops."""

    def __init__(self, sock, stop, counter):
        self.sock = sock
        self.stop = stop
        self.buf = b""
        self.count = counter  # callable(nbytes)

    def fill(self):
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
                if not ready:
                    continue
                data = self.sock.recv(262144)
            except (OSError, ValueError):
                raise _Closed()
            if not data:
                raise _Closed()
            self.count(len(data))
            self.buf += data
            return
        raise _Closed()

    def line(self, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            if len(self.buf) > limit:
                raise _Closed()
            self.fill()

    def head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                return out
            if len(self.buf) > MAX_HEAD:
                raise _Closed()
            self.fill()

    def some(self, maxlen):
        if not self.buf:
            self.fill()
        out, self.buf = self.buf[:maxlen], self.buf[maxlen:]
        return out

    def wait_eof(self):
        """Blocks until the peer closes or the server stops; discards input."""
        try:
            while True:
                self.buf = b""
                self.fill()
        except _Closed:
            pass


class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 (or on the unix socket at
    unix_path); start() returns once listening."""

    def __init__(self, name="up", port=0, host="127.0.0.1", record=True, unix_path=None):
        self.name = name
        self.host = host
        self.unix_path = unix_path
        self.port = port
        self.record = record    # False: count requests but keep no records (demo)
        self.target_counts = {} # /cache/... requests by target
        self.cache_mode = None  # /cache/...: None, "500" (a 500, no-store) or "hang"
        self.nrequests = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.requests = []      # one dict per request head received
        self.bytes_received = 0
        self.connections = 0
        self.open_socks = set()
        self.lsock = None
        self.thread = None
        self.health_status = 200  # what /health answers
        self.force_status = None  # set: every other path answers this status

    # ---- lifecycle -----------------------------------------------------

    def start(self):
        if self.unix_path is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(self.unix_path)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            self.port = s.getsockname()[1]
        s.listen(256)
        s.settimeout(0.2)
        self.lsock = s
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        if self.thread:
            self.thread.join(2)
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.open_socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    @property
    def addr(self):
        if self.unix_path is not None:
            return "unix:" + self.unix_path
        return "%s:%d" % (self.host, self.port)

    # ---- what tests look at --------------------------------------------

    def snapshot(self):
        with self.lock:
            return (self.nrequests, self.bytes_received)

    def requests_since(self, n):
        with self.lock:
            return list(self.requests[n:])

    def wait_requests(self, n, timeout=3.0):
        """Waits until at least n requests were recorded; returns the count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.nrequests >= n:
                    return self.nrequests
            time.sleep(0.01)
        with self.lock:
            return self.nrequests

    # ---- server --------------------------------------------------------

    def _accept_loop(self):
        while not self.stop_event.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            # reads poll with select (to notice stop); this bounds a blocked send
            c.settimeout(60)
            with self.lock:
                self.connections += 1
                cid = self.connections
                self.open_socks.add(c)
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _count(self, n):
        with self.lock:
            self.bytes_received += n

    def _serve(self, sock, cid):
        rd = _Reader(sock, self.stop_event, self._count)
        try:
            seq = 0
            while not self.stop_event.is_set():
                keep = self._one(sock, rd, cid, seq)
                seq += 1
                if not keep:
                    break
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.open_socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _one(self, sock, rd, cid, seq):
        raw = rd.head()
        lines = raw[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
        except ValueError:
            method, target, version = "?", "?", "?"
        headers = []
        for ln in lines[1:]:
            name, _, value = ln.decode("latin-1").partition(":")
            headers.append([name, value.strip(" \t")])
        rec = {"method": method, "target": target, "version": version,
               "headers": headers, "raw_head": raw, "conn": cid, "seq": seq,
               "time": time.time(), "body_length": 0, "body_sha256": None,
               "body_done": False}
        with self.lock:
            self.nrequests += 1
            if self.record:
                self.requests.append(rec)

        def hget(name):
            for n, v in headers:
                if n.lower() == name:
                    return v
            return None

        url = urllib.parse.urlsplit(target)
        path = url.path
        q = dict(urllib.parse.parse_qsl(url.query))
        conn_hdr = (hget("connection") or "").lower()
        keep = version == "HTTP/1.1" and "close" not in conn_hdr
        if version == "HTTP/1.0" and "keep-alive" in conn_hdr:
            keep = True

        if (hget("expect") or "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        pause_ms = int(q.get("pause_ms", "0")) if path == "/upload" else 0
        self._read_body(rd, rec, hget, pause_ms)

        if path == "/health" or self.force_status is not None:
            status = self.health_status if path == "/health" else self.force_status
            body = json.dumps({"status": status, "upstream": self.name}).encode()
            self._send(sock, status, [("Content-Type", "application/json")], body, method, keep)
            return keep
        if path.endswith("/ws") and (hget("upgrade") or q.get("always") == "1"):
            ws_serve(sock, rd, hget("sec-websocket-key") or "")
            return False
        if path == "/hang":
            rd.wait_eof()
            return False
        if path == "/close":
            return False
        if path == "/malformed":
            sock.sendall(b"HTTP/1.1 2x0 Not a status\r\nContent-Length: 0\r\n\r\n")
            return False
        if path == "/reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if path == "/close-mid-body" or path == "/stall":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"x" * 100)
            if path == "/stall":
                rd.wait_eof()
            return False
        if path == "/eof":
            self._sleep(int(q.get("delay_ms", "0")) / 1000.0)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + EOF_BODY)
            return False
        if path == "/slow" and q.get("only", self.name) == self.name:
            self._sleep(int(q.get("ms", "100")) / 1000.0)
        if path == "/big":
            return self._big(sock, method, keep, int(q.get("bytes", "0")),
                             q.get("chunked") == "1", int(q.get("pause_ms", "0")))
        if path == "/chunked":
            return self._chunked(sock, method, keep, int(q.get("n", "5")),
                                 int(q.get("size", "100")), q.get("break") == "1")
        if path.startswith("/status/"):
            try:
                status = int(path[len("/status/"):])
            except ValueError:
                status = 400
            if status < 200 or status in (204, 304):
                self._send(sock, status, [], None, method, keep)
            else:
                body = json.dumps({"status": status, "upstream": self.name}).encode()
                self._send(sock, status, [("Content-Type", "application/json")], body,
                           method, keep)
            return keep
        if path.startswith("/cache/"):
            return self._cache(sock, rd, method, keep, target, q, hget)
        if path == "/hop":
            extra = [("Connection", "X-Up-Hop"), ("X-Up-Hop", "1"),
                     ("Keep-Alive", "timeout=5, max=100"), ("Trailer", "X-Trailer"),
                     ("Upgrade", "h2c"), ("Proxy-Authenticate", "Basic realm=x"),
                     ("Proxy-Connection", "keep-alive"), ("TE", "trailers"),
                     ("X-Keep", "yes"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
            self._send(sock, 200, extra, b"hop\n", method, keep)
            return keep

        doc = {"upstream": self.name, "port": self.port, "method": method,
               "target": target, "path": path, "version": version,
               "headers": headers, "body_length": rec["body_length"],
               "body_sha256": rec["body_sha256"], "conn": cid, "seq": seq}
        body = json.dumps(doc).encode()
        self._send(sock, 200, [("Content-Type", "application/json")], body, method, keep)
        return keep

    def _cache(self, sock, rd, method, keep, target, q, hget):
        with self.lock:
            self.target_counts[target] = self.target_counts.get(target, 0) + 1
            n = self.target_counts[target]
        self._sleep(int(q.get("ms", "0")) / 1000.0)
        if self.cache_mode == "hang":
            rd.wait_eof()
            return False
        if self.cache_mode == "500":
            q = dict(q, status="500", cc="no-store")
        extra = []
        if "cc" in q:
            extra.append(("Cache-Control", q["cc"]))
        if "etag" in q:
            extra.append(("ETag", q["etag"]))
        if "lm" in q:
            extra.append(("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                         time.gmtime(int(q["lm"])))))
        if "vary" in q:
            extra.append(("Vary", q["vary"]))
        if q.get("cookie") == "1":
            extra.append(("Set-Cookie", "s=%d" % n))
        inm = hget("if-none-match")
        if inm is not None and "etag" in q and q["etag"] in inm:
            self._send(sock, 304, extra, None, method, keep)
            return keep
        doc = {"n": n, "lang": hget("accept-language"), "upstream": self.name}
        body = json.dumps(doc).encode()
        size = int(q.get("size", "0"))
        if size > len(body):
            body = body + b" " * (size - len(body))
        extra.append(("Content-Type", "application/json"))
        if "stream_ms" in q and method != "HEAD":
            return self._stream(sock, int(q.get("status", "200")), extra, body,
                                int(q["stream_ms"]), keep)
        self._send(sock, int(q.get("status", "200")), extra, body, method, keep)
        return keep

    def _stream(self, sock, status, headers, body, stream_ms, keep):
        """The head and body as one chunk at once, the last chunk stream_ms later."""
        out = ["HTTP/1.1 %d Status" % status, "Transfer-Encoding: chunked"]
        out += ["%s: %s" % kv for kv in headers]
        if not keep:
            out.append("Connection: close")
        sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
                     + b"%x\r\n" % len(body) + body + b"\r\n")
        self._sleep(stream_ms / 1000.0)
        if self.stop_event.is_set():
            return False
        sock.sendall(b"0\r\n\r\n")
        return keep

    def _sleep(self, seconds):
        deadline = time.monotonic() + min(seconds, 60)
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.02, max(0, deadline - time.monotonic())))

    def _read_body(self, rd, rec, hget, pause_ms):
        h = hashlib.sha256()
        total = 0
        paused = pause_ms <= 0
        te = (hget("transfer-encoding") or "").lower()
        cl = hget("content-length")
        if "chunked" in te:
            while True:
                size_line = rd.line(4096).strip()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while rd.line(65536) not in (b"\r\n", b"\n"):
                        pass
                    break
                left = size
                while left > 0:
                    b = rd.some(min(left, 262144))
                    h.update(b)
                    total += len(b)
                    left -= len(b)
                    rec["body_length"] = total
                    if not paused and total >= (1 << 20):
                        paused = True
                        self._sleep(pause_ms / 1000.0)
                rd.line(16)
        elif cl is not None:
            left = int(cl)
            while left > 0:
                b = rd.some(min(left, 262144))
                h.update(b)
                total += len(b)
                left -= len(b)
                rec["body_length"] = total
                if not paused and total >= (1 << 20):
                    paused = True
                    self._sleep(pause_ms / 1000.0)
        rec["body_length"] = total
        rec["body_sha256"] = h.hexdigest()
        rec["body_done"] = True

    def _send(self, sock, status, headers, body, method, keep):
        reasons = {100: "Continue", 200: "OK", 204: "No Content", 304: "Not Modified",
                   400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
                   502: "Bad Gateway", 503: "Service Unavailable"}
        out = ["HTTP/1.1 %d %s" % (status, reasons.get(status, "Status"))]
        out += ["%s: %s" % kv for kv in headers]
        if body is not None:
            out.append("Content-Length: %d" % len(body))
        if not keep:
            out.append("Connection: close")
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
        if body is not None and method != "HEAD":
            data += body
        sock.sendall(data)

    def _big(self, sock, method, keep, n, chunked, pause_ms):
        head = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream"]
        head.append("Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % n)
        if not keep:
            head.append("Connection: close")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if method == "HEAD":
            return keep
        sent = 0
        paused = pause_ms <= 0
        for b in pattern_chunks(n):
            if self.stop_event.is_set():
                return False
            if chunked:
                sock.sendall(b"%x\r\n" % len(b) + b + b"\r\n")
            else:
                sock.sendall(b)
            sent += len(b)
            if not paused and sent >= (1 << 20):
                paused = True
                self._sleep(pause_ms / 1000.0)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return keep

    def _chunked(self, sock, method, keep, n, size, brk):
        head = ["HTTP/1.1 200 OK", "Content-Type: text/plain", "Transfer-Encoding: chunked"]
        if not keep:
            head.append("Connection: close")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if method == "HEAD":
            return keep
        for i in range(n):
            chunk = bytes([0x61 + i % 26]) * size
            sock.sendall(b"%x\r\n" % size + chunk + b"\r\n")
        if brk:
            return False
        sock.sendall(b"0\r\n\r\n")
        return keep


def main():
    ap = argparse.ArgumentParser(description="sluice demo and test upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--name", default="demo")
    args = ap.parse_args()
    up = Upstream(args.name, args.port, args.host, record=False).start()
    print("upstream %s listening on %s" % (up.name, up.addr), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
