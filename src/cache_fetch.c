/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Background refreshes (src/cache_fetch.h): acquire an upstream connection,
 * send the head the cache phase made, read the response head (1xx
 * skipped), then a 304 refreshes the stale entry and a storable response
 * is read whole (up to max_object) and stored. Anything else, a failure or
 * the upstream timeout, just ends the fetch: the stale entry stays until
 * the next request finds it and tries again. The connection goes back to
 * the pool only after a complete response that allows it.
 */
#include "cache_fetch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cache_http.h"
#include "sluice/cache.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/upstream.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/stream.h"
#include "util/timeval.h"

#define FETCH_HEAD_MAX (64u * 1024u)
#define FETCH_HEADERS_MAX 256u
#define FETCH_IN_MAX (256u * 1024u)

struct sl_cache_fetch {
    struct sl_cache_fetch *next, *prev;
    struct sl_cache_fetch **list;
    struct sl_cache_fetch_args a;
    struct sl_upstream_wait wait;
    struct sl_upconn *up;
    struct sl_stream *us;
    struct sl_head resp;
    struct event *timer;
    struct sl_cache_obj *building;
    enum sl_framing framing;
    uint64_t left;
    bool is_head_done;
    bool is_too_large;
};

static void
fetch_end(struct sl_cache_fetch *f, bool is_reusable)
{
    if (f->wait.is_active)
        sl_upstream_cancel(&f->wait);
    if (f->up != NULL)
        sl_upstream_release(f->up, is_reusable);
    event_free(f->timer);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        *f->list = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    sl_cache_release(f->a.store, f->a.claim_key, f->a.claim_key_len);
    free(f->a.claim_key);
    free(f->a.store_key);
    free(f->a.head);
    sl_cache_obj_unref(f->a.stale);
    sl_cache_obj_unref(f->building);
    sl_head_fini(&f->resp);
    free(f);
}

static void
store(struct sl_cache_fetch *f, struct sl_cache_obj *obj)
{
    const char *key = f->a.store_key ? f->a.store_key : f->a.claim_key;
    size_t len = f->a.store_key ? f->a.store_key_len : f->a.claim_key_len;

    sl_cache_insert(f->a.store, key, len, obj);
}

static void
on_body(void *arg, const char *at, size_t len)
{
    struct sl_cache_fetch *f = arg;

    if (f->building != NULL && !sl_cache_obj_append(f->building, at, len, f->a.cc->max_object))
        f->is_too_large = true;
}

/* The head is in; false when the fetch is over (ended here). */
static bool
on_head(struct sl_cache_fetch *f, const char *data)
{
    struct sl_header headers[FETCH_HEADERS_MAX];
    size_t n = sl_head_headers(&f->resp, data, headers);
    int status = f->resp.parser.status_code;
    bool is_star, has_vary;
    size_t vlen;
    char *vary;

    f->framing = sl_http_response_framing(&f->resp, false);
    f->left = f->framing == SL_FRAMING_LENGTH ? f->resp.parser.content_length : 0;
    if (status == 304) {
        struct sl_cache_obj *obj = sl_cache_obj_refreshed(f->a.stale, f->a.cc, headers, n,
                                                          (int64_t)time(NULL), sl_clock_now_us());
        store(f, obj);
        sl_cache_obj_unref(obj);
        sl_cache_count(f->a.store, SL_CACHE_EV_REVALIDATED);
        return true; /* read to its end, for the connection's sake */
    }
    vary = sl_cache_vary_names(headers, n, &vlen, &is_star);
    has_vary = vary != NULL;
    free(vary);
    /* a Vary the entry did not have would need a marker and a variant
     * key this fetch cannot make: left to the next request */
    if (is_star || (has_vary && f->a.store_key == NULL)
        || !sl_cache_is_storable(f->a.cc, status, headers, n, false))
        return true;
    f->building = sl_cache_obj_build(f->a.cc, status, headers, n, (int64_t)time(NULL),
                                     sl_clock_now_us());
    return true;
}

