/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The request flow of one worker: a connection state machine over
 * edge-triggered streams (src/util/stream.c). One request per connection is
 * in progress at a time, so
 * pipelined requests wait in the input buffer and are answered in order.
 * Bodies stream in both directions with bounded buffers: reading from one
 * side stops while the other side's output is above HIGH_WATER.
 *
 * Every connection end goes through conn_close(conn, reason); a connection
 * referenced by a pending callback (limiter) is freed only when it returns.
 */
#include "sluice/proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/netaddr.h"
#include "sluice/route.h"
#include "sluice/upstream.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/stream.h"
#include "util/text.h"

#define HIGH_WATER (256u * 1024u)
#define LOW_WATER (64u * 1024u)
#define MAX_RESPONSE_HEAD (64u * 1024u)
#define MAX_RESPONSE_HEADERS 256u
#define COPY_BODY_MAX 4096u /* bodies up to this are copied in behind the head */
#define CLIENT_PROBE_MS 1000u /* while waiting for a response head: is the client still there? */
#define FLUSH_TIMEOUT_MS 10000u
#define MAX_REQUEST_ID SL_HTTP_MAX_REQUEST_ID

/* ---- config generations ------------------------------------------------ */

struct sl_shared_config *
sl_shared_config_new(struct sl_config *cfg)
{
    struct sl_shared_config *shared = sl_xcalloc(1, sizeof(*shared));

    atomic_init(&shared->refs, 1);
    shared->cfg = cfg;
    return shared;
}

void
sl_shared_config_ref(struct sl_shared_config *shared)
{
    atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
}

void
sl_shared_config_unref(struct sl_shared_config *shared)
{
    if (shared == NULL)
        return;
    if (atomic_fetch_sub_explicit(&shared->refs, 1, memory_order_acq_rel) == 1) {
        sl_config_free(shared->cfg);
        free(shared);
    }
}

/* What one worker built from one config: its limiter and upstream pools. */
struct wgen {
    unsigned refs; /* the proxy's current pointer + each request using it */
    struct sl_shared_config *shared;
    const struct sl_config *cfg;
    struct sl_limiter *limiter;
    struct sl_upstream_pool **pools;
    char **route_names;        /* metrics label and access-log name: [host]path */
    unsigned *route_slots;     /* metrics slots, by conf index */
    unsigned *limit_slots;
    unsigned *upstream_slots;
};

static void
wgen_unref(struct wgen *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    for (size_t i = 0; i < gen->cfg->nroutes; i++)
        free(gen->route_names[i]);
    free(gen->route_names);
    free(gen->route_slots);
    free(gen->limit_slots);
    free(gen->upstream_slots);
    for (size_t i = 0; i < gen->cfg->nupstreams; i++)
        sl_upstream_pool_free(gen->pools[i]);
    free(gen->pools);
    sl_limiter_free(gen->limiter);
    sl_shared_config_unref(gen->shared);
    free(gen);
}

/* ---- types --------------------------------------------------------------- */

enum conn_state {
    C_IDLE,          /* keep-alive, waiting for a request */
    C_HEAD,          /* reading a request head */
    C_LIMIT,         /* waiting for the limiter */
    C_UPSTREAM_WAIT, /* waiting for an upstream connection */
    C_FORWARD,       /* request going up, response coming down */
    C_FLUSH_CLOSE,   /* last bytes going out, then close */
};

/*
 * Everything that belongs to one request and nothing else: reset by one
 * assignment when the connection goes back to idle (request_reset). Storage
 * that outlives requests (parsers, the id and X-Forwarded-For buffers) stays
 * in struct conn; the lengths saying what of it is this request's are here.
 */
struct request_state {
    struct wgen *gen;          /* held from head parsed to reset */
    char *head_buf;            /* the head's bytes, then its header array */
    struct sl_header *headers;
    struct sl_request req;
    const struct sl_route_conf *route;
    enum sl_framing framing;
    uint64_t body_left;
    uint64_t body_seen;
    bool is_body_done;
    bool is_body_too_large;
    bool is_expect_continue;
    bool is_head_method;
    bool is_keepalive;
    bool is_logged;
    bool is_counted;        /* sl_metrics_request_start was called */
    bool is_limit_checked;  /* some limit applied: limiter_ms means something */
    bool has_ids;           /* conn's request_id (if request_id_len) and traceparent are made */
    size_t xff_len;
    size_t request_id_len;  /* 0: the client's X-Request-Id is kept */
    size_t decision_headers_len;
    const char *limit_outcome;
    double limiter_ms;

    /* the response */
    enum sl_framing resp_framing;
    uint64_t resp_left;
    bool is_resp_started;   /* a response head went to the client */
    bool is_resp_chunked;   /* we frame the body to the client as chunked */

    /* accounting: phase boundaries for Server-Timing and slow_request */
    uint64_t up_deadline_us; /* when the upstream timeout runs out */
    uint64_t start_us, head_done_us, decided_us, upstream_start_us, first_byte_us,
        upstream_end_us;
    uint64_t bytes_in, bytes_out;
    int status;
    const char *upstream_addr;
};

struct conn {
    struct sl_proxy *px;
    struct conn *next, *prev;
    struct sl_stream cs;        /* the client socket */
    struct event timer;
    enum conn_state state;
    unsigned refs;
    bool is_dead;
    bool is_processing;         /* conn_process is on the stack: it will look again */
    bool is_client_read_paused; /* backpressure from the upstream side */
    bool is_up_read_paused;     /* backpressure from the client side */
    char peer_ip[48];           /* canonical text, as sl_client_address gives it */
    size_t peer_ip_len;
    struct sockaddr_storage peer;

    struct request_state rq;

    /* storage the requests of this connection reuse */
    struct sl_head head;
    char client_ip[48];
    char xff[1024];
    char request_id[MAX_REQUEST_ID + 1];
    char traceparent[56];
    char *decision_headers;
    size_t decision_headers_cap;

    /* upstream side: resources released by upstream_drop before a reset */
    struct sl_upstream_wait wait;
    struct sl_upconn *up;
    struct sl_stream *us;       /* the upstream socket, while c->up is held */
    struct event up_timer;      /* upstream response timeout, between reads */
    struct sl_head resp;
};

struct sl_proxy {
    struct event_base *base;
    unsigned index, nworkers;
    struct sl_limiter_shared *limiter_shared;
    struct wgen *gen;
    struct evconnlistener **listeners;
    size_t nlisteners;
    bool is_accept_paused;
    bool is_draining;
    sl_proxy_drained_cb *drained_cb;
    void *drained_arg;
    struct conn *conns;
    unsigned nconns, max_conns;
    struct sl_accesslog *accesslog;
    char *accesslog_path;
    struct sl_metrics *metrics;
    struct sl_metrics_worker *mw;
    uint64_t rng[2];
    struct {
        uint64_t ms;
        const struct timeval *tv;
    } common[16];
    size_t ncommon;
};

static void conn_process(struct conn *c);
static void conn_close(struct conn *c, const char *reason);
static void request_finish(struct conn *c, const char *reason);
static void respond_error(struct conn *c, int status, const char *detail, bool must_close);
static void forward_body(struct conn *c);
static void forward_response(struct conn *c);

/* ---- small helpers ------------------------------------------------------- */

