/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Helpers shared by the fuzz drivers (see fuzz_util.h). The reference checks
 * here are deliberately written apart from src/http.c, from the RFC text, so
 * that a driver compares two readings of the same bytes rather than one
 * reading with itself.
 */
#include "fuzz_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void
sl_fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

void
sl_fuzz_trace(const char *fmt, ...)
{
    static int is_on = -1;
    va_list ap;

    if (is_on < 0)
        is_on = getenv("SL_FUZZ_TRACE") != NULL;
    if (!is_on)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- split points --------------------------------------------------------- */

static uint64_t
rng_next(struct sl_fuzz_split *s)
{
    /* xorshift64: deterministic, and cheap enough to call per byte */
    s->state ^= s->state << 13;
    s->state ^= s->state >> 7;
    s->state ^= s->state << 17;
    return s->state;
}

void
sl_fuzz_split_init(struct sl_fuzz_split *s, uint8_t control)
{
    s->mode = control & 3u;
    s->reads = 0;
    s->state = 0x9e3779b97f4a7c15ull ^ ((uint64_t)control << 32) ^ control;
}

void
sl_fuzz_split_restart(struct sl_fuzz_split *s)
{
    s->reads = 0;
}

size_t
sl_fuzz_split_next(struct sl_fuzz_split *s, size_t cur, size_t limit)
{
    size_t step;

    if (cur >= limit || ++s->reads > SL_FUZZ_MAX_READS)
        return limit;
    switch (s->mode) {
    case 0:
        return limit;
    case 1:
        step = 1;
        break;
    case 2:
        step = 1 + (size_t)(rng_next(s) % 64);
        break;
    default:
        step = (size_t)(rng_next(s) % 8);
        break;
    }
    return limit - cur < step ? limit : cur + step;
}

/* ---- buffers ---------------------------------------------------------------- */

void
sl_fuzz_buf_add(struct sl_fuzz_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (b->len + len > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        while (b->cap < b->len + len)
            b->cap *= 2;
        b->data = sl_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void
sl_fuzz_buf_free(struct sl_fuzz_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *
sl_fuzz_copy(const void *data, size_t len)
{
    char *p = sl_xmalloc(len ? len : 1);

    if (len > 0)
        memcpy(p, data, len);
    return p;
}

void
sl_fuzz_frame_chunk(struct sl_fuzz_buf *out, const char *at, size_t len)
{
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);

    sl_fuzz_buf_add(out, size, (size_t)n);
    sl_fuzz_buf_add(out, at, len);
    sl_fuzz_buf_add(out, "\r\n", 2);
}

/* ---- reference chunked decoder ------------------------------------------------ */

/* The reference shares no code with src/ on purpose (not even
 * sl_hex_value): a bug common to both would agree with itself. */
static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool
is_control(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Expects CRLF at *i: 1 consumed, 0 bytes ran out, -1 something else. */
static int
take_crlf(const char *p, size_t len, size_t *i)
{
    if (*i >= len)
        return 0;
    if (p[*i] != '\r')
        return -1;
    if (*i + 1 >= len)
        return 0;
    if (p[*i + 1] != '\n')
        return -1;
    *i += 2;
    return 1;
}

int
sl_fuzz_dechunk(const char *p, size_t len, struct sl_fuzz_buf *out, size_t *consumed)
{
    size_t i = 0;
    int r;

    for (;;) {
        uint64_t size = 0;
        unsigned digits = 0;

        while (i < len && hexval(p[i]) >= 0) {
            if (++digits > 16)
                return -1;
            size = size * 16 + (uint64_t)hexval(p[i]);
            i++;
        }
        if (i >= len)
            return 0;
        if (digits == 0)
            return -1;
        /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ) */
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i < len && p[i] == ';') {
            while (i < len && p[i] != '\r') {
                if (is_control((unsigned char)p[i]))
                    return -1;
                i++;
            }
        }
        if ((r = take_crlf(p, len, &i)) != 1)
            return r;
        if (size == 0)
            break;
        if (len - i < size)
            return 0;
        sl_fuzz_buf_add(out, p + i, (size_t)size);
        i += (size_t)size;
        if ((r = take_crlf(p, len, &i)) != 1)
            return r;
    }
    /* trailer-section CRLF */
    for (;;) {
        if (i >= len)
            return 0;
        if (p[i] == '\r')
            break;
        while (i < len && p[i] != '\r') {
            if (is_control((unsigned char)p[i]))
                return -1;
            i++;
        }
        if ((r = take_crlf(p, len, &i)) != 1)
            return r;
    }
    if ((r = take_crlf(p, len, &i)) != 1)
        return r;
    *consumed = i;
    return 1;
}

/* ---- header checks ---------------------------------------------------------- */

static bool
inside(const char *p, size_t len, const char *base, size_t base_len)
{
    return p >= base && len <= base_len && (size_t)(p - base) <= base_len - len;
}

void
sl_fuzz_check_inside(const struct sl_header *headers, size_t n, const char *base, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        SL_FUZZ_CHECK(headers[i].name != NULL && headers[i].value != NULL);
        SL_FUZZ_CHECK(inside(headers[i].name, headers[i].name_len, base, len));
        SL_FUZZ_CHECK(inside(headers[i].value, headers[i].value_len, base, len));
        /* values come trimmed of OWS */
        if (headers[i].value_len > 0) {
            char first = headers[i].value[0], last = headers[i].value[headers[i].value_len - 1];
            SL_FUZZ_CHECK(first != ' ' && first != '\t' && last != ' ' && last != '\t');
        }
    }
}

static bool
lower_eq(const char *a, size_t a_len, const char *lower)
{
    size_t n = strlen(lower);

    if (a_len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower[i])
            return false;
    }
    return true;
}