static bool
read_head(struct sl_cache_fetch *f)
{
    struct evbuffer *in = f->us->in;

    while (!f->is_head_done) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < FETCH_HEAD_MAX ? len : FETCH_HEAD_MAX;
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        int r;

        if (n == 0)
            return true;
        r = sl_head_feed(&f->resp, data, n);
        if (r == SL_HEAD_MORE)
            return true;
        if (r != SL_HEAD_DONE)
            return false;
        if (f->resp.parser.status_code / 100 == 1) {
            evbuffer_drain(in, f->resp.head_len);
            sl_head_reset(&f->resp, HTTP_RESPONSE);
            continue;
        }
        f->is_head_done = true;
        if (!on_head(f, data))
            return false;
        evbuffer_drain(in, f->resp.head_len);
    }
    return true;
}

/* Body bytes; true when the response is complete. */
static bool
read_body(struct sl_cache_fetch *f, bool *is_broken)
{
    struct evbuffer *in = f->us->in;

    if (f->framing == SL_FRAMING_NONE)
        return true;
    if (f->framing == SL_FRAMING_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < f->left ? avail : (size_t)f->left;
        if (n > 0)
            on_body(f, (const char *)evbuffer_pullup(in, (ev_ssize_t)n), n);
        evbuffer_drain(in, n);
        f->left -= n;
        return f->left == 0;
    }
    f->resp.on_body = on_body;
    f->resp.body_arg = f;
    while (!f->resp.is_message_complete && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_contiguous_space(in);
        ssize_t taken = sl_head_feed_body(&f->resp, (const char *)evbuffer_pullup(in,
                                                                 (ev_ssize_t)n), n);
        if (taken <= 0) {
            *is_broken = taken < 0;
            break;
        }
        evbuffer_drain(in, (size_t)taken);
    }
    return f->resp.is_message_complete;
}

static void
complete(struct sl_cache_fetch *f)
{
    bool is_reusable = f->framing != SL_FRAMING_EOF && http_should_keep_alive(&f->resp.parser)
        && evbuffer_get_length(f->us->in) == 0;

    if (f->building != NULL && !f->is_too_large)
        store(f, f->building);
    fetch_end(f, is_reusable);
}

static void
on_stream(struct sl_stream *s, int what, void *arg)
{
    struct sl_cache_fetch *f = arg;
    bool is_broken = false;

    (void)s;
    if ((what & SL_STREAM_READ) && !read_head(f)) {
        fetch_end(f, false);
        return;
    }
    if ((what & SL_STREAM_READ) && f->is_head_done) {
        if (read_body(f, &is_broken)) {
            complete(f);
            return;
        }
        if (is_broken || f->is_too_large) {
            fetch_end(f, false);
            return;
        }
    }
    if (what & (SL_STREAM_EOF | SL_STREAM_ERROR)) {
        /* a body framed by the end of the connection is complete at EOF */
        if (f->is_head_done && f->framing == SL_FRAMING_EOF && !(what & SL_STREAM_ERROR)) {
            complete(f);
            return;
        }
        fetch_end(f, false);
        return;
    }
    sl_stream_rearm(f->us);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fetch_end(arg, false);
}

static void
on_conn(void *arg, struct sl_upconn *up, int status)
{
    struct sl_cache_fetch *f = arg;

    if (status != 0) {
        fetch_end(f, false);
        return;
    }
    f->up = up;
    f->us = sl_upconn_stream(up);
    sl_stream_setcb(f->us, on_stream, f);
    f->us->in_max = FETCH_IN_MAX;
    sl_stream_set_reading(f->us, true);
    evbuffer_add(f->us->out, f->a.head, f->a.head_len);
    sl_stream_flush(f->us);
}

void
sl_cache_fetch_start(struct sl_cache_fetch **list, const struct sl_cache_fetch_args *args)
{
    struct sl_cache_fetch *f = sl_xcalloc(1, sizeof(*f));
    struct timeval tv = sl_timeval_from_ms(args->timeout_ms);

    f->a = *args;
    f->list = list;
    f->next = *list;
    if (*list != NULL)
        (*list)->prev = f;
    *list = f;
    sl_head_init(&f->resp, HTTP_RESPONSE, FETCH_HEAD_MAX, FETCH_HEADERS_MAX);
    f->timer = evtimer_new(args->base, on_timeout, f);
    evtimer_add(f->timer, &tv);
    /* may call on_conn (and so end the fetch) before it returns */
    sl_upstream_acquire(args->pool, &f->wait, on_conn, f);
}

void
sl_cache_fetch_abort_all(struct sl_cache_fetch **list)
{
    while (*list != NULL)
        fetch_end(*list, false);
}
