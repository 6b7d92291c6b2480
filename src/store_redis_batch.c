/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis store's script calls (see store_redis.c for the batching and
 * failure rules): batches of checks sent as one EVALSHA, written in RESP by
 * hand; their replies checked for shape and handed to each check's
 * callback; a NOSCRIPT reply answered by loading the script again and
 * resending the call once; calls timing out become orphans. The link's
 * reply reader builds the replies from a pool of elements kept here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "sluice/log.h"
#include "store_redis_int.h"
#include "store_redis_nodes.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/text.h"
#include "util/timeval.h"

static void on_batch_timeout(evutil_socket_t fd, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);
static int send_batch(struct redis_store *rs, struct batch *b);

/* A reply element and the pool it goes back to: freeObject is
 * handed the element only. */
struct reply_node {
    struct reply_pool *pool;
    struct reply_node *next_free;
    redisReply reply;
};

/* Outlives the store when it must: a store freed from inside a reply's
 * callback is destroyed before the link hands that reply back. */
struct reply_pool {
    struct reply_node *free;
    size_t nfree;
    size_t nlive;       /* elements the reader or a callback holds */
    bool is_detached;   /* the store is gone: the last element back frees it */
};

/* ---- RESP ------------------------------------------------------------------------ */

/* "<type><n>\r\n": an array or bulk-string header (RESP). 0, or -1 when
 * out is at its maximum (then part of it may have been written). */
static int
resp_count(struct sl_buf *out, char type, size_t n)
{
    char head[1 + SL_U64_DEC_MAX + 2];
    size_t len = sl_u64_dec(n, head + 1);

    head[0] = type;
    memcpy(head + 1 + len, "\r\n", 2);
    return sl_buf_append(out, head, len + 3);
}

int
sl_redis_resp_arg(struct sl_buf *out, const char *arg, size_t len)
{
    if (resp_count(out, '$', len) == -1 || sl_buf_append(out, arg, len) == -1)
        return -1;
    return sl_buf_append(out, "\r\n", 2);
}

/* Decimal text of v plus a NUL; returns the length without the NUL. */
size_t
sl_redis_fmt_i64(char *out, int64_t v)
{
    char tmp[21];
    size_t n = 0, len;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[n++] = '-';
    len = n;
    for (size_t i = 0; i < len; i++)
        out[i] = tmp[len - 1 - i];
    out[len] = '\0';
    return len;
}

/* ---- batches --------------------------------------------------------------------- */

struct batch *
sl_redis_batch_get(struct redis_store *rs)
{
    struct batch *b = rs->free_batches;

    if (b != NULL) {
        rs->free_batches = b->next;
    } else {
        b = sl_xcalloc(1, sizeof(*b));
        b->rs = rs;
        sl_buf_init(&b->keys, BATCH_BUF_MAX);
        sl_buf_init(&b->args, BATCH_BUF_MAX);
        b->timer = evtimer_new(rs->evbase, on_batch_timeout, b);
        if (b->timer == NULL)
            sl_fatalx("redis store: cannot create a timer");
    }
    b->next = NULL;
    b->state = BATCH_QUEUED;
    b->is_retried = false;
    b->is_orphan = false;
    b->is_reset = false;
    b->is_declared = false;
    b->is_answering = false;
    b->is_asking = false;
    b->redirects = 0;
    b->nchecks = b->nkeys = b->nargs = 0;
    return b;
}

void
sl_redis_batch_release(struct redis_store *rs, struct batch *b)
{
    sl_buf_reset(&b->keys, KEEP_BUF_BYTES);
    sl_buf_reset(&b->args, KEEP_BUF_BYTES);
    b->next = rs->free_batches;
    rs->free_batches = b;
}

static void
batch_destroy(struct batch *b)
{
    event_free(b->timer);
    free(b->checks);
    sl_buf_fini(&b->keys);
    sl_buf_fini(&b->args);
    free(b);
}

/* A reset is full at once: a check joining it would go out as a DEL; a
 * declared batch too: its one check's keys are its only keys. */
bool
sl_redis_batch_is_full(const struct batch *b)
{
    return b->is_reset || b->is_declared || b->nchecks >= BATCH_CHECKS
           || b->keys.len >= BATCH_BYTES;
}

