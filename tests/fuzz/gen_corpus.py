#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the sluice developers
#
# Writes the seed corpora of the fuzz drivers: tests/fuzz/corpus/<driver>/.
# The seeds are committed; run this again after editing it. Each HTTP seed
# starts with the drivers' two control bytes (see the driver headers):
# "00" means default limits, everything in one read; other prefixes cut the
# reads differently or shrink the limits. Config seeds are the confs we ship
# and the unit-test fixtures, minus those that only burn the Lua budget.
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

# Control-byte prefixes (byte 0: reads; byte 1: limits / HEAD).
ONE_READ = b"00"
BYTEWISE = b"50"    # 0x35: head and body one byte at a time
RANDOM = b":0"      # 0x3a: head and body in pieces of 1..64 bytes
TINY = b"?0"        # 0x3f: pieces of 0..7 bytes (0: the same length again)
SMALL_LIMITS = b"09"  # request: 1 KiB head, 10000 headers (0x39)
HEADERS_8 = b"0("   # request: 16 KiB head, 8 headers (0x28)
URI_64 = b"0P"      # request: 16 KiB head, 100 headers, 64-byte target (0x50)


def crlf(*lines):
    return b"".join(line + b"\r\n" for line in lines)


def req(first=b"GET / HTTP/1.1", *headers, body=b""):
    return crlf(first, *headers) + b"\r\n" + body


HOST = b"Host: example.com"
TP = b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

