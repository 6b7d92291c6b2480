/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The redis backend: one hiredis async connection per worker, on the
 * worker's event_base through hiredis' libevent adapter, running
 * lua/token_bucket.lua with EVALSHA.
 *
 * Batching. A script call carries many checks (one per request). When the
 * connection is idle, a check is sent at the end of the current loop pass
 * (so every request parsed in that pass shares the call, and none waits for
 * anything but the pass); while a call is out, new checks queue and all of
 * them go in the next call when it comes back. Calls are capped at
 * BATCH_CHECKS checks; full calls may be pipelined up to INFLIGHT_MAX deep.
 * Redis does the fixed part of a call (EVALSHA lookup, TIME, reply) once per
 * batch instead of once per request.
 *
 * Failures. A call not answered within timeout_ms fails its own checks with
 * SL_STORE_TIMEOUT and becomes an orphan: the connection stays, and the late
 * reply is dropped when it comes. Dropping the connection on every late call
 * (as h2o does) turns a Redis that is slow under load into a reconnection
 * storm from every worker, each reconnect adding a handshake and a SCRIPT
 * LOAD to the overloaded server. A connection that owes more than
 * ORPHANS_MAX late replies, or answers nothing for STALL_MIN_MS (at least ten
 * timeouts) while it owes one, is dropped through conn_down(), the one way
 * down: a lost or refused connection fails every pending check with
 * SL_STORE_CONNECTION, and so are new checks while it is down (fail fast,
 * nothing queues). Reconnection is automatic: at once after
 * losing a working connection, then after 100 ms doubling to 5 s. Every
 * connection is set up with AUTH, SELECT and SCRIPT LOAD pipelined before
 * anything else; checks made while it connects wait at most timeout_ms.
 * A NOSCRIPT reply (Redis restarted, SCRIPT FLUSH) loads the script again
 * and resends the same call, once, so no request notices.
 *
 * Lifetime. hiredis calls every command callback exactly once (with a NULL
 * reply when the context goes away) and frees replies after the callback
 * returns. Its 0.14 API must not see redisAsyncFree() from the connect and
 * disconnect callbacks, so those only detach. The store counts the callbacks
 * hiredis still owes it and the entry points on the stack, and is freed only
 * when both are zero: sl_store_free() from inside a store callback is safe.
 *
 * The script is embedded in the binary at build time (see the .incbin below
 * and cmake/embed.cmake); Redis computes its SHA1 on SCRIPT LOAD.
 */
#include "sluice/store.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "store_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/redis_url.h"
#include "util/text.h"

#define BATCH_CHECKS 128            /* checks per script call */
#define BATCH_BYTES (256u << 10)    /* key bytes per script call */
#define INFLIGHT_MAX 4              /* calls out at once (only full ones beyond the first) */
#define QUEUE_CHECKS 8192           /* checks waiting to be sent; past it: SL_STORE_TIMEOUT */
#define QUEUE_BYTES (16u << 20)     /* key bytes waiting to be sent */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MIN_MS 1000 /* a connection attempt gets at least this long */
#define PARAM_CACHE 8
#define KEEP_BUF_BYTES (64u << 10)  /* larger batch buffers are freed after use */
#define REPLY_POOL_MAX 4096         /* spare reply elements kept (4 per check in a batch) */
#define ORPHANS_MAX 8               /* late replies owed before the connection is dropped */
#define STALL_MIN_MS 1000           /* silence, while owing a late reply, before it is */

/* ---- the script, embedded at build time ------------------------------------------ */

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

/* The assembler reads the file when this file is compiled; cmake/embed.cmake
 * makes the object depend on it so an edited script rebuilds it. */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl sl_token_bucket_lua\n"
        ".hidden sl_token_bucket_lua\n"
        ".type sl_token_bucket_lua, @object\n"
        "sl_token_bucket_lua:\n"
        ".incbin \"" SL_SOURCE_DIR "/lua/token_bucket.lua\"\n"
        ".byte 0\n"
        ".size sl_token_bucket_lua, . - sl_token_bucket_lua\n"
        ".popsection\n");
extern const char sl_token_bucket_lua[] __attribute__((visibility("hidden")));

/* ---- types ----------------------------------------------------------------------- */

struct redis_url {
    char *host;     /* NULL for a unix socket */
    int port;
    char *path;     /* unix socket path */
    char *user;     /* NULL: AUTH with the password only */
    char *password; /* NULL: no AUTH */
    long db;
};

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

/* One check in a batch. */
struct pending {
    sl_store_cb *cb;
    void *arg;
    size_t nbuckets;
};

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

enum batch_state {
    BATCH_QUEUED,   /* filling or waiting to be sent */
    BATCH_SENT,     /* hiredis owes us its callback */
    BATCH_DONE,     /* its checks are answered; hiredis may still owe the callback */
};

struct batch {
    struct redis_store *rs;
    struct batch *next;
    struct event *timer;
    enum batch_state state;
    bool is_retried;         /* NOSCRIPT retry done */
    bool is_orphan;          /* timed out: its checks are answered, its reply is dropped */
    struct pending *checks;
    size_t nchecks;
    size_t checks_cap;
    /* Both already RESP bulk strings: sending copies each in one piece. */
    struct buf keys;         /* the KEYS */
    size_t nkeys;
    struct buf args;         /* the ARGV after the check count */
    size_t nargs;
};

