/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Heads as they leave sluice. The request head is rewritten for the upstream
 * (RFC 9110 section 7.6: hop-by-hop fields dropped both ways; X-Forwarded-For
 * appended to, X-Forwarded-Proto set, X-Request-Id and traceparent kept when
 * valid or made; body framing re-stated by us), the response head for the
 * client (hop-by-hop dropped, the headers phases attached added, framing and
 * Connection ours), and local answers (problem+json). Heads are assembled on
 * the stack and handed to the output in one piece. Nothing here reads a socket.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "util/alloc.h"
#include "util/text.h"

/* ---- ids ------------------------------------------------------------------ */

static uint64_t
rng_next(struct sl_proxy *px)
{
    /* xorshift128+: ids only need to be unique, not secret */
    uint64_t s1 = px->rng[0];
    const uint64_t s0 = px->rng[1];
    px->rng[0] = s0;
    s1 ^= s1 << 23;
    px->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return px->rng[1] + s0;
}

/* ndigits must be even: two digits per random byte. */
/* "00" .. "ff": two digits per random byte, no loop over nibbles */
static const char hex_pairs[] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

/* ndigits must be even: two digits per random byte. */
static void
hex_random(struct sl_proxy *px, char *out, size_t ndigits)
{
    uint64_t bits = 0;

    for (size_t i = 0; i < ndigits; i += 2) {
        if (i % 16 == 0)
            bits = rng_next(px);
        memcpy(out + i, hex_pairs + 2 * (bits & 0xff), 2);
        bits >>= 8;
    }
}

/* ---- head builder ------------------------------------------------------------ */

/*
 * A message head is assembled on the stack and handed to the evbuffer in one
 * piece: one copy and, usually, no allocation per head.
 */
struct head_builder {
    struct evbuffer *out;
    size_t len;
    char buf[4096];
};

