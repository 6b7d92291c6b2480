/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * What a request needs to go upstream again after an attempt failed before
 * any byte of a response reached the client. sluice streams bodies and does
 * not hold them whole, so a body that has gone into a socket is gone unless
 * a copy was kept: for an idempotent request with retries on, the body is
 * copied as it goes up while it stays within RETRY_BODY_MAX (as Envoy keeps
 * a retried request's body within its buffer limit); past that, or for any
 * other method, the request can only go again when not one of its bytes was
 * written to the failed connection, and then the bytes still waiting in
 * that connection's output are taken back. When a retry is made, and on
 * which server, is the pool's business (sl_upstream_retry).
 */
#include "proxy_int.h"

#include <event2/buffer.h>

#include "sluice/config.h"
#include "sluice/upstream.h"

/* Appends the bytes of src from offset `from` on to dst, src unchanged. */
static void
copy_from(struct evbuffer *dst, struct evbuffer *src, size_t from)
{
    struct evbuffer_ptr pos;
    size_t left = evbuffer_get_length(src) - from;

    if (left == 0 || evbuffer_ptr_set(src, &pos, from, EVBUFFER_PTR_SET) != 0)
        return;
    while (left > 0) {
        struct evbuffer_iovec v;
        size_t len;

        if (evbuffer_peek(src, (ev_ssize_t)left, &pos, &v, 1) < 1)
            break;
        len = v.iov_len < left ? v.iov_len : left;
        evbuffer_add(dst, v.iov_base, len);
        left -= len;
        evbuffer_ptr_set(src, &pos, len, EVBUFFER_PTR_ADD);
    }
}

static void
drop_replay(struct conn *c)
{
    if (c->replay != NULL) {
        evbuffer_free(c->replay);
        c->replay = NULL;
    }
}

/* The first attempt: is the request idempotent, and is its body worth a copy? */
static void
first_attempt(struct conn *c)
{
    const struct sl_upstream_conf *u = &c->rq.cfg->upstreams[c->rq.route->upstream];

    c->rq.is_idempotent = sl_upstream_method_is_idempotent(c->rq.req.method,
                                                           c->rq.req.method_len);
    c->rq.is_body_kept = c->rq.framing == SL_FRAMING_NONE;
    drop_replay(c);
    /* a copy is only any use for a retry after the request went out */
    if (c->rq.is_body_kept || !c->rq.is_idempotent || u->retry.retries == 0
        || !(u->retry.on & (SL_RETRY_ON_RESET | SL_RETRY_ON_502 | SL_RETRY_ON_503)))
        return;
    if (c->rq.framing == SL_FRAMING_LENGTH && c->rq.body_left > RETRY_BODY_MAX)
        return;
    c->replay = evbuffer_new();
    c->rq.is_body_kept = true;
}

void
proxy_retry_attempt(struct conn *c)
{
    if (c->rq.attempts++ == 0) {
        first_attempt(c);
        return;
    }
    if (c->replay != NULL)
        copy_from(c->us->out, c->replay, 0);
}

void
proxy_retry_keep(struct conn *c, size_t from)
{
    size_t len = evbuffer_get_length(c->us->out) - from;

    if (c->replay == NULL || len == 0)
        return;
    if (evbuffer_get_length(c->replay) + len > RETRY_BODY_MAX) {
        /* a chunked body grew past the bound: no retry will carry it */
        drop_replay(c);
        c->rq.is_body_kept = false;
        return;
    }
    copy_from(c->replay, c->us->out, from);
}

bool
proxy_retry_resendable(struct conn *c)
{
    uint64_t written = c->us->bytes_written - c->rq.up_written_base;

    if (!sl_upstream_is_resendable(c->rq.is_idempotent, c->rq.is_body_kept, written))
        return false;
    if (written == 0 && !c->rq.is_body_kept) {
        /* all of it is still in the output: its body part, as far as it
         * came, is what the next attempt sends after its own head */
        drop_replay(c);
        c->replay = evbuffer_new();
        copy_from(c->replay, c->us->out, c->rq.up_head_len);
        c->rq.is_body_kept = true;
    }
    return true;
}

void
proxy_retry_end(struct conn *c)
{
    drop_replay(c);
}
