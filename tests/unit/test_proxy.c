/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The proxy's head rewriting, through src/proxy_int.h: proxy_collect_xff
 * (every X-Forwarded-For field joined, the right-most 1 KiB kept),
 * proxy_ensure_ids (a valid X-Request-Id or traceparent kept, a missing or
 * invalid one replaced by a valid generated one, on first use only and then
 * stable) and proxy_write_request_head (the head sent upstream: hop-by-hop
 * fields and Expect dropped, X-Forwarded-For appended to and passed whole
 * past the 1 KiB the client is chosen from, X-Forwarded-Proto
 * set, body framing re-stated, Host kept). Each test
 * parses a literal request with sl_head_* into a connection built by hand,
 * as read_head and request_begin do, without sockets or an event loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy_int.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "util/alloc.h"

#define PEER_IP "198.51.100.7"
#define UPSTREAM_ADDR "127.0.0.1:9000"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static struct sl_proxy px;
static struct sl_config cfg; /* trusted_proxies set per test; the rest unused here */

/* ---- helpers ------------------------------------------------------------------ */

/* A connection from `peer` (an IPv4 or IPv6 address) holding the parsed
 * request `raw`, its client decided as request_begin does; ids come on
 * first use, as in the proxy. */
static struct conn *
parsed_from(const char *raw, const char *peer)
{
    struct conn *c = sl_xcalloc(1, sizeof(*c));
    size_t head_len;

    c->px = &px;
    sl_head_init(&c->head, HTTP_REQUEST, 64 * 1024, 200);
    assert_int_equal(sl_head_feed(&c->head, raw, strlen(raw)), SL_HEAD_DONE);
    head_len = c->head.head_len;
    c->rq.head_buf = sl_xmalloc(head_len + c->head.nspans * sizeof(struct sl_header) + 16);
    c->rq.headers = (struct sl_header *)(void *)(c->rq.head_buf + ((head_len + 15) & ~(size_t)15));
    memcpy(c->rq.head_buf, raw, head_len);
    assert_int_equal(sl_head_to_request(&c->head, c->rq.head_buf, c->rq.headers, &c->rq.req), 0);
    assert_int_equal(sl_http_request_framing(&c->rq.req, &c->rq.framing, &c->rq.body_left), 0);
    c->rq.content_length = c->rq.body_left; /* as request_begin does */
    if (strchr(peer, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&c->peer;
        sin6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, peer, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&c->peer;
        sin->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, peer, &sin->sin_addr), 1);
    }
    c->peer_ip_len = strlen(peer);
    memcpy(c->peer_ip, peer, c->peer_ip_len + 1);
    c->local_port = 8080;
    c->rq.cfg = &cfg;
    snprintf(c->rq.upstream_addr, sizeof(c->rq.upstream_addr), "%s", UPSTREAM_ADDR);
    proxy_client_identity(c);
    return c;
}

static struct conn *
parsed(const char *raw)
{
    return parsed_from(raw, PEER_IP);
}

static char *
client_text(const struct conn *c)
{
    return strndup(c->rq.req.client_ip, c->rq.req.client_ip_len);
}

static void
discard(struct conn *c)
{
    sl_head_fini(&c->head);
    free(c->rq.head_buf);
    free(c);
}

static char *
xff_text(const struct conn *c)
{
    char *s = sl_xmalloc(c->rq.xff_len + 1);

    memcpy(s, c->xff, c->rq.xff_len);
    s[c->rq.xff_len] = '\0';
    return s;
}

/* The head write_request_head produces, NUL-terminated (caller frees). */
static char *
upstream_head(struct conn *c)
{
    struct evbuffer *out = evbuffer_new();
    size_t len;
    char *s;

    proxy_write_request_head(c, out);
    len = evbuffer_get_length(out);
    s = sl_xmalloc(len + 1);
    assert_int_equal(evbuffer_remove(out, s, len), (int)len);
    s[len] = '\0';
    evbuffer_free(out);
    /* one head, ending at its blank line */
    assert_true(len >= 4);
    assert_memory_equal(s + len - 4, "\r\n\r\n", 4);
    assert_ptr_equal(strstr(s, "\r\n\r\n"), s + len - 4);
    return s;
}

/* Number of fields named `name` (case-insensitive) in a head; *value gets
 * the last one's value in a static buffer. */