void
sl_redis_count_status(struct redis_store *rs, enum sl_store_status status, uint64_t n)
{
    sl_redis_bump(&rs->checks, n);
    sl_redis_node_error(rs->node, (int)status, n);
    if (status == SL_STORE_TIMEOUT)
        sl_redis_bump(&rs->errors_timeout, n);
    else if (status == SL_STORE_CONNECTION)
        sl_redis_bump(&rs->errors_connection, n);
    else if (status == SL_STORE_REPLY)
        sl_redis_bump(&rs->errors_reply, n);
}

static void
answer_error(const struct pending *p, enum sl_store_status status)
{
    if (p->lease_cb != NULL)
        p->lease_cb(p->arg, status, 0, NULL);
    else
        p->cb(p->arg, status, false, NULL, 0);
}

/*
 * A batch's checks answered one by one: their callbacks may free the store
 * (or start something that fails every pending check), so the batch is on
 * the store's answering stack meanwhile, and sl_redis_fail_all answers the
 * rest of it at once. Loop with `while (answering_next(b, i))`.
 */
static void
answering_begin(struct redis_store *rs, struct batch *b)
{
    b->is_answering = true;
    b->answered = 0;
    b->answering_next = rs->answering;
    rs->answering = b;
}

/* Whether check i is still to be answered here; it counts as answered. */
static bool
answering_next(struct batch *b, size_t i)
{
    if (!b->is_answering || i >= b->nchecks)
        return false;
    b->answered = i + 1;
    return true;
}

static void
answering_end(struct redis_store *rs, struct batch *b)
{
    if (!b->is_answering)
        return;
    for (struct batch **p = &rs->answering; *p != NULL; p = &(*p)->answering_next) {
        if (*p == b) {
            *p = b->answering_next;
            break;
        }
    }
    b->is_answering = false;
}

/* Answers every check of b with an error; b is then DONE. */
void
sl_redis_batch_fail(struct redis_store *rs, struct batch *b, enum sl_store_status status)
{
    size_t n = 0;

    b->state = BATCH_DONE;
    answering_begin(rs, b);
    for (size_t i = 0; answering_next(b, i); i++, n++)
        answer_error(&b->checks[i], status);
    answering_end(rs, b);
    sl_redis_count_status(rs, status, n); /* sl_redis_fail_all counted the rest */
}

static void
inflight_remove(struct redis_store *rs, struct batch *b)
{
    for (struct batch **p = &rs->inflight; *p != NULL; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            rs->ninflight--;
            return;
        }
    }
}

/* The queue's first batch, taken off the queue. */
static struct batch *
queue_pop(struct redis_store *rs)
{
    struct batch *b = rs->queue_head;

    rs->queue_head = b->next;
    if (rs->queue_head == NULL)
        rs->queue_tail = NULL;
    rs->nqueued -= b->nchecks;
    rs->queued_bytes -= b->keys.len;
    return b;
}

void
sl_redis_fail_queue(struct redis_store *rs, enum sl_store_status status)
{
    while (rs->queue_head != NULL) {
        struct batch *b = queue_pop(rs);

        sl_redis_batch_fail(rs, b, status);
        sl_redis_batch_release(rs, b);
    }
}

/*
 * Fails every check not answered yet: calls out (the link still owes their
 * callbacks, which will only release them) and the queue.
 */
void
sl_redis_fail_all(struct redis_store *rs, enum sl_store_status status)
{
    struct batch *b;

    while ((b = rs->answering) != NULL) {
        size_t first = b->answered;

        answering_end(rs, b);
        sl_redis_count_status(rs, status, b->nchecks - first);
        for (size_t i = first; i < b->nchecks; i++)
            answer_error(&b->checks[i], status);
    }
    while ((b = rs->inflight) != NULL) {
        rs->inflight = b->next;
        rs->ninflight--;
        evtimer_del(b->timer);
        sl_redis_batch_fail(rs, b, status);
    }
    sl_redis_fail_queue(rs, status);
}

/* ---- reply elements --------------------------------------------------------------- */

/*
 * hiredis builds each reply element with calloc and frees them one by one:
 * four allocations per check. These object functions take elements from a
 * free list of the store's instead. the link hands freeObject the top reply
 * only, once its callback has returned (or a half-read one when the
 * connection goes), and the elements go back with it.
 */
