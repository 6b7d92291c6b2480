/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upgraded connections: after the upstream's 101 to a WebSocket handshake,
 * sluice no longer speaks HTTP on the connection. Bytes are moved as they
 * come, client to upstream and back, without looking at them (the frames
 * are the two ends' business, as with nginx's proxy of upgraded
 * connections).
 *
 * - Backpressure: each side's reading stops while the other side's output
 *   holds more than HIGH_WATER and starts again at LOW_WATER, so a tunnel
 *   holds at most about 2 x HIGH_WATER per direction whatever the peers do.
 * - Half-close: a side that closes its sending side (FIN) has it passed on
 *   once what it sent has been written (shutdown(SHUT_WR)); the other
 *   direction goes on until that side closes too. Either side failing (a
 *   reset, a write error) ends both at once.
 * - The upstream's tunnel_idle_timeout closes a tunnel with no byte either
 *   way for that long; the upstream timeout and the client timeouts no
 *   longer apply.
 *
 * The upstream connection is never given back to the keep-alive pool; it
 * stays counted against the upstream's max_inflight until the tunnel ends.
 * Every end goes through proxy_conn_close, which logs the request once (its
 * access-log line is written when the tunnel ends, with the bytes of both
 * directions).
 */
#include "proxy_int.h"

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/metrics.h"

static void tunnel_client_cb(struct sl_stream *s, int what, void *arg);
static void tunnel_up_cb(struct sl_stream *s, int what, void *arg);

/* One direction of the tunnel, seen from the side that reads. */
struct dir {
    struct sl_stream *from, *to;
    bool *is_paused; /* reading `from` is off: `to` has too much to write */
    bool *is_eof;    /* `from` closed its sending side */
    bool *is_shut;   /* ... and we passed that on to `to` */
    uint64_t *count;
};

static struct dir
dir_up(struct conn *c)
{
    return (struct dir){.from = &c->cs,
                        .to = c->us,
                        .is_paused = &c->is_client_read_paused,
                        .is_eof = &c->is_tun_client_eof,
                        .is_shut = &c->is_tun_up_shut,
                        .count = &c->rq.bytes_in};
}

static struct dir
dir_down(struct conn *c)
{
    return (struct dir){.from = c->us,
                        .to = &c->cs,
                        .is_paused = &c->is_up_read_paused,
                        .is_eof = &c->is_tun_up_eof,
                        .is_shut = &c->is_tun_client_shut,
                        .count = &c->rq.bytes_out};
}

static uint64_t
idle_timeout_ms(const struct conn *c)
{
    return c->rq.cfg->upstreams[c->rq.route->upstream].tunnel_idle_timeout_ms;
}

/* Both directions are over: each side closed, and we told the other. */
static bool
is_finished(const struct conn *c)
{
    return c->is_tun_client_shut && c->is_tun_up_shut;
}

/* Passes a FIN on once everything `from` sent before it has been written. */
static void
pass_eof(struct dir d)
{
    if (*d.is_eof && !*d.is_shut && evbuffer_get_length(d.to->out) == 0) {
        shutdown(d.to->fd, SHUT_WR);
        *d.is_shut = true;
    }
}

/* Moves what `from` has read to `to`; pauses `from` past the high-water mark. */
static void
relay(struct conn *c, struct dir d)
{
    size_t n = evbuffer_get_length(d.from->in);

    if (n > 0) {
        evbuffer_remove_buffer(d.from->in, d.to->out, n);
        *d.count += n;
        sl_stream_flush(d.to);
        proxy_timer_set(c, idle_timeout_ms(c));
    }
    if (evbuffer_get_length(d.to->out) > HIGH_WATER) {
        if (!*d.is_paused) {
            *d.is_paused = true;
            sl_stream_set_reading(d.from, false);
        }
    } else {
        sl_stream_rearm(d.from);
    }
    pass_eof(d);
}

/* `to` wrote some of its output: take more from `from` once it is low. */
static void
written(struct conn *c, struct dir d)
{
    if (*d.is_paused && evbuffer_get_length(d.to->out) <= LOW_WATER) {
        *d.is_paused = false;
        sl_stream_set_reading(d.from, true);
        relay(c, d);
    }
    pass_eof(d);
    proxy_timer_set(c, idle_timeout_ms(c));
}

void
proxy_tunnel_start(struct conn *c)
{
    c->state = C_TUNNEL;
    c->rq.is_tunnel = true;
    sl_metrics_tunnel(c->px->mw, 1);
    proxy_request_count(c);
    evtimer_del(&c->up_timer);
    evtimer_del(&c->req_timer);
    /* a close that came in the same read as the 101 was seen by the stream */
    c->is_tun_client_eof = c->cs.is_eof;
    c->is_tun_up_eof = c->us->is_eof;
    if (c->is_tun_up_eof)
        c->rq.reason = "tunnel closed by upstream";
    c->is_tun_client_shut = c->is_tun_up_shut = false;
    c->is_client_read_paused = c->is_up_read_paused = false;
    c->cs.in_max = HIGH_WATER;
    c->us->in_max = HIGH_WATER;
    sl_stream_setcb(&c->cs, tunnel_client_cb, c);
    sl_stream_setcb(c->us, tunnel_up_cb, c);
    sl_stream_set_reading(&c->cs, true);
    sl_stream_set_reading(c->us, true);
    proxy_timer_set(c, idle_timeout_ms(c));
    sl_stream_flush(&c->cs); /* the 101 */
    /* bytes that came with or right behind the heads, both ways */
    relay(c, dir_up(c));
    relay(c, dir_down(c));
}

void
proxy_tunnel_end(struct conn *c)
{
    if (!c->rq.is_tunnel)
        return;
    c->rq.is_tunnel = false;
    sl_metrics_tunnel(c->px->mw, -1);
}

/* One side's stream reported `what`; `d` reads from it, `back` writes to it.
 * The access log's reason names the side that closed first. */
static void
side_event(struct conn *c, int what, struct dir d, struct dir back, const char *error_reason,
           const char *eof_reason)
{
    proxy_conn_hold(c);
    if (what & SL_STREAM_ERROR) {
        proxy_conn_close(c, error_reason);
    } else {
        if (what & SL_STREAM_WRITTEN)
            written(c, back);
        if ((what & SL_STREAM_EOF) && !*d.is_eof) {
            *d.is_eof = true;
            if (c->rq.reason == NULL)
                c->rq.reason = eof_reason;
        }
        if (what & (SL_STREAM_READ | SL_STREAM_EOF))
            relay(c, d);
        if (is_finished(c))
            proxy_conn_close(c, c->rq.reason);
    }
    proxy_conn_unhold(c);
}

static void
tunnel_client_cb(struct sl_stream *s, int what, void *arg)
{
    struct conn *c = arg;

    (void)s;
    if (c->is_dead || c->up == NULL)
        return;
    side_event(c, what, dir_up(c), dir_down(c), "tunnel: client connection error",
               "tunnel closed by client");
}

static void
tunnel_up_cb(struct sl_stream *s, int what, void *arg)
{
    struct conn *c = arg;

    (void)s;
    if (c->is_dead || c->up == NULL)
        return;
    side_event(c, what, dir_down(c), dir_up(c), "tunnel: upstream connection error",
               "tunnel closed by upstream");
}
