/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Edge-triggered socket I/O into evbuffers. With EV_ET an edge is reported
 * once, so every readable edge is read until the kernel has no more (a short
 * read means drained) or the input is full, and a write that stops short
 * waits for the next writable edge.
 *
 * A short read does not show a close queued behind the data: data and FIN
 * that arrive together make one edge, and no other comes. EV_CLOSED
 * (EPOLLRDHUP) says the FIN is there; reading then goes on to the end.
 */
#include "util/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "util/clock.h"

#define READ_CHUNK 16384

static void stream_event_cb(evutil_socket_t fd, short events, void *arg);

static void
register_event(struct sl_stream *s, struct event_base *base)
{
    event_assign(&s->ev, base, s->fd, EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET,
                 stream_event_cb, s);
    event_add(&s->ev, NULL);
}

void
sl_stream_init(struct sl_stream *s, struct event_base *base, evutil_socket_t fd, size_t in_max,
               sl_stream_cb *cb, void *arg)
{
    s->fd = fd;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->in_max = in_max;
    s->cb = cb;
    s->arg = arg;
    s->error = 0;
    s->bytes_written = 0;
    s->is_reading = true;
    s->is_read_ready = false;
    s->is_write_ready = true;
    s->is_connecting = false;
    s->is_eof = false;
    s->is_peer_closed = false;
    s->is_error_pending = false;
    evutil_make_socket_nonblocking(fd);
    register_event(s, base);
}

int
sl_stream_connect(struct sl_stream *s, struct event_base *base, const struct sockaddr *sa,
                  socklen_t len, sl_stream_cb *cb, void *arg)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    sl_stream_init(s, base, fd, 0, cb, arg);
    s->is_connecting = true;
    s->is_write_ready = false;
    return 0;
}

void
sl_stream_fini(struct sl_stream *s)
{
    event_del(&s->ev);
    evutil_closesocket(s->fd);
    evbuffer_free(s->in);
    evbuffer_free(s->out);
    s->fd = -1;
    s->in = s->out = NULL;
}

void
sl_stream_setcb(struct sl_stream *s, sl_stream_cb *cb, void *arg)
{
    s->cb = cb;
    s->arg = arg;
}

static void
wake(struct sl_stream *s, short events)
{
    event_active(&s->ev, events, 0);
}

void
sl_stream_set_reading(struct sl_stream *s, bool is_on)
{
    bool was_on = s->is_reading;

    s->is_reading = is_on;
    if (is_on && !was_on && (s->is_read_ready || s->is_eof))
        wake(s, EV_READ);
}

void
sl_stream_rearm(struct sl_stream *s)
{
    if (s->is_reading && s->is_read_ready
        && (s->in_max == 0 || evbuffer_get_length(s->in) < s->in_max))
        wake(s, EV_READ);
}

/* Reads until the kernel is drained or the input is full. */
static int
do_read(struct sl_stream *s)
{
    int what = 0;

    while (s->is_read_ready) {
        struct evbuffer_iovec vec[2];
        size_t have = evbuffer_get_length(s->in);
        size_t want = READ_CHUNK;
        int nvec;
        ssize_t n;

        if (s->in_max != 0) {
            if (have >= s->in_max)
                break; /* still ready: sl_stream_rearm resumes once consumed */
            if (want > s->in_max - have)
                want = s->in_max - have;
        }
        nvec = evbuffer_reserve_space(s->in, (ev_ssize_t)want, vec, 2);
        if (nvec <= 0)
            break;
        if (vec[0].iov_len > want)
            vec[0].iov_len = want;
        if (nvec == 2) {
            if (vec[0].iov_len >= want)
                nvec = 1;
            else if (vec[1].iov_len > want - vec[0].iov_len)
                vec[1].iov_len = want - vec[0].iov_len;
        }
        /* recv for one piece: the kernel's readv path first copies and
         * checks the iovec array, a visible share of a small request */
        n = nvec == 1 ? recv(s->fd, vec[0].iov_base, vec[0].iov_len, 0)
                      : readv(s->fd, (struct iovec *)vec, nvec);
        if (n < 0) {
            evbuffer_commit_space(s->in, vec, 0);
            if (errno == EINTR)
                continue;
            s->is_read_ready = false;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                s->error = errno;
                what |= SL_STREAM_ERROR;
            }
            break;
        }
        if (n == 0) {
            evbuffer_commit_space(s->in, vec, 0);
            s->is_read_ready = false;
            s->is_eof = true;
            what |= SL_STREAM_EOF;
            break;
        }
        if ((size_t)n <= vec[0].iov_len) {
            vec[0].iov_len = (size_t)n;
            nvec = 1;
        } else {
            vec[1].iov_len = (size_t)n - vec[0].iov_len;
        }
        evbuffer_commit_space(s->in, vec, nvec);
        what |= SL_STREAM_READ;
        if ((size_t)n < want && !s->is_peer_closed)
            s->is_read_ready = false; /* a short read on a stream socket: drained */
    }
    return what;
}