static redisReply *
reply_new(const redisReadTask *task, int type)
{
    struct reply_pool *pool = task->privdata;
    struct reply_node *node = pool->free;

    if (node != NULL) {
        pool->free = node->next_free;
        pool->nfree--;
    } else {
        node = sl_xmalloc(sizeof(*node));
        node->pool = pool;
    }
    pool->nlive++;
    node->reply = (redisReply){ .type = type };
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &node->reply;
    }
    return &node->reply;
}

static void *
reply_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = reply_new(task, task->type);

    r->str = sl_xmalloc(len + 1);
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static void *
reply_array(const redisReadTask *task, int elements)
{
    redisReply *r = reply_new(task, REDIS_REPLY_ARRAY);

    if (elements > 0)
        r->element = sl_xcalloc((size_t)elements, sizeof(*r->element));
    r->elements = elements > 0 ? (size_t)elements : 0;
    return r;
}

static void *
reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r = reply_new(task, REDIS_REPLY_INTEGER);

    r->integer = value;
    return r;
}

static void *
reply_nil(const redisReadTask *task)
{
    return reply_new(task, REDIS_REPLY_NIL);
}

static void
reply_free(void *obj)
{
    redisReply *r = obj;
    struct reply_node *node;
    struct reply_pool *pool;

    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ARRAY) {
        /* a half-read array has NULL slots */
        for (size_t i = 0; i < r->elements; i++)
            reply_free(r->element[i]);
        free(r->element);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
               || r->type == REDIS_REPLY_ERROR) {
        free(r->str);
    }
    node = (struct reply_node *)(void *)((char *)r - offsetof(struct reply_node, reply));
    pool = node->pool;
    pool->nlive--;
    if (pool->is_detached) {
        free(node);
        if (pool->nlive == 0)
            free(pool);
        return;
    }
    if (pool->nfree >= REPLY_POOL_MAX) {
        free(node);
        return;
    }
    node->next_free = pool->free;
    pool->free = node;
    pool->nfree++;
}

redisReplyObjectFunctions sl_redis_reply_functions = {
    reply_string, reply_array, reply_integer, reply_nil, reply_free,
};

static void
reply_pool_drain(struct reply_pool *pool)
{
    struct reply_node *node;

    while ((node = pool->free) != NULL) {
        pool->free = node->next_free;
        free(node);
    }
    pool->nfree = 0;
}

/* The store's end: the pool goes now, or with the last element the link
 * still holds. */
static void
reply_pool_release(struct reply_pool *pool)
{
    if (pool == NULL)
        return;
    reply_pool_drain(pool);
    if (pool->nlive == 0)
        free(pool);
    else
        pool->is_detached = true;
}

void
sl_redis_batch_init(struct redis_store *rs)
{
    rs->flush_ev = event_new(rs->evbase, -1, 0, on_flush, rs);
    if (rs->flush_ev == NULL)
        sl_fatalx("redis store: cannot create events");
    rs->replies = sl_xcalloc(1, sizeof(*rs->replies));
    sl_buf_init(&rs->cmd, CMD_BUF_MAX);
}

void
sl_redis_batch_fini(struct redis_store *rs)
{
    struct batch *b;

    while ((b = rs->free_batches) != NULL) {
        rs->free_batches = b->next;
        batch_destroy(b);
    }
    event_free(rs->flush_ev);
    sl_buf_fini(&rs->cmd);
    free(rs->results);
    reply_pool_release(rs->replies);
}

/* ---- replies --------------------------------------------------------------------- */

/* After a NOSCRIPT: only errors matter (the resent call shows them too). */
static void
on_script_reloaded(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    sl_redis_enter(rs);
    rs->nowned--;
    sl_redis_handshake_reply_ok(rs, link, r, "SCRIPT LOAD");
    sl_redis_leave(rs);
}

/* The script's answer for a check on a key this master does not serve. */
#define SCRIPT_NOT_SERVED (-9)

/* Checks the reply's shape against the batch before anyone is answered. */
static bool
reply_fits(const struct batch *b, const redisReply *reply)
{
    size_t want = 0;

    if (b->is_reset)
        return reply->type == REDIS_REPLY_INTEGER;
    if (reply->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < b->nchecks; i++)
        want += 1 + 3 * b->checks[i].nbuckets;
    if (reply->elements != want)
        return false;
    for (size_t i = 0; i < want; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    }
    return true;
}