/* A reply element and the pool it goes back to: hiredis's freeObject is
 * handed the element only. */
struct reply_node {
    struct reply_pool *pool;
    struct reply_node *next_free;
    redisReply reply;
};

/* Outlives the store when it must: a store freed from inside a reply's
 * callback is destroyed before hiredis hands that reply back. */
struct reply_pool {
    struct reply_node *free;
    size_t nfree;
    size_t nlive;       /* elements hiredis holds */
    bool is_detached;   /* the store is gone: the last element back frees it */
};

struct param_cache {
    double rate, burst, cost;
    uint64_t per_ms;
    bool is_valid;
    size_t len;
    char resp[5 * 28];       /* q p tu burst cost, each "$<n>\r\n<digits>\r\n" */
};

struct redis_store {
    struct sl_store base;
    struct event_base *evbase;
    struct redis_url url;
    char *name;              /* for log lines: address, never credentials */
    uint64_t timeout_ms;     /* 0: no timeout */
    const char *script;
    size_t script_len;
    char sha[41];
    bool has_sha;

    redisAsyncContext *ac;
    _Atomic int state;       /* enum conn_state; read by is_up from any thread */
    bool is_accepting;       /* CONNECTING: still within timeout_ms, checks may queue */
    bool was_ever_up;
    bool is_logged_down;     /* a "down" line was logged: log the recovery */
    bool is_logged_reply_error;
    uint64_t backoff_ms;
    struct event *reconnect_timer;
    struct event *stall_timer; /* runs while late replies are owed */
    unsigned norphans;         /* late replies the current connection owes */
    struct event *connect_timer;
    struct event *queue_timer;
    struct event *flush_ev;
    bool is_flush_scheduled;

    struct batch *queue_head, *queue_tail;
    size_t nqueued;          /* checks */
    size_t queued_bytes;
    struct batch *inflight;  /* sent, not answered; unordered */
    size_t ninflight;
    struct batch *free_batches;

    unsigned depth;          /* our entry points on the stack */
    unsigned nowned;         /* hiredis callbacks still owed to us */
    bool is_freeing;

    struct param_cache params[PARAM_CACHE];
    unsigned param_next;
    struct buf cmd;          /* the EVALSHA being sent, RESP-encoded by us */
    struct sl_store_result *results;
    size_t results_cap;
    struct reply_pool *replies;

    atomic_uint_fast64_t checks, calls, errors_timeout, errors_connection, errors_reply;
    atomic_uint_fast64_t connects, reconnects, noscript_reloads;
};

static void flush(struct redis_store *rs);
static void connect_now(struct redis_store *rs);

/* ---- small helpers --------------------------------------------------------------- */

