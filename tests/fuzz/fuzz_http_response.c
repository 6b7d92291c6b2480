/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Fuzz driver: the bytes an upstream sends back, through the response side
 * of src/http.c the way proxy.c drives it: interim 1xx heads absorbed, the
 * framing decided (none, Content-Length, chunked, until close), chunked and
 * close-delimited bodies decoded (chunked ones re-framed and read back), and
 * the next response on the kept-alive connection parsed after a complete
 * one. The end of the input is the upstream closing the connection.
 * Input layout:
 *
 *   byte 0: how reads are cut (fuzz_util.h): low 2 bits the head, bits 2-3
 *           the body
 *   byte 1: bit 0 the request was HEAD; bits 1-2 max head size; bits 3-4
 *           max header count
 *   rest:   what the upstream sends on one connection
 *
 * Seeds starting "00" use proxy.c's limits (64 KiB, 256 headers), a GET,
 * and one read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sluice/http.h"
#include "util/alloc.h"

#define MAX_MESSAGES 32

static const size_t max_sizes[4] = { 65536, 256, 4096, 32 };
static const unsigned max_headers_of[4] = { 1, 8, 256, 1000 };

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

/* What write_response_head() reads from a complete head. */
static void
check_head(const struct sl_head *h, const char *head, bool is_head_request,
           enum sl_framing framing)
{
    /* proxy.c keeps MAX_RESPONSE_HEADERS on its stack: exactly max_headers here */
    struct sl_header *headers = sl_xmalloc(h->max_headers * sizeof(*headers));
    unsigned status = h->parser.status_code;
    size_t n;

    SL_FUZZ_CHECK(h->nspans <= h->max_headers);
    n = sl_head_headers(h, head, headers);
    SL_FUZZ_CHECK(n == h->nspans);
    sl_fuzz_check_inside(headers, n, head, h->head_len);
    sl_fuzz_check_forwarding(headers, n);
    SL_FUZZ_CHECK((size_t)h->reason_off + h->reason_len <= h->head_len);
    SL_FUZZ_CHECK(status >= 100 && status <= 999);
    SL_FUZZ_CHECK(sl_http_reason((int)status) != NULL);

    /* RFC 9112 section 6.3, rules 1 to 3 and 7 */
    if (is_head_request || status / 100 == 1 || status == 204 || status == 304)
        SL_FUZZ_CHECK(framing == SL_FRAMING_NONE);
    if (framing == SL_FRAMING_CHUNKED)
        SL_FUZZ_CHECK(h->parser.flags & F_CHUNKED);
    if (framing == SL_FRAMING_LENGTH)
        SL_FUZZ_CHECK(h->parser.content_length > 0 && h->parser.content_length != UINT64_MAX);
    free(headers);
}

/*
 * The head as write_response_head() sends it to an HTTP/1.1 client (without
 * our own RateLimit and Connection fields), read back as the client would:
 * the same status, the fields we pass on, a framing that delimits the same
 * body.
 */
static void
check_forwarded(const struct sl_head *h, const char *head, bool is_head_request,
                enum sl_framing framing)
{
    struct sl_header *headers = sl_xmalloc(h->max_headers * sizeof(*headers));
    struct sl_header *seen;
    struct sl_fuzz_buf out = { NULL, 0, 0 };
    const struct sl_header **kept;
    bool is_chunked = framing == SL_FRAMING_CHUNKED || framing == SL_FRAMING_EOF;
    unsigned status = h->parser.status_code;
    struct sl_head again;
    enum sl_framing framing_again;
    size_t n = sl_head_headers(h, head, headers), nkept = 0, nseen;
    char line[128];
    char *copy;
    int len;

    kept = sl_xmalloc((n + 1) * sizeof(*kept));
    len = snprintf(line, sizeof(line), "HTTP/1.1 %u %s\r\n", status, sl_http_reason((int)status));
    sl_fuzz_buf_add(&out, line, (size_t)len);
    for (size_t i = 0; i < n; i++) {
        const struct sl_header *hd = &headers[i];
        if (sl_http_is_hop_by_hop(headers, n, hd))
            continue;
        if (is_chunked && sl_http_token_eq(hd->name, hd->name_len, "content-length", 14))
            continue;
        kept[nkept++] = hd;
        sl_fuzz_buf_add(&out, hd->name, hd->name_len);
        sl_fuzz_buf_add(&out, ": ", 2);
        sl_fuzz_buf_add(&out, hd->value, hd->value_len);
        sl_fuzz_buf_add(&out, "\r\n", 2);
    }
    if (is_chunked)
        sl_fuzz_buf_add(&out, "Transfer-Encoding: chunked\r\n", 28);
    sl_fuzz_buf_add(&out, "\r\n", 2);