/* Answers the checks of b from a well-formed reply. */
static void
deliver(struct redis_store *rs, struct batch *b, const redisReply *reply)
{
    size_t r = 0, nanswered = 0;

    b->state = BATCH_DONE;
    if (b->is_reset) {
        sl_redis_bump(&rs->checks, 1);
        b->checks[0].cb(b->checks[0].arg, SL_STORE_OK, true, NULL, 0);
        return;
    }
    answering_begin(rs, b);
    for (size_t i = 0; answering_next(b, i); i++) {
        const struct pending *p = &b->checks[i];
        long long first = reply->element[r++]->integer;
        bool is_admitted = first == 1;

        if (first == SCRIPT_NOT_SERVED && rs->cluster != NULL) {
            r += 3 * p->nbuckets;
            sl_redis_check_resend(rs, b, i);
            continue;
        }
        nanswered++;
        if (p->nbuckets > rs->results_cap) {
            rs->results_cap = p->nbuckets;
            rs->results = sl_xrealloc(rs->results, p->nbuckets * sizeof(*rs->results));
        }
        for (size_t j = 0; j < p->nbuckets; j++) {
            long long retry = reply->element[r + 1]->integer;

            rs->results[j] = (struct sl_store_result){
                .remaining = (double)reply->element[r]->integer / 1000.0,
                .retry_ms = retry < 0 ? SL_STORE_RETRY_NEVER : (uint64_t)retry,
                .reset_ms = (uint64_t)(reply->element[r + 2]->integer < 0
                                           ? 0 : reply->element[r + 2]->integer),
            };
            r += 3;
        }
        if (p->lease_cb != NULL)
            p->lease_cb(p->arg, SL_STORE_OK, first < 0 ? 0 : first, rs->results);
        else
            p->cb(p->arg, SL_STORE_OK, is_admitted, rs->results, p->nbuckets);
    }
    answering_end(rs, b);
    sl_redis_bump(&rs->checks, nanswered);
}

/* Reply errors are logged once per run of them. A run ends with a good reply
 * REPLY_ERRORS_QUIET_US after its last error, not with any good reply: a
 * cluster node that is failing answers CLUSTERDOWN to some calls and fits
 * others, and would log nearly every error. */
#define REPLY_ERRORS_QUIET_US (1000u * 1000u)

static bool
reply_error_is_news(struct redis_store *rs)
{
    bool is_news = !rs->is_logged_reply_error;

    rs->is_logged_reply_error = true;
    rs->reply_error_us = sl_clock_now_us();
    return is_news;
}

static void
reply_answered(struct redis_store *rs)
{
    if (rs->is_logged_reply_error
        && sl_clock_now_us() - rs->reply_error_us >= REPLY_ERRORS_QUIET_US)
        rs->is_logged_reply_error = false;
}

/* A cluster node's MOVED or ASK: b's checks go to the node named, or fail
 * once they were redirected NODE_REDIRECTS_MAX times. False when the reply
 * is another error. */
static bool
follow_redirect(struct redis_store *rs, struct batch *b, const redisReply *reply)
{
    bool is_ask;
    struct redis_store *to = sl_redis_cluster_redirect(rs->cluster, reply->str, &is_ask);

    if (to == NULL)
        return false;
    sl_redis_node_redirect(rs->node, is_ask);
    if (b->redirects >= NODE_REDIRECTS_MAX) {
        if (reply_error_is_news(rs))
            sl_log_warnx("redis %s: still redirected after %u redirects: %s", rs->name,
                         b->redirects, reply->str);
        sl_redis_batch_fail(rs, b, SL_STORE_REPLY);
        return true;
    }
    sl_redis_batch_move(rs, b, to, is_ask);
    return true;
}

/* A cluster master's error replies that are not failures: READONLY (a
 * master turned replica by a failover: each check goes again with its keys
 * declared, to follow the MOVED, and the map is read again), MOVED and ASK.
 * True when b's checks went on (the caller releases b). */
static bool
cluster_error_reply(struct redis_store *rs, struct batch *b, const redisReply *reply)
{
    if (!b->is_declared && strncmp(reply->str, "READONLY", 8) == 0) {
        b->state = BATCH_DONE;
        answering_begin(rs, b);
        for (size_t i = 0; answering_next(b, i); i++)
            sl_redis_check_resend(rs, b, i);
        answering_end(rs, b);
        sl_redis_cluster_node_down(rs->cluster);
        return true;
    }
    if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
        /* the checks fail; the cluster may be electing a new master */
        sl_redis_cluster_node_down(rs->cluster);
        return false;
    }
    return follow_redirect(rs, b, reply);
}