static struct timeval
tv_from_ms(uint64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

/*
 * Connection timers take a few fixed durations, so they go through libevent's
 * common timeouts: a queue per duration instead of the heap, O(1) to re-arm.
 */
static const struct timeval *
common_timeout(struct sl_proxy *px, uint64_t ms)
{
    for (size_t i = 0; i < px->ncommon; i++) {
        if (px->common[i].ms == ms)
            return px->common[i].tv;
    }
    if (px->ncommon < sizeof(px->common) / sizeof(px->common[0])) {
        struct timeval tv = tv_from_ms(ms);
        const struct timeval *common = event_base_init_common_timeout(px->base, &tv);
        if (common != NULL) {
            px->common[px->ncommon].ms = ms;
            px->common[px->ncommon].tv = common;
            px->ncommon++;
            return common;
        }
    }
    return NULL;
}

static void
timer_add(struct sl_proxy *px, struct event *ev, uint64_t ms)
{
    const struct timeval *common = common_timeout(px, ms);
    struct timeval tv;

    if (common == NULL) {
        tv = tv_from_ms(ms);
        common = &tv;
    }
    evtimer_add(ev, common);
}

static void
timer_set(struct conn *c, uint64_t ms)
{
    timer_add(c->px, &c->timer, ms);
}

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
        return; /* p may be NULL then (no decision headers) */
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

#define HB_LIT(b, lit) hb_add((b), (lit), sizeof(lit) - 1)

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

/* "<hex>\r\n": a chunk-size line, RFC 9112 section 7.1 */
static void
add_chunk_size(struct evbuffer *out, size_t len)
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

/* ---- connection lifecycle ------------------------------------------------ */

static void
conn_hold(struct conn *c)
{
    c->refs++;
}

static void
conn_destroy(struct conn *c)
{
    struct sl_proxy *px = c->px;

    sl_head_fini(&c->head);
    sl_head_fini(&c->resp);
    free(c->rq.head_buf);
    free(c->decision_headers);
    free(c);
    if (px->is_draining && px->nconns == 0 && px->drained_cb != NULL) {
        sl_proxy_drained_cb *cb = px->drained_cb;
        px->drained_cb = NULL;
        cb(px->drained_arg);
    }
}

static void
conn_unhold(struct conn *c)
{
    if (--c->refs == 0 && c->is_dead)
        conn_destroy(c);
}

static void
accept_resume_if_room(struct sl_proxy *px)
{
    if (px->is_accept_paused && !px->is_draining && px->nconns < px->max_conns) {
        for (size_t i = 0; i < px->nlisteners; i++)
            evconnlistener_enable(px->listeners[i]);
        px->is_accept_paused = false;
    }
}

static void
upstream_drop(struct conn *c, bool is_reusable)
{
    if (c->wait.is_active)
        sl_upstream_cancel(&c->wait);
    if (c->up != NULL) {
        evtimer_del(&c->up_timer);
        sl_upstream_release(c->up, is_reusable);
        c->up = NULL;
        c->us = NULL;
    }
}

static void
conn_close(struct conn *c, const char *reason)
{
    struct sl_proxy *px = c->px;

    if (c->is_dead)
        return;
    if (c->rq.gen != NULL && !c->rq.is_logged)
        request_finish(c, reason);
    upstream_drop(c, false);
    c->is_dead = true;
    evtimer_del(&c->timer);
    sl_stream_fini(&c->cs);
    if (c->rq.gen != NULL) {
        wgen_unref(c->rq.gen);
        c->rq.gen = NULL;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    px->nconns--;
    sl_metrics_client_close(px->mw);
    accept_resume_if_room(px);
    if (c->refs == 0)
        conn_destroy(c);
}

/* Sends what is buffered, then closes; the timer bounds a client that never reads. */
static void
conn_flush_close(struct conn *c)
{
    c->state = C_FLUSH_CLOSE;
    sl_stream_set_reading(&c->cs, false);
    sl_stream_flush(&c->cs);
    if (evbuffer_get_length(c->cs.out) == 0) {
        conn_close(c, NULL);
        return;
    }
    timer_set(c, FLUSH_TIMEOUT_MS);
}

/* ---- access log ---------------------------------------------------------- */

static double
span_ms(uint64_t from_us, uint64_t to_us)
{
    return from_us && to_us >= from_us ? (double)(to_us - from_us) / 1000.0 : 0.0;
}

/* On first use, not per request: a request answered here (a 429) with the
 * access log off never needs them. */
static void
ensure_ids(struct conn *c)
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

/* One warn line per request slower than slow_request, with where the time went. */
static void
log_slow(struct conn *c, uint64_t now)
{
    uint64_t limit_ms = c->px->gen->cfg->slow_request_ms;
    uint64_t head_end = c->rq.head_done_us ? c->rq.head_done_us : now;
    uint64_t up_end = c->rq.upstream_end_us ? c->rq.upstream_end_us : now;

    if (limit_ms == 0 || now - c->rq.start_us < limit_ms * 1000)
        return;
    ensure_ids(c);
    sl_log_warnx("slow request (trace %.32s): %.1f ms total: head %.1f ms, limiter %.1f ms, "
                 "upstream wait %.1f ms, upstream first byte %.1f ms, response %.1f ms, "
                 "status %d",
                 c->rq.has_ids ? c->traceparent + 3 : "-", span_ms(c->rq.start_us, now),
                 span_ms(c->rq.start_us, head_end), span_ms(c->rq.head_done_us, c->rq.decided_us),
                 span_ms(c->rq.decided_us, c->rq.upstream_start_us),
                 span_ms(c->rq.upstream_start_us, c->rq.first_byte_us),
                 span_ms(c->rq.first_byte_us ? c->rq.first_byte_us : c->rq.upstream_start_us, up_end),
                 c->rq.status);
}

static void
count_request(struct conn *c, uint64_t now)
{
    struct wgen *gen = c->rq.gen;
    unsigned route_slot = SL_METRICS_ROUTE_NONE;

    if (!c->rq.is_counted)
        sl_metrics_request_start(c->px->mw);
    c->rq.is_counted = false;
    if (gen != NULL && c->rq.route != NULL)
        route_slot = gen->route_slots[c->rq.route - gen->cfg->routes];
    sl_metrics_request(c->px->mw, route_slot, sl_metrics_method(c->rq.req.method, c->rq.req.method_len),
                       c->rq.status, c->rq.bytes_in, c->rq.bytes_out, now - c->rq.start_us);
}

static void
request_finish(struct conn *c, const char *reason)
{
    struct sl_access_entry e;
    uint64_t now = sl_clock_cached_us();
    const struct sl_header *rid;

    c->rq.is_logged = true;
    count_request(c, now);
    log_slow(c, now);
    if (!sl_accesslog_is_on(c->px->accesslog))
        return;
    ensure_ids(c);
    memset(&e, 0, sizeof(e));
    e.time = sl_clock_wall_at(c->rq.start_us);
    e.client = c->peer_ip;
    e.method = c->rq.req.method;
    e.method_len = c->rq.req.method_len;
    e.path = c->rq.req.target;
    e.path_len = c->rq.req.target_len;
    e.status = c->rq.status;
    e.bytes_in = c->rq.bytes_in;
    e.bytes_out = c->rq.bytes_out;
    e.duration_ms = (double)(now - c->rq.start_us) / 1000.0;
    e.upstream_ms = c->rq.upstream_start_us
        ? (double)((c->rq.upstream_end_us ? c->rq.upstream_end_us : now) - c->rq.upstream_start_us) / 1000.0
        : -1.0;
    e.limiter_ms = c->rq.is_limit_checked ? c->rq.limiter_ms : -1.0;
    e.upstream = c->rq.upstream_addr;
    rid = c->rq.request_id_len ? NULL : sl_request_header(&c->rq.req, SL_LIT("x-request-id"));
    if (c->rq.request_id_len) {
        e.request_id = c->request_id;
        e.request_id_len = c->rq.request_id_len;
    } else if (rid != NULL) {
        e.request_id = rid->value;
        e.request_id_len = rid->value_len;
    }
    if (c->rq.has_ids) {
        e.trace_id = c->traceparent + 3;
        e.trace_id_len = 32;
    }
    e.limit = c->rq.limit_outcome;
    e.reason = reason;
    if (c->rq.gen != NULL && c->rq.route != NULL)
        e.route = c->rq.gen->route_names[c->rq.route - c->rq.gen->cfg->routes];
    sl_accesslog_write(c->px->accesslog, &e);
}

/* Releases the request's resources; the connection goes back to idle. */
static void
request_reset(struct conn *c)
{
    free(c->rq.head_buf);
    wgen_unref(c->rq.gen);
    c->rq = (struct request_state){ .framing = SL_FRAMING_NONE };
    sl_head_reset(&c->head, HTTP_REQUEST);
}

/* The response is complete: log, then either close or wait for the next request. */
static void
request_done(struct conn *c, bool must_close)
{
    struct sl_proxy *px = c->px;

    sl_stream_flush(&c->cs);
    request_finish(c, NULL);
    if (must_close || !c->rq.is_keepalive || px->is_draining) {
        conn_flush_close(c);
        return;
    }
    request_reset(c);
    c->state = C_IDLE;
    timer_set(c, px->gen->cfg->client.idle_timeout_ms);
    if (c->is_client_read_paused) {
        c->is_client_read_paused = false;
        sl_stream_set_reading(&c->cs, true);
    }
    /* Answered from inside conn_process (a local answer to a pipelined
     * request): its loop takes the next request, without recursing. */
    if (!c->is_processing && evbuffer_get_length(c->cs.in) > 0)
        conn_process(c);
}

/* ---- local responses ----------------------------------------------------- */

static void
write_local_response(struct conn *c, int status, const char *extra_headers, size_t extra_len,
                     const char *body, size_t body_len, bool must_close)
{
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    struct head_builder b;

    b.out = out;
    b.len = 0;
    HB_LIT(&b, "HTTP/1.1 ");
    hb_u64(&b, (uint64_t)status);
    HB_LIT(&b, " ");
    hb_str(&b, sl_http_reason(status));
    HB_LIT(&b, "\r\nContent-Type: application/problem+json\r\nContent-Length: ");
    hb_u64(&b, body_len);
    HB_LIT(&b, "\r\nCache-Control: no-store\r\n");
    hb_add(&b, extra_headers, extra_len);
    if (must_close)
        HB_LIT(&b, "Connection: close\r\n");
    else if (c->rq.req.http_minor == 0)
        HB_LIT(&b, "Connection: keep-alive\r\n");
    HB_LIT(&b, "\r\n");
    if (!c->rq.is_head_method)
        hb_add(&b, body, body_len);
    hb_finish(&b);
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.status = status;
    c->rq.is_resp_started = true;
    sl_stream_flush(&c->cs);
}

/*
 * Answers with a problem+json body (RFC 9457). `detail` is always one of our
 * own strings, never client input, so nothing the client sent is reflected.
 */
static void
respond_error(struct conn *c, int status, const char *detail, bool must_close)
{
    char body[512];
    const char *extra = "";
    size_t extra_len = 0;
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"}",
                 sl_http_reason(status), status, detail);
    if (status == 503) {
        static const char retry[] = "Retry-After: 1\r\n";
        extra = retry;
        extra_len = sizeof(retry) - 1;
    }
    /* A body we did not read would be taken for the next request. */
    if (c->rq.framing != SL_FRAMING_NONE && !c->rq.is_body_done)
        must_close = true;
    write_local_response(c, status, extra, extra_len, body, (size_t)n, must_close);
    upstream_drop(c, false);
    if (c->rq.gen == NULL) {
        /* No request was parsed (bad head): log what we know, then close. */
        request_finish(c, detail);
        conn_flush_close(c);
        return;
    }
    request_done(c, must_close);
}

/* ---- request head -------------------------------------------------------- */

/*
 * All X-Forwarded-For fields joined in order (RFC 9110 section 5.3) into
 * c->xff, filled from the right: a list longer than the buffer keeps its
 * right-most 1 KiB, the hops that matter for choosing the client address.
 */
static size_t
collect_xff(struct conn *c)
{
    size_t end = sizeof(c->xff);
    size_t len;

    for (size_t i = c->rq.req.nheaders; i-- > 0 && end > 0;) {
        const struct sl_header *h = &c->rq.req.headers[i];
        size_t n;
        if (!sl_http_token_eq(h->name, h->name_len, SL_LIT("x-forwarded-for")) || h->value_len == 0)
            continue;
        if (end < sizeof(c->xff)) {
            if (end < 2)
                break;
            end -= 2;
            memcpy(c->xff + end, SL_LIT(", "));
        }
        n = h->value_len < end ? h->value_len : end;
        end -= n;
        memcpy(c->xff + end, h->value + h->value_len - n, n);
    }
    len = sizeof(c->xff) - end;
    memmove(c->xff, c->xff + end, len);
    return len;
}

static void on_decision(void *arg, const struct sl_decision *d);

/* The head is parsed and its bytes copied out of the input buffer. */
static void
request_begin(struct conn *c)
{
    const struct sl_config *cfg = c->rq.gen->cfg;
    const struct sl_header *h;
    size_t xff_len;
    int status;

    status = sl_head_to_request(&c->head, c->rq.head_buf, c->rq.headers, &c->rq.req);
    c->rq.is_head_method = c->head.parser.method == HTTP_HEAD;
    c->rq.is_keepalive = http_should_keep_alive(&c->head.parser);
    if (status != 0) {
        respond_error(c, status, "the request is malformed", true);
        return;
    }
    status = sl_http_request_framing(&c->rq.req, &c->rq.framing, &c->rq.body_left);
    if (status != 0) {
        c->rq.framing = SL_FRAMING_NONE;
        respond_error(c, status, "the request framing is ambiguous or invalid", true);
        return;
    }
    c->rq.is_body_done = c->rq.framing == SL_FRAMING_NONE;
    if (c->head.parser.method == HTTP_CONNECT) {
        respond_error(c, 405, "CONNECT is not supported", true);
        return;
    }
    if (c->rq.framing == SL_FRAMING_LENGTH && cfg->client.max_body_size != 0
        && c->rq.body_left > cfg->client.max_body_size) {
        respond_error(c, 413, "the request body is larger than allowed", true);
        return;
    }
    h = sl_request_header(&c->rq.req, SL_LIT("expect"));
    if (h != NULL) {
        if (!sl_http_token_eq(h->value, h->value_len, SL_LIT("100-continue"))) {
            respond_error(c, 417, "only 100-continue is supported", false);
            return;
        }
        c->rq.is_expect_continue = c->rq.req.http_minor >= 1 && !c->rq.is_body_done;
    }
    xff_len = c->rq.xff_len = collect_xff(c);
    if (xff_len > 0 && sl_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies,
                                      (const struct sockaddr *)&c->peer)) {
        c->rq.req.client_ip_len = sl_client_address(
            (const struct sockaddr *)&c->peer, c->xff, xff_len, cfg->trusted_proxies,
            cfg->ntrusted_proxies, c->client_ip, sizeof(c->client_ip));
        c->rq.req.client_ip = c->client_ip;
    } else {
        c->rq.req.client_ip = c->peer_ip;
        c->rq.req.client_ip_len = c->peer_ip_len;
    }

    c->rq.route = sl_route_match(cfg, c->rq.req.host, c->rq.req.host_len, c->rq.req.path, c->rq.req.path_len);
    if (c->rq.route == NULL) {
        respond_error(c, 404, "no route matches this request", false);
        return;
    }
    c->state = C_LIMIT;
    evtimer_del(&c->timer);
    conn_hold(c);
    sl_limiter_check(c->rq.gen->limiter, c->rq.route, &c->rq.req, on_decision, c);
}

