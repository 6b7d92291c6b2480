/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * One client connection: a state machine over an edge-triggered stream
 * (src/util/stream.c). One request per connection is in progress at a time,
 * so pipelined requests wait in the input buffer and are answered in order.
 * This file reads request heads and bodies (the body goes up as it comes,
 * reading stops while the upstream side holds more than HIGH_WATER), answers
 * locally what never reaches an upstream, and counts and logs each request.
 * Heads as they leave are proxy_head.c's, the upstream leg proxy_upstream.c's.
 *
 * Every connection end goes through proxy_conn_close(conn, reason); a
 * connection referenced by a pending callback (a phase, upstream) is freed
 * only when it returns.
 */
#include "proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/netaddr.h"
#include "sluice/route.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/path.h"

static void conn_process(struct conn *c);
static void on_phases_done(void *arg, enum sl_phase_result result, int status,
                           const char *body, size_t body_len);
static bool phase_read_body(void *arg);
static void phase_body_feed(struct conn *c);
static void conn_stream_cb(struct sl_stream *s, int what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void req_timer_cb(evutil_socket_t fd, short what, void *arg);
static void request_timer_arm(struct conn *c);

/* ---- connection lifecycle ------------------------------------------------ */

void
proxy_timer_set(struct conn *c, uint64_t ms)
{
    proxy_timer_add(c->px, &c->timer, ms);
}

/* Takes ownership of fd. */
struct conn *
proxy_conn_new(struct sl_proxy *px, evutil_socket_t fd, const struct sockaddr *sa, int socklen)
{
    const struct sl_client_conf *client = &proxy_gen_cfg(px->gen)->client;
    struct conn *c;
    int one = 1;

    c = sl_xcalloc(1, sizeof(*c));
    c->px = px;
    memcpy(&c->peer, sa, (size_t)socklen < sizeof(c->peer) ? (size_t)socklen : sizeof(c->peer));
    c->peer_ip_len = sl_client_address(sa, NULL, 0, NULL, 0, c->peer_ip, sizeof(c->peer_ip));
    c->is_unix = sa->sa_family == AF_UNIX;
    /* as nginx's $remote_addr on a unix socket; X-Forwarded-For gets it too */
    if (c->peer_ip_len == 0)
        c->peer_ip_len = (size_t)snprintf(c->peer_ip, sizeof(c->peer_ip), "%s",
                                          c->is_unix ? "unix:" : "unknown");
    memcpy(c->tcp_peer_ip, c->peer_ip, c->peer_ip_len + 1);
    if (!c->is_unix)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sl_stream_init(&c->cs, px->base, fd, client->max_header_size + LOW_WATER, conn_stream_cb, c);
    sl_head_init(&c->head, HTTP_REQUEST, client->max_header_size, client->max_headers);
    c->head.max_uri_size = client->max_uri_size;
    sl_head_init(&c->resp, HTTP_RESPONSE, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS);
    sl_phase_run_init(&c->phases);
    sl_phase_run_set_reader(&c->phases, phase_read_body, c);
    evtimer_assign(&c->timer, px->base, conn_timer_cb, c);
    evtimer_assign(&c->up_timer, px->base, proxy_up_timer_cb, c);
    evtimer_assign(&c->req_timer, px->base, req_timer_cb, c);
    /* A new connection gets the header timeout, not the keep-alive one. */
    c->rq.start_us = sl_clock_cached_us();
    c->state = C_HEAD;
    proxy_timer_set(c, client->header_timeout_ms);
    request_timer_arm(c);
    return c;
}

void
proxy_conn_hold(struct conn *c)
{
    c->refs++;
}

static void
conn_destroy(struct conn *c)
{
    struct sl_proxy *px = c->px;

    sl_head_fini(&c->head);
    sl_head_fini(&c->resp);
    proxy_retry_end(c);
    free(c->rq.head_buf);
    sl_phase_run_fini(&c->phases);
    free(c);
    if (px->is_draining && px->nconns == 0 && px->drained_cb != NULL) {
        sl_proxy_drained_cb *cb = px->drained_cb;
        px->drained_cb = NULL;
        cb(px->drained_arg);
    }
}

void
proxy_conn_unhold(struct conn *c)
{
    if (--c->refs == 0 && c->is_dead)
        conn_destroy(c);
}

void
proxy_conn_close(struct conn *c, const char *reason)
{
    struct sl_proxy *px = c->px;

    if (c->is_dead)
        return;
    /* Releasing the generation can free its limiter, which completes a
     * pending check at once, and that callback lets go of c: c must outlive
     * this function whoever called it (sl_proxy_close_all holds nothing). */
    proxy_conn_hold(c);
    proxy_tunnel_end(c);
    if (c->rq.gen != NULL && !c->rq.is_logged)
        proxy_request_finish(c, reason);
    proxy_upstream_drop(c, false);
    c->is_dead = true;
    evtimer_del(&c->timer);
    evtimer_del(&c->req_timer);
    sl_stream_fini(&c->cs);
    proxy_gen_release(c->rq.gen);
    c->rq.gen = NULL;
    proxy_conn_unlink(px, c);
    proxy_conn_unhold(c);
}

/* Sends what is buffered, then closes; the timer bounds a client that never reads. */
void
proxy_conn_flush_close(struct conn *c)
{
    c->state = C_FLUSH_CLOSE;
    sl_stream_set_reading(&c->cs, false);
    sl_stream_flush(&c->cs);
    if (evbuffer_get_length(c->cs.out) == 0) {
        proxy_conn_close(c, NULL);
        return;
    }
    proxy_timer_set(c, FLUSH_TIMEOUT_MS);
}

/* ---- access log -------------------------------------------------------------- */

/* One warn line per request slower than slow_request, with where the time went. */
static void
log_slow(struct conn *c, uint64_t now)
{
    uint64_t limit_ms = proxy_gen_cfg(c->px->gen)->slow_request_ms;
    uint64_t head_end = c->rq.head_done_us ? c->rq.head_done_us : now;
    uint64_t up_end = c->rq.upstream_end_us ? c->rq.upstream_end_us : now;

    if (limit_ms == 0 || now - c->rq.start_us < limit_ms * 1000)
        return;
    proxy_ensure_ids(c);
    sl_log_warnx(
        "slow request (trace %.32s): %.1f ms total: head %.1f ms, limiter %.1f ms, "
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
    unsigned route_slot = c->rq.route != NULL ? c->rq.use.slot : SL_METRICS_ROUTE_NONE;

    if (!c->rq.is_counted)
        sl_metrics_request_start(c->px->mw);
    c->rq.is_counted = false;
    sl_metrics_request(c->px->mw, route_slot,
                       sl_metrics_method(c->rq.req.method, c->rq.req.method_len), c->rq.status,
                       c->rq.bytes_in, c->rq.bytes_out, now - c->rq.start_us);
}

/* A tunnel is counted at its 101: the request metrics (durations, the
 * slow-request log) are about the handshake, not about how long a WebSocket
 * stays open; sluice_tunnels counts those. */
void
proxy_request_count(struct conn *c)
{
    uint64_t now = sl_clock_cached_us();

    if (c->rq.is_metrics_done)
        return;
    c->rq.is_metrics_done = true;
    count_request(c, now);
    log_slow(c, now);
}

void
proxy_request_finish(struct conn *c, const char *reason)
{
    struct sl_access_entry e;
    uint64_t now = sl_clock_cached_us();
    uint64_t upstream_end_us = c->rq.upstream_end_us ? c->rq.upstream_end_us : now;
    const struct sl_header *rid;

    c->rq.is_logged = true;
    proxy_request_count(c);
    if (!sl_accesslog_is_on(c->px->accesslog)) {
        sl_phase_run_end(&c->phases, reason, NULL);
        return;
    }
    proxy_ensure_ids(c);
    memset(&e, 0, sizeof(e));
    e.time = sl_clock_wall_at(c->rq.start_us);
    e.client = c->rq.req.client_ip != NULL ? c->rq.req.client_ip : c->peer_ip;
    e.peer = c->tcp_peer_ip;
    e.method = c->rq.req.method;
    e.method_len = c->rq.req.method_len;
    e.path = c->rq.req.target;
    e.path_len = c->rq.req.target_len;
    e.status = c->rq.status;
    e.bytes_in = c->rq.bytes_in;
    e.bytes_out = c->rq.bytes_out;
    e.duration_ms = (double)(now - c->rq.start_us) / 1000.0;
    e.upstream_ms = c->rq.upstream_start_us
        ? (double)(upstream_end_us - c->rq.upstream_start_us) / 1000.0
        : -1.0;
    e.limiter_ms = -1.0; /* the limits phase fills it in, and e.limit */
    e.upstream = c->rq.upstream_addr[0] != '\0' ? c->rq.upstream_addr : NULL;
    e.retries = c->rq.is_upstream_asked ? c->wait.retries_used : 0;
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
    /* a connection that ended early says why; else our own answer does */
    e.reason = reason != NULL ? reason : c->rq.reason;
    if (c->rq.route != NULL)
        e.route = c->rq.use.name;
    sl_phase_run_end(&c->phases, reason, &e);
    sl_accesslog_write(c->px->accesslog, &e);
}

/* Releases the request's resources; the connection goes back to idle. */
static void
request_reset(struct conn *c)
{
    free(c->rq.head_buf);
    proxy_gen_release(c->rq.gen);
    evtimer_del(&c->req_timer);
    proxy_retry_end(c);
    c->rq = (struct request_state){ .framing = SL_FRAMING_NONE };
    sl_head_reset(&c->head, HTTP_REQUEST);
}

bool
proxy_is_kept(const struct conn *c, bool must_close)
{
    return !must_close && c->rq.is_keepalive && !c->px->is_draining;
}

/* The response is complete: log, then either close or wait for the next request. */
void
proxy_request_done(struct conn *c, bool must_close)
{
    struct sl_proxy *px = c->px;

    sl_stream_flush(&c->cs);
    proxy_request_finish(c, NULL);
    if (!proxy_is_kept(c, must_close)) {
        proxy_conn_flush_close(c);
        return;
    }
    request_reset(c);
    c->state = C_IDLE;
    proxy_timer_set(c, proxy_gen_cfg(px->gen)->client.idle_timeout_ms);
    if (c->is_client_read_paused) {
        c->is_client_read_paused = false;
        sl_stream_set_reading(&c->cs, true);
    }
    /* Answered from inside conn_process (a local answer to a pipelined
     * request): its loop takes the next request, without recursing. */
    if (!c->is_processing && evbuffer_get_length(c->cs.in) > 0)
        conn_process(c);
}

/*
 * Answers with a problem+json body (RFC 9457). `detail` is always one of our
 * own strings, never client input, so nothing the client sent is reflected.
 */
void
proxy_respond_error(struct conn *c, int status, const char *reason, const char *detail,
                    bool must_close)
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
    c->rq.reason = reason;
    proxy_write_local_response(c, status, extra, extra_len, body, (size_t)n, must_close);
    proxy_upstream_drop(c, false);
    if (c->rq.gen == NULL) {
        /* No request was parsed (bad head): log what we know, then close. */
        proxy_request_finish(c, reason);
        proxy_conn_flush_close(c);
        return;
    }
    proxy_request_done(c, must_close);
}

/*
 * Routes, limits and key functions see the path normalised (util/path.h),
 * so that "//v1/a", "/./v1/a" and "/%76%31/a" cannot step around the limits
 * of "/v1/"; the upstream gets it too unless path_forward = "original". The
 * target as sent stays in the access log. False when it answered (400).
 */
static bool
normalize_path(struct conn *c)
{
    const struct sl_config *cfg = c->rq.cfg;
    struct sl_request *req = &c->rq.req;
    size_t len = 0;
    enum sl_path_result r = sl_path_normalize(
        req->path, req->path_len, c->rq.path_buf, &len,
        cfg->path_encoded_slash == SL_PATH_SLASH_REJECT ? SL_PATH_REJECT_ENCODED_SLASH : 0);

    if (r == SL_PATH_ENCODED_SLASH) {
        proxy_respond_error(c, 400, "encoded slash in path",
                            "the request path contains an encoded slash (%2F)", false);
        return false;
    }
    if (r != SL_PATH_OK) {
        proxy_respond_error(c, 400, "bad path encoding",
                            "the request path has a % not followed by two hex digits", false);
        return false;
    }
    c->rq.is_path_rewritten = cfg->path_forward == SL_PATH_FORWARD_NORMALIZED
        && (len != req->path_len || memcmp(req->path, c->rq.path_buf, len) != 0);
    req->path = c->rq.path_buf;
    req->path_len = len;
    return true;
}

/*
 * client.request_timeout bounds the whole request, from its first byte to
 * the last byte of its body, however slowly it trickles in (the header and
 * body timeouts only bound the gaps). Armed only once a request is seen
 * not to arrive in one piece, so the common case never touches a timer.
 * The time sluice itself takes before it reads the body (the phases, the
 * wait for an upstream connection) is not the client's: the clock stops
 * then (request_timer_pause) and the deadline moves by as much.
 */
static void
request_timer_arm(struct conn *c)
{
    uint64_t ms = proxy_gen_cfg(c->px->gen)->client.request_timeout_ms;
    uint64_t now = sl_clock_cached_us();
    struct timeval tv;

    if (c->rq.cfg != NULL)
        ms = c->rq.cfg->client.request_timeout_ms;
    if (ms == 0 || evtimer_pending(&c->req_timer, NULL))
        return;
    if (c->rq.request_deadline_us == 0)
        c->rq.request_deadline_us = c->rq.start_us + ms * 1000;
    tv = sl_timeval_from_ms(c->rq.request_deadline_us > now
                                ? (c->rq.request_deadline_us - now + 999) / 1000
                                : 0);
    evtimer_add(&c->req_timer, &tv);
}

static void
request_timer_pause(struct conn *c)
{
    if (!evtimer_pending(&c->req_timer, NULL))
        return;
    evtimer_del(&c->req_timer);
    c->rq.request_paused_us = sl_clock_cached_us();
}

void
proxy_request_timer_resume(struct conn *c)
{
    if (c->rq.request_paused_us == 0 || c->rq.is_body_done)
        return;
    c->rq.request_deadline_us += sl_clock_cached_us() - c->rq.request_paused_us;
    c->rq.request_paused_us = 0;
    request_timer_arm(c);
}

static void
req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    proxy_conn_hold(c);
    if (c->state == C_HEAD) {
        proxy_respond_error(c, 408, "client request timeout",
                            "the request did not arrive in time", true);
    } else if (c->rq.gen != NULL && !c->rq.is_body_done && c->state != C_FLUSH_CLOSE) {
        c->rq.is_body_done = true; /* nothing more is read: the connection closes */
        if (c->rq.is_resp_started)
            proxy_conn_close(c, "client request timeout");
        else
            proxy_respond_error(c, 408, "client request timeout",
                                "the request did not arrive in time", true);
    }
    proxy_conn_unhold(c);
}