/* Counters have one writer (the worker): a relaxed load and store is enough. */
static void
bump(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ---- event loop adapter -------------------------------------------------- */

/*
 * hiredis's own libevent adapter re-registers its events with the kernel for
 * every command (a one-shot read event, a write event added and deleted):
 * two epoll_ctl per round trip. This one keeps a persistent read event for
 * the connection's life and writes from a deferred callback in the same loop
 * pass; a real write event is registered only while the socket is full or
 * the connect is pending.
 */
struct redis_events {
    redisAsyncContext *ac;
    struct event rev;  /* persistent, level-triggered */
    struct event wev;  /* only while a write could not finish, or connecting */
    struct event kick; /* "write now", without asking the kernel */
    bool is_reading;
    bool is_wev_added;
    bool is_writing;   /* inside redisAsyncHandleWrite */
    bool *freed;       /* set when cleanup runs inside our own write call */
};

static void
events_write(evutil_socket_t fd, short what, void *arg)
{
    struct redis_events *e = arg;
    bool freed = false;

    (void)fd;
    (void)what;
    e->is_writing = true;
    e->freed = &freed;
    redisAsyncHandleWrite(e->ac);
    if (freed)
        return; /* the context and e went away in there */
    e->is_writing = false;
    e->freed = NULL;
}

static void
events_read(evutil_socket_t fd, short what, void *arg)
{
    struct redis_events *e = arg;
    /* the replies' callbacks finish many requests: one clock read for all */
    uint64_t saved = sl_clock_enter();

    (void)fd;
    (void)what;
    redisAsyncHandleRead(e->ac);
    sl_clock_leave(saved);
}

static void
events_add_read(void *privdata)
{
    struct redis_events *e = privdata;

    if (!e->is_reading) {
        event_add(&e->rev, NULL);
        e->is_reading = true;
    }
}

static void
events_del_read(void *privdata)
{
    struct redis_events *e = privdata;

    if (e->is_reading) {
        event_del(&e->rev);
        e->is_reading = false;
    }
}

static void
events_add_write(void *privdata)
{
    struct redis_events *e = privdata;

    /* A write that stopped short, or a connect in progress: wait for the
     * kernel to say writable. Otherwise just write later in this pass. */
    if (e->is_writing || !(e->ac->c.flags & REDIS_CONNECTED)) {
        if (!e->is_wev_added) {
            event_add(&e->wev, NULL);
            e->is_wev_added = true;
        }
        return;
    }
    event_active(&e->kick, EV_WRITE, 0);
}

static void
events_del_write(void *privdata)
{
    struct redis_events *e = privdata;

    if (e->is_wev_added) {
        event_del(&e->wev);
        e->is_wev_added = false;
    }
}

static void
events_cleanup(void *privdata)
{
    struct redis_events *e = privdata;

    event_del(&e->rev);
    event_del(&e->wev);
    event_del(&e->kick);
    if (e->freed != NULL)
        *e->freed = true;
    free(e);
}

static int
attach(redisAsyncContext *ac, struct event_base *base)
{
    struct redis_events *e;

    if (ac->ev.data != NULL)
        return REDIS_ERR;
    e = sl_xcalloc(1, sizeof(*e));
    e->ac = ac;
    event_assign(&e->rev, base, ac->c.fd, EV_READ | EV_PERSIST, events_read, e);
    event_assign(&e->wev, base, ac->c.fd, EV_WRITE | EV_PERSIST, events_write, e);
    event_assign(&e->kick, base, -1, 0, events_write, e);
    ac->ev.addRead = events_add_read;
    ac->ev.delRead = events_del_read;
    ac->ev.addWrite = events_add_write;
    ac->ev.delWrite = events_del_write;
    ac->ev.cleanup = events_cleanup;
    ac->ev.data = e;
    events_add_read(e);
    events_add_write(e);
    return REDIS_OK;
}

static void buf_append(struct buf *b, const void *data, size_t len);

/* "<type><n>\r\n": an array or bulk-string header (RESP). */
static void
resp_count(struct buf *out, char type, size_t n)
{
    char digits[SL_U64_DEC_MAX];

    buf_append(out, &type, 1);
    buf_append(out, digits, sl_u64_dec(n, digits));
    buf_append(out, "\r\n", 2);
}

static void
resp_arg(struct buf *out, const char *arg, size_t len)
{
    resp_count(out, '$', len);
    buf_append(out, arg, len);
    buf_append(out, "\r\n", 2);
}

static void
buf_append(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = b->cap == 0 ? 1024 : b->cap;
        while (b->len + len > b->cap)
            b->cap *= 2;
        b->data = sl_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

/* Decimal text of v plus a NUL; returns the length without the NUL. */
static size_t
fmt_i64(char *out, int64_t v)
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

static struct timeval
tv_ms(uint64_t ms)
{
    return (struct timeval){ .tv_sec = (time_t)(ms / 1000),
                             .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
}

static void
set_state(struct redis_store *rs, enum conn_state state)
{
    atomic_store_explicit(&rs->state, (int)state, memory_order_relaxed);
}

static enum conn_state
get_state(const struct redis_store *rs)
{
    return (enum conn_state)atomic_load_explicit(&rs->state, memory_order_relaxed);
}

/* ---- URL ------------------------------------------------------------------------- */

static void
url_fini(struct redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    *u = (struct redis_url){ 0 };
}

/*
 * The connect parameters of `url`, read by the shared parser (util/redis_url.h,
 * which config validates with too); *u owns the strings. Error messages never
 * quote the credentials.
 */
static int
parse_url(const char *url, struct redis_url *u, char *err, size_t err_size)
{
    struct sl_redis_url parsed;
    char why[200];

    *u = (struct redis_url){ 0 };
    if (sl_redis_url_parse(url, &parsed, why, sizeof(why)) == -1) {
        snprintf(err, err_size, "redis url: %s", why);
        return -1;
    }
    *u = (struct redis_url){ .host = parsed.host, .port = parsed.port, .path = parsed.path,
                             .user = parsed.user, .password = parsed.password,
                             .db = parsed.db };
    return 0;
}

/* ---- batches --------------------------------------------------------------------- */

static void on_batch_timeout(evutil_socket_t fd, short what, void *arg);
static void orphan_answered(struct redis_store *rs);

static struct batch *
batch_get(struct redis_store *rs)
{
    struct batch *b = rs->free_batches;

    if (b != NULL) {
        rs->free_batches = b->next;
    } else {
        b = sl_xcalloc(1, sizeof(*b));
        b->rs = rs;
        b->timer = evtimer_new(rs->evbase, on_batch_timeout, b);
        if (b->timer == NULL)
            sl_fatalx("redis store: cannot create a timer");
    }
    b->next = NULL;
    b->state = BATCH_QUEUED;
    b->is_retried = false;
    b->is_orphan = false;
    b->nchecks = b->nkeys = b->nargs = 0;
    b->keys.len = b->args.len = 0;
    return b;
}

static void
batch_release(struct redis_store *rs, struct batch *b)
{
    if (b->keys.cap > KEEP_BUF_BYTES) {
        free(b->keys.data);
        b->keys = (struct buf){ 0 };
    }
    if (b->args.cap > KEEP_BUF_BYTES) {
        free(b->args.data);
        b->args = (struct buf){ 0 };
    }
    b->next = rs->free_batches;
    rs->free_batches = b;
}

static void
batch_destroy(struct batch *b)
{
    event_free(b->timer);
    free(b->checks);
    free(b->keys.data);
    free(b->args.data);
    free(b);
}

static bool
batch_is_full(const struct batch *b)
{
    return b->nchecks >= BATCH_CHECKS || b->keys.len >= BATCH_BYTES;
}

static void
count_status(struct redis_store *rs, enum sl_store_status status, uint64_t n)
{
    bump(&rs->checks, n);
    if (status == SL_STORE_TIMEOUT)
        bump(&rs->errors_timeout, n);
    else if (status == SL_STORE_CONNECTION)
        bump(&rs->errors_connection, n);
    else if (status == SL_STORE_REPLY)
        bump(&rs->errors_reply, n);
}

/* Answers every check of b with an error; b is then DONE. */
static void
batch_fail(struct redis_store *rs, struct batch *b, enum sl_store_status status)
{
    b->state = BATCH_DONE;
    count_status(rs, status, b->nchecks);
    for (size_t i = 0; i < b->nchecks; i++)
        b->checks[i].cb(b->checks[i].arg, status, false, NULL, 0);
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

/*
 * Fails every check not answered yet: calls out (hiredis still owes their
 * callbacks, which will only release them) and the queue.
 */
static void
fail_all(struct redis_store *rs, enum sl_store_status status)
{
    struct batch *b;

    while ((b = rs->inflight) != NULL) {
        rs->inflight = b->next;
        rs->ninflight--;
        evtimer_del(b->timer);
        batch_fail(rs, b, status);
    }
    while ((b = rs->queue_head) != NULL) {
        rs->queue_head = b->next;
        if (rs->queue_head == NULL)
            rs->queue_tail = NULL;
        rs->nqueued -= b->nchecks;
        rs->queued_bytes -= b->keys.len;
        batch_fail(rs, b, status);
        batch_release(rs, b);
    }
}

/* ---- reply elements --------------------------------------------------------------- */

/*
 * hiredis builds each reply element with calloc and frees them one by one:
 * four allocations per check. These object functions take elements from a
 * free list of the store's instead. hiredis hands freeObject the top reply
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

static redisReplyObjectFunctions reply_functions = {
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

/* The store's end: the pool goes now, or with the last element hiredis
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

/* ---- lifetime -------------------------------------------------------------------- */

static void
destroy(struct redis_store *rs)
{
    struct batch *b;

    while ((b = rs->free_batches) != NULL) {
        rs->free_batches = b->next;
        batch_destroy(b);
    }
    event_free(rs->reconnect_timer);
    event_free(rs->stall_timer);
    event_free(rs->connect_timer);
    event_free(rs->queue_timer);
    event_free(rs->flush_ev);
    url_fini(&rs->url);
    free(rs->name);
    free(rs->cmd.data);
    free(rs->results);
    reply_pool_release(rs->replies);
    free(rs);
}

static void
enter(struct redis_store *rs)
{
    rs->depth++;
}

/* Returns true when the store is gone: the caller must return at once. */
static bool
leave(struct redis_store *rs)
{
    if (--rs->depth == 0 && rs->is_freeing && rs->nowned == 0) {
        destroy(rs);
        return true;
    }
    return false;
}

static void
schedule_reconnect(struct redis_store *rs, uint64_t delay_ms)
{
    struct timeval tv = tv_ms(delay_ms);

    if (!rs->is_freeing)
        evtimer_add(rs->reconnect_timer, &tv);
}

/*
 * The one way down: detaches the connection, fails every pending check with
 * `status`, schedules the reconnection, and frees the hiredis context when
 * `free_ac` (hiredis defers that while one of its callbacks runs). Pass
 * free_ac false from the connect/disconnect callbacks and for NULL replies:
 * hiredis is already freeing the context then.
 */
static void
conn_down(struct redis_store *rs, bool free_ac, enum sl_store_status status, const char *why)
{
    redisAsyncContext *ac = rs->ac;
    bool was_up = get_state(rs) == CONN_UP;

    if (ac == NULL && get_state(rs) == CONN_DOWN)
        return;
    rs->ac = NULL;
    set_state(rs, CONN_DOWN);
    rs->is_accepting = false;
    evtimer_del(rs->connect_timer);
    evtimer_del(rs->queue_timer);
    /* the orphans' callbacks come with a NULL reply as the context goes */
    rs->norphans = 0;
    evtimer_del(rs->stall_timer);
    if (ac != NULL)
        ac->data = NULL;
    if (!rs->is_freeing && !rs->is_logged_down) {
        sl_log_warnx("redis %s: %s; %s", rs->name, why,
                     was_up ? "reconnecting" : "retrying with backoff");
        rs->is_logged_down = true;
    }
    if (was_up) {
        rs->backoff_ms = BACKOFF_MIN_MS;
        schedule_reconnect(rs, 0);
    } else {
        schedule_reconnect(rs, rs->backoff_ms);
        rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
    }
    fail_all(rs, status);
    if (ac != NULL && free_ac)
        redisAsyncFree(ac);
}

/* ---- hiredis callbacks ----------------------------------------------------------- */

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_store *rs = ac->data;

    if (rs == NULL || status == REDIS_OK)
        return; /* the handshake replies tell when it is ready */
    enter(rs);
    /* hiredis frees the context after this returns */
    conn_down(rs, false, SL_STORE_CONNECTION, ac->errstr != NULL ? ac->errstr : "connect failed");
    leave(rs);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_store *rs = ac->data;

    (void)status;
    if (rs == NULL)
        return;
    enter(rs);
    conn_down(rs, false, SL_STORE_CONNECTION,
              ac->err != 0 && ac->errstr != NULL ? ac->errstr : "connection closed");
    leave(rs);
}

/* Common head of the handshake callbacks: true when the reply is usable. */
static bool
handshake_reply_ok(struct redis_store *rs, redisAsyncContext *ac, const redisReply *reply,
                   const char *what)
{
    char why[256];

    if (ac != rs->ac)
        return false; /* an old connection going away */
    if (reply == NULL) {
        conn_down(rs, false, SL_STORE_CONNECTION,
                  ac->errstr != NULL && ac->err != 0 ? ac->errstr : "connection lost");
        return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %s", what, reply->str);
        conn_down(rs, true, SL_STORE_CONNECTION, why);
        return false;
    }
    return true;
}

static void
on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    enter(rs);
    rs->nowned--;
    handshake_reply_ok(rs, ac, r, "AUTH/SELECT");
    leave(rs);
}

static void
on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    const redisReply *reply = r;

    enter(rs);
    rs->nowned--;
    if (!handshake_reply_ok(rs, ac, reply, "SCRIPT LOAD"))
        goto out;
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        conn_down(rs, true, SL_STORE_CONNECTION, "SCRIPT LOAD: unexpected reply");
        goto out;
    }
    memcpy(rs->sha, reply->str, 40);
    rs->sha[40] = '\0';
    rs->has_sha = true;
    if (get_state(rs) == CONN_CONNECTING) {
        evtimer_del(rs->connect_timer);
        evtimer_del(rs->queue_timer);
        set_state(rs, CONN_UP);
        rs->is_accepting = false;
        rs->backoff_ms = BACKOFF_MIN_MS;
        bump(&rs->connects, 1);
        if (rs->was_ever_up)
            bump(&rs->reconnects, 1);
        if (rs->is_logged_down || !rs->was_ever_up)
            sl_log_info("redis %s: connected", rs->name);
        rs->was_ever_up = true;
        rs->is_logged_down = false;
        flush(rs);
    }
out:
    leave(rs);
}