/* Returns false when it answered (error) or needs more bytes. */
static bool
read_head(struct conn *c)
{
    struct sl_proxy *px = c->px;
    const struct sl_client_conf *client = &px->gen->cfg->client;
    struct evbuffer *in = c->cs.in;
    size_t len = evbuffer_get_length(in);
    size_t n = len < client->max_header_size ? len : client->max_header_size;
    const char *data;
    size_t head_len, nheaders;
    bool is_first_bytes = false;
    int r;

    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        c->rq.start_us = sl_clock_cached_us();
        is_first_bytes = true;
    }
    data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    r = sl_head_feed(&c->head, data, n);
    if (r == SL_HEAD_MORE) {
        /* Armed only for heads that did not come whole in one read: the
         * common case never touches the timer wheel for it. */
        if (is_first_bytes)
            timer_set(c, client->header_timeout_ms);
        return false;
    }
    if (r != SL_HEAD_DONE) {
        const char *detail = r == 414   ? "the request target is too long"
                             : r == 431 ? "the request head is too large"
                                        : "the request is malformed";
        respond_error(c, r, detail, true);
        return false;
    }
    head_len = c->head.head_len;
    if (sl_http_check_line_ends(data, head_len) != 0) {
        respond_error(c, 400, "the request has bare LF line ends or folded headers", true);
        return false;
    }
    nheaders = c->head.nspans;
    c->rq.head_buf = sl_xmalloc(head_len + nheaders * sizeof(struct sl_header) + 16);
    c->rq.headers = (struct sl_header *)(void *)(c->rq.head_buf
                                              + ((head_len + 15) & ~(size_t)15));
    evbuffer_remove(in, c->rq.head_buf, head_len);
    c->rq.bytes_in += head_len;
    c->rq.gen = px->gen;
    c->rq.gen->refs++;
    c->rq.head_done_us = sl_clock_cached_us();
    c->rq.is_counted = true;
    sl_metrics_request_start(px->mw);
    request_begin(c);
    return true;
}