/*
 * "OPTIONS *" (RFC 9110 section 9.3.7) asks about the server in general,
 * not about a resource of any upstream: answered here, unrouted and
 * unlimited, as Apache httpd and Go's net/http do (nginx and Envoy refuse
 * it with 400; no proxy we know of forwards it).
 */
static void
answer_options(struct conn *c)
{
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);
    bool must_close = !c->rq.is_body_done;

    evbuffer_add(out, SL_LIT("HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, "
                             "OPTIONS\r\nContent-Length: 0\r\n"));
    /* as proxy_head.c's hb_end: RFC 9112 sections 9.3 and 9.6 */
    if (!proxy_is_kept(c, must_close))
        evbuffer_add(out, SL_LIT("Connection: close\r\n"));
    else if (c->rq.req.http_minor == 0)
        evbuffer_add(out, SL_LIT("Connection: keep-alive\r\n"));
    evbuffer_add(out, SL_LIT("\r\n"));
    c->rq.bytes_out += evbuffer_get_length(out) - before;
    c->rq.status = 200;
    c->rq.is_resp_started = true;
    proxy_request_done(c, must_close);
}

/* After the route match: is this a WebSocket handshake, and may it pass?
 * False when it answered (403). */
static bool
check_upgrade(struct conn *c)
{
    c->rq.is_upgrade = sl_http_is_websocket_upgrade(&c->rq.req, !c->rq.is_body_done);
    if (c->rq.is_upgrade && !c->rq.route->has_websocket) {
        proxy_respond_error(c, 403, "websocket refused",
                            "WebSocket upgrades are not allowed on this route", false);
        return false;
    }
    return true;
}