static void
hb_add(struct head_builder *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL then (no attached headers) */
    if (n > sizeof(b->buf) - b->len) {
        if (b->len > 0)
            evbuffer_add(b->out, b->buf, b->len);
        b->len = 0;
        if (n > sizeof(b->buf)) {
            evbuffer_add(b->out, p, n);
            return;
        }
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

#define HB_LIT(b, lit) hb_add((b), SL_LIT(lit))

static void
hb_str(struct head_builder *b, const char *s)
{
    hb_add(b, s, strlen(s));
}

static void
hb_u64(struct head_builder *b, uint64_t v)
{
    char digits[SL_U64_DEC_MAX];

    hb_add(b, digits, sl_u64_dec(v, digits));
}

static void
hb_finish(struct head_builder *b)
{
    evbuffer_add(b->out, b->buf, b->len);
    b->len = 0;
}

static void
hb_header(struct head_builder *b, const struct sl_header *h)
{
    hb_add(b, h->name, h->name_len);
    HB_LIT(b, ": ");
    hb_add(b, h->value, h->value_len);
    HB_LIT(b, "\r\n");
}

/* Opens a head on `out` with its status line, our reason phrase. */
static void
hb_status_line(struct head_builder *b, struct evbuffer *out, int status)
{
    b->out = out;
    b->len = 0;
    HB_LIT(b, "HTTP/1.1 ");
    hb_u64(b, (uint64_t)status);
    HB_LIT(b, " ");
    hb_str(b, sl_http_reason(status));
    HB_LIT(b, "\r\n");
}

/*
 * Connection, then the blank line that ends a head to the client. It says
 * what proxy_request_done will do: "close" whenever we close after this
 * answer, which the client then knows not to reuse (RFC 9112 section 9.6);
 * "keep-alive" only to an HTTP/1.0 client that asked for it, since that
 * version keeps a connection only when told (section 9.3).
 */
static void
hb_end(struct head_builder *b, const struct conn *c, bool must_close)
{
    if (!proxy_is_kept(c, must_close))
        HB_LIT(b, "Connection: close\r\n");
    else if (c->rq.req.http_minor == 0)
        HB_LIT(b, "Connection: keep-alive\r\n");
    HB_LIT(b, "\r\n");
}

/* "<hex>\r\n": a chunk-size line, RFC 9112 section 7.1 */
void
proxy_add_chunk_size(struct evbuffer *out, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[20];
    size_t i = sizeof(tmp);

    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = digits[len & 15];
        len >>= 4;
    } while (len != 0);
    evbuffer_add(out, tmp + i, sizeof(tmp) - i);
}

/* ---- request head ------------------------------------------------------------ */

/* On first use, not per request: a request answered here (a 429) with the
 * access log off never needs them. */
void
proxy_ensure_ids(struct conn *c)
{
    const struct sl_header *rid, *tp;

    if (c->rq.has_ids || c->rq.req.method == NULL)
        return; /* made already, or no request was parsed (a bad head) */
    rid = sl_request_header(&c->rq.req, SL_LIT("x-request-id"));
    tp = sl_request_header(&c->rq.req, SL_LIT("traceparent"));
    if (rid == NULL || !sl_http_is_valid_request_id(rid->value, rid->value_len)) {
        hex_random(c->px, c->request_id, 32);
        c->request_id[32] = '\0';
        c->rq.request_id_len = 32;
    }
    if (tp != NULL && sl_http_is_valid_traceparent(tp->value, tp->value_len)) {
        memcpy(c->traceparent, tp->value, 55);
    } else {
        memcpy(c->traceparent, SL_LIT("00-"));
        hex_random(c->px, c->traceparent + 3, 32);
        c->traceparent[35] = '-';
        hex_random(c->px, c->traceparent + 36, 16);
        memcpy(c->traceparent + 52, SL_LIT("-01"));
    }
    c->traceparent[55] = '\0';
    c->rq.has_ids = true;
}

/* Where the first whole entry of buf[start, size), a list cut on its left,
 * starts: the cut one goes, lest "10.1.2.3" cut to "0.1.2.3" pass for
 * another address. Without a comma the cut entry fills the buffer, far too
 * long to pass for any: it stays, a malformed hop, as the list did come. */
static size_t
whole_entries_from(const char *buf, size_t start, size_t size)
{
    const char *comma = memchr(buf + start, ',', size - start);
    size_t at;

    if (comma == NULL)
        return start;
    at = (size_t)(comma - buf) + 1;
    while (at < size && (buf[at] == ' ' || buf[at] == '\t'))
        at++;
    return at;
}

/*
 * All X-Forwarded-For fields joined in order (RFC 9110 section 5.3) into
 * c->xff, filled from the right: a list longer than the buffer keeps the
 * whole entries of its right-most 1 KiB, the hops that matter for choosing
 * the client address.
 */
size_t
proxy_collect_xff(struct conn *c)
{
    size_t end = sizeof(c->xff);
    size_t len;
    bool is_cut = false;

    for (size_t i = c->rq.req.nheaders; i-- > 0 && !is_cut;) {
        const struct sl_header *h = &c->rq.req.headers[i];
        size_t n;
        if (!sl_http_token_eq(h->name, h->name_len, SL_LIT("x-forwarded-for")) || h->value_len == 0)
            continue;
        if (end < sizeof(c->xff)) {
            if (end < 2)
                break; /* what is in is whole */
            end -= 2;
            memcpy(c->xff + end, SL_LIT(", "));
        }
        n = h->value_len < end ? h->value_len : end;
        is_cut = n < h->value_len;
        end -= n;
        memcpy(c->xff + end, h->value + h->value_len - n, n);
    }
    if (is_cut)
        end = whole_entries_from(c->xff, end, sizeof(c->xff));
    len = sizeof(c->xff) - end;
    memmove(c->xff, c->xff + end, len);
    return len;
}

/* X-Forwarded-Proto, -Host and -Port go up as they came only from a
 * trusted peer; anyone else's are replaced by sluice's own. */
static bool
is_ident_kept(const struct ident *id, const struct sl_header *h)
{
    if (sl_http_name_is(h, SL_LIT("x-forwarded-proto")))
        return id->is_xfp_kept;
    if (sl_http_name_is(h, SL_LIT("x-forwarded-host")))
        return id->is_xfh_kept;
    if (sl_http_name_is(h, SL_LIT("x-forwarded-port")))
        return id->is_xfport_kept;
    return true;
}

/* for= of sluice's own Forwarded element: the connection's client
 * (RFC 7239 section 6: IPv6 in brackets, quoted; "unknown" for a unix peer). */
static void
hb_forwarded_node(struct head_builder *b, const struct conn *c)
{
    if (c->is_unix) {
        HB_LIT(b, "unknown");
    } else if (memchr(c->peer_ip, ':', c->peer_ip_len) != NULL) {
        HB_LIT(b, "\"[");
        hb_add(b, c->peer_ip, c->peer_ip_len);
        HB_LIT(b, "]\"");
    } else {
        hb_add(b, c->peer_ip, c->peer_ip_len);
    }
}

/*
 * X-Forwarded-For: the hops that came, then the connection's client (the
 * PROXY header's when there was one). The fields that came go up whole,
 * joined in order as proxy_collect_xff joins them, however long (as nginx
 * and HAProxy do): client.max_header_size bounds them, and c->xff, which
 * keeps only the right-most 1 KiB, is for choosing the client address.
 * A client found in a trusted peer's Forwarded field, with no
 * X-Forwarded-For, comes first, so that an upstream reading
 * X-Forwarded-For sees it too. Then the fields of struct ident, and
 * sluice's own element after a Forwarded field that came (RFC 7239
 * section 4: each proxy appends one).
 */
static void
write_ident(struct conn *c, struct head_builder *b)
{
    const struct sl_request *req = &c->rq.req;
    const struct ident *id = &c->rq.ident;
    bool has_xff = false;

    HB_LIT(b, "X-Forwarded-For: ");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *h = &req->headers[i];
        if (h->value_len == 0 || !sl_http_name_is(h, SL_LIT("x-forwarded-for")))
            continue;
        hb_add(b, h->value, h->value_len);
        HB_LIT(b, ", ");
        has_xff = true;
    }
    if (!has_xff && id->is_from_forwarded && strcmp(c->fwd.addr, c->peer_ip) != 0) {
        hb_add(b, c->fwd.addr, c->fwd.addr_len);
        HB_LIT(b, ", ");
    }
    hb_add(b, c->peer_ip, c->peer_ip_len);
    HB_LIT(b, "\r\n");
    if (!id->is_xfp_kept) {
        HB_LIT(b, "X-Forwarded-Proto: ");
        hb_add(b, id->proto, id->proto_len);
        HB_LIT(b, "\r\n");
    }
    if (!id->is_xfh_kept && id->host != NULL) {
        HB_LIT(b, "X-Forwarded-Host: ");
        hb_add(b, id->host, id->host_len);
        HB_LIT(b, "\r\n");
    }
    if (!id->is_xfport_kept && id->port != 0) {
        HB_LIT(b, "X-Forwarded-Port: ");
        hb_u64(b, id->port);
        HB_LIT(b, "\r\n");
    }
    if (id->has_forwarded) {
        const struct sl_header *host = sl_request_header(&c->rq.req, SL_LIT("host"));
        HB_LIT(b, "Forwarded: for=");
        hb_forwarded_node(b, c);
        if (host != NULL && host->value_len > 0
            && memchr(host->value, '"', host->value_len) == NULL
            && memchr(host->value, '\\', host->value_len) == NULL) {
            HB_LIT(b, ";host=\"");
            hb_add(b, host->value, host->value_len);
            HB_LIT(b, "\"");
        }
        if (c->is_proxy_ssl)
            HB_LIT(b, ";proto=https\r\n");
        else
            HB_LIT(b, ";proto=http\r\n");
    }
}