static void
conn_process(struct conn *c)
{
    bool was_processing = c->is_processing;

    conn_hold(c);
    c->is_processing = true;
    while (!c->is_dead) {
        struct evbuffer *in = c->cs.in;
        if (c->state == C_FORWARD) {
            if (!c->rq.is_body_done)
                forward_body(c);
            break;
        }
        if (c->state != C_IDLE && c->state != C_HEAD)
            break;
        if (evbuffer_get_length(in) == 0)
            break;
        /* Pipelined answers we produce ourselves must not pile up unread. */
        if (evbuffer_get_length(c->cs.out) > HIGH_WATER)
            break;
        if (!read_head(c))
            break;
    }
    /* Input was consumed: let the stream read what the kernel still holds. */
    if (!c->is_dead)
        sl_stream_rearm(&c->cs);
    c->is_processing = was_processing;
    conn_unhold(c);
}

/* ---- limiter decision ---------------------------------------------------- */

static void
keep_decision_headers(struct conn *c, const struct sl_decision *d)
{
    if (d->headers_len > c->decision_headers_cap) {
        c->decision_headers_cap = d->headers_len;
        c->decision_headers = sl_xrealloc(c->decision_headers, c->decision_headers_cap);
    }
    if (d->headers_len > 0)
        memcpy(c->decision_headers, d->headers, d->headers_len);
    c->rq.decision_headers_len = d->headers_len;
}

static void on_upstream(void *arg, struct sl_upconn *up, int status);

/*
 * Server-Timing (W3C): the limiter's share now; the upstream's is added to the
 * response head when it arrives. Kept with the decision headers so local
 * answers (429, 503) carry it too.
 */
static void
add_server_timing(struct conn *c)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "Server-Timing: limiter;dur=%.3f\r\n", c->rq.limiter_ms);
    size_t need = c->rq.decision_headers_len + (size_t)n;

    if (need > c->decision_headers_cap) {
        c->decision_headers_cap = need;
        c->decision_headers = sl_xrealloc(c->decision_headers, need);
    }
    memcpy(c->decision_headers + c->rq.decision_headers_len, text, (size_t)n);
    c->rq.decision_headers_len = need;
}

static void
on_decision(void *arg, const struct sl_decision *d)
{
    struct conn *c = arg;
    size_t upstream;

    if (c->is_dead) {
        conn_unhold(c);
        return;
    }
    c->rq.limit_outcome = d->outcome;
    c->rq.limiter_ms = d->limiter_ms;
    /* "none": no limit applied to this request, so no limiter time to report */
    c->rq.is_limit_checked = strcmp(d->outcome, "none") != 0;
    c->rq.decided_us = sl_clock_cached_us();
    sl_metrics_limiter(c->px->mw, c->rq.gen->route_slots[c->rq.route - c->rq.gen->cfg->routes],
                       (uint64_t)(d->limiter_ms * 1000.0));
    keep_decision_headers(c, d);
    if (c->rq.route->has_server_timing && c->rq.is_limit_checked)
        add_server_timing(c);
    if (d->verdict == SL_VERDICT_DENY) {
        bool must_close = c->rq.framing != SL_FRAMING_NONE;
        write_local_response(c, 429, c->decision_headers, c->rq.decision_headers_len, d->problem,
                             d->problem_len, must_close);
        request_done(c, must_close);
        conn_unhold(c);
        return;
    }
    if (d->verdict == SL_VERDICT_UNAVAILABLE) {
        bool must_close = c->rq.framing != SL_FRAMING_NONE;
        write_local_response(c, 503, c->decision_headers, c->rq.decision_headers_len, d->problem,
                             d->problem_len, must_close);
        request_done(c, must_close);
        conn_unhold(c);
        return;
    }
    c->state = C_UPSTREAM_WAIT;
    upstream = c->rq.route->upstream;
    sl_upstream_acquire(c->rq.gen->pools[upstream], &c->wait, on_upstream, c);
    conn_unhold(c);
}

/* ---- upstream: request head and body ------------------------------------- */

static void up_stream_cb(struct sl_stream *s, int what, void *arg);
static void up_read(struct conn *c);
static void up_failed(struct conn *c, bool is_timeout);

/*
 * Until the response head comes, the upstream timer also wakes every
 * CLIENT_PROBE_MS to look at the client (client_gone): a reset that arrived
 * with the request makes no event of its own (libevent 2.1 reports
 * EPOLLERR/EPOLLHUP as plain readiness, and the request's read consumed the
 * edge), and the request would otherwise hold its upstream connection until
 * the upstream timeout.
 */
static void
up_timer_set(struct conn *c)
{
    uint64_t ms = c->rq.gen->cfg->upstreams[c->rq.route->upstream].timeout_ms;

    c->rq.up_deadline_us = sl_clock_cached_us() + ms * 1000;
    if (!c->rq.is_resp_started && ms > CLIENT_PROBE_MS)
        ms = CLIENT_PROBE_MS;
    timer_add(c->px, &c->up_timer, ms);
}

/* The client reset or closed its connection (or it failed): a peek costs one
 * system call, made only for requests waiting longer than CLIENT_PROBE_MS. */