static int
fields(const char *head, const char *name, const char **value)
{
    static char buf[8192];
    const char *p = strstr(head, "\r\n");
    size_t name_len = strlen(name);
    int n = 0;

    if (value != NULL)
        *value = NULL;
    while (p != NULL && p[2] != '\r') {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        const char *colon = memchr(line, ':', (size_t)(end - line));
        assert_non_null(colon);
        if ((size_t)(colon - line) == name_len && strncasecmp(line, name, name_len) == 0) {
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            assert_true((size_t)(end - v) < sizeof(buf));
            memcpy(buf, v, (size_t)(end - v));
            buf[end - v] = '\0';
            if (value != NULL)
                *value = buf;
            n++;
        }
        p = end;
    }
    return n;
}

static void
expect_field(const char *head, const char *name, const char *value)
{
    const char *got;

    if (fields(head, name, &got) != 1)
        fail_msg("want one %s field, head:\n%s", name, head);
    assert_string_equal(got, value);
}

static void
expect_no_field(const char *head, const char *name)
{
    if (fields(head, name, NULL) != 0)
        fail_msg("want no %s field, head:\n%s", name, head);
}

static bool
is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* ---- proxy_collect_xff --------------------------------------------------- */

static void
test_xff_none(void **state)
{
    struct conn *c = parsed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");

    (void)state;
    assert_int_equal(c->rq.xff_len, 0);
    discard(c);
}

static void
test_xff_joined(void **state)
{
    struct conn *c;
    char *s;

    (void)state;
    c = parsed("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n");
    s = xff_text(c);
    assert_string_equal(s, "203.0.113.1");
    free(s);
    discard(c);

    /* several fields in order, names in any case, empty ones skipped */
    c = parsed("GET / HTTP/1.1\r\n"
               "X-Forwarded-For: 203.0.113.1, 10.0.0.1\r\n"
               "Host: a\r\n"
               "x-forwarded-for: 10.0.0.2\r\n"
               "X-FORWARDED-FOR:\r\n"
               "Accept: */*\r\n"
               "X-Forwarded-For:   10.0.0.3  \r\n"
               "\r\n");
    s = xff_text(c);
    assert_string_equal(s, "203.0.113.1, 10.0.0.1, 10.0.0.2, 10.0.0.3");
    free(s);
    discard(c);
}

static void
test_xff_keeps_rightmost_kib(void **state)
{
    static const size_t sizes[][3] = {
        { 600, 600, 600 }, /* cut inside the second field: it goes */
        { 100, 2000, 5 },  /* one field longer than the buffer: it goes */
        { 50, 500, 520 },  /* cut just before the first separator */
        { 10, 10, 1023 },  /* one byte left: no half separator, nothing cut */
        { 400, 300, 300 }, /* 1004 bytes with separators: all kept */
    };
    size_t cap = sizeof(((struct conn *)NULL)->xff);

    (void)state;
    assert_int_equal(cap, 1024);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        char raw[8192], joined[8192];
        size_t rlen = 0, jlen = 0;
        struct conn *c;
        char *s;

        rlen += (size_t)snprintf(raw + rlen, sizeof(raw) - rlen, "GET / HTTP/1.1\r\nHost: a\r\n");
        for (size_t i = 0; i < 3; i++) {
            /* distinct digits per field so a wrong cut shows */
            char v[2048];
            for (size_t j = 0; j < sizes[k][i]; j++)
                v[j] = (char)('0' + (i * 3 + j) % 10);
            v[sizes[k][i]] = '\0';
            rlen += (size_t)snprintf(raw + rlen, sizeof(raw) - rlen, "X-Forwarded-For: %s\r\n", v);
            jlen += (size_t)snprintf(joined + jlen, sizeof(joined) - jlen, "%s%s",
                                     i ? ", " : "", v);
        }
        rlen += (size_t)snprintf(raw + rlen, sizeof(raw) - rlen, "\r\n");
        assert_true(rlen < sizeof(raw));
        c = parsed(raw);
        s = xff_text(c);
        if (jlen <= cap) {
            assert_string_equal(s, joined);
        } else {
            /* the whole entries of the right-most bytes: a cut entry goes
             * with its separator, never kept as a shorter address */
            const char *want = joined;

            /* the longest suffix that fits and starts an entry */
            while ((size_t)(joined + jlen - want) > cap) {
                const char *sep = strstr(want, ", ");
                want = sep != NULL ? sep + 2 : joined + jlen;
            }
            assert_string_equal(s, want);
        }
        free(s);
        discard(c);
    }
}