/* One send(2) when the output is one piece (a head and a small body built
 * together), writev through the evbuffer otherwise. */
static ssize_t
write_some(struct sl_stream *s)
{
    struct evbuffer_iovec vec;
    ssize_t n;

    /* peek fills one extent and reports 1 even when more chains follow: the
     * output is one piece only if that extent holds all of it */
    if (evbuffer_peek(s->out, -1, NULL, &vec, 1) < 1
        || vec.iov_len != evbuffer_get_length(s->out))
        return evbuffer_write(s->out, s->fd);
    n = send(s->fd, vec.iov_base, vec.iov_len, MSG_NOSIGNAL);
    if (n > 0)
        evbuffer_drain(s->out, (size_t)n);
    return n;
}

/* 0, or SL_STREAM_ERROR with s->error set. */
static int
do_write(struct sl_stream *s)
{
    while (s->is_write_ready && evbuffer_get_length(s->out) > 0) {
        ssize_t n = write_some(s);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->is_write_ready = false;
                break;
            }
            s->error = errno;
            return SL_STREAM_ERROR;
        }
        s->bytes_written += (uint64_t)n;
    }
    return 0;
}

void
sl_stream_flush(struct sl_stream *s)
{
    if (s->is_connecting || s->is_error_pending)
        return;
    if (do_write(s) != 0) {
        /* Reported from the loop, never from inside the owner's own call. */
        s->is_error_pending = true;
        wake(s, EV_WRITE);
    }
}

static int
finish_connect(struct sl_stream *s)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == EINPROGRESS)
        return 0;
    s->is_connecting = false;
    if (err != 0) {
        s->error = err;
        return SL_STREAM_ERROR;
    }
    s->is_write_ready = true;
    return SL_STREAM_CONNECTED;
}

static void
dispatch(struct sl_stream *s, short events)
{
    int what = 0;

    if (s->is_error_pending) {
        s->is_error_pending = false;
        s->cb(s, SL_STREAM_ERROR, s->arg);
        return;
    }
    if (s->is_connecting) {
        if (!(events & (EV_WRITE | EV_READ)))
            return;
        what = finish_connect(s);
        if (what == 0 || (what & SL_STREAM_ERROR)) {
            if (what != 0)
                s->cb(s, what, s->arg);
            return;
        }
    }
    if (events & EV_CLOSED)
        s->is_peer_closed = true;
    if (events & (EV_READ | EV_CLOSED)) {
        if (!s->is_eof)
            s->is_read_ready = true;
        if (s->is_reading)
            what |= do_read(s);
    }
    if (events & EV_WRITE) {
        size_t before = evbuffer_get_length(s->out);
        s->is_write_ready = true;
        what |= do_write(s);
        if (before > evbuffer_get_length(s->out))
            what |= SL_STREAM_WRITTEN;
    }
    if (what != 0)
        s->cb(s, what, s->arg);
}

/* Everything the event leads to (parsing, the limiter, the answer) takes
 * its timestamps from one clock read. */
static void
stream_event_cb(evutil_socket_t fd, short events, void *arg)
{
    uint64_t saved = sl_clock_enter();

    (void)fd;
    dispatch(arg, events);
    sl_clock_leave(saved);
}