static bool
client_gone(const struct conn *c)
{
    char byte;
    ssize_t n = recv(c->cs.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void up_timer_for_body(struct conn *c);

static void
write_request_head(struct conn *c, struct evbuffer *out)
{
    const struct sl_request *req = &c->rq.req;
    struct head_builder b;

    ensure_ids(c);
    b.out = out;
    b.len = 0;
    hb_add(&b, req->method, req->method_len);
    HB_LIT(&b, " ");
    hb_add(&b, req->target, req->target_len);
    HB_LIT(&b, " HTTP/1.1\r\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *h = &req->headers[i];
        /* Host is end-to-end whatever Connection names (RFC 9112 section 3.2):
         * "Connection: host" must not strip it on the way up. */
        if (sl_http_name_is(h, SL_LIT("host"))) {
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
            || sl_http_name_is(h, SL_LIT("expect"))
            || sl_http_name_is(h, SL_LIT("x-forwarded-proto")))
            continue;
        if (sl_http_name_is(h, SL_LIT("x-forwarded-for")))
            continue; /* all of them are joined into one field below */
        if ((c->rq.request_id_len && sl_http_name_is(h, SL_LIT("x-request-id")))
            || sl_http_name_is(h, SL_LIT("traceparent")))
            continue;
        hb_header(&b, h);
    }
    if (req->host == NULL) {
        HB_LIT(&b, "Host: ");
        hb_str(&b, c->rq.upstream_addr);
        HB_LIT(&b, "\r\n");
    }
    HB_LIT(&b, "X-Forwarded-For: ");
    if (c->rq.xff_len > 0) {
        hb_add(&b, c->xff, c->rq.xff_len);
        HB_LIT(&b, ", ");
    }
    hb_str(&b, c->peer_ip);
    HB_LIT(&b, "\r\nX-Forwarded-Proto: http\r\n");
    if (c->rq.request_id_len) {
        HB_LIT(&b, "X-Request-Id: ");
        hb_add(&b, c->request_id, c->rq.request_id_len);
        HB_LIT(&b, "\r\n");
    }
    HB_LIT(&b, "traceparent: ");
    hb_add(&b, c->traceparent, 55);
    HB_LIT(&b, "\r\n");
    if (c->rq.framing == SL_FRAMING_LENGTH) {
        HB_LIT(&b, "Content-Length: ");
        hb_u64(&b, c->rq.body_left);
        HB_LIT(&b, "\r\n");
    } else if (c->rq.framing == SL_FRAMING_CHUNKED) {
        HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    }
    HB_LIT(&b, "\r\n");
    hb_finish(&b);
}

static void
on_upstream(void *arg, struct sl_upconn *up, int status)
{
    struct conn *c = arg;
    if (status != 0) {
        const char *detail = status == 504 ? "the upstream did not accept the connection in time"
                             : status == 503 ? "the upstream is overloaded, retry later"
                                             : "the upstream is unreachable";
        respond_error(c, status, detail, false);
        return;
    }
    conn_hold(c);
    c->up = up;
    c->us = sl_upconn_stream(up);
    c->rq.upstream_addr = sl_upconn_address(up);
    c->rq.upstream_start_us = sl_clock_cached_us();
    c->state = C_FORWARD;
    sl_head_reset(&c->resp, HTTP_RESPONSE);
    c->resp.is_skip_body = c->rq.is_head_method;
    sl_stream_setcb(c->us, up_stream_cb, c);
    c->us->in_max = HIGH_WATER;
    sl_stream_set_reading(c->us, true);
    up_timer_set(c);
    write_request_head(c, c->us->out);
    if (c->rq.is_expect_continue && evbuffer_get_length(c->cs.in) == 0) {
        evbuffer_add(c->cs.out, SL_LIT("HTTP/1.1 100 Continue\r\n\r\n"));
        sl_stream_flush(&c->cs);
    }
    if (!c->rq.is_body_done) {
        timer_set(c, c->rq.gen->cfg->client.body_timeout_ms);
        forward_body(c);
    }
    if (!c->is_dead && c->up != NULL) {
        sl_stream_flush(c->us);
        if (!c->rq.is_body_done)
            up_timer_for_body(c);
    }
    conn_unhold(c);
}

static void
chunk_to_upstream(void *arg, const char *at, size_t len)
{
    struct conn *c = arg;
    const struct sl_client_conf *client = &c->rq.gen->cfg->client;
    struct evbuffer *out = c->us->out;

    c->rq.body_seen += len;
    if (client->max_body_size != 0 && c->rq.body_seen > client->max_body_size) {
        c->rq.is_body_too_large = true;
        return;
    }
    add_chunk_size(out, len);
    evbuffer_add(out, at, len);
    evbuffer_add(out, SL_LIT("\r\n"));
}

/*
 * While the body streams, the upstream timeout runs only while the upstream
 * owes progress: bytes it was handed and has not taken (nginx's
 * proxy_send_timeout). Waiting for the client is body_timeout's business.
 */
static void
up_timer_for_body(struct conn *c)
{
    if (c->rq.is_resp_started)
        return; /* the response's own reads keep the timer */
    if (evbuffer_get_length(c->us->out) > 0)
        up_timer_set(c);
    else
        evtimer_del(&c->up_timer);
}

/* The wait for the response counts from the request's last byte, as nginx's
 * proxy_read_timeout: a slow upload is the client's body_timeout's business. */
static void
body_finished(struct conn *c)
{
    c->rq.is_body_done = true;
    evtimer_del(&c->timer);
    if (c->up != NULL && !c->rq.is_resp_started)
        up_timer_set(c);
}

/*
 * Feeds everything `in` holds to the parser (chunked or close-delimited body)
 * and drains what it took; on_body has copied the data by then. Stops at the
 * end of the message. 0, or -1 when the framing is invalid.
 */
static int
feed_parser(struct sl_head *h, struct evbuffer *in, size_t *consumed)
{
    while (!h->is_message_complete && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec[8];
        int nvec = evbuffer_peek(in, -1, NULL, vec, 8);
        size_t taken = 0;

        for (int i = 0; i < nvec && i < 8 && !h->is_message_complete; i++) {
            ssize_t n;
            if (vec[i].iov_len == 0)
                continue; /* an empty chain; length 0 would mean end of stream */
            n = sl_head_feed_body(h, vec[i].iov_base, vec[i].iov_len);
            if (n < 0)
                return -1;
            taken += (size_t)n;
        }
        evbuffer_drain(in, taken);
        *consumed += taken;
        if (taken == 0)
            break;
    }
    return 0;
}

/* Bytes of the chunked body: decoded by the parser, framed again by us, so the
 * upstream only ever sees our own canonical chunking. */
static int
forward_chunked(struct conn *c, struct evbuffer *in)
{
    size_t consumed = 0;

    c->head.on_body = chunk_to_upstream;
    c->head.body_arg = c;
    if (feed_parser(&c->head, in, &consumed) != 0)
        return c->rq.is_body_too_large ? 413 : 400;
    if (c->rq.is_body_too_large)
        return 413;
    c->rq.bytes_in += consumed;
    if (c->head.is_message_complete) {
        evbuffer_add(c->us->out, SL_LIT("0\r\n\r\n"));
        body_finished(c);
    }
    return 0;
}

static void
forward_body(struct conn *c)
{
    struct evbuffer *in = c->cs.in;
    struct evbuffer *out;
    size_t avail = evbuffer_get_length(in);

    if (c->up == NULL || c->rq.is_body_done || avail == 0)
        return;
    out = c->us->out;
    if (c->rq.framing == SL_FRAMING_LENGTH) {
        size_t n = avail < c->rq.body_left ? avail : (size_t)c->rq.body_left;
        evbuffer_remove_buffer(in, out, n);
        c->rq.body_left -= n;
        c->rq.bytes_in += n;
        if (c->rq.body_left == 0)
            body_finished(c);
    } else {
        int status = forward_chunked(c, in);
        if (status != 0) {
            if (c->rq.is_resp_started) {
                conn_close(c, status == 413 ? "request body too large" : "bad chunked body");
                return;
            }
            c->rq.is_body_done = true; /* nothing more is read: the connection closes */
            respond_error(c, status,
                          status == 413 ? "the request body is larger than allowed"
                                        : "the chunked request body is malformed",
                          true);
            return;
        }
    }
    sl_stream_flush(c->us);
    sl_stream_rearm(&c->cs);
    if (!c->rq.is_body_done) {
        up_timer_for_body(c);
        timer_set(c, c->rq.gen->cfg->client.body_timeout_ms);
        if (evbuffer_get_length(out) > HIGH_WATER) {
            c->is_client_read_paused = true;
            sl_stream_set_reading(&c->cs, false);
        }
    }
}

/* Request bytes went out to the upstream: take more of the body if we paused. */
static void
up_written(struct conn *c)
{
    if (!c->rq.is_body_done)
        up_timer_for_body(c);
    if (c->is_client_read_paused && !c->rq.is_body_done
        && evbuffer_get_length(c->us->out) <= LOW_WATER) {
        c->is_client_read_paused = false;
        sl_stream_set_reading(&c->cs, true);
        forward_body(c);
    }
}

/* ---- upstream: response -------------------------------------------------- */

static void
write_response_head(struct conn *c, const char *head, bool must_close)
{
    struct sl_header headers[MAX_RESPONSE_HEADERS];
    struct head_builder b;
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    size_t n = sl_head_headers(&c->resp, head, headers);
    int status = c->resp.parser.status_code;

    c->rq.status = status;
    c->rq.is_resp_chunked = c->rq.resp_framing == SL_FRAMING_CHUNKED
        || (c->rq.resp_framing == SL_FRAMING_EOF && c->rq.req.http_minor >= 1);
    b.out = out;
    b.len = 0;
    HB_LIT(&b, "HTTP/1.1 ");
    hb_u64(&b, (uint64_t)status);
    HB_LIT(&b, " ");
    hb_str(&b, sl_http_reason(status));
    HB_LIT(&b, "\r\n");
    for (size_t i = 0; i < n; i++) {
        const struct sl_header *h = &headers[i];
        if (sl_http_is_hop_by_hop(headers, n, h))
            continue;
        if (c->rq.is_resp_chunked && sl_http_name_is(h, SL_LIT("content-length")))
            continue;
        hb_header(&b, h);
    }
    hb_add(&b, c->decision_headers, c->rq.decision_headers_len);
    if (c->rq.route->has_server_timing) {
        char timing[64];
        int len = snprintf(timing, sizeof(timing), "Server-Timing: upstream;dur=%.3f\r\n",
                           span_ms(c->rq.upstream_start_us, c->rq.first_byte_us));
        hb_add(&b, timing, (size_t)len);
    }
    if (c->rq.is_resp_chunked)
        HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    if (must_close)
        HB_LIT(&b, "Connection: close\r\n");
    else if (c->rq.req.http_minor == 0)
        HB_LIT(&b, "Connection: keep-alive\r\n");
    HB_LIT(&b, "\r\n");
    hb_finish(&b);
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.is_resp_started = true;
}

/* The response is over: give the upstream connection back, finish the request. */
static void
response_done(struct conn *c)
{
    bool is_reusable = c->rq.is_body_done && c->rq.resp_framing != SL_FRAMING_EOF
        && http_should_keep_alive(&c->resp.parser)
        && evbuffer_get_length(c->us->out) == 0;
    bool must_close = !c->rq.is_body_done;

    c->rq.upstream_end_us = sl_clock_cached_us();
    upstream_drop(c, is_reusable);
    c->is_up_read_paused = false;
    request_done(c, must_close);
}

static void
chunk_to_client(void *arg, const char *at, size_t len)
{
    struct conn *c = arg;
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);

    if (c->rq.is_resp_chunked)
        add_chunk_size(out, len);
    evbuffer_add(out, at, len);
    if (c->rq.is_resp_chunked)
        evbuffer_add(out, SL_LIT("\r\n"));
    c->rq.bytes_out += evbuffer_get_length(out) - before;
}

/* Returns 0, or -1 when the upstream's framing is broken. */
static int
forward_decoded(struct conn *c, struct evbuffer *in, bool is_eof)
{
    size_t consumed = 0;

    c->resp.on_body = chunk_to_client;
    c->resp.body_arg = c;
    if (feed_parser(&c->resp, in, &consumed) != 0)
        return -1;
    if (is_eof && !c->resp.is_message_complete && sl_head_feed_body(&c->resp, NULL, 0) < 0)
        return -1;
    return 0;
}

/*
 * A small body is copied in behind the head rather than handed over as a
 * chain of its own: the response then leaves in one send(2), cheaper in the
 * kernel than a writev of two pieces. Larger bodies move without a copy.
 */
static void
move_body(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (n == 0)
        return;
    if (n > COPY_BODY_MAX) {
        evbuffer_remove_buffer(in, out, n);
        return;
    }
    evbuffer_add(out, evbuffer_pullup(in, (ev_ssize_t)n), n);
    evbuffer_drain(in, n);
}

static void
forward_response(struct conn *c)
{
    struct evbuffer *in = c->us->in;
    struct evbuffer *out = c->cs.out;

    if (c->rq.resp_framing == SL_FRAMING_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < c->rq.resp_left ? avail : (size_t)c->rq.resp_left;
        move_body(in, out, n);
        c->rq.resp_left -= n;
        c->rq.bytes_out += n;
        if (c->rq.resp_left == 0) {
            response_done(c);
            return;
        }
    } else if (c->rq.resp_framing == SL_FRAMING_NONE) {
        response_done(c);
        return;
    } else {
        if (forward_decoded(c, in, false) != 0) {
            conn_close(c, "upstream sent a malformed body");
            return;
        }
        if (c->resp.is_message_complete) {
            if (c->rq.is_resp_chunked) {
                evbuffer_add(out, SL_LIT("0\r\n\r\n"));
                c->rq.bytes_out += 5;
            }
            response_done(c);
            return;
        }
    }
    sl_stream_flush(&c->cs);
    sl_stream_rearm(c->us);
    if (evbuffer_get_length(out) > HIGH_WATER) {
        /* The client reads slower than the upstream sends: stop reading the
         * upstream; the client must make progress within idle_timeout. */
        c->is_up_read_paused = true;
        sl_stream_set_reading(c->us, false);
        evtimer_del(&c->up_timer);
        timer_set(c, c->rq.gen->cfg->client.idle_timeout_ms);
    }
}

/* Returns false if the head is incomplete or the request ended. */
static bool
read_response_head(struct conn *c)
{
    struct evbuffer *in = c->us->in;

    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < MAX_RESPONSE_HEAD ? len : MAX_RESPONSE_HEAD;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        unsigned status;
        bool must_close;
        int r;

        if (n == 0)
            return false;
        r = sl_head_feed(&c->resp, data, n);
        if (r == SL_HEAD_MORE)
            return false;
        if (r != SL_HEAD_DONE || sl_http_check_line_ends(data, c->resp.head_len) != 0) {
            respond_error(c, 502, "the upstream sent a malformed response", false);
            return false;
        }
        status = c->resp.parser.status_code;
        if (status / 100 == 1) {
            /* Interim responses are ours to absorb: we never asked for an
             * upgrade, and 100 Continue was already answered by us. */
            if (status == 101) {
                respond_error(c, 502, "the upstream switched protocols", false);
                return false;
            }
            evbuffer_drain(in, c->resp.head_len);
            sl_head_reset(&c->resp, HTTP_RESPONSE);
            c->resp.is_skip_body = c->rq.is_head_method;
            continue;
        }
        c->rq.first_byte_us = sl_clock_cached_us();
        sl_metrics_upstream_response(c->px->mw,
                                     c->rq.gen->upstream_slots[c->rq.route->upstream], (int)status,
                                     c->rq.first_byte_us - c->rq.upstream_start_us);
        c->rq.resp_framing = sl_http_response_framing(&c->resp, c->rq.is_head_method);
        c->rq.resp_left = c->rq.resp_framing == SL_FRAMING_LENGTH ? c->resp.parser.content_length : 0;
        must_close = !c->rq.is_body_done || !c->rq.is_keepalive || c->px->is_draining
            || (c->rq.resp_framing == SL_FRAMING_EOF && c->rq.req.http_minor == 0);
        write_response_head(c, data, must_close);
        if (must_close)
            c->rq.is_keepalive = false;
        evbuffer_drain(in, c->resp.head_len);
        return true;
    }
}