/* One field longer than the buffer: no whole entry, so the cut one stays, a
 * malformed hop (1 KiB never reads as an address) that says a list came. */
static void
test_xff_one_entry_past_kib(void **state)
{
    char raw[4096], v[2001];
    size_t cap = sizeof(((struct conn *)NULL)->xff);
    struct conn *c;
    char *s;

    (void)state;
    for (size_t j = 0; j < 2000; j++)
        v[j] = (char)('0' + j % 10);
    v[2000] = '\0';
    snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: %s\r\n\r\n", v);
    c = parsed(raw);
    s = xff_text(c);
    assert_int_equal(c->rq.xff_len, cap);
    assert_string_equal(s, v + 2000 - cap);
    free(s);
    discard(c);
}

/* ---- proxy_ensure_ids ---------------------------------------------------- */

static void
test_ids_kept_when_valid(void **state)
{
    struct conn *c = parsed("GET / HTTP/1.1\r\nHost: a\r\n"
                            "X-Request-Id: req-42/abc\r\n"
                            "traceparent: " TRACEPARENT "\r\n\r\n");
    char *head;

    (void)state;
    head = upstream_head(c);
    /* a valid id is passed on as sent, not copied */
    assert_int_equal(c->rq.request_id_len, 0);
    assert_string_equal(c->traceparent, TRACEPARENT);
    expect_field(head, "X-Request-Id", "req-42/abc");
    expect_field(head, "traceparent", TRACEPARENT);
    free(head);
    discard(c);
}

static void
check_generated(struct conn *c, const char *sent_id, const char *sent_tp)
{
    char first_id[sizeof(c->request_id)], first_tp[sizeof(c->traceparent)];
    char *head;

    /* none before the request goes anywhere (a 429 never needs them) */
    assert_int_equal(c->rq.request_id_len, 0);
    assert_false(c->rq.has_ids);
    head = upstream_head(c);
    assert_int_equal(c->rq.request_id_len, 32);
    assert_int_equal(strlen(c->request_id), 32);
    assert_true(is_hex(c->request_id, 32));
    assert_true(sl_http_is_valid_request_id(c->request_id, c->rq.request_id_len));
    assert_int_equal(strlen(c->traceparent), 55);
    assert_true(sl_http_is_valid_traceparent(c->traceparent, 55));
    assert_memory_equal(c->traceparent, "00-", 3);
    assert_memory_equal(c->traceparent + 52, "-01", 3);
    expect_field(head, "X-Request-Id", c->request_id);
    expect_field(head, "traceparent", c->traceparent);
    if (sent_id != NULL)
        assert_null(strstr(head, sent_id));
    if (sent_tp != NULL)
        assert_null(strstr(head, sent_tp));
    free(head);
    /* made once: the access log sees the ids that went upstream */
    memcpy(first_id, c->request_id, sizeof(first_id));
    memcpy(first_tp, c->traceparent, sizeof(first_tp));
    head = upstream_head(c);
    assert_string_equal(c->request_id, first_id);
    assert_string_equal(c->traceparent, first_tp);
    expect_field(head, "traceparent", first_tp);
    free(head);
}

static void
test_ids_generated(void **state)
{
    static const char *const bad_tp[] = {
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* long */
    };
    char long_id[200];
    char raw[1024];
    struct conn *c, *d;

    (void)state;
    c = parsed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    check_generated(c, NULL, NULL);
    d = parsed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    check_generated(d, NULL, NULL);
    /* fresh ids per request */
    assert_string_not_equal(c->request_id, d->request_id);
    assert_memory_not_equal(c->traceparent + 3, d->traceparent + 3, 32);
    discard(c);
    discard(d);

    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    for (size_t i = 0; i < sizeof(bad_tp) / sizeof(bad_tp[0]); i++) {
        snprintf(raw, sizeof(raw),
                 "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\ntraceparent: %s\r\n\r\n",
                 long_id, bad_tp[i]);
        c = parsed(raw);
        check_generated(c, long_id, bad_tp[i]);
        discard(c);
    }
}

/* ---- proxy_write_request_head -------------------------------------------- */

