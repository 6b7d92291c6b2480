/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The upstream leg of a request: a connection from the route's pool, the
 * request head and body sent up, the response head read (1xx absorbed) and
 * its body streamed back, re-chunked when the client needs it. Reading the
 * upstream stops while the client has more than HIGH_WATER to take. The
 * upstream timeout runs between the upstream's reads (nginx's
 * proxy_read_timeout) and, while a body goes up, only while the upstream owes
 * progress (proxy_send_timeout). A broken response is never passed on as a
 * complete one: mid-body, the client connection is closed instead.
 */
#include "proxy_int.h"

#include <errno.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/metrics.h"
#include "sluice/upstream.h"
#include "reqfield.h"
#include "upstream_balance.h"
#include "util/clock.h"

/* the end of a chunked body: last-chunk, no trailers (RFC 9112 section 7.1) */
static const char last_chunk[] = "0\r\n\r\n";

static void on_upstream(void *arg, struct sl_upconn *up, int status);
static void up_stream_cb(struct sl_stream *s, int what, void *arg);
static void up_failed(struct conn *c, bool is_timeout);

void
proxy_upstream_start(struct conn *c)
{
    const struct sl_upstream_conf *conf = sl_upstream_pool_conf(c->rq.use.pool);
    const char *value;
    size_t len;

    c->state = C_UPSTREAM_WAIT;
    c->wait.has_hash = conf->balance == SL_BALANCE_HASH && conf->hash_key != NULL
                       && sl_reqfield_selector(&c->rq.req, conf->hash_key, &value, &len);
    if (c->wait.has_hash)
        c->wait.hash = sl_balance_key_hash(value, len);
    c->rq.is_upstream_asked = true;
    sl_upstream_acquire(c->rq.use.pool, &c->wait, on_upstream, c);
}

void
proxy_upstream_drop(struct conn *c, bool is_reusable)
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

/* ---- request going up -------------------------------------------------------- */

/*
 * Until the response head comes, the upstream timer also wakes every
 * CLIENT_PROBE_MS to look at the client (client_gone): a reset that arrived
 * with the request makes no event of its own (libevent 2.1 reports
 * EPOLLERR/EPOLLHUP as plain readiness, and the request's read consumed the
 * edge), and the request would otherwise hold its upstream connection until
 * the upstream timeout.
 */