REQUESTS = {
    # -- valid ----------------------------------------------------------------
    "get": req(b"GET / HTTP/1.1", HOST),
    "get_query_headers": req(b"GET /v1/items?id=42&x=%20y HTTP/1.1", HOST,
                             b"X-API-Key:  k-123  ", b"User-Agent: fuzz/1.0",
                             b"Accept: */*", b"X-Request-Id: abc-123", TP),
    "get_http10_no_host": req(b"GET /old HTTP/1.0", b"User-Agent: x"),
    "head": req(b"HEAD /x HTTP/1.1", HOST),
    "methods": req(b"OPTIONS / HTTP/1.1", HOST) + req(b"DELETE /a HTTP/1.1", HOST)
    + req(b"PUT /a HTTP/1.1", HOST, b"Content-Length: 2", body=b"{}")
    + req(b"PATCH /a HTTP/1.1", HOST, b"Content-Length: 0"),
    "post_length": req(b"POST /upload HTTP/1.1", HOST, b"Content-Type: text/plain",
                       b"Content-Length: 11", body=b"hello world"),
    "post_length_zero": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 0"),
    "post_length_leading_zeros": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 0005",
                                     body=b"abcde"),
    "expect_continue": req(b"POST / HTTP/1.1", HOST, b"Expect: 100-continue",
                           b"Content-Length: 3", body=b"abc"),
    "host_port": req(b"GET / HTTP/1.1", b"Host: example.com:8080"),
    "host_ipv6": req(b"GET / HTTP/1.1", b"Host: [::1]:8080"),
    "host_empty_http10": req(b"GET / HTTP/1.0", b"Host:"),
    # RFC 9112 section 3.2 target forms, a WebSocket handshake (issue 10)
    "absolute_form": req(b"GET http://Example.com:8080/a/b?q=1 HTTP/1.1", b"Host: other")
    + req(b"GET HTTP://h?x HTTP/1.1", b"Host: [::1]:80"),
    "options_asterisk": req(b"OPTIONS * HTTP/1.1", HOST) + req(b"GET / HTTP/1.1", HOST),
    "http09_line": b"GET /\r\n",
    "websocket": req(b"GET /ws HTTP/1.1", HOST, b"Connection: Upgrade", b"Upgrade: websocket",
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
    "leading_crlf": b"\r\n\r\n" + req(b"GET / HTTP/1.1", HOST),
    "hop_by_hop": req(b"GET / HTTP/1.1", HOST, b"Connection: keep-alive, X-Secret , ,foo",
                      b"Keep-Alive: timeout=5", b"X-Secret: 1", b"foo: bar", b"TE: trailers",
                      b"Trailer: X", b"Upgrade: h2c", b"Proxy-Authorization: Basic eA==",
                      b"Proxy-Connection: close", b"Connection: close"),
    "traceparent_variants": req(b"GET / HTTP/1.1", HOST,
                                b"traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                b"traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                b"traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                                b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                                b"X-Request-Id: " + b"r" * 128, b"X-Request-Id: " + b"r" * 129,
                                b"X-Request-Id: a b"),
    "empty_header_value": req(b"GET / HTTP/1.1", HOST, b"X-Empty:", b"X-Spaces:    "),
    "obs_text_value": req(b"GET / HTTP/1.1", HOST, b"X-Latin: caf\xe9 \xff"),
    "tab_in_value": req(b"GET / HTTP/1.1", HOST, b"X-Tab: a\tb"),
    "long_value": req(b"GET / HTTP/1.1", HOST, b"X-Long: " + b"v" * 8000),
    "many_headers_100": req(b"GET / HTTP/1.1", HOST,
                            *[b"X-H%d: %d" % (i, i) for i in range(99)]),
    # -- paths as routes see them (issue 12, point 4) ----------------------------
    "path_variants": b"".join(req(b"GET " + t + b" HTTP/1.1", HOST) for t in (
        b"//v1/a", b"/./v1/a", b"/%76%31/a", b"/x/../v1/a", b"/../v1/a", b"/v1//a///",
        b"/%2E%2e/v1/%2e/a", b"/v1/a%2fb%2F..%2F", b"/a/b/c/./../../g?q=/../x",
        b"/%c3%A9%25%2541", b"/.../a/..b/c.", b"/a/..", b"/.", b"//..//",
        b"/%41%5a%7E%2D%5F")),
    "path_bad_escapes": b"".join(req(b"GET " + t + b" HTTP/1.1", HOST) for t in (
        b"/v1/%zz", b"/v1/a%2", b"/%", b"/%%41", b"/a%g1")),
    "long_spaces_value": req(b"GET /v1/a HTTP/1.1", HOST,
                             b"X-Spaces: a" + b" " * 15000 + b"b"),
    # -- pipelined ----------------------------------------------------------------
    "pipelined_gets": req(b"GET /1 HTTP/1.1", HOST) + req(b"GET /2 HTTP/1.1", HOST)
    + req(b"GET /3 HTTP/1.1", HOST, b"Connection: close"),
    "pipelined_mixed": req(b"POST /a HTTP/1.1", HOST, b"Content-Length: 4", body=b"abcd")
    + req(b"POST /b HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
          body=b"3\r\nxyz\r\n0\r\n\r\n")
    + req(b"GET /c HTTP/1.1", HOST),
    "pipelined_partial_last": req(b"GET /1 HTTP/1.1", HOST) + b"GET /2 HTTP/1.1\r\nHo",
    # -- chunked ----------------------------------------------------------------------
    "chunked": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                   body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    "chunked_extensions": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                              body=b"5;name=value\r\nhello\r\n6 ; a=\"q;x\";b\r\n world\r\n"
                              b"0;last\r\n\r\n"),
    "chunked_trailers": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                            b"Trailer: X-Sum",
                            body=b"3\r\nabc\r\n0\r\nX-Sum: 123\r\nX-Other: a b\r\n\r\n"),
    "chunked_hex_case": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: Chunked",
                            body=b"000A\r\n0123456789\r\na\r\nabcdefghij\r\n00\r\n\r\n"),
    "chunked_empty": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                         body=b"0\r\n\r\n"),
    "chunked_then_get": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                            body=b"1\r\nx\r\n0\r\n\r\n") + req(b"GET / HTTP/1.1", HOST),
    "chunked_big": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                       body=b"1000\r\n" + b"z" * 4096 + b"\r\n0\r\n\r\n"),
    "chunked_incomplete": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                              body=b"10\r\nonly part"),
    # -- smuggling vectors of issue 2, point 3 (each must be refused) ----------------
    "smuggle_cl_te": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 6",
                         b"Transfer-Encoding: chunked", body=b"0\r\n\r\nGET /admin HTTP/1.1\r\n"
                         b"Host: x\r\n\r\n"),
    "smuggle_te_cl": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                         b"Content-Length: 3", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
    "smuggle_cl_dup_same": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 3",
                               b"Content-Length: 3", body=b"abc"),
    "smuggle_cl_dup_diff": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 3",
                               b"Content-Length: 30", body=b"abc"),
    "smuggle_cl_list": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 3, 3", body=b"abc"),
    "smuggle_cl_plus": req(b"POST / HTTP/1.1", HOST, b"Content-Length: +3", body=b"abc"),
    "smuggle_cl_negative": req(b"POST / HTTP/1.1", HOST, b"Content-Length: -1"),
    "smuggle_cl_hex": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 0x3", body=b"abc"),
    "smuggle_cl_space_inside": req(b"POST / HTTP/1.1", HOST, b"Content-Length: 1 2"),
    "smuggle_cl_huge": req(b"POST / HTTP/1.1", HOST,
                           b"Content-Length: 99999999999999999999999"),
    "smuggle_cl_empty": req(b"POST / HTTP/1.1", HOST, b"Content-Length:"),
    "smuggle_te_gzip": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip",
                           body=b"abc"),
    "smuggle_te_chunked_gzip": req(b"POST / HTTP/1.1", HOST,
                                   b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"),
    "smuggle_te_gzip_chunked": req(b"POST / HTTP/1.1", HOST,
                                   b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
    "smuggle_te_chunked_twice": req(b"POST / HTTP/1.1", HOST,
                                    b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"),
    "smuggle_te_two_headers": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                  b"Transfer-Encoding: identity", body=b"0\r\n\r\n"),
    "smuggle_te_identity": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: identity"),
    "smuggle_te_xchunked": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: xchunked",
                               body=b"0\r\n\r\n"),
    "smuggle_te_http10": req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked",
                             body=b"0\r\n\r\n"),
    "smuggle_te_htab_after": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked\t",
                                 body=b"5\r\nhello\r\n0\r\n\r\n") + req(b"GET / HTTP/1.1", HOST),
    "te_htab_before": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:\tchunked",
                          body=b"5\r\nhello\r\n0\r\n\r\n"),
    "smuggle_te_vtab": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:\x0bchunked",
                           body=b"0\r\n\r\n"),
    "smuggle_te_space_before_colon": req(b"POST / HTTP/1.1", HOST,
                                         b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"),
    "smuggle_cl_tab_before_colon": req(b"POST / HTTP/1.1", HOST, b"Content-Length\t: 3",
                                       body=b"abc"),
    "smuggle_te_leading_space_line": req(b"POST / HTTP/1.1", HOST,
                                         b" Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    "smuggle_chunk_size_invalid": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                      body=b"g\r\nabc\r\n0\r\n\r\n"),
    "smuggle_chunk_size_negative": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                       body=b"-1\r\nx\r\n0\r\n\r\n"),
    "smuggle_chunk_size_0x": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"0x5\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_size_space_no_ext": req(b"POST / HTTP/1.1", HOST,
                                           b"Transfer-Encoding: chunked",
                                           body=b"5 \r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_size_leading_space": req(b"POST / HTTP/1.1", HOST,
                                            b"Transfer-Encoding: chunked",
                                            body=b" 5\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_size_overflow": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                       body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_size_empty": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                    body=b"\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_ext_ctl": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"5;a\x01b\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_ext_bare_lf": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                     body=b"5;a\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_data_too_long": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                       body=b"3\r\nhello\r\n0\r\n\r\n"),
    "smuggle_chunk_data_no_crlf": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                      body=b"5\r\nhelloXX0\r\n\r\n"),
    "smuggle_chunk_bare_lf": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"5\nhello\n0\n\n"),
    "smuggle_chunk_trailer_bare_lf": req(b"POST / HTTP/1.1", HOST,
                                         b"Transfer-Encoding: chunked",
                                         body=b"0\r\nX: y\n\r\n"),
    "smuggle_chunk_trailer_fold": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                      body=b"0\r\nX: y\r\n z\r\n\r\n"),
    "smuggle_head_bare_lf": b"GET / HTTP/1.1\nHost: example.com\n\n",
    "smuggle_head_bare_lf_one": b"GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n",
    "smuggle_head_bare_cr_end": b"GET / HTTP/1.1\r\nHost: example.com\r\n\rX",
    "smuggle_head_bare_cr_pipelined": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r"
    b"GET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "smuggle_head_bare_cr_start": b"\rGET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "smuggle_head_bare_cr_inside": b"GET / HTTP/1.1\r\nHost: example.com\rX: y\r\n\r\n",
    "smuggle_obs_fold": req(b"GET / HTTP/1.1", HOST, b"X-Folded: a", b" b"),
    "smuggle_obs_fold_tab": req(b"GET / HTTP/1.1", HOST, b"X-Folded: a", b"\tb"),
    "smuggle_obs_fold_te": req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:", b" chunked",
                               body=b"0\r\n\r\n"),
    "smuggle_name_space": req(b"GET / HTTP/1.1", HOST, b"X Y: 1"),
    "smuggle_name_at": req(b"GET / HTTP/1.1", HOST, b"X@Y: 1"),
    "smuggle_name_nul": req(b"GET / HTTP/1.1", HOST, b"X\x00Y: 1"),
    "smuggle_name_empty": req(b"GET / HTTP/1.1", HOST, b": 1"),
    "smuggle_value_nul": req(b"GET / HTTP/1.1", HOST, b"X: a\x00b"),
    "smuggle_value_del": req(b"GET / HTTP/1.1", HOST, b"X: a\x7fb"),
    "smuggle_missing_host": req(b"GET / HTTP/1.1", b"User-Agent: x"),
    "smuggle_two_hosts": req(b"GET / HTTP/1.1", HOST, b"host: evil.example"),
    "smuggle_absolute_form": req(b"GET http://evil.example/ HTTP/1.1", HOST),
    "smuggle_asterisk": req(b"OPTIONS * HTTP/1.1", HOST),
    "smuggle_connect": req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"),
    "smuggle_version_2": req(b"GET / HTTP/2.0", HOST),
    "smuggle_version_09": b"GET /\r\n\r\n",
    "lenient_version_19": req(b"GET / HTTP/1.9", HOST),
    "smuggle_space_in_target": req(b"GET /a b HTTP/1.1", HOST),
    "smuggle_method_lower": req(b"get / HTTP/1.1", HOST),
    "smuggle_method_unknown": req(b"FOO / HTTP/1.1", HOST),
    "lenient_double_space": req(b"GET  / HTTP/1.1", HOST),
    # -- oversize -------------------------------------------------------------------------
    "oversize_uri": req(b"GET /" + b"a" * 20000 + b" HTTP/1.1", HOST),
    "oversize_header": req(b"GET / HTTP/1.1", HOST, b"X-Big: " + b"b" * 20000),
    "oversize_headers_count": req(b"GET / HTTP/1.1", HOST,
                                  *[b"X-H%d: %d" % (i, i) for i in range(120)]),
    "oversize_exact_limit": req(b"GET /" + b"a" * (16384 - 40) + b" HTTP/1.1", HOST),
    # -- garbage ----------------------------------------------------------------------------
    "garbage_empty": b"",
    "garbage_crlf": b"\r\n" * 50,
    "garbage_nul": b"\x00" * 64,
    "garbage_ff": b"\xff" * 64,
    "garbage_tls_hello": bytes.fromhex("1603010200010001fc0303") + bytes(range(32)),
    "garbage_http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

