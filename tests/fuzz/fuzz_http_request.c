/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Fuzz driver: the bytes a client sends, through the request side of
 * src/http.c the way proxy.c drives it. Heads are fed in fuzzer-chosen reads
 * (each from a fresh copy, as evbuffer_pullup may move them), accepted heads
 * are copied out and turned into a request, the framing decided, chunked
 * bodies decoded, re-framed and read back, and the next pipelined request
 * parsed after them. Input layout:
 *
 *   byte 0: how reads are cut (fuzz_util.h): low 2 bits the head, bits 2-3
 *           the body
 *   byte 1: limits: bits 0-2 max head size, bits 3-4 max header count,
 *           bits 5-6 max request-target size
 *   rest:   what the client sends on one connection
 *
 * Seeds starting "00" use the conf defaults (16 KiB head, 100 headers, 8 KiB
 * target) in one read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sluice/http.h"
#include "util/alloc.h"
#include "util/path.h"

#define MAX_MESSAGES 32

static const size_t max_sizes[8] = { 16384, 1024, 65536, 64, 4096, 300, 16, 1u << 20 };
static const unsigned max_headers_of[4] = { 1, 8, 100, 10000 };
static const size_t max_uri_sizes[4] = { 0, 8192, 64, 100000 }; /* 0: max head size only */

/* Line ends of an accepted head: CRLF only, and the head ends with an empty
 * line (RFC 9112 section 2.2: no bare CR, no bare LF). */
static void
check_line_ends(const char *head, size_t len)
{
    SL_FUZZ_CHECK(len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < len; i++) {
        if (head[i] == '\r')
            SL_FUZZ_CHECK(i + 1 < len && head[i + 1] == '\n');
        if (head[i] == '\n')
            SL_FUZZ_CHECK(i > 0 && head[i - 1] == '\r');
    }
}

/* A normal path: absolute, no empty segment but the last, no "." or ".."
 * segment, every escape two upper-case hex digits of a byte that is not
 * unreserved (RFC 3986 section 2.3). */
static void
check_normal_path(const char *p, size_t n)
{
    SL_FUZZ_CHECK(n >= 1 && p[0] == '/');
    for (size_t i = 0; i < n;) {
        size_t end = i + 1;
        while (end < n && p[end] != '/')
            end++;
        SL_FUZZ_CHECK(end > i + 1 || end == n);
        SL_FUZZ_CHECK(!(end == i + 2 && p[i + 1] == '.'));
        SL_FUZZ_CHECK(!(end == i + 3 && p[i + 1] == '.' && p[i + 2] == '.'));
        i = end;
    }
    for (size_t i = 0; i < n; i++) {
        const char *hex = "0123456789ABCDEF";
        unsigned char c;
        if (p[i] != '%')
            continue;
        SL_FUZZ_CHECK(i + 2 < n && p[i + 1] != '\0' && strchr(hex, p[i + 1]) != NULL
                      && p[i + 2] != '\0' && strchr(hex, p[i + 2]) != NULL);
        c = (unsigned char)((strchr(hex, p[i + 1]) - hex) * 16 + (strchr(hex, p[i + 2]) - hex));
        SL_FUZZ_CHECK(!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                        || c == '-' || c == '.' || c == '_' || c == '~'));
    }
}

/* The path as routes and limits see it (util/path.h), with encoded slashes
 * kept and refused: never longer, normal, stable under a second pass, and
 * refusing %2F changes nothing else. */