static void
up_read(struct conn *c)
{
    if (c->rq.is_resp_started || read_response_head(c)) {
        if (!c->is_dead && c->up != NULL)
            forward_response(c);
    }
    /* Still waiting for more of the response: the timeout starts over. */
    if (!c->is_dead && c->up != NULL && !c->is_up_read_paused)
        up_timer_set(c);
}

/* The upstream closed, failed, or timed out (is_timeout). */
static void
up_failed(struct conn *c, bool is_timeout)
{
    if (!is_timeout && c->rq.is_resp_started && c->rq.resp_framing == SL_FRAMING_EOF) {
        if (forward_decoded(c, c->us->in, true) == 0 && c->resp.is_message_complete) {
            if (c->rq.is_resp_chunked) {
                evbuffer_add(c->cs.out, SL_LIT("0\r\n\r\n"));
                c->rq.bytes_out += 5;
            }
            response_done(c);
            return;
        }
    }
    c->rq.upstream_end_us = sl_clock_cached_us();
    sl_metrics_upstream_error(c->px->mw, c->rq.gen->upstream_slots[c->rq.route->upstream],
                              is_timeout ? SL_METRICS_UPSTREAM_RESPONSE_TIMEOUT
                                         : SL_METRICS_UPSTREAM_BROKEN);
    if (!c->rq.is_resp_started) {
        upstream_drop(c, false);
        respond_error(c, is_timeout ? 504 : 502,
                      is_timeout ? "the upstream did not answer in time"
                                 : "the upstream closed the connection without answering",
                      false);
    } else {
        /* Mid-body: the client must see a broken response, never a complete one. */
        const char *reason = is_timeout ? "upstream timed out mid-response"
                                        : "upstream closed mid-response";
        c->rq.status = c->rq.status ? c->rq.status : 502;
        request_finish(c, reason);
        upstream_drop(c, false);
        conn_flush_close(c);
    }
}