/* The head is parsed and its bytes copied out of the input buffer. */
static void
request_begin(struct conn *c)
{
    const struct sl_config *cfg = c->rq.cfg;
    const struct sl_header *h;
    int status;

    status = sl_head_to_request(&c->head, c->rq.head_buf, c->rq.headers, &c->rq.req);
    c->rq.is_head_method = c->head.parser.method == HTTP_HEAD;
    c->rq.is_keepalive = http_should_keep_alive(&c->head.parser);
    if (status != 0) {
        proxy_respond_error(c, status,
                            status == 505 ? "http version not supported" : "malformed request",
                            "the request is malformed", true);
        return;
    }
    proxy_client_identity(c);
    status = sl_http_request_framing(&c->rq.req, &c->rq.framing, &c->rq.body_left);
    if (status != 0) {
        c->rq.framing = SL_FRAMING_NONE;
        proxy_respond_error(c, status, "invalid request framing",
                            "the request framing is ambiguous or invalid", true);
        return;
    }
    c->rq.content_length = c->rq.body_left;
    c->rq.is_body_done = c->rq.framing == SL_FRAMING_NONE;
    if (c->rq.is_body_done)
        evtimer_del(&c->req_timer);
    else
        request_timer_arm(c);
    /* 501, not 405: no resource here takes CONNECT, and a 405 would owe an
     * Allow field naming methods for a resource (RFC 9110 section 15.5.6) */
    if (c->head.parser.method == HTTP_CONNECT) {
        proxy_respond_error(c, 501, "connect not supported", "CONNECT is not supported", true);
        return;
    }
    if (c->rq.framing == SL_FRAMING_LENGTH && cfg->client.max_body_size != 0
        && c->rq.body_left > cfg->client.max_body_size) {
        proxy_respond_error(c, 413, "request body too large",
                            "the request body is larger than allowed", true);
        return;
    }
    h = sl_request_header(&c->rq.req, SL_LIT("expect"));
    if (h != NULL) {
        if (!sl_http_token_eq(h->value, h->value_len, SL_LIT("100-continue"))) {
            proxy_respond_error(c, 417, "expectation not supported",
                                "only 100-continue is supported", false);
            return;
        }
        c->rq.is_expect_continue = c->rq.req.http_minor >= 1 && !c->rq.is_body_done;
    }
    if (c->rq.req.is_asterisk) {
        answer_options(c);
        return;
    }
    if (!normalize_path(c))
        return;
    c->rq.route =
        sl_route_match(cfg, c->rq.req.host, c->rq.req.host_len, c->rq.req.path, c->rq.req.path_len,
                       c->rq.req.headers, c->rq.req.nheaders);
    if (c->rq.route == NULL) {
        proxy_respond_error(c, 404, "no route", "no route matches this request", false);
        return;
    }
    proxy_gen_route(c->rq.gen, c->rq.route, &c->rq.use);
    if (!check_upgrade(c))
        return;
    request_timer_pause(c);
    c->state = C_PHASES;
    evtimer_del(&c->timer);
    /* released by on_phases_done, which may come before this returns */
    proxy_conn_hold(c);
    sl_phase_run_start(&c->phases, c->rq.use.phases, &c->rq.req, on_phases_done, c);
}