/* After a NOSCRIPT: only errors matter (the resent call shows them too). */
static void
on_script_reloaded(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_store *rs = privdata;

    enter(rs);
    rs->nowned--;
    handshake_reply_ok(rs, ac, r, "SCRIPT LOAD");
    leave(rs);
}

/* Checks the reply's shape against the batch before anyone is answered. */
static bool
reply_fits(const struct batch *b, const redisReply *reply)
{
    size_t want = 0;

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
    size_t r = 0;

    b->state = BATCH_DONE;
    bump(&rs->checks, b->nchecks);
    for (size_t i = 0; i < b->nchecks; i++) {
        const struct pending *p = &b->checks[i];
        bool is_admitted = reply->element[r++]->integer == 1;

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
        p->cb(p->arg, SL_STORE_OK, is_admitted, rs->results, p->nbuckets);
    }
}

static int send_batch(struct redis_store *rs, struct batch *b);

static void
on_eval_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct batch *b = privdata;
    struct redis_store *rs = b->rs;
    const redisReply *reply = r;

    enter(rs);
    rs->nowned--;
    if (b->state == BATCH_DONE) {
        /* answered already: it timed out, or conn_down failed it */
        if (b->is_orphan && ac == rs->ac && reply != NULL)
            orphan_answered(rs);
        batch_release(rs, b);
        goto out;
    }
    evtimer_del(b->timer);
    if (reply == NULL) {
        /* the context is going away: fails b with everything else */
        if (ac == rs->ac)
            conn_down(rs, false, SL_STORE_CONNECTION,
                      ac->err != 0 && ac->errstr != NULL ? ac->errstr : "connection lost");
        else {
            inflight_remove(rs, b);
            batch_fail(rs, b, SL_STORE_CONNECTION);
        }
        batch_release(rs, b);
        goto out;
    }
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0
        && !b->is_retried && ac == rs->ac) {
        const char *load[3] = { "SCRIPT", "LOAD", rs->script };
        size_t load_lens[3] = { 6, 4, rs->script_len };

        /* Redis lost the script (restart, SCRIPT FLUSH): load it and send the
         * same call again behind it, on the same connection */
        b->is_retried = true;
        bump(&rs->noscript_reloads, 1);
        if (redisAsyncCommandArgv(ac, on_script_reloaded, rs, 3, load, load_lens) == REDIS_OK)
            rs->nowned++;
        inflight_remove(rs, b);
        if (send_batch(rs, b) == -1) {
            batch_fail(rs, b, SL_STORE_CONNECTION);
            batch_release(rs, b);
        }
        goto out;
    }
    inflight_remove(rs, b);
    if (reply_fits(b, reply)) {
        rs->is_logged_reply_error = false;
        deliver(rs, b, reply);
    } else {
        if (!rs->is_logged_reply_error) {
            sl_log_warnx("redis %s: script call failed: %s", rs->name,
                         reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
            rs->is_logged_reply_error = true;
        }
        batch_fail(rs, b, SL_STORE_REPLY);
    }
    batch_release(rs, b);
    flush(rs);
out:
    leave(rs);
}

