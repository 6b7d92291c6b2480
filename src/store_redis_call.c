/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * One command of a caller's own over the redis store's connection (the
 * idempotency phase's script), beside the store's batched checks: same
 * connection, same timeout. A command that times out is answered (NULL) at
 * once; its late reply is dropped when it comes, so a slow Redis never holds
 * a request longer than store.timeout.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "store_redis_int.h"
#include "util/alloc.h"
#include "util/timeval.h"

struct call {
    struct event *timer;
    sl_store_reply_cb *cb;
    void *arg; /* NULL once answered */
    struct redis_cluster *cluster;
};

static void
call_answer(struct call *call, const redisReply *reply)
{
    sl_store_reply_cb *cb = call->cb;
    void *arg = call->arg;

    if (cb == NULL)
        return;
    call->cb = NULL;
    call->arg = NULL;
    evtimer_del(call->timer);
    cb(arg, reply);
}

static void
call_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call_answer(arg, NULL);
}

/* The link owes every command exactly one callback: the call goes here. */
static void
call_reply(struct sl_redis_link *link, void *reply, void *privdata)
{
    struct call *call = privdata;
    const redisReply *r = reply;
    bool is_ask;

    (void)link;
    /* the caller sees the MOVED as a failure; the map is asked again for
     * the next command (an ASK needs no change) */
    if (call->cluster != NULL && r != NULL && r->type == REDIS_REPLY_ERROR)
        (void)sl_redis_cluster_redirect(call->cluster, r->str, &is_ask);
    call_answer(call, reply);
    event_free(call->timer);
    free(call);
}

bool
sl_store_is_redis(const struct sl_store *store)
{
    return sl_redis_is_store(store);
}

int
sl_store_redis_call(struct sl_store *store, const char *key, size_t key_len, int argc,
                    const char **argv, const size_t *lens, sl_store_reply_cb *cb, void *arg)
{
    struct redis_store *rs = sl_redis_store_for_key(store, key, key_len);
    struct call *call;

    if (rs == NULL || sl_redis_get_state(rs) != CONN_UP || rs->link == NULL)
        return -1;
    call = sl_xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->arg = arg;
    call->cluster = rs->cluster;
    call->timer = evtimer_new(rs->evbase, call_timeout, call);
    if (sl_redis_link_send_argv(rs->link, argc, argv, lens, call_reply, call) != 0) {
        event_free(call->timer);
        free(call);
        return -1;
    }
    if (rs->timeout_ms != 0) {
        struct timeval tv = sl_timeval_from_ms(rs->timeout_ms);
        evtimer_add(call->timer, &tv);
    }
    return 0;
}