/* Host, when the client's is not kept: an absolute-form target's authority,
 * or for an HTTP/1.0 request without one, the server's address. */
static void
hb_host(struct head_builder *b, const struct conn *c)
{
    const struct sl_request *req = &c->rq.req;

    if (req->authority != NULL) {
        HB_LIT(b, "Host: ");
        hb_add(b, req->authority, req->authority_len);
        HB_LIT(b, "\r\n");
    } else if (req->host == NULL) {
        /* a unix socket has no host name: "localhost", as nginx sends */
        HB_LIT(b, "Host: ");
        hb_str(b, strncmp(c->rq.upstream_addr, "unix:", 5) == 0 ? "localhost"
                                                                : c->rq.upstream_addr);
        HB_LIT(b, "\r\n");
    }
}

/* Lines the phases add to the upstream request (a cache's If-None-Match). */
static void
hb_phase_lines(struct head_builder *b, const struct conn *c)
{
    size_t len;
    const char *lines = sl_phase_upstream_headers(&c->phases, &len);

    hb_add(b, lines, len);
}

void
proxy_write_request_head(struct conn *c, struct evbuffer *out)
{
    const struct sl_request *req = &c->rq.req;
    struct head_builder b;

    proxy_ensure_ids(c);
    b.out = out;
    b.len = 0;
    hb_add(&b, req->method, req->method_len);
    HB_LIT(&b, " ");
    if (c->rq.is_path_rewritten || req->origin_len == 0) {
        /* the query goes up untouched, "?" with an empty one included */
        hb_add(&b, req->path, req->path_len);
        if (req->query != NULL) {
            HB_LIT(&b, "?");
            hb_add(&b, req->query, req->query_len);
        }
    } else {
        hb_add(&b, req->origin, req->origin_len); /* origin-form, RFC 9112 section 3.2.2 */
    }
    HB_LIT(&b, " HTTP/1.1\r\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *h = &req->headers[i];
        /* Host is end-to-end whatever Connection names (RFC 9112 section 3.2):
         * "Connection: host" must not strip it on the way up. */
        if (sl_http_name_is(h, SL_LIT("host"))) {
            /* an absolute-form target's authority replaces it (section 3.2.2) */
            if (req->authority == NULL)
                hb_header(&b, h);
            continue;
        }
        if (sl_http_name_is(h, SL_LIT("content-length"))) {
            /* A zero length (no body framing for us) stays explicit: some
             * upstreams answer 411 to a POST without one. */
            if (c->rq.framing == SL_FRAMING_NONE)
                HB_LIT(&b, "Content-Length: 0\r\n");
            continue;
        }
        if (sl_http_is_hop_by_hop(req->headers, req->nheaders, h)
            || sl_http_name_is(h, SL_LIT("expect")) || !is_ident_kept(&c->rq.ident, h))
            continue;
        if (sl_http_name_is(h, SL_LIT("x-forwarded-for")))
            continue; /* all of them are joined into one field below */
        if ((c->rq.request_id_len && sl_http_name_is(h, SL_LIT("x-request-id")))
            || sl_http_name_is(h, SL_LIT("traceparent")))
            continue;
        if (c->phases.nhidden > 0 && sl_phase_is_hidden(&c->phases, h))
            continue; /* a phase's choice: the cache's own conditionals go up instead */
        hb_header(&b, h);
    }
    hb_host(&b, c);
    /* Upgrade and Connection are hop-by-hop and dropped above: a WebSocket
     * handshake gets them again, any other upgrade (h2c, TLS) goes up as
     * the plain request it also is (RFC 9110 section 7.8). */
    if (c->rq.is_upgrade)
        HB_LIT(&b, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    write_ident(c, &b);
    if (c->rq.request_id_len) {
        HB_LIT(&b, "X-Request-Id: ");
        hb_add(&b, c->request_id, c->rq.request_id_len);
        HB_LIT(&b, "\r\n");
    }
    HB_LIT(&b, "traceparent: ");
    hb_add(&b, c->traceparent, 55);
    HB_LIT(&b, "\r\n");
    hb_phase_lines(&b, c);
    if (c->rq.framing == SL_FRAMING_LENGTH) {
        HB_LIT(&b, "Content-Length: ");
        hb_u64(&b, c->rq.content_length); /* body_left runs down as it goes */
        HB_LIT(&b, "\r\n");
    } else if (c->rq.framing == SL_FRAMING_CHUNKED) {
        HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    }
    HB_LIT(&b, "\r\n");
    hb_finish(&b);
}

/* ---- response heads ---------------------------------------------------------- */

bool
proxy_write_response_head(struct conn *c, const char *head, bool must_close)
{
    struct sl_header headers[MAX_RESPONSE_HEADERS];
    struct head_builder b;
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    size_t n = sl_head_headers(&c->resp, head, headers);
    int status = c->resp.parser.status_code;
    const char *attached;
    size_t attached_len;

    /* before the head is built: phases may attach lines to it, or replace it */
    sl_phase_response_head(&c->phases, status, headers, n);
    if (c->phases.has_response)
        return false;
    c->rq.status = status;
    c->rq.is_resp_chunked = c->rq.resp_framing == SL_FRAMING_CHUNKED
        || (c->rq.resp_framing == SL_FRAMING_EOF && c->rq.req.http_minor >= 1);
    hb_status_line(&b, out, status);
    for (size_t i = 0; i < n; i++) {
        const struct sl_header *h = &headers[i];
        if (sl_http_is_hop_by_hop(headers, n, h))
            continue;
        if (c->rq.is_resp_chunked && sl_http_name_is(h, SL_LIT("content-length")))
            continue;
        hb_header(&b, h);
    }
    attached = sl_phase_headers(&c->phases, &attached_len);
    hb_add(&b, attached, attached_len);
    if (c->rq.route->has_server_timing) {
        char timing[64];
        int len = snprintf(timing, sizeof(timing), "Server-Timing: upstream;dur=%.3f\r\n",
                           span_ms(c->rq.upstream_start_us, c->rq.first_byte_us));
        hb_add(&b, timing, (size_t)len);
    }
    if (c->rq.is_resp_chunked)
        HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    if (status == 101)
        HB_LIT(&b, "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    else
        hb_end(&b, c, must_close);
    hb_finish(&b);
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.is_resp_started = true;
    return true;
}

struct body_ref {
    void (*release)(void *arg);
    void *arg;
};

static void
body_ref_done(const void *data, size_t len, void *extra)
{
    struct body_ref *ref = extra;

    (void)data;
    (void)len;
    ref->release(ref->arg);
    free(ref);
}

/* RFC 9110 section 6.4.1: no content in a 1xx, 204 or 304, nor for HEAD. */
static bool
is_bodiless(const struct conn *c, int status)
{
    return c->rq.is_head_method || status / 100 == 1 || status == 204 || status == 304;
}

/*
 * A small body is copied in behind the head (one send, as move_body in
 * proxy_upstream.c); a larger one goes out by reference, held by the phase
 * until the client has taken it.
 */
void
proxy_write_phase_response(struct conn *c, const struct sl_phase_response *r, bool must_close)
{
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    bool is_ref = false;
    const char *attached;
    size_t attached_len;
    struct head_builder b;

    hb_status_line(&b, out, r->status);
    hb_add(&b, r->headers, r->headers_len);
    attached = sl_phase_headers(&c->phases, &attached_len);
    hb_add(&b, attached, attached_len);
    if (r->status != 304 && r->status != 204 && r->status / 100 != 1) {
        HB_LIT(&b, "Content-Length: ");
        hb_u64(&b, r->body_len);
        HB_LIT(&b, "\r\n");
    }
    hb_end(&b, c, must_close);
    if (!is_bodiless(c, r->status) && r->body_len > 0) {
        if (r->body_len <= COPY_BODY_MAX || r->release == NULL) {
            hb_add(&b, r->body, r->body_len);
        } else {
            struct body_ref *ref = sl_xmalloc(sizeof(*ref));
            ref->release = r->release;
            ref->arg = r->release_arg;
            hb_finish(&b);
            evbuffer_add_reference(out, r->body, r->body_len, body_ref_done, ref);
            is_ref = true;
        }
    }
    hb_finish(&b);
    if (!is_ref && r->release != NULL)
        r->release(r->release_arg);
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.status = r->status;
    c->rq.is_resp_started = true;
    sl_stream_flush(&c->cs);
}

void
proxy_write_local_response(struct conn *c, int status, const char *extra_headers,
                           size_t extra_len, const char *body, size_t body_len, bool must_close)
{
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    struct head_builder b;

    hb_status_line(&b, out, status);
    HB_LIT(&b, "Content-Type: application/problem+json\r\nContent-Length: ");
    hb_u64(&b, body_len);
    HB_LIT(&b, "\r\nCache-Control: no-store\r\n");
    hb_add(&b, extra_headers, extra_len);
    hb_end(&b, c, must_close);
    if (!c->rq.is_head_method)
        hb_add(&b, body, body_len);
    hb_finish(&b);
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.status = status;
    c->rq.is_resp_started = true;
    sl_stream_flush(&c->cs);
}