/* Does a Connection header list `name` (RFC 9110 section 7.6.1)? */
static bool
ref_connection_lists(const struct sl_header *headers, size_t n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++) {
        size_t start = 0;
        if (!lower_eq(headers[i].name, headers[i].name_len, "connection"))
            continue;
        for (size_t j = 0; j <= headers[i].value_len; j++) {
            size_t a = start, b = j;
            if (j < headers[i].value_len && headers[i].value[j] != ',')
                continue;
            while (a < b && (headers[i].value[a] == ' ' || headers[i].value[a] == '\t'))
                a++;
            while (b > a && (headers[i].value[b - 1] == ' ' || headers[i].value[b - 1] == '\t'))
                b--;
            if (b - a == name_len && sl_http_token_eq(headers[i].value + a, b - a, name, name_len))
                return true;
            start = j + 1;
        }
    }
    return false;
}

static bool
ref_hop_by_hop(const struct sl_header *headers, size_t n, const struct sl_header *h)
{
    static const char *const names[] = {
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (lower_eq(h->name, h->name_len, names[i]))
            return true;
    }
    if (h->name_len >= 6 && lower_eq(h->name, 6, "proxy-"))
        return true;
    return ref_connection_lists(headers, n, h->name, h->name_len);
}

static bool
ref_lower_hex(const char *s, size_t n, bool may_be_zero)
{
    bool is_zero = true;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        is_zero = is_zero && s[i] == '0';
    }
    return may_be_zero || !is_zero;
}

/* W3C Trace Context section 3.2, version 00 layout; version ff is invalid. */
static bool
ref_traceparent(const char *v, size_t n)
{
    return n == 55 && ref_lower_hex(v, 2, true) && memcmp(v, "ff", 2) != 0 && v[2] == '-'
        && ref_lower_hex(v + 3, 32, false) && v[35] == '-' && ref_lower_hex(v + 36, 16, false)
        && v[52] == '-' && ref_lower_hex(v + 53, 2, true);
}

static bool
ref_request_id(const char *v, size_t n)
{
    if (n == 0 || n > SL_HTTP_MAX_REQUEST_ID)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

void
sl_fuzz_check_forwarding(const struct sl_header *headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct sl_header *h = &headers[i];
        SL_FUZZ_CHECK(sl_http_is_hop_by_hop(headers, n, h) == ref_hop_by_hop(headers, n, h));
        SL_FUZZ_CHECK(sl_http_is_valid_traceparent(h->value, h->value_len)
                      == ref_traceparent(h->value, h->value_len));
        SL_FUZZ_CHECK(sl_http_is_valid_request_id(h->value, h->value_len)
                      == ref_request_id(h->value, h->value_len));
        /* a name is a value too: a 55-byte name gives the parser other bytes */
        SL_FUZZ_CHECK(sl_http_is_valid_traceparent(h->name, h->name_len)
                      == ref_traceparent(h->name, h->name_len));
    }
}

/* ---- heads ------------------------------------------------------------------ */

/* As proxy.c's read_head(); the copy made on SL_HEAD_DONE stands for the
 * bytes proxy.c moves out of the input buffer. */
int
sl_fuzz_read_head(struct sl_head *h, struct sl_fuzz_split *split, const char *stream,
                  size_t avail, char **head_buf)
{
    size_t limit = avail < h->max_size ? avail : h->max_size;
    size_t cur = 0;
    int r = SL_HEAD_MORE;
    bool is_last = false;

    *head_buf = NULL;
    sl_fuzz_split_restart(split);
    while (r == SL_HEAD_MORE && !is_last) {
        char *copy;
        cur = sl_fuzz_split_next(split, cur, limit);
        is_last = cur == limit;
        copy = sl_fuzz_copy(stream, cur);
        r = sl_head_feed(h, copy, cur);
        if (r == SL_HEAD_DONE) {
            SL_FUZZ_CHECK(h->is_complete);
            SL_FUZZ_CHECK(h->head_len > 0 && h->head_len <= cur && h->head_len <= h->max_size);
            *head_buf = sl_fuzz_copy(copy, h->head_len);
            /* the input buffer moves on: stale pointers into it must not be used */
            memset(copy, 0xa5, cur);
        }
        free(copy);
    }
    if (r == SL_HEAD_MORE)
        SL_FUZZ_CHECK(cur < h->max_size); /* a full-size head is never "more" */
    return r;
}