static void
up_stream_cb(struct sl_stream *s, int what, void *arg)
{
    struct conn *c = arg;

    (void)s;
    conn_hold(c);
    if ((what & SL_STREAM_WRITTEN) && c->up != NULL)
        up_written(c);
    if ((what & SL_STREAM_READ) && !c->is_dead && c->up != NULL)
        up_read(c);
    if ((what & (SL_STREAM_EOF | SL_STREAM_ERROR)) && !c->is_dead && c->up != NULL)
        up_failed(c, false);
    conn_unhold(c);
}

static void
up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    conn_hold(c);
    if (c->up != NULL) {
        uint64_t now = sl_clock_now_us();
        uint64_t left_ms = now < c->rq.up_deadline_us ? (c->rq.up_deadline_us - now + 999) / 1000 : 0;

        if (left_ms == 0) {
            up_failed(c, true);
        } else if (client_gone(c)) {
            conn_close(c, "client closed");
        } else if (!c->rq.is_resp_started && left_ms > CLIENT_PROBE_MS) {
            timer_add(c->px, &c->up_timer, CLIENT_PROBE_MS);
        } else {
            /* an odd remainder: a plain timer, not a common-timeout queue of its own */
            struct timeval tv = tv_from_ms(left_ms);
            evtimer_add(&c->up_timer, &tv);
        }
    }
    conn_unhold(c);
}

/* ---- client side callbacks ----------------------------------------------- */

/* Response bytes went out to the client. */
static void
client_written(struct conn *c)
{
    size_t pending = evbuffer_get_length(c->cs.out);

    if (c->state == C_FLUSH_CLOSE) {
        if (pending == 0)
            conn_close(c, NULL);
    } else if (c->is_up_read_paused && c->up != NULL) {
        if (pending <= LOW_WATER) {
            c->is_up_read_paused = false;
            evtimer_del(&c->timer);
            up_timer_set(c);
            sl_stream_set_reading(c->us, true);
            if (evbuffer_get_length(c->us->in) > 0)
                forward_response(c);
        } else {
            timer_set(c, c->rq.gen->cfg->client.idle_timeout_ms);
        }
    } else if ((c->state == C_IDLE || c->state == C_HEAD) && pending <= LOW_WATER) {
        conn_process(c);
    }
}