static void
on_eval_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    struct batch *b = privdata;
    struct redis_store *rs = b->rs;
    const redisReply *reply = r;

    sl_redis_enter(rs);
    rs->nowned--;
    if (reply != NULL && link == rs->link)
        sl_redis_node_call(rs->node, sl_clock_now_us() - b->sent_us);
    if (b->state == BATCH_DONE) {
        /* answered already: it timed out, or conn_down failed it */
        if (b->is_orphan && link == rs->link && reply != NULL)
            sl_redis_orphan_answered(rs);
        sl_redis_batch_release(rs, b);
        goto out;
    }
    evtimer_del(b->timer);
    if (reply == NULL) {
        /* the link is going away: fails b with everything else */
        if (link == rs->link) {
            sl_redis_conn_down(rs, SL_STORE_CONNECTION, "connection lost");
        } else {
            inflight_remove(rs, b);
            sl_redis_batch_fail(rs, b, SL_STORE_CONNECTION);
        }
        sl_redis_batch_release(rs, b);
        goto out;
    }
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0
        && !b->is_retried && link == rs->link) {
        const char *load[3] = { "SCRIPT", "LOAD", rs->script };
        size_t load_lens[3] = { 6, 4, rs->script_len };

        /* Redis lost the script (restart, SCRIPT FLUSH): load it and send the
         * same call again behind it, on the same connection */
        b->is_retried = true;
        sl_redis_bump(&rs->noscript_reloads, 1);
        if (sl_redis_link_send_argv(link, 3, load, load_lens, on_script_reloaded, rs) == 0)
            rs->nowned++;
        inflight_remove(rs, b);
        if (send_batch(rs, b) == -1) {
            sl_redis_batch_fail(rs, b, SL_STORE_CONNECTION);
            sl_redis_batch_release(rs, b);
        }
        goto out;
    }
    if (rs->sentinel != NULL && reply->type == REDIS_REPLY_ERROR && link == rs->link
        && strstr(reply->str, "READONLY") != NULL) {
        /* the master was demoted: b fails with the rest, the sentinels are asked again */
        sl_redis_conn_down(rs, SL_STORE_CONNECTION, "READONLY: the master is a replica now");
        sl_redis_batch_release(rs, b);
        goto out;
    }
    inflight_remove(rs, b);
    if (rs->cluster != NULL && reply->type == REDIS_REPLY_ERROR
        && cluster_error_reply(rs, b, reply)) {
        sl_redis_batch_release(rs, b);
        sl_redis_flush(rs);
        goto out;
    }
    if (reply_fits(b, reply)) {
        reply_answered(rs);
        deliver(rs, b, reply);
    } else {
        if (reply_error_is_news(rs))
            sl_log_warnx("redis %s: %s failed: %s", rs->name, b->is_reset ? "DEL" : "script call",
                         reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        sl_redis_batch_fail(rs, b, SL_STORE_REPLY);
    }
    sl_redis_batch_release(rs, b);
    sl_redis_flush(rs);
out:
    sl_redis_leave(rs);
}

/* ---- sending --------------------------------------------------------------------- */

#define ASKING "*1\r\n$6\r\nASKING\r\n"

/* An error here shows in the call behind it too. */
static void
on_asking_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    (void)link;
    (void)r;
    sl_redis_enter(rs);
    rs->nowned--;
    sl_redis_leave(rs);
}

/* b's command into rs->cmd, RESP by hand: EVALSHA sha numkeys key...
 * nchecks args..., or DEL key for a reset. -1 past CMD_BUF_MAX, which keys
 * and args within theirs cannot reach; checked anyway. */