static void
test_head_basic(void **state)
{
    struct conn *c = parsed("GET /a/b?x=1&y=%20 HTTP/1.1\r\n"
                            "Host: example.com:8080\r\n"
                            "User-Agent: t/1\r\n"
                            "Accept: */*\r\n"
                            "X-Forwarded-Proto: https\r\n"
                            "\r\n");
    const char *ua, *accept;
    char *head;

    (void)state;
    head = upstream_head(c);
    assert_memory_equal(head, "GET /a/b?x=1&y=%20 HTTP/1.1\r\n", 29);
    expect_field(head, "Host", "example.com:8080");
    expect_field(head, "X-Forwarded-For", PEER_IP);
    /* the client's own claim is replaced by what we saw */
    expect_field(head, "X-Forwarded-Proto", "http");
    expect_no_field(head, "Content-Length");
    expect_no_field(head, "Transfer-Encoding");
    /* other fields unchanged and in order */
    ua = strstr(head, "\r\nUser-Agent: t/1\r\n");
    accept = strstr(head, "\r\nAccept: */*\r\n");
    assert_non_null(ua);
    assert_non_null(accept);
    assert_true(ua < accept);
    assert_true(strstr(head, "\r\nHost: example.com:8080\r\n") < ua);
    free(head);
    discard(c);
}

static void
test_head_hop_by_hop(void **state)
{
    struct conn *c = parsed("GET / HTTP/1.1\r\n"
                            "Host: a\r\n"
                            "Connection: keep-alive, X-Secret\r\n"
                            "Connection: x-other\r\n"
                            "Keep-Alive: timeout=5\r\n"
                            "TE: trailers\r\n"
                            "Trailer: X-T\r\n"
                            "Upgrade: websocket\r\n"
                            "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
                            "Proxy-Connection: keep-alive\r\n"
                            "X-Secret: 1\r\n"
                            "X-Other: 2\r\n"
                            "X-Kept: 3\r\n"
                            "\r\n");
    static const char *const dropped[] = {
        "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization",
        "Proxy-Connection", "X-Secret", "X-Other",
    };
    char *head;

    (void)state;
    head = upstream_head(c);
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        expect_no_field(head, dropped[i]);
    expect_field(head, "X-Kept", "3");
    expect_field(head, "Host", "a");
    free(head);
    discard(c);
}

static void
test_head_xff_appended(void **state)
{
    struct conn *c = parsed("GET / HTTP/1.1\r\nHost: a\r\n"
                            "X-Forwarded-For: 203.0.113.1\r\n"
                            "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n");
    char *head;

    (void)state;
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-For", "203.0.113.1, 10.0.0.1, 10.0.0.2, " PEER_IP);
    free(head);
    discard(c);
}

/* The upstream gets every X-Forwarded-For field whole, however long: the
 * 1 KiB of c->xff is only what the client address is chosen from. */
static void
test_head_xff_whole_past_kib(void **state)
{
    char raw[8192], want[8192];
    size_t rlen = 0, wlen = 0;
    struct conn *c;
    char *head;

    (void)state;
    rlen += (size_t)snprintf(raw, sizeof(raw),
                             "GET / HTTP/1.1\r\nHost: a\r\n"
                             "X-Forwarded-For: 1.2.3.4");
    wlen += (size_t)snprintf(want, sizeof(want), "1.2.3.4");
    for (int i = 0; i < 200; i++) {
        rlen += (size_t)snprintf(raw + rlen, sizeof(raw) - rlen, ", 127.0.0.%d", i % 10);
        wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen, ", 127.0.0.%d", i % 10);
    }
    rlen += (size_t)snprintf(raw + rlen, sizeof(raw) - rlen,
                             "\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen, ", 203.0.113.9, " PEER_IP);
    assert_true(rlen < sizeof(raw) && wlen < sizeof(want));
    assert_true(wlen > 2 * sizeof(c->xff));
    c = parsed(raw);
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-For", want);
    free(head);
    discard(c);
}