with_prefix = {}
for name, body in REQUESTS.items():
    with_prefix[name] = ONE_READ + body
# The same bytes, read differently.
for name in ("pipelined_mixed", "chunked_extensions", "chunked_trailers", "smuggle_cl_te",
             "smuggle_head_bare_cr_pipelined", "hop_by_hop", "chunked_big"):
    with_prefix[name + "_bytewise"] = BYTEWISE + REQUESTS[name]
    with_prefix[name + "_random"] = RANDOM + REQUESTS[name]
    with_prefix[name + "_tiny"] = TINY + REQUESTS[name]
with_prefix["oversize_small_limit"] = SMALL_LIMITS + REQUESTS["long_value"]
with_prefix["oversize_8_headers"] = HEADERS_8 + REQUESTS["hop_by_hop"]
with_prefix["oversize_uri_64"] = URI_64 + req(b"GET /" + b"u" * 100 + b" HTTP/1.1", HOST)
with_prefix["uri_64_exact"] = URI_64 + req(b"GET /" + b"u" * 63 + b" HTTP/1.1", HOST)

rng = random.Random(20260301)
for i in range(4):
    with_prefix["garbage_random_%d" % i] = bytes(rng.randrange(256) for _ in range(300))
HTTP_REQUESTS = with_prefix