static int
format_call(struct redis_store *rs, const struct batch *b)
{
    size_t argc = 4 + b->nkeys + b->nargs;
    char numkeys[21], nchecks[21];
    size_t numkeys_len = sl_redis_fmt_i64(numkeys, (int64_t)b->nkeys);
    size_t nchecks_len = sl_redis_fmt_i64(nchecks, (int64_t)b->nchecks);

    sl_buf_truncate(&rs->cmd, 0);
    if (b->is_reset) {
        if (resp_count(&rs->cmd, '*', 2) == -1 || sl_redis_resp_arg(&rs->cmd, "DEL", 3) == -1
            || sl_buf_append(&rs->cmd, b->keys.data, b->keys.len) == -1)
            return -1;
        return 0;
    }
    if (rs->cluster != NULL && !b->is_declared) {
        /* keys of many slots: none declared, all in ARGV (see the script) */
        if (resp_count(&rs->cmd, '*', argc + 2) == -1
            || sl_redis_resp_arg(&rs->cmd, "EVALSHA", 7) == -1
            || sl_redis_resp_arg(&rs->cmd, rs->sha, 40) == -1
            || sl_redis_resp_arg(&rs->cmd, "0", 1) == -1
            || sl_redis_resp_arg(&rs->cmd, "keys", 4) == -1
            || sl_redis_resp_arg(&rs->cmd, numkeys, numkeys_len) == -1)
            return -1;
    } else if (resp_count(&rs->cmd, '*', argc) == -1
               || sl_redis_resp_arg(&rs->cmd, "EVALSHA", 7) == -1
               || sl_redis_resp_arg(&rs->cmd, rs->sha, 40) == -1
               || sl_redis_resp_arg(&rs->cmd, numkeys, numkeys_len) == -1) {
        return -1;
    }
    if (sl_buf_append(&rs->cmd, b->keys.data, b->keys.len) == -1
        || sl_redis_resp_arg(&rs->cmd, nchecks, nchecks_len) == -1
        || sl_buf_append(&rs->cmd, b->args.data, b->args.len) == -1)
        return -1;
    return 0;
}

/* Sends b; 0, or -1 when the link refuses (it is going away). b
 * joins the calls in flight. */
static int
send_batch(struct redis_store *rs, struct batch *b)
{
    struct timeval tv;

    /* RESP by hand: hiredis's own formatting runs sdscatfmt per argument,
     * a visible share of each decision. */
    if (format_call(rs, b) == -1)
        return -1;
    if (b->is_asking && sl_redis_link_send(rs->link, ASKING, sizeof(ASKING) - 1,
                                           on_asking_reply, rs) == 0)
        rs->nowned++;
    if (sl_redis_link_send(rs->link, rs->cmd.data, rs->cmd.len, on_eval_reply, b) == -1)
        return -1;
    b->sent_us = sl_clock_now_us();
    rs->nowned++;
    b->state = BATCH_SENT;
    b->next = rs->inflight;
    rs->inflight = b;
    rs->ninflight++;
    sl_redis_bump(&rs->calls, 1);
    if (rs->timeout_ms > 0) {
        tv = sl_timeval_from_ms(rs->timeout_ms);
        evtimer_add(b->timer, &tv);
    }
    return 0;
}

/* Sends what may go now: everything queued when nothing is out, else only
 * full batches, up to INFLIGHT_MAX calls out. */
void
sl_redis_flush(struct redis_store *rs)
{
    while (sl_redis_get_state(rs) == CONN_UP && rs->queue_head != NULL
           && rs->ninflight < INFLIGHT_MAX) {
        struct batch *b;

        if (rs->ninflight > 0 && !sl_redis_batch_is_full(rs->queue_head))
            break;
        b = queue_pop(rs);
        if (send_batch(rs, b) == -1) {
            sl_redis_batch_fail(rs, b, SL_STORE_CONNECTION);
            sl_redis_batch_release(rs, b);
        }
    }
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    rs->is_flush_scheduled = false;
    sl_redis_flush(rs);
    sl_redis_leave(rs);
}

static void
on_batch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct batch *b = arg;
    struct redis_store *rs = b->rs;
    char why[96];

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    if (b->state != BATCH_SENT)
        goto out;
    inflight_remove(rs, b);
    b->is_orphan = true;
    sl_redis_orphan_added(rs);
    sl_redis_batch_fail(rs, b, SL_STORE_TIMEOUT);
    if (rs->norphans > ORPHANS_MAX) {
        snprintf(why, sizeof(why), "%u calls not answered within %llu ms", rs->norphans,
                 (unsigned long long)rs->timeout_ms);
        sl_redis_conn_down(rs, SL_STORE_TIMEOUT, why);
    } else {
        sl_redis_flush(rs); /* the next call goes out behind the late one */
    }
out:
    sl_redis_leave(rs);
}