void
proxy_up_timer_set(struct conn *c)
{
    uint64_t ms = c->rq.cfg->upstreams[c->rq.route->upstream].timeout_ms;

    c->rq.up_deadline_us = sl_clock_cached_us() + ms * 1000;
    if (!c->rq.is_resp_started && ms > CLIENT_PROBE_MS)
        ms = CLIENT_PROBE_MS;
    proxy_timer_add(c->px, &c->up_timer, ms);
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

/*
 * The upstream failed before a response head: a phase may answer in its
 * place (a cache's stale-if-error). True when one did.
 */
static bool
error_replaced(struct conn *c, int status)
{
    struct sl_phase_response resp;
    bool must_close = !c->rq.is_body_done;

    sl_phase_upstream_error(&c->phases, status);
    if (!sl_phase_take_response(&c->phases, &resp))
        return false;
    proxy_upstream_drop(c, false);
    proxy_write_phase_response(c, &resp, must_close);
    proxy_request_done(c, must_close);
    return true;
}

/* A phase replaced the upstream's response (its head is in c->resp): the
 * upstream's body, if any, is not read; its connection goes back only when
 * there is none. */
static void
response_replaced(struct conn *c, bool must_close)
{
    struct sl_phase_response resp;
    bool has_body = c->rq.resp_framing != SL_FRAMING_NONE
        && !(c->rq.resp_framing == SL_FRAMING_LENGTH && c->rq.resp_left == 0);
    bool is_reusable = !has_body && c->rq.is_body_done
        && http_should_keep_alive(&c->resp.parser) && evbuffer_get_length(c->us->out) == 0;

    evbuffer_drain(c->us->in, c->resp.head_len);
    c->rq.upstream_end_us = sl_clock_cached_us();
    proxy_upstream_drop(c, is_reusable);
    if (sl_phase_take_response(&c->phases, &resp))
        proxy_write_phase_response(c, &resp, must_close);
    proxy_request_done(c, must_close);
}

static void
on_upstream(void *arg, struct sl_upconn *up, int status)
{
    struct conn *c = arg;
    if (status != 0) {
        const char *detail = status == 504 ? "the upstream did not accept the connection in time"
                             : c->wait.is_all_down ? "no upstream server passes its health check"
                             : status == 503 ? "the upstream is overloaded, retry later"
                                             : "the upstream is unreachable";
        const char *reason = status == 504   ? "upstream connect timeout"
                             : c->wait.is_all_down ? "upstream all servers down"
                             : status == 503 ? "upstream overloaded"
                                             : "upstream unreachable";
        /* a stale response the cache may serve instead (stale-if-error) */
        if (error_replaced(c, status))
            return;
        proxy_respond_error(c, status, reason, detail, false);
        return;
    }
    proxy_conn_hold(c);
    c->up = up;
    c->us = sl_upconn_stream(up);
    /* copied: a server a name no longer resolves to may go before the log */
    snprintf(c->rq.upstream_addr, sizeof(c->rq.upstream_addr), "%s", sl_upconn_address(up));
    c->rq.upstream_start_us = sl_clock_cached_us();
    c->state = C_FORWARD;
    sl_head_reset(&c->resp, HTTP_RESPONSE);
    c->resp.is_skip_body = c->rq.is_head_method;
    sl_stream_setcb(c->us, up_stream_cb, c);
    c->us->in_max = HIGH_WATER;
    sl_stream_set_reading(c->us, true);
    proxy_up_timer_set(c);
    c->rq.is_resp_byte_seen = false;
    c->rq.up_written_base = c->us->bytes_written;
    proxy_write_request_head(c, c->us->out);
    c->rq.up_head_len = evbuffer_get_length(c->us->out);
    proxy_retry_attempt(c);
    /* decided at the first attempt only: a retry owes the client nothing new */
    if (c->rq.is_expect_continue && c->rq.attempts == 1 && evbuffer_get_length(c->cs.in) == 0) {
        evbuffer_add(c->cs.out, SL_LIT("HTTP/1.1 100 Continue\r\n\r\n"));
        sl_stream_flush(&c->cs);
    }
    if (!c->rq.is_body_done) {
        proxy_timer_set(c, c->rq.cfg->client.body_timeout_ms);
        proxy_request_timer_resume(c);
        proxy_forward_body(c);
    }
    if (!c->is_dead && c->up != NULL) {
        sl_stream_flush(c->us);
        if (!c->rq.is_body_done)
            proxy_up_timer_for_body(c);
    }
    proxy_conn_unhold(c);
}

/*
 * The attempt on c->up failed for `reason` (an SL_RETRY_ON_* bit) before
 * anything of a response went to the client: the request goes up again when
 * it is safe (proxy_retry_resendable) and the pool grants a retry. True
 * when it does; else c->up is still held and the caller answers.
 */
static bool
retry(struct conn *c, unsigned reason)
{
    if (c->rq.is_resp_started || !proxy_retry_resendable(c)
        || !sl_upstream_retry(c->up, &c->wait, reason, on_upstream, c))
        return false;
    evtimer_del(&c->up_timer);
    evtimer_del(&c->timer); /* on_upstream sets the body timeout again */
    c->up = NULL;
    c->us = NULL;
    c->is_up_read_paused = false;
    c->state = C_UPSTREAM_WAIT;
    return true;
}

/*
 * While the body streams, the upstream timeout runs only while the upstream
 * owes progress: bytes it was handed and has not taken (nginx's
 * proxy_send_timeout). Waiting for the client is body_timeout's business.
 */
void
proxy_up_timer_for_body(struct conn *c)
{
    if (c->rq.is_resp_started)
        return; /* the response's own reads keep the timer */
    if (evbuffer_get_length(c->us->out) > 0)
        proxy_up_timer_set(c);
    else
        evtimer_del(&c->up_timer);
}

/* Request bytes went out to the upstream: take more of the body if we paused. */
static void
up_written(struct conn *c)
{
    if (!c->rq.is_body_done)
        proxy_up_timer_for_body(c);
    if (c->is_client_read_paused && !c->rq.is_body_done
        && evbuffer_get_length(c->us->out) <= LOW_WATER) {
        c->is_client_read_paused = false;
        sl_stream_set_reading(&c->cs, true);
        proxy_forward_body(c);
    }
}

/* ---- response coming down ---------------------------------------------------- */

/* The response is over: give the upstream connection back, finish the request. */
static void
response_done(struct conn *c)
{
    bool is_reusable = c->rq.is_body_done && c->rq.resp_framing != SL_FRAMING_EOF
        && http_should_keep_alive(&c->resp.parser)
        && evbuffer_get_length(c->us->out) == 0;
    bool must_close = !c->rq.is_body_done;

    c->rq.upstream_end_us = sl_clock_cached_us();
    proxy_upstream_drop(c, is_reusable);
    c->is_up_read_paused = false;
    proxy_request_done(c, must_close);
}

static void
chunk_to_client(void *arg, const char *at, size_t len)
{
    struct conn *c = arg;
    struct evbuffer *out = c->cs.out;
    size_t before = evbuffer_get_length(out);

    if (sl_phase_chain_wants_body(c->rq.use.phases))
        sl_phase_response_body(&c->phases, at, len);
    if (c->rq.is_resp_chunked)
        proxy_add_chunk_size(out, len);
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
    if (proxy_feed_parser(&c->resp, in, &consumed) != 0)
        return -1;
    if (is_eof && !c->resp.is_message_complete && sl_head_feed_body(&c->resp, NULL, 0) < 0)
        return -1;
    return 0;
}

/* Shows the first n bytes of `in` to the phases that look at bodies, piece
 * by piece, without moving them. */
static void
show_body(struct conn *c, struct evbuffer *in, size_t n)
{
    struct evbuffer_ptr pos;

    evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
    while (n > 0) {
        struct evbuffer_iovec v;
        size_t len;

        if (evbuffer_peek(in, (ev_ssize_t)n, &pos, &v, 1) < 1)
            break;
        len = v.iov_len < n ? v.iov_len : n;
        sl_phase_response_body(&c->phases, v.iov_base, len);
        n -= len;
        evbuffer_ptr_set(in, &pos, len, EVBUFFER_PTR_ADD);
    }
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

void
proxy_forward_response(struct conn *c)
{
    struct evbuffer *in = c->us->in;
    struct evbuffer *out = c->cs.out;

    if (c->rq.resp_framing == SL_FRAMING_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < c->rq.resp_left ? avail : (size_t)c->rq.resp_left;
        if (sl_phase_chain_wants_body(c->rq.use.phases))
            show_body(c, in, n);
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
            proxy_conn_close(c, "upstream sent a malformed body");
            return;
        }
        if (c->resp.is_message_complete) {
            if (c->rq.is_resp_chunked) {
                evbuffer_add(out, last_chunk, sizeof(last_chunk) - 1);
                c->rq.bytes_out += sizeof(last_chunk) - 1;
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
        proxy_timer_set(c, c->rq.cfg->client.idle_timeout_ms);
    }
}

/*
 * A 101 is only good as the answer to the WebSocket handshake we passed on,
 * switching to websocket (RFC 9110 section 15.2.2: the server must name the
 * protocol in Upgrade); anything else is a broken upstream, 502. Otherwise
 * the head goes to the client and the connection becomes a tunnel.
 */
static void
start_tunnel(struct conn *c, const char *data)
{
    struct sl_header headers[MAX_RESPONSE_HEADERS];
    size_t n = sl_head_headers(&c->resp, data, headers);

    if (!c->rq.is_upgrade
        || !sl_http_has_token(headers, n, SL_LIT("upgrade"), SL_LIT("websocket"))) {
        proxy_respond_error(c, 502, "upstream switched protocols",
                            "the upstream switched protocols unasked", false);
        return;
    }
    c->rq.first_byte_us = sl_clock_cached_us();
    sl_metrics_upstream_response(c->px->mw, c->rq.use.upstream_slot, 101,
                                 c->rq.first_byte_us - c->rq.upstream_start_us);
    c->rq.resp_framing = SL_FRAMING_NONE;
    c->rq.is_keepalive = false;
    (void)proxy_write_response_head(c, data, false);
    evbuffer_drain(c->us->in, c->resp.head_len);
    proxy_tunnel_start(c);
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
            proxy_respond_error(c, 502, "upstream sent a malformed response",
                                "the upstream sent a malformed response", false);
            return false;
        }
        status = c->resp.parser.status_code;
        if (status == 101) {
            start_tunnel(c, data);
            return false;
        }
        if (status / 100 == 1) {
            /* Other interim responses are ours to absorb: 100 Continue was
             * already answered by us. */
            evbuffer_drain(in, c->resp.head_len);
            sl_head_reset(&c->resp, HTTP_RESPONSE);
            c->resp.is_skip_body = c->rq.is_head_method;
            continue;
        }
        c->rq.first_byte_us = sl_clock_cached_us();
        sl_upstream_report(c->up, (int)status);
        sl_metrics_upstream_response(c->px->mw,
                                     c->rq.use.upstream_slot, (int)status,
                                     c->rq.first_byte_us - c->rq.upstream_start_us);
        /* opt-in (retry_on): the upstream's own 502 or 503 is dropped for
         * another server's answer; its connection goes with it */
        if ((status == 502 || status == 503)
            && retry(c, status == 502 ? SL_RETRY_ON_502 : SL_RETRY_ON_503))
            return false;
        c->rq.resp_framing = sl_http_response_framing(&c->resp, c->rq.is_head_method);
        c->rq.resp_left =
            c->rq.resp_framing == SL_FRAMING_LENGTH ? c->resp.parser.content_length : 0;
        must_close = !c->rq.is_body_done || !c->rq.is_keepalive || c->px->is_draining
            || (c->rq.resp_framing == SL_FRAMING_EOF && c->rq.req.http_minor == 0);
        if (must_close)
            c->rq.is_keepalive = false;
        if (!proxy_write_response_head(c, data, must_close)) {
            response_replaced(c, must_close);
            return false;
        }
        evbuffer_drain(in, c->resp.head_len);
        return true;
    }
}

static void
up_read(struct conn *c)
{
    c->rq.is_resp_byte_seen = true;
    if (c->rq.is_resp_started || read_response_head(c)) {
        if (!c->is_dead && c->up != NULL)
            proxy_forward_response(c);
    }
    /* Still waiting for more of the response: the timeout starts over. */
    if (!c->is_dead && c->up != NULL && !c->is_up_read_paused && c->state != C_TUNNEL)
        proxy_up_timer_set(c);
}

/* The upstream closed, failed, or timed out (is_timeout). */
static void
up_failed(struct conn *c, bool is_timeout)
{
    if (!is_timeout && c->rq.is_resp_started && c->rq.resp_framing == SL_FRAMING_EOF) {
        if (forward_decoded(c, c->us->in, true) == 0 && c->resp.is_message_complete) {
            if (c->rq.is_resp_chunked) {
                evbuffer_add(c->cs.out, last_chunk, sizeof(last_chunk) - 1);
                c->rq.bytes_out += sizeof(last_chunk) - 1;
            }
            response_done(c);
            return;
        }
    }
    c->rq.upstream_end_us = sl_clock_cached_us();
    sl_metrics_upstream_error(c->px->mw, c->rq.use.upstream_slot,
                              is_timeout ? SL_METRICS_UPSTREAM_RESPONSE_TIMEOUT
                                         : SL_METRICS_UPSTREAM_BROKEN);
    if (!c->rq.is_resp_started) {
        /* Not after a timeout: the upstream may still be working on it. */
        if (!is_timeout && !c->rq.is_resp_byte_seen && retry(c, SL_RETRY_ON_RESET))
            return;
        if (error_replaced(c, is_timeout ? 504 : 502))
            return;
        proxy_upstream_drop(c, false);
        proxy_respond_error(c, is_timeout ? 504 : 502,
                            is_timeout ? "upstream timed out" : "upstream closed without answering",
                            is_timeout ? "the upstream did not answer in time"
                                       : "the upstream closed the connection without answering",
                            false);
    } else {
        /* Mid-body: the client must see a broken response, never a complete one. */
        const char *reason = is_timeout ? "upstream timed out mid-response"
                                        : "upstream closed mid-response";
        c->rq.status = c->rq.status ? c->rq.status : 502;
        proxy_request_finish(c, reason);
        proxy_upstream_drop(c, false);
        proxy_conn_flush_close(c);
    }
}

static void
up_stream_cb(struct sl_stream *s, int what, void *arg)
{
    struct conn *c = arg;

    (void)s;
    proxy_conn_hold(c);
    if ((what & SL_STREAM_WRITTEN) && c->up != NULL)
        up_written(c);
    if ((what & SL_STREAM_READ) && !c->is_dead && c->up != NULL)
        up_read(c);
    if (c->state == C_TUNNEL) {
        /* the 101 came in this read: proxy_tunnel_start took any close;
         * a failure ends the tunnel at once */
        if ((what & SL_STREAM_ERROR) && !c->is_dead)
            proxy_conn_close(c, "tunnel: upstream connection error");
    } else if ((what & (SL_STREAM_EOF | SL_STREAM_ERROR)) && !c->is_dead && c->up != NULL) {
        up_failed(c, false);
    }
    proxy_conn_unhold(c);
}

void
proxy_up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    proxy_conn_hold(c);
    if (c->up != NULL) {
        uint64_t now = sl_clock_now_us();
        uint64_t left_ms =
            now < c->rq.up_deadline_us ? (c->rq.up_deadline_us - now + 999) / 1000 : 0;

        if (left_ms == 0) {
            up_failed(c, true);
        } else if (client_gone(c)) {
            proxy_conn_close(c, "client closed");
        } else if (!c->rq.is_resp_started && left_ms > CLIENT_PROBE_MS) {
            proxy_timer_add(c->px, &c->up_timer, CLIENT_PROBE_MS);
        } else {
            /* an odd remainder: a plain timer, not a common-timeout queue of its own */
            struct timeval tv = sl_timeval_from_ms(left_ms);
            evtimer_add(&c->up_timer, &tv);
        }
    }
    proxy_conn_unhold(c);
}