/* ---- sending --------------------------------------------------------------------- */

/* EVALSHA sha numkeys key... nchecks args...; 0, or -1 when hiredis refuses
 * (the context is going away). b joins the calls in flight. */
static int
send_batch(struct redis_store *rs, struct batch *b)
{
    size_t argc = 4 + b->nkeys + b->nargs;
    char numkeys[21], nchecks[21];
    struct timeval tv;

    /* RESP by hand (redisAsyncFormattedCommand): hiredis's own formatting
     * runs sdscatfmt per argument, a visible share of each decision. */
    rs->cmd.len = 0;
    resp_count(&rs->cmd, '*', argc);
    resp_arg(&rs->cmd, "EVALSHA", 7);
    resp_arg(&rs->cmd, rs->sha, 40);
    resp_arg(&rs->cmd, numkeys, fmt_i64(numkeys, (int64_t)b->nkeys));
    buf_append(&rs->cmd, b->keys.data, b->keys.len);
    resp_arg(&rs->cmd, nchecks, fmt_i64(nchecks, (int64_t)b->nchecks));
    buf_append(&rs->cmd, b->args.data, b->args.len);
    if (redisAsyncFormattedCommand(rs->ac, on_eval_reply, b, rs->cmd.data, rs->cmd.len)
        != REDIS_OK)
        return -1;
    rs->nowned++;
    b->state = BATCH_SENT;
    b->next = rs->inflight;
    rs->inflight = b;
    rs->ninflight++;
    bump(&rs->calls, 1);
    if (rs->timeout_ms > 0) {
        tv = tv_ms(rs->timeout_ms);
        evtimer_add(b->timer, &tv);
    }
    return 0;
}