static void
check_path(const struct sl_request *req)
{
    char *out = sl_xmalloc(req->path_len), *again = sl_xmalloc(req->path_len);
    size_t n = 0, m = 0;
    enum sl_path_result r = sl_path_normalize(req->path, req->path_len, out, &n, 0);
    enum sl_path_result rr =
        sl_path_normalize(req->path, req->path_len, again, &m, SL_PATH_REJECT_ENCODED_SLASH);

    if (r != SL_PATH_OK) {
        SL_FUZZ_CHECK(r == SL_PATH_BAD_ESCAPE && rr != SL_PATH_OK);
    } else {
        SL_FUZZ_CHECK(n <= req->path_len);
        check_normal_path(out, n);
        SL_FUZZ_CHECK(rr == SL_PATH_OK || rr == SL_PATH_ENCODED_SLASH);
        if (rr == SL_PATH_OK)
            SL_FUZZ_CHECK(m == n && memcmp(out, again, n) == 0);
        SL_FUZZ_CHECK(sl_path_normalize(out, n, again, &m, 0) == SL_PATH_OK);
        SL_FUZZ_CHECK(m == n && memcmp(out, again, n) == 0);
    }
    free(out);
    free(again);
}

static bool name_is(const struct sl_header *h, const char *lower);

/* RFC 9112 section 3.2: origin-form, absolute-form (its authority a valid
 * host that stands for Host, its path and query in origin-form) or, for
 * OPTIONS only, asterisk-form. */
static void
check_target_form(const struct sl_request *req)
{
    const char *origin_end = req->target + req->target_len;

    if (req->is_asterisk) {
        SL_FUZZ_CHECK(req->target_len == 1 && req->target[0] == '*');
        SL_FUZZ_CHECK(req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0);
        SL_FUZZ_CHECK(req->authority == NULL);
        return;
    }
    if (req->authority != NULL) {
        SL_FUZZ_CHECK(req->authority >= req->target + 7 && req->authority_len > 0);
        SL_FUZZ_CHECK(req->authority + req->authority_len <= origin_end);
        SL_FUZZ_CHECK(memcmp(req->authority - 3, "://", 3) == 0);
        SL_FUZZ_CHECK(sl_http_is_valid_host(req->authority, req->authority_len));
        SL_FUZZ_CHECK(memchr(req->authority, '@', req->authority_len) == NULL);
        SL_FUZZ_CHECK(req->host == req->authority);
    } else {
        SL_FUZZ_CHECK(req->origin == req->target && req->origin_len == req->target_len);
    }
    if (req->origin_len == 0) {
        SL_FUZZ_CHECK(req->authority != NULL && req->path_len == 1 && req->path[0] == '/');
        return;
    }
    SL_FUZZ_CHECK(req->origin[0] == '/' && req->origin + req->origin_len == origin_end);
    SL_FUZZ_CHECK(req->path == req->origin && req->path_len <= req->origin_len);
    SL_FUZZ_CHECK(memchr(req->path, '?', req->path_len) == NULL);
    if (req->query != NULL) {
        SL_FUZZ_CHECK(req->query == req->path + req->path_len + 1);
        SL_FUZZ_CHECK(req->path_len + 1 + req->query_len == req->origin_len);
    } else {
        SL_FUZZ_CHECK(req->path_len == req->origin_len);
    }
}