static void
conn_stream_cb(struct sl_stream *s, int what, void *arg)
{
    struct conn *c = arg;

    (void)s;
    conn_hold(c);
    if (what & SL_STREAM_ERROR) {
        conn_close(c, c->state == C_IDLE ? NULL : "client connection error");
    } else {
        if (what & SL_STREAM_WRITTEN)
            client_written(c);
        if ((what & SL_STREAM_READ) && !c->is_dead)
            conn_process(c);
        if ((what & SL_STREAM_EOF) && !c->is_dead)
            conn_close(c, c->state == C_IDLE || c->state == C_FLUSH_CLOSE ? NULL
                                                                          : "client closed");
    }
    conn_unhold(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    conn_hold(c);
    switch (c->state) {
    case C_IDLE:
        conn_close(c, NULL);
        break;
    case C_HEAD:
        respond_error(c, 408, "the request head did not arrive in time", true);
        break;
    case C_FORWARD:
        if (!c->rq.is_body_done && !c->rq.is_resp_started) {
            c->rq.is_body_done = true;
            respond_error(c, 408, "the request body did not arrive in time", true);
        } else {
            conn_close(c, c->is_up_read_paused ? "client send timeout" : "client body timeout");
        }
        break;
    default:
        conn_close(c, "flush timeout");
        break;
    }
    conn_unhold(c);
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int socklen,
          void *arg)
{
    struct sl_proxy *px = arg;
    const struct sl_client_conf *client = &px->gen->cfg->client;
    struct conn *c;
    int one = 1;

    (void)listener;
    c = sl_xcalloc(1, sizeof(*c));
    c->px = px;
    memcpy(&c->peer, sa, (size_t)socklen < sizeof(c->peer) ? (size_t)socklen : sizeof(c->peer));
    c->peer_ip_len = sl_client_address(sa, NULL, 0, NULL, 0, c->peer_ip, sizeof(c->peer_ip));
    if (c->peer_ip_len == 0)
        c->peer_ip_len = (size_t)snprintf(c->peer_ip, sizeof(c->peer_ip), "unknown");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sl_stream_init(&c->cs, px->base, fd, client->max_header_size + LOW_WATER, conn_stream_cb, c);
    sl_head_init(&c->head, HTTP_REQUEST, client->max_header_size, client->max_headers);
    c->head.max_uri_size = client->max_uri_size;
    sl_head_init(&c->resp, HTTP_RESPONSE, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS);
    evtimer_assign(&c->timer, px->base, conn_timer_cb, c);
    evtimer_assign(&c->up_timer, px->base, up_timer_cb, c);
    /* A new connection gets the header timeout, not the keep-alive one. */
    c->rq.start_us = sl_clock_cached_us();
    c->state = C_HEAD;
    timer_set(c, client->header_timeout_ms);

    c->next = px->conns;
    if (px->conns != NULL)
        px->conns->prev = c;
    px->conns = c;
    sl_metrics_client_open(px->mw);
    if (++px->nconns >= px->max_conns && !px->is_accept_paused) {
        for (size_t i = 0; i < px->nlisteners; i++)
            evconnlistener_disable(px->listeners[i]);
        px->is_accept_paused = true;
    }
}

/* ---- the worker's proxy -------------------------------------------------- */

struct sl_proxy *
sl_proxy_new(struct event_base *base, unsigned index, unsigned nworkers,
             struct sl_limiter_shared *limiter_shared, struct sl_metrics *metrics)
{
    struct sl_proxy *px = sl_xcalloc(1, sizeof(*px));

    px->metrics = metrics;
    px->mw = metrics ? sl_metrics_worker(metrics, index) : NULL;
    px->base = base;
    px->index = index;
    px->nworkers = nworkers ? nworkers : 1;
    px->limiter_shared = limiter_shared;
    if (getrandom(px->rng, sizeof(px->rng), 0) != (ssize_t)sizeof(px->rng)) {
        px->rng[0] = sl_clock_now_us() ^ ((uint64_t)getpid() << 32);
        px->rng[1] = (uint64_t)index * 0x9e3779b97f4a7c15ULL + 1;
    }
    px->rng[0] |= 1;
    return px;
}

void
sl_proxy_close_all(struct sl_proxy *px)
{
    while (px->conns != NULL)
        conn_close(px->conns, "shutdown");
}

void
sl_proxy_free(struct sl_proxy *px)
{
    if (px == NULL)
        return;
    px->drained_cb = NULL;
    sl_proxy_close_all(px);
    for (size_t i = 0; i < px->nlisteners; i++)
        evconnlistener_free(px->listeners[i]);
    free(px->listeners);
    wgen_unref(px->gen);
    sl_accesslog_free(px->accesslog);
    free(px->accesslog_path);
    free(px);
}

int
sl_proxy_listen(struct sl_proxy *px, const struct sl_config *cfg, char *err, size_t err_size)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE
        | LEV_OPT_REUSEABLE_PORT;

    px->listeners = sl_xcalloc(cfg->nlisten, sizeof(*px->listeners));
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct sl_sockaddr *addr = &cfg->listen[i];
        struct evconnlistener *l = evconnlistener_new_bind(
            px->base, accept_cb, px, flags, 511, (const struct sockaddr *)&addr->ss,
            (int)addr->len);
        if (l == NULL) {
            snprintf(err, err_size, "listen %s: %s", addr->text, strerror(errno));
            return -1;
        }
        px->listeners[px->nlisteners++] = l;
    }
    return 0;
}

static bool
same_path(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Label values come from the conf only: route [host]path, limit and upstream names. */
static void
register_names(struct sl_proxy *px, struct wgen *gen)
{
    const struct sl_config *cfg = gen->cfg;

    gen->route_names = sl_xcalloc(cfg->nroutes + 1, sizeof(*gen->route_names));
    gen->route_slots = sl_xcalloc(cfg->nroutes + 1, sizeof(*gen->route_slots));
    gen->limit_slots = sl_xcalloc(cfg->nlimits + 1, sizeof(*gen->limit_slots));
    gen->upstream_slots = sl_xcalloc(cfg->nupstreams + 1, sizeof(*gen->upstream_slots));
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route_conf *r = &cfg->routes[i];
        size_t host_len = r->host ? strlen(r->host) : 0;
        char *name = sl_xmalloc(host_len + r->path_len + 1);
        memcpy(name, r->host ? r->host : "", host_len);
        memcpy(name + host_len, r->path, r->path_len + 1);
        gen->route_names[i] = name;
        if (px->metrics != NULL)
            gen->route_slots[i] = sl_metrics_slot(px->metrics, SL_METRICS_ROUTE, name);
    }
    for (size_t i = 0; px->metrics != NULL && i < cfg->nlimits; i++)
        gen->limit_slots[i] = sl_metrics_slot(px->metrics, SL_METRICS_LIMIT, cfg->limits[i].name);
    for (size_t i = 0; px->metrics != NULL && i < cfg->nupstreams; i++)
        gen->upstream_slots[i] =
            sl_metrics_slot(px->metrics, SL_METRICS_UPSTREAM, cfg->upstreams[i].name);
}

int
sl_proxy_set_config(struct sl_proxy *px, struct sl_shared_config *shared, char *err,
                    size_t err_size)
{
    const struct sl_config *cfg = shared->cfg;
    struct sl_limiter *limiter;
    struct wgen *gen;

    limiter = sl_limiter_new(cfg, px->base, px->limiter_shared, err, err_size);
    if (limiter == NULL)
        return -1;
    gen = sl_xcalloc(1, sizeof(*gen));
    gen->refs = 1;
    sl_shared_config_ref(shared);
    gen->shared = shared;
    gen->cfg = cfg;
    gen->limiter = limiter;
    register_names(px, gen);
    sl_limiter_set_metrics(limiter, px->mw, gen->limit_slots);
    gen->pools = sl_xcalloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*gen->pools));
    for (size_t i = 0; i < cfg->nupstreams; i++)
        gen->pools[i] = sl_upstream_pool_new(px->base, &cfg->upstreams[i], px->nworkers, px->mw,
                                             gen->upstream_slots[i]);
    wgen_unref(px->gen);
    px->gen = gen;
    px->max_conns = (cfg->client.max_connections + px->nworkers - 1) / px->nworkers;
    if (px->max_conns == 0)
        px->max_conns = 1;
    if (px->accesslog == NULL || !same_path(px->accesslog_path, cfg->access_log)) {
        sl_accesslog_free(px->accesslog);
        free(px->accesslog_path);
        px->accesslog = sl_accesslog_new(cfg->access_log ? cfg->access_log : "stderr", px->base);
        if (px->accesslog == NULL)
            sl_log_warn("access log \"%s\"", cfg->access_log);
        px->accesslog_path = cfg->access_log ? sl_xstrdup(cfg->access_log) : NULL;
    }
    accept_resume_if_room(px);
    return 0;
}

void
sl_proxy_drain(struct sl_proxy *px, sl_proxy_drained_cb *cb, void *arg)
{
    struct conn *c, *next;

    px->is_draining = true;
    px->drained_cb = cb;
    px->drained_arg = arg;
    for (size_t i = 0; i < px->nlisteners; i++)
        evconnlistener_free(px->listeners[i]);
    px->nlisteners = 0;
    for (c = px->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == C_IDLE)
            conn_close(c, NULL);
    }
    if (px->nconns == 0 && px->drained_cb != NULL) {
        px->drained_cb = NULL;
        cb(arg);
    }
}

void
sl_proxy_reopen_logs(struct sl_proxy *px)
{
    if (px->accesslog != NULL && sl_accesslog_reopen(px->accesslog) != 0)
        sl_log_warn("access log \"%s\": reopen", px->accesslog_path ? px->accesslog_path : "");
}

bool
sl_proxy_is_ready(struct sl_proxy *px, char *why, size_t why_size)
{
    const struct sl_config *cfg = px->gen->cfg;

    if (!sl_limiter_is_ready(px->gen->limiter)) {
        snprintf(why, why_size, "store");
        return false;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct sl_upstream_stats st;
        size_t u = cfg->routes[i].upstream;
        sl_upstream_pool_stats(px->gen->pools[u], &st);
        if (!st.has_reachable_server) {
            snprintf(why, why_size, "upstream %s", cfg->upstreams[u].name);
            return false;
        }
    }
    return true;
}