def resp(first=b"HTTP/1.1 200 OK", *headers, body=b""):
    return crlf(first, *headers) + b"\r\n" + body


RESPONSES = {
    "length": resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Type: text/plain",
                   body=b"hello"),
    "length_zero": resp(b"HTTP/1.1 200 OK", b"Content-Length: 0"),
    "chunked": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                    body=b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"),
    "chunked_trailers": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                             body=b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"),
    "chunked_gzip": resp(b"HTTP/1.1 200 OK", b"Content-Encoding: gzip",
                         b"Transfer-Encoding: gzip, chunked", body=b"2\r\n\x1f\x8b\r\n0\r\n\r\n"),
    "te_not_last_chunked": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, gzip",
                                body=b"raw until close"),
    "eof": resp(b"HTTP/1.1 200 OK", b"Content-Type: text/plain",
                body=b"everything until the close"),
    "eof_http10": resp(b"HTTP/1.0 200 OK", body=b"old style"),
    "no_content": resp(b"HTTP/1.1 204 No Content", b"Content-Length: 7", body=b"ignored"),
    "not_modified": resp(b"HTTP/1.1 304 Not Modified", b"ETag: \"x\"")
    + resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", body=b"ok"),
    "continue_then_ok": resp(b"HTTP/1.1 100 Continue")
    + resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", body=b"ok"),
    "early_hints": resp(b"HTTP/1.1 103 Early Hints", b"Link: </s.css>; rel=preload")
    + resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"2\r\nok\r\n0\r\n\r\n"),
    "switching": resp(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                      b"Connection: Upgrade", body=b"\x81\x05hello"),
    "keepalive_two": resp(b"HTTP/1.1 200 OK", b"Content-Length: 1", body=b"a")
    + resp(b"HTTP/1.1 404 Not Found", b"Transfer-Encoding: chunked", body=b"1\r\nb\r\n0\r\n\r\n")
    + resp(b"HTTP/1.1 500 Internal Server Error", b"Content-Length: 0"),
    "hop_by_hop": resp(b"HTTP/1.1 200 OK", b"Connection: keep-alive, X-Internal",
                       b"Keep-Alive: timeout=5", b"X-Internal: secret", b"Upgrade: h2",
                       b"Proxy-Authenticate: Basic", b"Trailer: X", b"Content-Length: 0"),
    "close": resp(b"HTTP/1.1 200 OK", b"Connection: close", b"Content-Length: 2", body=b"ok"),
    "no_reason": resp(b"HTTP/1.1 200", b"Content-Length: 0"),
    "odd_status": resp(b"HTTP/1.1 599 Whatever", b"Content-Length: 0"),
    "cl_and_te": resp(b"HTTP/1.1 200 OK", b"Content-Length: 100", b"Transfer-Encoding: chunked",
                      body=b"2\r\nok\r\n0\r\n\r\n"),
    "cl_dup": resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Content-Length: 3", body=b"abc"),
    "cl_huge": resp(b"HTTP/1.1 200 OK", b"Content-Length: 18446744073709551615"),
    "bad_status": resp(b"HTTP/1.1 abc OK", b"Content-Length: 0"),
    "bad_status_99": resp(b"HTTP/1.1 99 Low", b"Content-Length: 0"),
    "bad_status_1000": resp(b"HTTP/1.1 1000 High", b"Content-Length: 0"),
    "bad_version": resp(b"HTTP/2 200 OK", b"Content-Length: 0"),
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "bare_cr_end": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\rXok",
    "obs_fold": resp(b"HTTP/1.1 200 OK", b"X-Folded: a", b" b", b"Content-Length: 0"),
    "chunk_bad_size": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                           body=b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk_truncated": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                            body=b"10\r\nshort"),
    "chunk_no_last": resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                          body=b"2\r\nok\r\n"),
    "big_header": resp(b"HTTP/1.1 200 OK", b"Set-Cookie: " + b"c" * 70000),
    "many_headers": resp(b"HTTP/1.1 200 OK", *[b"X-H%d: %d" % (i, i) for i in range(300)]),
    "garbage_empty": b"",
    "garbage_nul": b"\x00" * 64,
    "garbage_html": b"<html><body>not http</body></html>\r\n\r\n",
}

