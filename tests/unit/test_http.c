/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Head parsing glue: statuses for bad heads, framing rules, the checks we add
 * on top of http-parser, and chunked bodies re-read through the parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/http.h"

struct parsed {
    struct sl_head head;
    struct sl_header headers[64];
    struct sl_request req;
    int status;      /* feed result, or sl_head_to_request/framing status */
    enum sl_framing framing;
    uint64_t length;
};

static int
parse(struct parsed *p, const char *text, size_t max_size)
{
    size_t len = strlen(text);
    int r;

    memset(p, 0, sizeof(*p));
    sl_head_init(&p->head, HTTP_REQUEST, max_size, 64);
    /* Feed one byte more each time, as a slow client would send it. */
    r = SL_HEAD_MORE;
    for (size_t n = 1; n <= len && r == SL_HEAD_MORE; n++)
        r = sl_head_feed(&p->head, text, n);
    if (r != SL_HEAD_DONE) {
        p->status = r;
        return r;
    }
    if (sl_http_check_line_ends(text, p->head.head_len) != 0)
        return p->status = 400;
    r = sl_head_to_request(&p->head, text, p->headers, &p->req);
    if (r != 0)
        return p->status = r;
    return p->status = sl_http_request_framing(&p->req, &p->framing, &p->length);
}

static void
done(struct parsed *p)
{
    sl_head_fini(&p->head);
}

static void
test_simple_get(void **state)
{
    struct parsed p;
    const char *text = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:8080\r\n"
                       "X-Api-Key:  k1  \r\n\r\nNEXT";

    (void)state;
    assert_int_equal(parse(&p, text, 1024), 0);
    assert_int_equal(p.head.head_len, strlen(text) - 4);
    assert_int_equal(p.req.method_len, 3);
    assert_memory_equal(p.req.path, "/a/b", 4);
    assert_int_equal(p.req.path_len, 4);
    assert_int_equal(p.req.query_len, 7);
    assert_memory_equal(p.req.query, "x=1&y=2", 7);
    assert_int_equal(p.req.host_len, 11);
    assert_memory_equal(p.req.host, "example.com", 11);
    assert_int_equal(p.req.nheaders, 2);
    assert_non_null(sl_request_header(&p.req, "x-api-key", 9));
    assert_int_equal(sl_request_header(&p.req, "x-api-key", 9)->value_len, 2);
    assert_int_equal(p.framing, SL_FRAMING_NONE);
    done(&p);
}

static void
test_content_length_and_chunked(void **state)
{
    struct parsed p;

    (void)state;
    assert_int_equal(parse(&p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", 1024), 0);
    assert_int_equal(p.framing, SL_FRAMING_LENGTH);
    assert_int_equal(p.length, 12);
    done(&p);
    assert_int_equal(parse(&p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                           1024),
                     0);
    assert_int_equal(p.framing, SL_FRAMING_CHUNKED);
    done(&p);
}

/* Every ambiguous framing of issue 2 point 3 is refused with 400. */
static void
test_smuggling_vectors_refused(void **state)
{
    static const char *const vectors[] = {
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tfolded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Name : y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        /* request targets (RFC 9112 section 3.2): bad forms and bad authorities */
        "GET ftp://evil/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET evil/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://user@evil/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://ev%il/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://evil:8x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://evil/ HTTP/1.1\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        /* Host values that are no uri-host[:port] */
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%g0\r\n\r\n",
        /* found by fuzzing (tests/fuzz/regression) */
        "GET / HTTP/1.1\r\nHost: a\r\nX: y\rZ\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\rGET /admin HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    struct parsed p;

    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        int status = parse(&p, vectors[i], 4096);
        done(&p);
        if (status != 400)
            fail_msg("vector %zu: status %d, want 400: %s", i, status, vectors[i]);
    }
}

static void
test_limits(void **state)
{
    struct parsed p;
    char big[600];

    (void)state;
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse(&p, big, 256), 414);
    done(&p);
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
                           64),
                     431);
    done(&p);
    {
        char many[4096] = "GET / HTTP/1.1\r\nHost: a\r\n";
        for (int i = 0; i < 70; i++)
            strcat(many, "X: 1\r\n"); /* 64 headers allowed by parse() */
        strcat(many, "\r\n");
        assert_int_equal(parse(&p, many, sizeof(many)), 431);
        done(&p);
    }
    memset(&p, 0, sizeof(p));
    sl_head_init(&p.head, HTTP_REQUEST, 1024, 64);
    p.head.max_uri_size = 8;
    assert_int_equal(sl_head_feed(&p.head, "GET /123456789 HTTP/1.1\r\n", 25), 414);
    done(&p);
    assert_int_equal(parse(&p, "GET / HTTP/1.0\r\n\r\n", 1024), 0);
    assert_null(p.req.host);
    done(&p);
}