static void
check_request(const struct sl_head *h, const char *head, const struct sl_request *req)
{
    const char *end = head + h->head_len;
    size_t skip = 0;

    SL_FUZZ_CHECK(req->nheaders == h->nspans && req->nheaders <= h->max_headers);
    sl_fuzz_check_inside(req->headers, req->nheaders, head, h->head_len);
    SL_FUZZ_CHECK(sl_http_check_fields(req->headers, req->nheaders) == 0);

    /* the method we act on is the one that was sent (after the empty lines
     * RFC 9112 section 2.2 lets a server skip) */
    while (skip < h->head_len && (head[skip] == '\r' || head[skip] == '\n'))
        skip++;
    SL_FUZZ_CHECK(req->method != NULL && req->method_len > 0);
    SL_FUZZ_CHECK(skip + req->method_len < h->head_len);
    SL_FUZZ_CHECK(memcmp(head + skip, req->method, req->method_len) == 0);
    SL_FUZZ_CHECK(head[skip + req->method_len] == ' ');

    SL_FUZZ_CHECK(req->target >= head && req->target + req->target_len <= end);
    SL_FUZZ_CHECK(req->target_len > 0);
    SL_FUZZ_CHECK(h->max_uri_size == 0 || req->target_len <= h->max_uri_size);
    check_target_form(req);
    for (size_t i = 0; i < req->target_len; i++) {
        unsigned char c = (unsigned char)req->target[i];
        SL_FUZZ_CHECK(c > 0x20 && c != 0x7f);
    }
    if (req->host != NULL) {
        SL_FUZZ_CHECK(req->host >= head && req->host + req->host_len <= end);
        if (req->host_len > 0 && req->host[0] != '[')
            SL_FUZZ_CHECK(memchr(req->host, ':', req->host_len) == NULL);
        if (req->host_len > 0 && req->host[0] == '[')
            SL_FUZZ_CHECK(req->host[req->host_len - 1] == ']');
    } else {
        SL_FUZZ_CHECK(req->http_minor == 0);
    }
    /* a Host we forward is always a uri-host[:port] */
    for (size_t i = 0; i < req->nheaders; i++) {
        if (name_is(&req->headers[i], "host"))
            SL_FUZZ_CHECK(sl_http_is_valid_host(req->headers[i].value, req->headers[i].value_len));
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *hd = &req->headers[i];
        const struct sl_header *first = sl_request_header(req, hd->name, hd->name_len);
        SL_FUZZ_CHECK(first != NULL && first <= hd);
        SL_FUZZ_CHECK(sl_http_token_eq(first->name, first->name_len, hd->name, hd->name_len));
    }
    sl_fuzz_check_forwarding(req->headers, req->nheaders);
    if (!req->is_asterisk) /* answered by the proxy before any path work */
        check_path(req);
}

static bool
name_is(const struct sl_header *h, const char *lower)
{
    return sl_http_token_eq(h->name, h->name_len, lower, strlen(lower));
}

/*
 * The head as proxy.c's write_request_head() sends it upstream (the fields
 * it adds of its own left out), read back through a fresh sl_head: the
 * upstream must see the request we acted on.
 */