/* Returns false when it answered (error) or needs more bytes. */
static bool
read_head(struct conn *c)
{
    struct sl_proxy *px = c->px;
    const struct sl_client_conf *client = &proxy_gen_cfg(px->gen)->client;
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
            proxy_timer_set(c, client->header_timeout_ms);
        request_timer_arm(c);
        return false;
    }
    if (r != SL_HEAD_DONE) {
        const char *detail = r == 414   ? "the request target is too long"
                             : r == 431 ? "the request head is too large"
                                        : "the request is malformed";
        const char *reason = r == 414   ? "request target too long"
                             : r == 431 ? "request head too large"
                                        : "malformed request";
        proxy_respond_error(c, r, reason, detail, true);
        return false;
    }
    head_len = c->head.head_len;
    if (sl_http_check_line_ends(data, head_len) != 0) {
        proxy_respond_error(c, 400, "bad line ends",
                            "the request has bare LF line ends or folded headers", true);
        return false;
    }
    nheaders = c->head.nspans;
    c->rq.head_buf =
        sl_xmalloc(head_len + nheaders * sizeof(struct sl_header) + 16 + c->head.url_len);
    c->rq.headers = (struct sl_header *)(void *)(c->rq.head_buf
                                              + ((head_len + 15) & ~(size_t)15));
    c->rq.path_buf = (char *)(c->rq.headers + nheaders);
    evbuffer_remove(in, c->rq.head_buf, head_len);
    c->rq.bytes_in += head_len;
    c->rq.gen = proxy_gen_hold(px->gen);
    c->rq.cfg = proxy_gen_cfg(c->rq.gen);
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

    proxy_conn_hold(c);
    c->is_processing = true;
    while (!c->is_dead) {
        struct evbuffer *in = c->cs.in;
        if (c->state == C_PHASES && sl_phase_is_reading_body(&c->phases)) {
            phase_body_feed(c);
            if (c->state == C_PHASES)
                break;
            continue;
        }
        if (c->state == C_FORWARD) {
            if (!c->rq.is_body_done)
                proxy_forward_body(c);
            break;
        }
        if (c->state == C_PROXY_HEADER) {
            if (!proxy_read_proxy_header(c))
                break;
            continue;
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
    proxy_conn_unhold(c);
}

/* ---- phases ---------------------------------------------------------------- */

/*
 * The route's phases have decided (sl_phase_run_start may not have returned
 * yet). Answers carry the header lines phases attached; a request whose body
 * was not read gets Connection: close, since the unread body would be taken
 * for the next request.
 */
static void
on_phases_done(void *arg, enum sl_phase_result result, int status, const char *body,
               size_t body_len)
{
    struct conn *c = arg;

    if (result == SL_PHASE_ABANDONED || c->is_dead) {
        proxy_conn_unhold(c);
        return;
    }
    c->rq.decided_us = sl_clock_cached_us();
    if (result == SL_PHASE_ANSWERED) {
        /* a body a phase read (sl_phase_read_body) is gone from the input */
        bool must_close = c->rq.framing != SL_FRAMING_NONE && !c->rq.is_body_done;
        size_t headers_len;
        const char *headers = sl_phase_headers(&c->phases, &headers_len);

        /* the phase that answered may name a better reason when it ends */
        if (status >= 400)
            c->rq.reason = "answered by a phase";
        proxy_write_local_response(c, status, headers, headers_len, body, body_len, must_close);
        proxy_request_done(c, must_close);
    } else if (result == SL_PHASE_RESPONDED) {
        bool must_close = c->rq.framing != SL_FRAMING_NONE && !c->rq.is_body_done;
        struct sl_phase_response resp;

        if (sl_phase_take_response(&c->phases, &resp))
            proxy_write_phase_response(c, &resp, must_close);
        proxy_request_done(c, must_close);
    } else {
        proxy_upstream_start(c);
    }
    proxy_conn_unhold(c);
}

/* ---- request body ------------------------------------------------------------ */

/* The phases' share of request content (an idempotency fingerprint). */
static void
body_to_phases(struct conn *c, struct evbuffer *in, size_t n)
{
    struct evbuffer_iovec vec[16];
    struct evbuffer_ptr at;

    if (!sl_phase_chain_wants_request_body(c->rq.use.phases) && !c->rq.is_phase_body)
        return;
    evbuffer_ptr_set(in, &at, 0, EVBUFFER_PTR_SET);
    while (n > 0) {
        int nvec = evbuffer_peek(in, (ev_ssize_t)n, &at, vec, 16);
        size_t done = 0;
        for (int i = 0; i < nvec && i < 16 && done < n; i++) {
            size_t len = vec[i].iov_len < n - done ? vec[i].iov_len : n - done;
            sl_phase_request_body(&c->phases, vec[i].iov_base, len);
            done += len;
        }
        if (done == 0)
            break;
        n -= done;
        evbuffer_ptr_set(in, &at, done, EVBUFFER_PTR_ADD);
    }
}

/* Counts decoded chunked content against client.max_body_size. */
static bool
chunk_fits(struct conn *c, size_t len)
{
    const struct sl_client_conf *client = &c->rq.cfg->client;

    c->rq.body_seen += len;
    if (client->max_body_size != 0 && c->rq.body_seen > client->max_body_size) {
        c->rq.is_body_too_large = true;
        return false;
    }
    return true;
}

static void
chunk_to_phase(void *arg, const char *at, size_t len)
{
    struct conn *c = arg;

    if (chunk_fits(c, len))
        sl_phase_request_body(&c->phases, at, len);
}

/*
 * A phase reads the body for itself (sl_phase_read_body): the client's
 * body timeout and max_body_size hold as for a forwarded body; the request
 * timer runs again. False when there is no body left to read.
 */
static bool
phase_read_body(void *arg)
{
    struct conn *c = arg;

    if (c->rq.is_body_done || c->state != C_PHASES)
        return false;
    c->rq.is_phase_body = true;
    proxy_request_timer_resume(c);
    proxy_timer_set(c, c->rq.cfg->client.body_timeout_ms);
    if (c->rq.is_expect_continue && evbuffer_get_length(c->cs.in) == 0) {
        evbuffer_add(c->cs.out, SL_LIT("HTTP/1.1 100 Continue\r\n\r\n"));
        sl_stream_flush(&c->cs);
    }
    c->rq.is_expect_continue = false;
    /* From an event of the phase's own (a store's reply): read what is there. */
    if (!c->is_processing && evbuffer_get_length(c->cs.in) > 0)
        conn_process(c);
    return true;
}

/* The body a phase reads: fed to it, drained, never forwarded. */
static void
phase_body_feed(struct conn *c)
{
    struct evbuffer *in = c->cs.in;
    int status = 0;

    if (c->rq.framing == SL_FRAMING_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < c->rq.body_left ? avail : (size_t)c->rq.body_left;
        body_to_phases(c, in, n);
        evbuffer_drain(in, n);
        c->rq.body_left -= n;
        c->rq.bytes_in += n;
    } else {
        size_t consumed = 0;
        c->head.on_body = chunk_to_phase;
        c->head.body_arg = c;
        if (proxy_feed_parser(&c->head, in, &consumed) != 0 || c->rq.is_body_too_large)
            status = c->rq.is_body_too_large ? 413 : 400;
        c->rq.bytes_in += consumed;
    }
    if (status != 0) {
        c->rq.is_body_done = true; /* nothing more is read: the connection closes */
        proxy_respond_error(c, status,
                            status == 413 ? "request body too large" : "bad chunked body",
                            status == 413 ? "the request body is larger than allowed"
                                          : "the chunked request body is malformed",
                            true);
        return;
    }
    if (c->rq.framing == SL_FRAMING_LENGTH ? c->rq.body_left == 0 : c->head.is_message_complete) {
        c->rq.is_body_done = true;
        c->rq.is_phase_body = false;
        evtimer_del(&c->timer);
        evtimer_del(&c->req_timer);
        sl_phase_request_body_end(&c->phases, true);
        return;
    }
    sl_stream_rearm(&c->cs);
    proxy_timer_set(c, c->rq.cfg->client.body_timeout_ms);
}

static void
chunk_to_upstream(void *arg, const char *at, size_t len)
{
    struct conn *c = arg;
    struct evbuffer *out = c->us->out;

    if (!chunk_fits(c, len))
        return;
    sl_phase_request_body(&c->phases, at, len);
    proxy_add_chunk_size(out, len);
    evbuffer_add(out, at, len);
    evbuffer_add(out, SL_LIT("\r\n"));
}

/* The wait for the response counts from the request's last byte, as nginx's
 * proxy_read_timeout: a slow upload is the client's body_timeout's business. */
static void
body_finished(struct conn *c)
{
    c->rq.is_body_done = true;
    sl_phase_request_body_done(&c->phases);
    evtimer_del(&c->timer);
    evtimer_del(&c->req_timer);
    if (c->up != NULL && !c->rq.is_resp_started)
        proxy_up_timer_set(c);
}

/*
 * Feeds everything `in` holds to the parser (chunked or close-delimited body)
 * and drains what it took; on_body has copied the data by then. Stops at the
 * end of the message. 0, or -1 when the framing is invalid.
 */
int
proxy_feed_parser(struct sl_head *h, struct evbuffer *in, size_t *consumed)
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
    if (proxy_feed_parser(&c->head, in, &consumed) != 0)
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

void
proxy_forward_body(struct conn *c)
{
    struct evbuffer *in = c->cs.in;
    struct evbuffer *out;
    size_t avail = evbuffer_get_length(in);
    size_t from;

    if (c->up == NULL || c->rq.is_body_done || avail == 0)
        return;
    out = c->us->out;
    from = evbuffer_get_length(out);
    if (c->rq.framing == SL_FRAMING_LENGTH) {
        size_t n = avail < c->rq.body_left ? avail : (size_t)c->rq.body_left;
        body_to_phases(c, in, n);
        evbuffer_remove_buffer(in, out, n);
        c->rq.body_left -= n;
        c->rq.bytes_in += n;
        if (c->rq.body_left == 0)
            body_finished(c);
    } else {
        int status = forward_chunked(c, in);
        if (status != 0) {
            if (c->rq.is_resp_started) {
                proxy_conn_close(c, status == 413 ? "request body too large" : "bad chunked body");
                return;
            }
            c->rq.is_body_done = true; /* nothing more is read: the connection closes */
            proxy_respond_error(c, status,
                                status == 413 ? "request body too large" : "bad chunked body",
                                status == 413 ? "the request body is larger than allowed"
                                              : "the chunked request body is malformed",
                                true);
            return;
        }
    }
    proxy_retry_keep(c, from);
    sl_stream_flush(c->us);
    sl_stream_rearm(&c->cs);
    if (!c->rq.is_body_done) {
        proxy_up_timer_for_body(c);
        proxy_timer_set(c, c->rq.cfg->client.body_timeout_ms);
        if (evbuffer_get_length(out) > HIGH_WATER) {
            c->is_client_read_paused = true;
            sl_stream_set_reading(&c->cs, false);
        }
    }
}

/* ---- client side callbacks --------------------------------------------------- */

/* Response bytes went out to the client. */
static void
client_written(struct conn *c)
{
    size_t pending = evbuffer_get_length(c->cs.out);

    if (c->state == C_FLUSH_CLOSE) {
        if (pending == 0)
            proxy_conn_close(c, NULL);
    } else if (c->is_up_read_paused && c->up != NULL) {
        if (pending <= LOW_WATER) {
            c->is_up_read_paused = false;
            evtimer_del(&c->timer);
            proxy_up_timer_set(c);
            sl_stream_set_reading(c->us, true);
            if (evbuffer_get_length(c->us->in) > 0)
                proxy_forward_response(c);
        } else {
            proxy_timer_set(c, c->rq.cfg->client.idle_timeout_ms);
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
    proxy_conn_hold(c);
    if (what & SL_STREAM_ERROR) {
        proxy_conn_close(c, c->state == C_IDLE ? NULL : "client connection error");
    } else {
        if (what & SL_STREAM_WRITTEN)
            client_written(c);
        if ((what & SL_STREAM_READ) && !c->is_dead)
            conn_process(c);
        if ((what & SL_STREAM_EOF) && !c->is_dead)
            proxy_conn_close(c, c->state == C_IDLE || c->state == C_FLUSH_CLOSE ? NULL
                                                                          : "client closed");
    }
    proxy_conn_unhold(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    proxy_conn_hold(c);
    switch (c->state) {
    case C_IDLE:
        proxy_conn_close(c, NULL);
        break;
    case C_HEAD:
        proxy_respond_error(c, 408, "client header timeout",
                            "the request head did not arrive in time", true);
        break;
    case C_PROXY_HEADER:
        /* no HTTP answer: the peer has not even said who the client is */
        proxy_conn_close(c, "proxy protocol header timeout");
        break;
    case C_FORWARD:
        if (!c->rq.is_body_done && !c->rq.is_resp_started) {
            c->rq.is_body_done = true;
            proxy_respond_error(c, 408, "client body timeout",
                                "the request body did not arrive in time", true);
        } else {
            proxy_conn_close(c,
                             c->is_up_read_paused ? "client send timeout" : "client body timeout");
        }
        break;
    case C_TUNNEL:
        proxy_conn_close(c, "tunnel idle timeout");
        break;
    case C_PHASES:
        if (sl_phase_is_reading_body(&c->phases)) {
            c->rq.is_body_done = true;
            proxy_respond_error(c, 408, "client body timeout",
                                "the request body did not arrive in time", true);
            break;
        }
        proxy_conn_close(c, "flush timeout");
        break;
    default:
        proxy_conn_close(c, "flush timeout");
        break;
    }
    proxy_conn_unhold(c);
}