/* ---- bodies ---------------------------------------------------------------- */

struct body_ctx {
    const char *piece;
    size_t piece_len;
    struct sl_fuzz_buf *decoded;
    struct sl_fuzz_buf *reframed;
};

static void
on_body(void *arg, const char *at, size_t len)
{
    struct body_ctx *ctx = arg;

    /* decoded bytes are borrowed from the bytes being fed */
    SL_FUZZ_CHECK(ctx->piece != NULL && inside(at, len, ctx->piece, ctx->piece_len));
    sl_fuzz_buf_add(ctx->decoded, at, len);
    if (ctx->reframed != NULL)
        sl_fuzz_frame_chunk(ctx->reframed, at, len); /* as chunk_to_upstream does */
}

ssize_t
sl_fuzz_feed_body(struct sl_head *h, struct sl_fuzz_split *split, const char *p, size_t len,
                  bool is_eof, struct sl_fuzz_buf *decoded, struct sl_fuzz_buf *reframed,
                  bool *is_complete)
{
    struct body_ctx ctx = { NULL, 0, decoded, reframed };
    size_t done = 0;
    ssize_t n;

    h->on_body = on_body;
    h->body_arg = &ctx;
    sl_fuzz_split_restart(split);
    while (done < len && !h->is_message_complete) {
        size_t end = sl_fuzz_split_next(split, done, len);
        char *piece;
        if (end == done)
            end = done + 1; /* an empty read here would mean end of stream */
        piece = sl_fuzz_copy(p + done, end - done);
        ctx.piece = piece;
        ctx.piece_len = end - done;
        n = sl_head_feed_body(h, piece, end - done);
        ctx.piece = NULL;
        free(piece);
        if (n < 0)
            goto out;
        SL_FUZZ_CHECK((size_t)n <= end - done);
        /* the parser stops early only at the end of the message */
        SL_FUZZ_CHECK((size_t)n == end - done || h->is_message_complete);
        done += (size_t)n;
    }
    n = (ssize_t)done;
    if (is_eof && !h->is_message_complete) {
        if (sl_head_feed_body(h, NULL, 0) < 0)
            n = -1;
        else
            SL_FUZZ_CHECK(h->is_message_complete);
    }
out:
    h->on_body = NULL;
    h->body_arg = NULL;
    *is_complete = n >= 0 && h->is_message_complete;
    return n;
}

static void
reparse(enum http_parser_type type, const struct sl_fuzz_buf *reframed,
        const struct sl_fuzz_buf *decoded)
{
    static const char req_head[] = "POST / HTTP/1.1\r\nHost: f\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n";
    static const char resp_head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *head = type == HTTP_REQUEST ? req_head : resp_head;
    size_t head_len = strlen(head);
    struct sl_fuzz_buf again = { NULL, 0, 0 };
    struct body_ctx ctx = { NULL, 0, &again, NULL };
    struct sl_head h;
    char *body;
    ssize_t n;

    sl_head_init(&h, type, 1024, 8);
    SL_FUZZ_CHECK(sl_head_feed(&h, head, head_len) == SL_HEAD_DONE);
    SL_FUZZ_CHECK(h.head_len == head_len);
    h.on_body = on_body;
    h.body_arg = &ctx;
    body = sl_fuzz_copy(reframed->data, reframed->len);
    ctx.piece = body;
    ctx.piece_len = reframed->len;
    n = sl_head_feed_body(&h, body, reframed->len);
    SL_FUZZ_CHECK(n >= 0 && (size_t)n == reframed->len);
    SL_FUZZ_CHECK(h.is_message_complete);
    SL_FUZZ_CHECK(again.len == decoded->len);
    SL_FUZZ_CHECK(again.len == 0 || memcmp(again.data, decoded->data, again.len) == 0);
    free(body);
    sl_fuzz_buf_free(&again);
    sl_head_fini(&h);
}

void
sl_fuzz_check_chunked(enum http_parser_type type, const char *raw, size_t raw_len,
                      const struct sl_fuzz_buf *decoded, struct sl_fuzz_buf *reframed)
{
    struct sl_fuzz_buf ref = { NULL, 0, 0 };
    size_t consumed = 0;

    /* the same end of message, the same data, as an independent decoder */
    SL_FUZZ_CHECK(sl_fuzz_dechunk(raw, raw_len, &ref, &consumed) == 1);
    SL_FUZZ_CHECK(consumed == raw_len);
    SL_FUZZ_CHECK(ref.len == decoded->len);
    SL_FUZZ_CHECK(ref.len == 0 || memcmp(ref.data, decoded->data, ref.len) == 0);
    sl_fuzz_buf_free(&ref);

    /* what proxy.c sends on: one chunk per on_body call, then the last
     * chunk; it must read back as the same bytes */
    sl_fuzz_buf_add(reframed, "0\r\n\r\n", 5);
    reparse(type, reframed, decoded);
}