static void
check_forwarded(const struct sl_request *req, enum sl_framing framing, uint64_t length)
{
    struct sl_fuzz_buf out = { NULL, 0, 0 };
    const struct sl_header **kept = sl_xmalloc((req->nheaders + 1) * sizeof(*kept));
    struct sl_header *headers;
    struct sl_request again;
    struct sl_head h;
    enum sl_framing framing_again;
    uint64_t length_again;
    const struct sl_header *rid = sl_request_header(req, "x-request-id", 12);
    bool is_new_request_id = rid == NULL || !sl_http_is_valid_request_id(rid->value,
                                                                         rid->value_len);
    size_t nkept = 0, extra = 0;
    char num[64];
    char *copy;

    size_t target_start, target_len;

    sl_fuzz_buf_add(&out, req->method, req->method_len);
    sl_fuzz_buf_add(&out, " ", 1);
    /* origin-form, as write_request_head sends it (RFC 9112 section 3.2.2) */
    target_start = out.len;
    if (req->origin_len > 0) {
        sl_fuzz_buf_add(&out, req->origin, req->origin_len);
    } else {
        sl_fuzz_buf_add(&out, "/", 1);
        if (req->query != NULL) {
            sl_fuzz_buf_add(&out, "?", 1);
            sl_fuzz_buf_add(&out, req->query, req->query_len);
        }
    }
    target_len = out.len - target_start;
    sl_fuzz_buf_add(&out, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *hd = &req->headers[i];
        /* Host goes up whatever Connection names (proxy.c since 71e832d:
         * regression/fuzz_http_request/connection_names_host) */
        if (name_is(hd, "host") && req->authority != NULL)
            continue; /* the target's authority replaces it */
        if (!name_is(hd, "host")
            && (sl_http_is_hop_by_hop(req->headers, req->nheaders, hd)
                || name_is(hd, "content-length") || name_is(hd, "expect")
                || name_is(hd, "x-forwarded-proto") || name_is(hd, "x-forwarded-for")
                || (is_new_request_id && name_is(hd, "x-request-id"))
                || name_is(hd, "traceparent")))
            continue;
        kept[nkept++] = hd;
        sl_fuzz_buf_add(&out, hd->name, hd->name_len);
        sl_fuzz_buf_add(&out, ": ", 2);
        sl_fuzz_buf_add(&out, hd->value, hd->value_len);
        sl_fuzz_buf_add(&out, "\r\n", 2);
    }
    if (req->authority != NULL) {
        sl_fuzz_buf_add(&out, "Host: ", 6);
        sl_fuzz_buf_add(&out, req->authority, req->authority_len);
        sl_fuzz_buf_add(&out, "\r\n", 2);
        extra++;
    } else if (req->host == NULL) {
        sl_fuzz_buf_add(&out, "Host: 127.0.0.1:9000\r\n", 22);
        extra++;
    }
    if (framing == SL_FRAMING_LENGTH) {
        int n = snprintf(num, sizeof(num), "Content-Length: %llu\r\n",
                         (unsigned long long)length);
        sl_fuzz_buf_add(&out, num, (size_t)n);
        extra++;
    } else if (framing == SL_FRAMING_CHUNKED) {
        sl_fuzz_buf_add(&out, "Transfer-Encoding: chunked\r\n", 28);
        extra++;
    }
    sl_fuzz_buf_add(&out, "\r\n", 2);

    copy = sl_fuzz_copy(out.data, out.len);
    sl_head_init(&h, HTTP_REQUEST, out.len + 1, (unsigned)(nkept + extra + 1));
    SL_FUZZ_CHECK(sl_head_feed(&h, copy, out.len) == SL_HEAD_DONE);
    SL_FUZZ_CHECK(h.head_len == out.len);
    SL_FUZZ_CHECK(sl_http_check_line_ends(copy, h.head_len) == 0);
    headers = sl_xmalloc((h.nspans + 1) * sizeof(*headers));
    SL_FUZZ_CHECK(sl_head_to_request(&h, copy, headers, &again) == 0);
    SL_FUZZ_CHECK(sl_http_request_framing(&again, &framing_again, &length_again) == 0);
    SL_FUZZ_CHECK(framing_again == framing && length_again == length);
    SL_FUZZ_CHECK(again.method_len == req->method_len
                  && memcmp(again.method, req->method, req->method_len) == 0);
    SL_FUZZ_CHECK(again.target_len == target_len
                  && memcmp(again.target, copy + target_start, target_len) == 0);
    SL_FUZZ_CHECK(again.authority == NULL && !again.is_asterisk);
    SL_FUZZ_CHECK(again.path_len == req->path_len
                  && memcmp(again.path, req->path, req->path_len) == 0);
    SL_FUZZ_CHECK(again.nheaders == nkept + extra);
    for (size_t i = 0; i < nkept; i++) {
        const struct sl_header *a = &again.headers[i], *b = kept[i];
        SL_FUZZ_CHECK(a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0);
        SL_FUZZ_CHECK(a->value_len == b->value_len
                      && memcmp(a->value, b->value, a->value_len) == 0);
    }
    if (req->host != NULL)
        SL_FUZZ_CHECK(again.host_len == req->host_len
                      && memcmp(again.host, req->host, req->host_len) == 0);
    free(headers);
    free(copy);
    sl_head_fini(&h);
    free(kept);
    sl_fuzz_buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_fuzz_split head_split, body_split;
    struct sl_head h;
    const char *stream;
    size_t len, pos = 0;

    if (size < 2)
        return 0;
    sl_fuzz_split_init(&head_split, data[0]);
    sl_fuzz_split_init(&body_split, (uint8_t)(data[0] >> 2));
    sl_head_init(&h, HTTP_REQUEST, max_sizes[data[1] & 7], max_headers_of[(data[1] >> 3) & 3]);
    h.max_uri_size = max_uri_sizes[(data[1] >> 5) & 3];
    stream = (const char *)data + 2;
    len = size - 2;

    for (int m = 0; m < MAX_MESSAGES && pos < len; m++) {
        struct sl_request req;
        struct sl_header *headers;
        enum sl_framing framing;
        uint64_t length;
        char *head;
        int r;

        if (m > 0)
            sl_head_reset(&h, HTTP_REQUEST);
        r = sl_fuzz_read_head(&h, &head_split, stream + pos, len - pos, &head);
        if (r != SL_HEAD_DONE) {
            SL_FUZZ_CHECK(r == SL_HEAD_MORE || r == 400 || r == 414 || r == 431);
            SL_FUZZ_CHECK(sl_http_reason(r) != NULL);
            sl_fuzz_trace("request %d: head %s", m, r == SL_HEAD_MORE ? "incomplete" : "refused");
            if (r != SL_HEAD_MORE)
                sl_fuzz_trace("  status %d", r);
            break;
        }
        if (sl_http_check_line_ends(head, h.head_len) != 0) {
            sl_fuzz_trace("request %d: line ends refused", m);
            free(head);
            break;
        }
        headers = sl_xmalloc((h.nspans ? h.nspans : 1) * sizeof(*headers));
        r = sl_head_to_request(&h, head, headers, &req);
        if (r != 0) {
            sl_fuzz_trace("request %d: request refused %d", m, r);
            SL_FUZZ_CHECK(r == 400 || r == 505);
            free(headers);
            free(head);
            break;
        }
        check_request(&h, head, &req);
        r = sl_http_request_framing(&req, &framing, &length);
        if (r != 0) {
            sl_fuzz_trace("request %d: framing refused %d", m, r);
            SL_FUZZ_CHECK(r == 400);
            free(headers);
            free(head);
            break;
        }
        /* accepted: now it goes upstream */
        sl_fuzz_trace("request %d: accepted, head %zu bytes, %zu headers, framing %d", m,
                      h.head_len, req.nheaders, (int)framing);
        check_line_ends(head, h.head_len);
        /* our framing and the parser's reading of the head agree (a
         * disagreement is where smuggling lives) */
        SL_FUZZ_CHECK((framing == SL_FRAMING_CHUNKED) == ((h.parser.flags & F_CHUNKED) != 0));
        if (framing == SL_FRAMING_LENGTH) {
            SL_FUZZ_CHECK(length > 0 && (h.parser.flags & F_CONTENTLENGTH));
            SL_FUZZ_CHECK(h.parser.content_length == length);
        }
        SL_FUZZ_CHECK(framing != SL_FRAMING_EOF);
        if (!req.is_asterisk) /* OPTIONS * is answered, never forwarded */
            check_forwarded(&req, framing, length);
        pos += h.head_len;
        free(headers);
        free(head);

        if (framing == SL_FRAMING_LENGTH) {
            if (length > len - pos) {
                sl_fuzz_trace("  body incomplete");
                break;
            }
            pos += (size_t)length;
        } else if (framing == SL_FRAMING_CHUNKED) {
            struct sl_fuzz_buf decoded = { NULL, 0, 0 }, reframed = { NULL, 0, 0 };
            bool is_complete;
            ssize_t n = sl_fuzz_feed_body(&h, &body_split, stream + pos, len - pos, false,
                                          &decoded, &reframed, &is_complete);
            if (n >= 0 && is_complete)
                sl_fuzz_check_chunked(HTTP_REQUEST, stream + pos, (size_t)n, &decoded,
                                      &reframed);
            sl_fuzz_trace("  chunked body: %s, %zd bytes, %zu decoded",
                          n < 0 ? "refused" : is_complete ? "complete" : "incomplete", n,
                          decoded.len);
            sl_fuzz_buf_free(&decoded);
            sl_fuzz_buf_free(&reframed);
            if (n < 0 || !is_complete)
                break;
            pos += (size_t)n;
        }
    }
    sl_head_fini(&h);
    return 0;
}