/* Sends what may go now: everything queued when nothing is out, else only
 * full batches, up to INFLIGHT_MAX calls out. */
static void
flush(struct redis_store *rs)
{
    while (get_state(rs) == CONN_UP && rs->queue_head != NULL && rs->ninflight < INFLIGHT_MAX) {
        struct batch *b = rs->queue_head;

        if (rs->ninflight > 0 && !batch_is_full(b))
            break;
        rs->queue_head = b->next;
        if (rs->queue_head == NULL)
            rs->queue_tail = NULL;
        rs->nqueued -= b->nchecks;
        rs->queued_bytes -= b->keys.len;
        if (send_batch(rs, b) == -1) {
            batch_fail(rs, b, SL_STORE_CONNECTION);
            batch_release(rs, b);
        }
    }
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    enter(rs);
    rs->is_flush_scheduled = false;
    flush(rs);
    leave(rs);
}

/* ---- timers ---------------------------------------------------------------------- */

static uint64_t
stall_ms(const struct redis_store *rs)
{
    return rs->timeout_ms * 10 > STALL_MIN_MS ? rs->timeout_ms * 10 : STALL_MIN_MS;
}

static void
stall_timer_restart(struct redis_store *rs)
{
    struct timeval tv = tv_ms(stall_ms(rs));

    evtimer_add(rs->stall_timer, &tv);
}

/* A late reply came: the connection is slow, not dead. */
static void
orphan_answered(struct redis_store *rs)
{
    if (rs->norphans > 0 && --rs->norphans > 0)
        stall_timer_restart(rs);
    else
        evtimer_del(rs->stall_timer);
}

static void
on_batch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct batch *b = arg;
    struct redis_store *rs = b->rs;
    char why[96];

    (void)fd;
    (void)what;
    enter(rs);
    if (b->state != BATCH_SENT)
        goto out;
    inflight_remove(rs, b);
    b->is_orphan = true;
    if (++rs->norphans == 1)
        stall_timer_restart(rs);
    batch_fail(rs, b, SL_STORE_TIMEOUT);
    if (rs->norphans > ORPHANS_MAX) {
        snprintf(why, sizeof(why), "%u calls not answered within %llu ms", rs->norphans,
                 (unsigned long long)rs->timeout_ms);
        conn_down(rs, true, SL_STORE_TIMEOUT, why);
    } else {
        flush(rs); /* the next call goes out behind the late one */
    }
out:
    leave(rs);
}

static void
on_stall(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;
    char why[96];

    (void)fd;
    (void)what;
    enter(rs);
    snprintf(why, sizeof(why), "no reply for %llu ms", (unsigned long long)stall_ms(rs));
    conn_down(rs, true, SL_STORE_TIMEOUT, why);
    leave(rs);
}

static void
on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    enter(rs);
    conn_down(rs, true, SL_STORE_TIMEOUT, "connect timeout");
    leave(rs);
}

/* Checks made while connecting waited timeout_ms: they fail, later ones fail
 * fast until the connection is ready. */
static void
on_queue_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;
    struct batch *b;

    (void)fd;
    (void)what;
    enter(rs);
    rs->is_accepting = false;
    while ((b = rs->queue_head) != NULL) {
        rs->queue_head = b->next;
        if (rs->queue_head == NULL)
            rs->queue_tail = NULL;
        rs->nqueued -= b->nchecks;
        rs->queued_bytes -= b->keys.len;
        batch_fail(rs, b, SL_STORE_TIMEOUT);
        batch_release(rs, b);
    }
    leave(rs);
}

static void
on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    enter(rs);
    connect_now(rs);
    leave(rs);
}

/* ---- connecting ------------------------------------------------------------------ */

static void
command(struct redis_store *rs, redisCallbackFn *fn, int argc, const char **argv,
        const size_t *lens)
{
    if (redisAsyncCommandArgv(rs->ac, fn, rs, argc, argv, lens) == REDIS_OK)
        rs->nowned++;
}

