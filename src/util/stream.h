/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A non-blocking socket with an input and an output evbuffer, driven by one
 * edge-triggered event registered once for the socket's whole life. Unlike a
 * bufferevent it never re-registers interest (no epoll_ctl per request), never
 * asks the kernel how much is readable (no FIONREAD), and writes when its
 * owner says so (sl_stream_flush) rather than one loop iteration later.
 *
 * The owner gets one callback per dispatch with every condition that arose
 * (SL_STREAM_READ | SL_STREAM_WRITTEN | SL_STREAM_EOF | ...); the stream does
 * not touch itself after calling it, so the owner may free it from there.
 */
#ifndef SL_UTIL_STREAM_H
#define SL_UTIL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

struct evbuffer;

enum {
    SL_STREAM_READ = 1,       /* new bytes in the input buffer */
    SL_STREAM_WRITTEN = 2,    /* some output went out on a writable edge */
    SL_STREAM_EOF = 4,        /* the peer closed its side */
    SL_STREAM_ERROR = 8,      /* read, write or connect failed: see .error */
    SL_STREAM_CONNECTED = 16, /* a connect finished */
};

struct sl_stream;
typedef void sl_stream_cb(struct sl_stream *s, int what, void *arg);

struct sl_stream {
    evutil_socket_t fd;
    struct event ev;
    struct evbuffer *in;
    struct evbuffer *out;
    size_t in_max;      /* reading stops while the input holds this much */
    sl_stream_cb *cb;
    void *arg;
    int error;          /* errno of the failure reported with SL_STREAM_ERROR */
    uint64_t bytes_written; /* into the socket since init: what the peer may have seen */
    bool is_reading;    /* the owner wants input */
    bool is_read_ready; /* an edge said readable and we have not drained it */
    bool is_write_ready;
    bool is_connecting;
    bool is_eof;
    bool is_peer_closed; /* the kernel said the peer closed (EPOLLRDHUP): read to the end */
    bool is_error_pending; /* a failed flush, reported on the next dispatch */
};

/* Takes ownership of fd (made non-blocking here) and registers its event. */
void sl_stream_init(struct sl_stream *s, struct event_base *base, evutil_socket_t fd,
                    size_t in_max, sl_stream_cb *cb, void *arg);
/* Starts a non-blocking connect; 0, or -1 with errno for an immediate failure.
 * Completion is reported as SL_STREAM_CONNECTED or SL_STREAM_ERROR. */
int sl_stream_connect(struct sl_stream *s, struct event_base *base, const struct sockaddr *sa,
                      socklen_t len, sl_stream_cb *cb, void *arg);
/* Unregisters, closes the socket, frees the buffers. */
void sl_stream_fini(struct sl_stream *s);
void sl_stream_setcb(struct sl_stream *s, sl_stream_cb *cb, void *arg);
/* Turns reading off (backpressure) or on; on resumes any unread input. */
void sl_stream_set_reading(struct sl_stream *s, bool is_on);
/* After the owner consumed input: read again if the socket may hold more. */
void sl_stream_rearm(struct sl_stream *s);
/* Writes what the output holds as far as the socket takes it now. */
void sl_stream_flush(struct sl_stream *s);

#endif