HTTP_RESPONSES = {}
for name, body in RESPONSES.items():
    HTTP_RESPONSES[name] = ONE_READ + body
# byte 1 = "1" (0x31): the request was HEAD
HTTP_RESPONSES["head_length"] = b"01" + RESPONSES["length"]
HTTP_RESPONSES["head_chunked_then_next"] = b"01" + resp(
    b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + RESPONSES["length"]
for name in ("chunked", "keepalive_two", "early_hints", "eof", "chunked_trailers"):
    HTTP_RESPONSES[name + "_bytewise"] = BYTEWISE + RESPONSES[name]
    HTTP_RESPONSES[name + "_random"] = RANDOM + RESPONSES[name]
    HTTP_RESPONSES[name + "_tiny"] = TINY + RESPONSES[name]
# byte 1 = "2" (0x32): 256-byte head limit
HTTP_RESPONSES["small_limit"] = b"02" + RESPONSES["hop_by_hop"] + b"X" * 300
for i in range(3):
    HTTP_RESPONSES["garbage_random_%d" % i] = bytes(rng.randrange(256) for _ in range(300))

# Config fixtures that only run out the instruction budget or the memory cap
# are slow (about 0.3 s each) and test Lua, not the C validator: left out.
SLOW_CONFS = {"bad_loop.conf", "bad_pcall_loop.conf", "bad_memory.conf"}

CONFIGS = {
    "empty.conf": b"",
    "garbage.conf": bytes(range(256)),
    "not_lua.conf": b"[server]\nlisten = 8080\n",
    "nested_tables.conf": b"listen = " + b"{" * 150 + b"}" * 150 + b"\n",
    "long_strings.conf": b'listen = "' + b"1" * 5000 + b':80"\nadmin = false\n'
    b'upstreams = { ["' + b"u" * 100 + b'"] = { servers = { "127.0.0.1:1" } } }\n'
    b'routes = { { path = "/", upstream = "' + b"u" * 100 + b'" } }\n',
    "many_routes.conf": b'listen = "127.0.0.1:8080"\n'
    b'upstreams = { a = { servers = { "127.0.0.1:9000" } } }\n'
    b"routes = {}\nfor i = 1, 200 do routes[i] = { path = \"/p\" .. i .. \"/\", "
    b'upstream = "a" } end\n',
    "weird_values.conf": b'listen = { "127.0.0.1:0", "[::]:65535", "0.0.0.0:65536", ":80", "x" }\n'
    b'client = { max_header_size = "1g", max_uri_size = "9999999999999999999k", '
    b'header_timeout = "0ms", body_timeout = "1e9h", max_headers = -1, '
    b'max_body_size = 1/0, max_connections = 0/0 }\n'
    b'trusted_proxies = { "10.0.0.0/33", "::/0", "1.2.3.4/-1", "" }\n'
    b'store = { kind = "redis", url = "redis://:@:0/99999999999999", timeout = "" }\n'
    b'workers = 0\nupstreams = { [""] = { servers = {} }, [1] = 2 }\n'
    b'limits = { l = { key = { "header:", "query:", "cookie:", "nope:x", 5 }, rate = 0 } }\n'
    b'routes = { { path = "", upstream = 1, limits = { "l", "l", "missing" } } }\n',
    "metatables.conf": b'listen = setmetatable({}, { __index = function() error("x") end })\n'
    b'routes = { { path = "/", upstream = "a" } }\n'
    b'upstreams = { a = { servers = { "127.0.0.1:1" } } }\n',
    "multiline_strings.conf": b'listen = [[\n127.0.0.1:8080]]\n'
    b'--[==[ a long\ncomment ]==] upstreams = { a = { servers = { [=[127.0.0.1:9000]=] } } }\n'
    b'routes = { { path = "/\\n\\0", upstream = "a" } }\n',
    "unterminated.conf": b'listen = "127.0.0.1:8080\nroutes = { { path = [[/',
    # issue 12: the trim idiom as a key function, values cut to lua_max_value_size;
    # a route path out of normal form
    "trim_key_function.conf": b'listen = "127.0.0.1:8080"\nlua_max_value_size = "512"\n'
    b'path_encoded_slash = "reject"\npath_forward = "original"\n'
    b'upstreams = { a = { servers = { "127.0.0.1:9000" } } }\n'
    b'local function trim(r) local v = r.header["x-spaces"]\n'
    b'  return v and v:match("^%s*(.-)%s*$") end\n'
    b'limits = { t = { key = trim, rate = 10, cost = function(r) return #r.target end } }\n'
    b'routes = { { path = "/v1/", upstream = "a", limits = "t" },\n'
    b'  { path = "/x/../%2e/", upstream = "a" } }\n',
}


# fuzz_client_identity: byte 0 even, a PROXY protocol start; odd, a Forwarded value
_PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
CLIENT_IDENTITY = {
    "pp1_tcp4": b"\x00PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
    "pp1_tcp6": b"\x00PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
    "pp1_unknown": b"\x00PROXY UNKNOWN\r\n",
    "pp1_cut": b"\x00PROXY TCP4 192.0.2.1 198.5",
    "pp1_long": b"\x00PROXY UNKNOWN " + b"A" * 120 + b"\r\n",
    "pp2_tcp4": b"\x00" + _PP2_SIG + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 1, 198, 51, 100, 1,
                                                                   0xdc, 0x04, 0x01, 0xbb]),
    "pp2_tcp6_ssl": b"\x00" + _PP2_SIG + b"\x21\x21\x00\x2c" + bytes(range(1, 37))
                    + b"\x20\x00\x05\x01\x00\x00\x00\x00",
    "pp2_local": b"\x00" + _PP2_SIG + b"\x20\x00\x00\x00GET",
    "pp2_tlv_overrun": b"\x00" + _PP2_SIG + b"\x21\x11\x00\x0f" + bytes(12) + b"\x20\x00\x09",
    "fwd_rfc_examples": b'\x01for="_gazonk", For="[2001:db8:cafe::17]:4711", '
                        b'for=192.0.2.60;proto=http;by=203.0.113.43',
    "fwd_trusted_chain": b'\x01for=198.51.100.1;proto=https;host="api.example:8443", for=10.0.0.5',
    "fwd_hidden": b"\x01for=198.51.100.1, for=unknown, for=_hidden;host=x",
    "fwd_quoted_pairs": b'\x01for="1.2.3.4";host="a\\"b\\\\c";proto="ht\\tp"',
    "fwd_bad": b'\x01for=1.2.3.4;for=5.6.7.8, for="[::1',
}


def write(driver, files):
    d = os.path.join(HERE, "corpus", driver)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for name, data in sorted(files.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return len(files)


def main():
    n = write("fuzz_http_request", HTTP_REQUESTS)
    n += write("fuzz_http_response", HTTP_RESPONSES)
    confs = dict(CONFIGS)
    for prefix, src in (("shipped_", os.path.join(TOP, "conf")),
                        ("unit_", os.path.join(TOP, "tests", "unit", "conf"))):
        for name in sorted(os.listdir(src)):
            if name.endswith(".conf") and name not in SLOW_CONFS:
                with open(os.path.join(src, name), "rb") as f:
                    confs[prefix + name] = f.read()
    n += write("fuzz_config", confs)
    n += write("fuzz_client_identity", CLIENT_IDENTITY)
    print("wrote %d seeds" % n, file=sys.stderr)


if __name__ == "__main__":
    main()