static void
connect_now(struct redis_store *rs)
{
    redisAsyncContext *ac;
    struct timeval tv;
    char db[21];

    if (rs->is_freeing || rs->ac != NULL)
        return;
    ac = rs->url.path != NULL ? redisAsyncConnectUnix(rs->url.path)
                              : redisAsyncConnect(rs->url.host, rs->url.port);
    if (ac == NULL)
        sl_fatalx("redis %s: out of memory", rs->name);
    if (ac->err != 0) {
        /* refused at once (nothing listens on a unix path, ...) */
        if (!rs->is_logged_down) {
            sl_log_warnx("redis %s: %s; retrying with backoff", rs->name, ac->errstr);
            rs->is_logged_down = true;
        }
        redisAsyncFree(ac);
        schedule_reconnect(rs, rs->backoff_ms);
        rs->backoff_ms = rs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rs->backoff_ms * 2;
        return;
    }
    ac->data = rs;
    /* nothing was read yet: no element was made by the default functions */
    ac->c.reader->fn = &reply_functions;
    ac->c.reader->privdata = rs->replies;
    if (attach(ac, rs->evbase) != REDIS_OK)
        sl_fatalx("redis %s: cannot attach to the event loop", rs->name);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rs->ac = ac;
    set_state(rs, CONN_CONNECTING);
    rs->is_accepting = true;

    /* pipelined: hiredis sends them once connected, in this order */
    if (rs->url.password != NULL) {
        const char *argv[3] = { "AUTH", rs->url.user, rs->url.password };
        size_t lens[3] = { 4, rs->url.user != NULL ? strlen(rs->url.user) : 0,
                           strlen(rs->url.password) };

        if (rs->url.user != NULL) {
            command(rs, on_setup_reply, 3, argv, lens);
        } else {
            argv[1] = argv[2];
            lens[1] = lens[2];
            command(rs, on_setup_reply, 2, argv, lens);
        }
    }
    if (rs->url.db != 0) {
        const char *argv[2] = { "SELECT", db };
        size_t lens[2] = { 6, fmt_i64(db, rs->url.db) };

        command(rs, on_setup_reply, 2, argv, lens);
    }
    {
        const char *argv[3] = { "SCRIPT", "LOAD", rs->script };
        size_t lens[3] = { 6, 4, rs->script_len };

        command(rs, on_script_loaded, 3, argv, lens);
    }
    tv = tv_ms(rs->timeout_ms > CONNECT_TIMEOUT_MIN_MS ? rs->timeout_ms : CONNECT_TIMEOUT_MIN_MS);
    evtimer_add(rs->connect_timer, &tv);
    if (rs->timeout_ms > 0) {
        tv = tv_ms(rs->timeout_ms);
        evtimer_add(rs->queue_timer, &tv);
    }
}

/* ---- the store interface --------------------------------------------------------- */

static void
fail_now(struct redis_store *rs, sl_store_cb *cb, void *arg, enum sl_store_status status)
{
    count_status(rs, status, 1);
    cb(arg, status, false, NULL, 0);
}

/* "$<n>\r\n<digits of v>\r\n" at p; returns the end. */
static char *
resp_i64(char *p, int64_t v)
{
    char digits[21];
    size_t n = fmt_i64(digits, v);

    *p++ = '$';
    p += fmt_i64(p, (int64_t)n);
    memcpy(p, "\r\n", 2);
    memcpy(p + 2, digits, n);
    memcpy(p + 2 + n, "\r\n", 2);
    return p + 4 + n;
}

/* The script's numbers for a bucket, RESP-encoded, from a small cache: a
 * worker sees the same few limits over and over. NULL when invalid. */
static const struct param_cache *
params_resp(struct redis_store *rs, const struct sl_store_bucket *b)
{
    struct param_cache *pc;
    struct sl_tb_params pr;
    char *p;

    for (size_t i = 0; i < PARAM_CACHE; i++) {
        pc = &rs->params[i];
        if (pc->len != 0 && pc->rate == b->rate && pc->per_ms == b->per_ms
            && pc->burst == b->burst && pc->cost == b->cost)
            return pc->is_valid ? pc : NULL;
    }
    pc = &rs->params[rs->param_next++ % PARAM_CACHE];
    *pc = (struct param_cache){ .rate = b->rate, .per_ms = b->per_ms, .burst = b->burst,
                                .cost = b->cost, .len = 1 };
    if (sl_tb_params_from_bucket(&pr, b) == -1)
        return NULL;
    pc->is_valid = true;
    p = pc->resp;
    p = resp_i64(p, pr.q);
    p = resp_i64(p, pr.p);
    p = resp_i64(p, pr.tu);
    p = resp_i64(p, pr.burst);
    p = resp_i64(p, pr.cost);
    pc->len = (size_t)(p - pc->resp);
    return pc;
}