static void
collect(void *arg, const char *at, size_t len)
{
    strncat(arg, at, len);
}

static int
feed_chunked(const char *body, char *out)
{
    struct parsed p;
    ssize_t n;

    assert_int_equal(parse(&p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                           1024),
                     0);
    p.head.on_body = collect;
    p.head.body_arg = out;
    n = sl_head_feed_body(&p.head, body, strlen(body));
    if (n >= 0 && !p.head.is_message_complete)
        n = -2;
    done(&p);
    return n < 0 ? (int)n : 0;
}

static void
test_chunked_body(void **state)
{
    char out[256] = "";

    (void)state;
    assert_int_equal(feed_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", out), 0);
    assert_string_equal(out, "hello world");
    out[0] = '\0';
    assert_int_equal(feed_chunked("5;ext=1\r\nhello\r\n0\r\n\r\n", out), 0);
    assert_string_equal(out, "hello");
    out[0] = '\0';
    assert_true(feed_chunked("zz\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("-5\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5\r\nhelloXX0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5\r\nhello\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5 \r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5;a\x01\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5\r\nhello\r\n0\r\nX: y\r\n folded\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5;a=\"b\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5;=x\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5;a=\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_true(feed_chunked("5;a b\r\nhello\r\n0\r\n\r\n", out) < 0);
    out[0] = '\0';
    assert_int_equal(feed_chunked("5;a=b;c;d=\"e\\\"f\"\r\nhello\r\n0\r\n\r\n", out), 0);
    out[0] = '\0';
    assert_int_equal(feed_chunked("5 ; a=\"b\"\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n", out), 0);
    assert_string_equal(out, "hello");
}

static void
test_response_framing(void **state)
{
    struct sl_head h;
    const char *r1 = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    const char *r2 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *r3 = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
    const char *r4 = "HTTP/1.1 204 No Content\r\n\r\n";

    (void)state;
    sl_head_init(&h, HTTP_RESPONSE, 4096, 64);
    assert_int_equal(sl_head_feed(&h, r1, strlen(r1)), SL_HEAD_DONE);
    assert_int_equal(sl_http_response_framing(&h, false), SL_FRAMING_LENGTH);
    assert_int_equal(sl_http_response_framing(&h, true), SL_FRAMING_NONE);
    sl_head_reset(&h, HTTP_RESPONSE);
    assert_int_equal(sl_head_feed(&h, r2, strlen(r2)), SL_HEAD_DONE);
    assert_int_equal(sl_http_response_framing(&h, false), SL_FRAMING_CHUNKED);
    sl_head_reset(&h, HTTP_RESPONSE);
    assert_int_equal(sl_head_feed(&h, r3, strlen(r3)), SL_HEAD_DONE);
    assert_int_equal(sl_http_response_framing(&h, false), SL_FRAMING_EOF);
    sl_head_reset(&h, HTTP_RESPONSE);
    assert_int_equal(sl_head_feed(&h, r4, strlen(r4)), SL_HEAD_DONE);
    assert_int_equal(sl_http_response_framing(&h, false), SL_FRAMING_NONE);
    /* bad responses are the upstream's fault: 502 (found by fuzzing) */
    sl_head_reset(&h, HTTP_RESPONSE);
    assert_int_equal(sl_head_feed(&h, "HTTP/1.1 99 X\r\n\r\n", 17), 502);
    sl_head_reset(&h, HTTP_RESPONSE);
    {
        const char *r5 = "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n";
        assert_int_equal(sl_head_feed(&h, r5, strlen(r5)), 502);
    }
    sl_head_fini(&h);
}

static struct sl_header
hdr(const char *name, const char *value)
{
    struct sl_header h = { name, strlen(name), value, strlen(value) };
    return h;
}

static void
test_hop_by_hop(void **state)
{
    struct sl_header hs[] = {
        hdr("Connection", "keep-alive, X-Secret ,close"),
        hdr("Keep-Alive", "timeout=5"),
        hdr("TE", "trailers"),
        hdr("Trailer", "X"),
        hdr("Transfer-Encoding", "chunked"),
        hdr("Upgrade", "websocket"),
        hdr("Proxy-Authorization", "x"),
        hdr("Proxy-Connection", "keep-alive"),
        hdr("x-secret", "1"),
        hdr("X-Secret-Not", "1"),
        hdr("Host", "a"),
        hdr("Content-Type", "text/plain"),
    };
    size_t n = sizeof(hs) / sizeof(hs[0]);

    (void)state;
    for (size_t i = 0; i < 9; i++)
        assert_true(sl_http_is_hop_by_hop(hs, n, &hs[i]));
    for (size_t i = 9; i < n; i++)
        assert_false(sl_http_is_hop_by_hop(hs, n, &hs[i]));
}

/* absolute-form: the authority routes (Host ignored), origin-form goes up */
static void
test_absolute_form(void **state)
{
    struct parsed p;

    (void)state;
    assert_int_equal(parse(&p, "GET http://Api.Example:8080/v1/x?q=1 HTTP/1.1\r\n"
                               "Host: other\r\n\r\n", 1024), 0);
    assert_int_equal(p.req.authority_len, 16);
    assert_memory_equal(p.req.authority, "Api.Example:8080", 16);
    assert_int_equal(p.req.host_len, 11);
    assert_memory_equal(p.req.host, "Api.Example", 11);
    assert_int_equal(p.req.origin_len, 9);
    assert_memory_equal(p.req.origin, "/v1/x?q=1", 9);
    assert_int_equal(p.req.path_len, 5);
    assert_memory_equal(p.req.query, "q=1", 3);
    assert_int_equal(p.req.target_len, strlen("http://Api.Example:8080/v1/x?q=1"));
    done(&p);
    /* no path: "/" and the query */
    assert_int_equal(parse(&p, "GET HTTPS://[::1]:9?a HTTP/1.1\r\nHost: x\r\n\r\n", 1024),
                     0);
    assert_int_equal(p.req.origin_len, 0);
    assert_memory_equal(p.req.path, "/", 1);
    assert_int_equal(p.req.path_len, 1);
    assert_int_equal(p.req.query_len, 1);
    assert_int_equal(p.req.host_len, 5);
    assert_memory_equal(p.req.host, "[::1]", 5);
    done(&p);
    /* origin-form: origin is the target, no authority */
    assert_int_equal(parse(&p, "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", 1024), 0);
    assert_ptr_equal(p.req.origin, p.req.target);
    assert_int_equal(p.req.origin_len, 4);
    assert_null(p.req.authority);
    done(&p);
    /* HTTP/1.0 without Host: the authority alone routes */
    assert_int_equal(parse(&p, "GET http://h/ HTTP/1.0\r\n\r\n", 1024), 0);
    assert_memory_equal(p.req.host, "h", 1);
    done(&p);
}

static void
test_asterisk_form(void **state)
{
    struct parsed p;

    (void)state;
    assert_int_equal(parse(&p, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 1024), 0);
    assert_true(p.req.is_asterisk);
    done(&p);
    assert_int_equal(parse(&p, "OPTIONS /a HTTP/1.1\r\nHost: x\r\n\r\n", 1024), 0);
    assert_false(p.req.is_asterisk);
    done(&p);
    assert_int_equal(parse(&p, "POST * HTTP/1.1\r\nHost: x\r\n\r\n", 1024), 400);
    done(&p);
}

/* A request line without a version is refused at its line end, not after
 * waiting for headers that an HTTP/0.9 client never sends. */
static void
test_http09_refused_at_once(void **state)
{
    static const char *const lines[] = { "GET /\r\n", "GET /x?y\r\n", "GET /\n" };
    struct sl_head h;

    (void)state;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        sl_head_init(&h, HTTP_REQUEST, 1024, 64);
        assert_int_equal(sl_head_feed(&h, lines[i], strlen(lines[i])), 400);
        sl_head_fini(&h);
    }
    sl_head_init(&h, HTTP_REQUEST, 1024, 64);
    assert_int_equal(sl_head_feed(&h, SL_LIT("GET / HTTP/1.1\r\n")), SL_HEAD_MORE);
    sl_head_fini(&h);
}

static void
test_valid_host(void **state)
{
    static const char *const good[] = {
        "example.com", "example.com:8080", "EXAMPLE.com:", "127.0.0.1:80", "[::1]",
        "[2001:db8::7]:443", "a-b_c~d", "xn--bcher-kva.example", "%41b", "a!$&'()*+,;=", "",
    };
    static const char *const bad[] = {
        "a b", "a/b", "a?b", "a#b", "u@h", "h:80:80", "h:123456", "h:8x", "[::1", "[::1]x",
        "[::1]:x", "[g::1]", "a%4", "a%zz", "a\"b", "a<b", "a\\b", "\x7f", "\xc3\xa9",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!sl_http_is_valid_host(good[i], strlen(good[i])))
            fail_msg("host %zu refused: %s", i, good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sl_http_is_valid_host(bad[i], strlen(bad[i])))
            fail_msg("host %zu accepted: %s", i, bad[i]);
    }
}

/* Which requests are WebSocket handshakes sluice passes on as upgrades. */
static void
test_websocket_upgrade(void **state)
{
    struct parsed p;
    static const struct {
        const char *text;
        bool is_upgrade;
    } cases[] = {
        { "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
          true },
        { "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\n"
          "Upgrade: foo, WebSocket\r\n\r\n",
          true },
        /* Upgrade not named by Connection: not an upgrade (RFC 9110 7.8) */
        { "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false },
        { "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
          false },
        { "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocketx\r\nConnection: Upgrade\r\n\r\n",
          false },
        { "POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
          false },
        { "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(&p, cases[i].text, 1024), 0);
        if (sl_http_is_websocket_upgrade(&p.req, false) != cases[i].is_upgrade)
            fail_msg("case %zu: want %d: %s", i, cases[i].is_upgrade, cases[i].text);
        assert_false(sl_http_is_websocket_upgrade(&p.req, true)); /* never with a body */
        done(&p);
    }
}

static void
test_has_token(void **state)
{
    struct sl_header hs[] = {
        hdr("Connection", " keep-alive ,\tUpgrade"),
        hdr("connection", "x-a"),
        hdr("Upgrade", "h2c"),
    };

    (void)state;
    assert_true(sl_http_has_token(hs, 3, SL_LIT("connection"), SL_LIT("upgrade")));
    assert_true(sl_http_has_token(hs, 3, SL_LIT("connection"), SL_LIT("X-A")));
    assert_false(sl_http_has_token(hs, 3, SL_LIT("connection"), SL_LIT("h2c")));
    assert_false(sl_http_has_token(hs, 3, SL_LIT("upgrade"), SL_LIT("websocket")));
    assert_false(sl_http_has_token(hs, 3, SL_LIT("connection"), SL_LIT("keep")));
}

static void
test_trace_and_request_ids(void **state)
{
    const char *good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    (void)state;
    assert_true(sl_http_is_valid_traceparent(good, strlen(good)));
    assert_false(sl_http_is_valid_traceparent(good, strlen(good) - 1));
    assert_false(sl_http_is_valid_traceparent(
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", 55));
    assert_false(sl_http_is_valid_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", 55));
    assert_false(sl_http_is_valid_traceparent(
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55));
    assert_false(sl_http_is_valid_traceparent(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", 55));
    assert_true(sl_http_is_valid_request_id("abc-123", 7));
    assert_false(sl_http_is_valid_request_id("", 0));
    assert_false(sl_http_is_valid_request_id("a b", 3));
    assert_false(sl_http_is_valid_request_id("a\x01", 2));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_content_length_and_chunked),
        cmocka_unit_test(test_smuggling_vectors_refused),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_trace_and_request_ids),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_asterisk_form),
        cmocka_unit_test(test_http09_refused_at_once),
        cmocka_unit_test(test_valid_host),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_has_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