    copy = sl_fuzz_copy(out.data, out.len);
    sl_head_init(&again, HTTP_RESPONSE, out.len + 1, (unsigned)(nkept + 2));
    again.is_skip_body = is_head_request;
    SL_FUZZ_CHECK(sl_head_feed(&again, copy, out.len) == SL_HEAD_DONE);
    SL_FUZZ_CHECK(again.head_len == out.len);
    SL_FUZZ_CHECK(sl_http_check_line_ends(copy, again.head_len) == 0);
    SL_FUZZ_CHECK(again.parser.status_code == status);
    seen = sl_xmalloc((again.nspans + 1) * sizeof(*seen));
    nseen = sl_head_headers(&again, copy, seen);
    SL_FUZZ_CHECK(sl_http_check_fields(seen, nseen) == 0);
    SL_FUZZ_CHECK(nseen == nkept + (is_chunked ? 1 : 0));
    for (size_t i = 0; i < nkept; i++) {
        SL_FUZZ_CHECK(seen[i].name_len == kept[i]->name_len
                      && memcmp(seen[i].name, kept[i]->name, seen[i].name_len) == 0);
        SL_FUZZ_CHECK(seen[i].value_len == kept[i]->value_len
                      && memcmp(seen[i].value, kept[i]->value, seen[i].value_len) == 0);
    }
    framing_again = sl_http_response_framing(&again, is_head_request);
    if (framing == SL_FRAMING_EOF)
        SL_FUZZ_CHECK(framing_again == SL_FRAMING_CHUNKED);
    else
        SL_FUZZ_CHECK(framing_again == framing);
    if (framing == SL_FRAMING_LENGTH)
        SL_FUZZ_CHECK(again.parser.content_length == h->parser.content_length);
    sl_head_fini(&again);
    free(seen);
    free(copy);
    free(kept);
    free(headers);
    sl_fuzz_buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_fuzz_split head_split, body_split;
    struct sl_head h;
    const char *stream;
    size_t len, pos = 0;
    bool is_head_request;

    if (size < 2)
        return 0;
    sl_fuzz_split_init(&head_split, data[0]);
    sl_fuzz_split_init(&body_split, (uint8_t)(data[0] >> 2));
    is_head_request = data[1] & 1;
    sl_head_init(&h, HTTP_RESPONSE, max_sizes[(data[1] >> 1) & 3],
                 max_headers_of[(data[1] >> 3) & 3]);
    stream = (const char *)data + 2;
    len = size - 2;

    for (int m = 0; m < MAX_MESSAGES && pos < len; m++) {
        enum sl_framing framing;
        char *head;
        unsigned status;
        int r;

        if (m > 0)
            sl_head_reset(&h, HTTP_RESPONSE);
        h.is_skip_body = is_head_request;
        r = sl_fuzz_read_head(&h, &head_split, stream + pos, len - pos, &head);
        if (r != SL_HEAD_DONE) {
            /* proxy.c answers 502 whatever the status */
            SL_FUZZ_CHECK(r == SL_HEAD_MORE || r == 502 || r == 431);
            sl_fuzz_trace("response %d: head %s %d", m,
                          r == SL_HEAD_MORE ? "incomplete" : "refused", r);
            break;
        }
        if (sl_http_check_line_ends(head, h.head_len) != 0) {
            sl_fuzz_trace("response %d: line ends refused", m);
            free(head);
            break;
        }
        status = h.parser.status_code;
        framing = sl_http_response_framing(&h, is_head_request);
        check_head(&h, head, is_head_request, framing);
        check_line_ends(head, h.head_len);
        sl_fuzz_trace("response %d: status %u, head %zu bytes, %u headers, framing %d", m,
                      status, h.head_len, h.nspans, (int)framing);
        pos += h.head_len;
        if (status != 101 && status / 100 != 1)
            check_forwarded(&h, head, is_head_request, framing);
        free(head);
        if (status == 101)
            break; /* 502: we never asked to switch protocols */
        if (status / 100 == 1)
            continue; /* interim: absorbed, the real response follows */

        if (framing == SL_FRAMING_LENGTH) {
            if (h.parser.content_length > len - pos)
                break;
            pos += (size_t)h.parser.content_length;
        } else if (framing == SL_FRAMING_CHUNKED || framing == SL_FRAMING_EOF) {
            struct sl_fuzz_buf decoded = { NULL, 0, 0 }, reframed = { NULL, 0, 0 };
            bool is_complete;
            ssize_t n = sl_fuzz_feed_body(&h, &body_split, stream + pos, len - pos, true,
                                          &decoded, &reframed, &is_complete);
            sl_fuzz_trace("  body: %s, %zd bytes, %zu decoded",
                          n < 0 ? "refused" : is_complete ? "complete" : "incomplete", n,
                          decoded.len);
            if (framing == SL_FRAMING_EOF) {
                /* everything up to the close is the body, as sent */
                SL_FUZZ_CHECK(n >= 0 && is_complete);
                SL_FUZZ_CHECK((size_t)n == len - pos && decoded.len == len - pos);
                SL_FUZZ_CHECK(decoded.len == 0
                              || memcmp(decoded.data, stream + pos, decoded.len) == 0);
            } else if (n >= 0) {
                /* the stream ended: a chunked body is complete or refused */
                SL_FUZZ_CHECK(is_complete);
                sl_fuzz_check_chunked(HTTP_RESPONSE, stream + pos, (size_t)n, &decoded,
                                      &reframed);
            }
            sl_fuzz_buf_free(&decoded);
            sl_fuzz_buf_free(&reframed);
            if (n < 0 || framing == SL_FRAMING_EOF)
                break;
            pos += (size_t)n;
        }
    }
    sl_head_fini(&h);
    return 0;
}