static void
redis_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
            sl_store_cb *cb, void *arg)
{
    struct redis_store *rs = (struct redis_store *)store;
    size_t key_bytes = 0, keys_before;
    struct batch *b;
    char count[21];

    enter(rs);
    if (rs->is_freeing || get_state(rs) == CONN_DOWN
        || (get_state(rs) == CONN_CONNECTING && !rs->is_accepting)) {
        fail_now(rs, cb, arg, SL_STORE_CONNECTION);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        key_bytes += buckets[i].key_len;
    if (rs->nqueued >= QUEUE_CHECKS || rs->queued_bytes + key_bytes > QUEUE_BYTES) {
        fail_now(rs, cb, arg, SL_STORE_TIMEOUT);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (params_resp(rs, &buckets[i]) == NULL) {
            fail_now(rs, cb, arg, SL_STORE_REPLY);
            goto out;
        }
    }
    b = rs->queue_tail;
    if (b == NULL || batch_is_full(b)) {
        b = batch_get(rs);
        if (rs->queue_tail != NULL)
            rs->queue_tail->next = b;
        else
            rs->queue_head = b;
        rs->queue_tail = b;
    }
    resp_arg(&b->args, count, fmt_i64(count, (int64_t)n));
    b->nargs++;
    for (size_t i = 0; i < n; i++) {
        /* valid: checked above (the cache hands back the same text) */
        const struct param_cache *pc = params_resp(rs, &buckets[i]);

        buf_append(&b->args, pc->resp, pc->len);
        b->nargs += 5;
    }
    keys_before = b->keys.len;
    for (size_t i = 0; i < n; i++)
        resp_arg(&b->keys, buckets[i].key, buckets[i].key_len);
    b->nkeys += n;
    if (b->nchecks == b->checks_cap) {
        b->checks_cap = b->checks_cap == 0 ? 16 : b->checks_cap * 2;
        b->checks = sl_xrealloc(b->checks, b->checks_cap * sizeof(*b->checks));
    }
    b->checks[b->nchecks++] = (struct pending){ .cb = cb, .arg = arg, .nbuckets = n };
    rs->nqueued++;
    rs->queued_bytes += b->keys.len - keys_before; /* what batch release takes off */
    /* send at the end of this loop pass, so the pass's other checks join */
    if (get_state(rs) == CONN_UP && !rs->is_flush_scheduled
        && (rs->ninflight == 0 || batch_is_full(rs->queue_head))) {
        rs->is_flush_scheduled = true;
        event_active(rs->flush_ev, EV_TIMEOUT, 0);
    }
out:
    leave(rs);
}

static bool
redis_is_up(const struct sl_store *store)
{
    return get_state((const struct redis_store *)store) == CONN_UP;
}

static void
redis_stats(const struct sl_store *store, struct sl_store_stats *st)
{
    const struct redis_store *rs = (const struct redis_store *)store;

#define LOAD(f) atomic_load_explicit(&rs->f, memory_order_relaxed)
    st->checks = LOAD(checks);
    st->calls = LOAD(calls);
    st->errors_timeout = LOAD(errors_timeout);
    st->errors_connection = LOAD(errors_connection);
    st->errors_reply = LOAD(errors_reply);
    st->connects = LOAD(connects);
    st->reconnects = LOAD(reconnects);
    st->noscript_reloads = LOAD(noscript_reloads);
#undef LOAD
}

static void
redis_free(struct sl_store *store)
{
    struct redis_store *rs = (struct redis_store *)store;

    enter(rs);
    rs->is_freeing = true;
    evtimer_del(rs->reconnect_timer);
    event_del(rs->flush_ev);
    conn_down(rs, true, SL_STORE_CONNECTION, "store closed");
    fail_all(rs, SL_STORE_CONNECTION); /* when it was down already */
    leave(rs);
}

static const struct sl_store_ops redis_ops = {
    .name = "redis",
    .check = redis_check,
    .is_up = redis_is_up,
    .free = redis_free,
    .stats = redis_stats,
};

struct sl_store *
sl_store_redis_new(const struct sl_store_conf *conf, struct event_base *base, char *err,
                   size_t err_size)
{
    struct redis_store *rs = sl_xcalloc(1, sizeof(*rs));
    char name[512];

    if (parse_url(conf->url, &rs->url, err, err_size) == -1) {
        free(rs);
        return NULL;
    }
    rs->base.ops = &redis_ops;
    rs->evbase = base;
    rs->timeout_ms = conf->timeout_ms;
    rs->script = sl_token_bucket_lua;
    rs->script_len = strlen(sl_token_bucket_lua);
    rs->backoff_ms = BACKOFF_MIN_MS;
    if (rs->url.path != NULL)
        snprintf(name, sizeof(name), "unix:%s", rs->url.path);
    else if (strchr(rs->url.host, ':') != NULL)
        snprintf(name, sizeof(name), "[%s]:%d", rs->url.host, rs->url.port);
    else
        snprintf(name, sizeof(name), "%s:%d", rs->url.host, rs->url.port);
    rs->name = sl_xstrdup(name);
    rs->replies = sl_xcalloc(1, sizeof(*rs->replies));
    rs->reconnect_timer = evtimer_new(base, on_reconnect, rs);
    rs->stall_timer = evtimer_new(base, on_stall, rs);
    rs->connect_timer = evtimer_new(base, on_connect_timeout, rs);
    rs->queue_timer = evtimer_new(base, on_queue_timeout, rs);
    rs->flush_ev = event_new(base, -1, 0, on_flush, rs);
    if (rs->reconnect_timer == NULL || rs->stall_timer == NULL || rs->connect_timer == NULL
        || rs->queue_timer == NULL || rs->flush_ev == NULL)
        sl_fatalx("redis store: cannot create events");
    set_state(rs, CONN_DOWN);
    enter(rs);
    connect_now(rs);
    leave(rs);
    return &rs->base;
}