static void
test_head_content_length(void **state)
{
    struct conn *c = parsed("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n"
                            "Content-Type: text/plain\r\n\r\n");
    const char *cl;
    char *head;

    (void)state;
    assert_int_equal(c->rq.framing, SL_FRAMING_LENGTH);
    head = upstream_head(c);
    assert_memory_equal(head, "POST /up HTTP/1.1\r\n", 19);
    /* re-stated from the parsed value */
    expect_field(head, "Content-Length", "12");
    expect_no_field(head, "Transfer-Encoding");
    expect_field(head, "Content-Type", "text/plain");
    free(head);
    discard(c);

    c = parsed("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    head = upstream_head(c);
    /* a zero length stays explicit (upstreams may want it on a POST) */
    assert_int_equal(fields(head, "Content-Length", &cl), 1);
    assert_string_equal(cl, "0");
    expect_no_field(head, "Transfer-Encoding");
    free(head);
    discard(c);
}

static void
test_head_chunked(void **state)
{
    struct conn *c = parsed("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
                            "Expect: 100-continue\r\n\r\n");
    char *head;

    (void)state;
    assert_int_equal(c->rq.framing, SL_FRAMING_CHUNKED);
    head = upstream_head(c);
    expect_field(head, "Transfer-Encoding", "chunked");
    expect_no_field(head, "Content-Length");
    expect_no_field(head, "Expect");
    free(head);
    discard(c);
}

static void
test_head_expect_removed(void **state)
{
    struct conn *c = parsed("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                            "Content-Length: 3\r\n\r\n");
    char *head;

    (void)state;
    head = upstream_head(c);
    expect_no_field(head, "Expect");
    expect_field(head, "Content-Length", "3");
    free(head);
    discard(c);
}

static void
test_head_http10(void **state)
{
    struct conn *c = parsed("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    char *head;

    (void)state;
    head = upstream_head(c);
    /* we speak HTTP/1.1 upstream; without a Host the upstream's address stands in */
    assert_memory_equal(head, "GET /old HTTP/1.1\r\n", 19);
    expect_field(head, "Host", UPSTREAM_ADDR);
    expect_no_field(head, "Connection");
    expect_field(head, "X-Forwarded-For", PEER_IP);
    free(head);
    discard(c);

    c = parsed("GET /old HTTP/1.0\r\nHost: legacy.example\r\n\r\n");
    head = upstream_head(c);
    expect_field(head, "Host", "legacy.example");
    free(head);
    discard(c);
}

/* A WebSocket handshake keeps its upgrade (request_begin sets is_upgrade);
 * the client's spelling of Connection does not matter, ours goes up. */
static void
test_head_websocket(void **state)
{
    struct conn *c = parsed("GET /ws HTTP/1.1\r\nHost: a\r\n"
                            "Connection: keep-alive, Upgrade, X-Secret\r\n"
                            "Upgrade: h2c, websocket\r\nX-Secret: 1\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n");
    char *head;

    (void)state;
    c->rq.is_upgrade = sl_http_is_websocket_upgrade(&c->rq.req, false);
    assert_true(c->rq.is_upgrade);
    head = upstream_head(c);
    expect_field(head, "Connection", "upgrade");
    expect_field(head, "Upgrade", "websocket");
    expect_no_field(head, "X-Secret");
    expect_field(head, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    expect_field(head, "Sec-WebSocket-Version", "13");
    free(head);
    discard(c);
}

/* Any other upgrade goes up as the plain request it also is (RFC 9110 7.8). */
static void
test_head_h2c_removed(void **state)
{
    struct conn *c = parsed("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
    char *head;

    (void)state;
    c->rq.is_upgrade = sl_http_is_websocket_upgrade(&c->rq.req, false);
    assert_false(c->rq.is_upgrade);
    head = upstream_head(c);
    expect_no_field(head, "Connection");
    expect_no_field(head, "Upgrade");
    expect_no_field(head, "HTTP2-Settings");
    free(head);
    discard(c);
}

/* absolute-form goes up in origin-form, with its authority as the one Host
 * (RFC 9112 section 3.2.2: a proxy generates Host from the target). */
static void
test_head_absolute_form(void **state)
{
    struct conn *c = parsed("GET http://api.example:8080/v1/x?q=1 HTTP/1.1\r\n"
                            "Host: other.example\r\n\r\n");
    char *head;

    (void)state;
    head = upstream_head(c);
    assert_memory_equal(head, "GET /v1/x?q=1 HTTP/1.1\r\n", 24);
    expect_field(head, "Host", "api.example:8080");
    free(head);
    discard(c);
    c = parsed("GET http://api.example?q=1 HTTP/1.1\r\nHost: api.example\r\n\r\n");
    head = upstream_head(c);
    assert_memory_equal(head, "GET /?q=1 HTTP/1.1\r\n", 20);
    expect_field(head, "Host", "api.example");
    free(head);
    discard(c);
    /* HTTP/1.0 without Host: the authority still goes up as Host */
    c = parsed("GET http://api.example/ HTTP/1.0\r\n\r\n");
    head = upstream_head(c);
    expect_field(head, "Host", "api.example");
    free(head);
    discard(c);
}

/* ---- retries: what of a request can go again (proxy_retry.c) ----------------- */

static struct sl_upstream_conf retry_upstream;
static struct sl_route_conf retry_route; /* upstream 0: retry_upstream */
static struct sl_stream retry_us;

/* c as on_upstream leaves it after the head: an attempt begins on a fresh
 * output; the bytes written so far are `written`. */
static void
attempt(struct conn *c)
{
    if (retry_us.out != NULL)
        evbuffer_free(retry_us.out);
    retry_us.out = evbuffer_new();
    retry_us.bytes_written = 0;
    c->us = &retry_us;
    c->rq.up_written_base = 0;
    proxy_write_request_head(c, retry_us.out);
    c->rq.up_head_len = evbuffer_get_length(retry_us.out);
    proxy_retry_attempt(c);
}

/* Body bytes going up, as proxy_forward_body sends them. */
static void
body(struct conn *c, const char *bytes, size_t len)
{
    size_t from = evbuffer_get_length(retry_us.out);

    evbuffer_add(retry_us.out, bytes, len);
    proxy_retry_keep(c, from);
}

/* What the attempt's output holds after its head. */
static char *
after_head(const struct conn *c)
{
    size_t len = evbuffer_get_length(retry_us.out) - c->rq.up_head_len;
    char *s = sl_xmalloc(len + 1);

    evbuffer_drain(retry_us.out, c->rq.up_head_len);
    evbuffer_remove(retry_us.out, s, len);
    s[len] = '\0';
    return s;
}

static struct conn *
retry_conn(const char *raw)
{
    struct conn *c = parsed(raw);

    retry_upstream.retry = (struct sl_retry_conf){ .retries = 1, .on = SL_RETRY_ON_RESET,
                                                   .budget_percent = 20, .budget_min = 3 };
    cfg.upstreams = &retry_upstream;
    cfg.nupstreams = 1;
    c->rq.route = &retry_route;
    c->rq.content_length = c->rq.body_left;
    return c;
}

static void
retry_done(struct conn *c)
{
    proxy_retry_end(c);
    evbuffer_free(retry_us.out);
    retry_us.out = NULL;
    cfg.upstreams = NULL;
    cfg.nupstreams = 0;
    discard(c);
}

static void
test_retry_put_body_kept(void **state)
{
    struct conn *c = retry_conn("PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
    char *s;

    (void)state;
    attempt(c);
    assert_true(c->rq.is_idempotent);
    body(c, "01234", 5);
    body(c, "56789", 5);
    retry_us.bytes_written = 40; /* the upstream may have seen it: the copy counts */
    assert_true(proxy_retry_resendable(c));
    attempt(c); /* the next attempt sends the body again after its head */
    s = after_head(c);
    assert_string_equal(s, "0123456789");
    free(s);
    retry_done(c);
}

static void
test_retry_post(void **state)
{
    struct conn *c = retry_conn("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n");
    char *s;

    (void)state;
    attempt(c);
    assert_false(c->rq.is_idempotent);
    assert_false(c->rq.is_body_kept);
    body(c, "abc", 3);
    retry_us.bytes_written = 1; /* one byte went out: never again */
    assert_false(proxy_retry_resendable(c));
    /* none went out: what waits in the output is taken back */
    retry_us.bytes_written = 0;
    assert_true(proxy_retry_resendable(c));
    attempt(c);
    body(c, "def", 3);
    s = after_head(c);
    assert_string_equal(s, "abcdef");
    free(s);
    retry_done(c);
}

static void
test_retry_large_bodies(void **state)
{
    static char big[RETRY_BODY_MAX / 2 + 1];
    struct conn *c;
    char line[128];

    (void)state;
    memset(big, 'x', sizeof(big));
    /* a declared length past the bound: no copy at all */
    snprintf(line, sizeof(line), "PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: %u\r\n\r\n",
             RETRY_BODY_MAX + 1);
    c = retry_conn(line);
    attempt(c);
    assert_false(c->rq.is_body_kept);
    assert_null(c->replay);
    retry_us.bytes_written = 10;
    assert_false(proxy_retry_resendable(c));
    retry_done(c);

    /* chunked: kept until it grows past the bound */
    c = retry_conn("PUT /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    attempt(c);
    body(c, big, sizeof(big));
    assert_true(c->rq.is_body_kept);
    body(c, big, sizeof(big));
    assert_false(c->rq.is_body_kept);
    assert_null(c->replay);
    retry_us.bytes_written = 10;
    assert_false(proxy_retry_resendable(c));
    retry_done(c);

    /* no retries, or none after the request went out: no copy either */
    c = retry_conn("PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
    retry_upstream.retry.on = SL_RETRY_ON_CONNECT_FAILURE;
    attempt(c);
    assert_null(c->replay);
    retry_done(c);
    /* a GET has no body to keep: always resendable */
    c = retry_conn("GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    attempt(c);
    retry_us.bytes_written = 100;
    assert_true(proxy_retry_resendable(c));
    retry_done(c);
}

/* A retry writes the head again after the body went up (body_left ran down
 * to 0): the length sent is still the client's. */
static void
test_head_again_after_body(void **state)
{
    struct conn *c = parsed("PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
    char *head;

    (void)state;
    c->rq.body_left = 0;
    head = upstream_head(c);
    expect_field(head, "Content-Length", "12");
    free(head);
    discard(c);
}

static void
test_head_reparses(void **state)
{
    /* the head we send is itself a valid request with the same framing */
    struct conn *c = parsed("POST /p?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                            "X-Forwarded-For: 203.0.113.9\r\nContent-Length: 7\r\n"
                            "Expect: 100-continue\r\nX-Request-Id: abc\r\n\r\n");
    char *head = upstream_head(c);
    struct conn *d = parsed(head);

    (void)state;
    assert_int_equal(d->rq.framing, SL_FRAMING_LENGTH);
    assert_int_equal(d->rq.body_left, 7);
    assert_int_equal(d->rq.req.target_len, 4);
    assert_memory_equal(d->rq.req.target, "/p?q", 4);
    assert_int_equal(d->rq.req.host_len, 1);
    assert_int_equal(d->rq.req.http_minor, 1);
    assert_true(sl_http_is_valid_traceparent(
        sl_request_header(&d->rq.req, SL_LIT("traceparent"))->value, 55));
    free(head);
    discard(d);
    discard(c);
}

/* ---- client identity (proxy_ident.c) ---------------------------------------- */

static struct sl_cidr trusted[2];

static void
trust_lb(void)
{
    assert_int_equal(sl_cidr_parse("10.0.0.0/8", &trusted[0]), 0);
    assert_int_equal(sl_cidr_parse("fd00::/8", &trusted[1]), 0);
    cfg.trusted_proxies = trusted;
    cfg.ntrusted_proxies = 2;
}

static void
trust_none(void)
{
    cfg.trusted_proxies = NULL;
    cfg.ntrusted_proxies = 0;
}

/* From an untrusted peer: its X-Forwarded-Proto, -Host, -Port are replaced,
 * its Forwarded does not name the client, and sluice appends its element. */
static void
test_ident_untrusted_set(void **state)
{
    struct conn *c;
    char *head, *ip;

    (void)state;
    trust_none();
    c = parsed("GET / HTTP/1.1\r\nHost: api.example:8443\r\n"
               "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\n"
               "Forwarded: for=192.0.2.1;proto=https\r\n\r\n");
    ip = client_text(c);
    assert_string_equal(ip, PEER_IP);
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-Proto", "http");
    expect_field(head, "X-Forwarded-Host", "api.example:8443");
    expect_field(head, "X-Forwarded-Port", "8080");
    assert_int_equal(fields(head, "Forwarded", NULL), 2);
    assert_non_null(strstr(head, "\r\nForwarded: for=192.0.2.1;proto=https\r\n"));
    assert_non_null(strstr(head, "\r\nForwarded: for=" PEER_IP ";host=\"api.example:8443\";"
                                 "proto=http\r\n"));
    free(head);
    free(ip);
    discard(c);
}

/* From a trusted balancer: X-Forwarded-* are kept as they came. */
static void
test_ident_trusted_kept(void **state)
{
    struct conn *c;
    char *head, *ip;

    (void)state;
    trust_lb();
    c = parsed_from("GET / HTTP/1.1\r\nHost: internal\r\n"
                    "X-Forwarded-For: 203.0.113.5\r\n"
                    "X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.example.com\r\n"
                    "X-Forwarded-Port: 443\r\n\r\n",
                    "10.1.2.3");
    ip = client_text(c);
    assert_string_equal(ip, "203.0.113.5");
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-For", "203.0.113.5, 10.1.2.3");
    expect_field(head, "X-Forwarded-Proto", "https");
    expect_field(head, "X-Forwarded-Host", "api.example.com");
    expect_field(head, "X-Forwarded-Port", "443");
    expect_no_field(head, "Forwarded");
    free(head);
    free(ip);
    discard(c);

    /* only XFP came: the port follows its scheme, not our listener */
    c = parsed_from("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n",
                    "10.1.2.3");
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-Proto", "https");
    expect_field(head, "X-Forwarded-Port", "443");
    expect_field(head, "X-Forwarded-Host", "h");
    free(head);
    discard(c);
    trust_none();
}

/* RFC 7239 from a trusted balancer, without X-Forwarded-For: for= walked
 * right to left over trusted nodes, proto= and host= of that element. */
static void
test_ident_forwarded(void **state)
{
    struct conn *c;
    char *head, *ip;

    (void)state;
    trust_lb();
    c = parsed_from("GET / HTTP/1.1\r\nHost: internal\r\n"
                    "Forwarded: for=198.51.100.77;proto=http\r\n"
                    "Forwarded: for=\"[2001:db8:cafe::17]:4711\";proto=HTTPS;"
                    "host=\"api.example.com\","
                    " for=10.9.9.9;proto=http;host=inner\r\n\r\n",
                    "10.1.2.3");
    ip = client_text(c);
    assert_string_equal(ip, "2001:db8:cafe::17");
    head = upstream_head(c);
    expect_field(head, "X-Forwarded-For", "2001:db8:cafe::17, 10.1.2.3");
    expect_field(head, "X-Forwarded-Proto", "https");
    expect_field(head, "X-Forwarded-Host", "api.example.com");
    expect_field(head, "X-Forwarded-Port", "443");
    assert_int_equal(fields(head, "Forwarded", NULL), 3);
    free(head);
    free(ip);
    discard(c);

    /* an obfuscated node hides the client: the trusted node that wrote it stands */
    c = parsed_from("GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=_hidden, for=10.2.2.2\r\n\r\n",
                    "10.1.2.3");
    ip = client_text(c);
    assert_string_equal(ip, "10.2.2.2");
    free(ip);
    discard(c);

    /* malformed: nothing believed, the peer stands */
    c = parsed_from("GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=\"1.2.3.4\r\n\r\n",
                    "10.1.2.3");
    ip = client_text(c);
    assert_string_equal(ip, "10.1.2.3");
    free(ip);
    discard(c);

    /* X-Forwarded-For wins when both came */
    c = parsed_from("GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=192.0.2.60\r\n"
                    "X-Forwarded-For: 192.0.2.43\r\n\r\n",
                    "10.1.2.3");
    ip = client_text(c);
    assert_string_equal(ip, "192.0.2.43");
    free(ip);
    discard(c);

    /* our own element for an IPv6 connection client: bracketed and quoted */
    c = parsed_from("GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=unknown\r\n\r\n",
                    "2001:db8::9");
    head = upstream_head(c);
    assert_non_null(strstr(head, "\r\nForwarded: for=\"[2001:db8::9]\";host=\"h\";proto=http\r\n"));
    free(head);
    discard(c);
    trust_none();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xff_none),
        cmocka_unit_test(test_xff_joined),
        cmocka_unit_test(test_xff_keeps_rightmost_kib),
        cmocka_unit_test(test_xff_one_entry_past_kib),
        cmocka_unit_test(test_ids_kept_when_valid),
        cmocka_unit_test(test_ids_generated),
        cmocka_unit_test(test_head_basic),
        cmocka_unit_test(test_head_hop_by_hop),
        cmocka_unit_test(test_head_xff_appended),
        cmocka_unit_test(test_head_xff_whole_past_kib),
        cmocka_unit_test(test_head_content_length),
        cmocka_unit_test(test_head_chunked),
        cmocka_unit_test(test_head_expect_removed),
        cmocka_unit_test(test_head_http10),
        cmocka_unit_test(test_head_reparses),
        cmocka_unit_test(test_head_again_after_body),
        cmocka_unit_test(test_retry_put_body_kept),
        cmocka_unit_test(test_retry_post),
        cmocka_unit_test(test_retry_large_bodies),
        cmocka_unit_test(test_ident_untrusted_set),
        cmocka_unit_test(test_ident_trusted_kept),
        cmocka_unit_test(test_ident_forwarded),
        cmocka_unit_test(test_head_websocket),
        cmocka_unit_test(test_head_h2c_removed),
        cmocka_unit_test(test_head_absolute_form),
    };

    /* fixed seed: ids only need to differ, and runs should repeat */
    px.rng[0] = 0x9e3779b97f4a7c15ULL;
    px.rng[1] = 0x2545f4914f6cdd1dULL;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
