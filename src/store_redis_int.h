/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Shared by the files of the redis store, and by nothing else:
 *   store_redis.c        the store interface (check, stats, free), the URL,
 *                        the embedded script, the store's lifetime;
 *   store_redis_conn.c   the connection: the handshake, timeouts, stalls,
 *                        reconnection with backoff;
 *   store_redis_link.c   the bytes of one connection, plaintext or TLS, and
 *                        the replies matched to their commands;
 *   store_redis_batch.c  batches of checks, EVALSHA and NOSCRIPT recovery,
 *                        reply parsing into a pool of elements.
 * Everything here runs on the worker that owns the store, except the
 * counters and `state`, which other threads read with relaxed atomics.
 */
#ifndef SL_STORE_REDIS_INT_H
#define SL_STORE_REDIS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "sluice/store.h"
#include "store_redis_link.h"
#include "util/buf.h"
#include "util/redis_url.h"

struct event;
struct event_base;
struct reply_pool;

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
/* A batch's KEYS or ARGV, RESP-encoded. A batch takes checks while its keys
 * are under BATCH_BYTES and one check's keys are under QUEUE_BYTES, so only
 * a check of some hundred thousand buckets could pass it: such a check is
 * refused like one finding the queue full. */
#define BATCH_BUF_MAX (32u << 20)
#define CMD_BUF_MAX (2 * BATCH_BUF_MAX + 256) /* the EVALSHA: both and its head */
#define REPLY_POOL_MAX 4096         /* spare reply elements kept (4 per check in a batch) */
#define ORPHANS_MAX 8               /* late replies owed before the connection is dropped */
#define STALL_MIN_MS 1000           /* silence, while owing a late reply, before it is */
/* Bytes a connection may hold unwritten: the calls that may be out at once
 * (INFLIGHT_MAX, the orphans, a NOSCRIPT resend) and the handshake. */
#define LINK_OUT_MAX ((INFLIGHT_MAX + ORPHANS_MAX + 2) * (size_t)CMD_BUF_MAX)

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

/* One check in a batch. */
struct pending {
    sl_store_cb *cb;
    sl_store_lease_cb *lease_cb; /* a lease operation: this is called instead */
    void *arg;
    size_t nbuckets;
};

enum batch_state {
    BATCH_QUEUED,   /* filling or waiting to be sent */
    BATCH_SENT,     /* the link owes us its callback */
    BATCH_DONE,     /* its checks are answered; the link may still owe the callback */
};

struct batch {
    struct redis_store *rs;
    struct batch *next;
    struct event *timer;
    enum batch_state state;
    bool is_retried;         /* NOSCRIPT retry done */
    bool is_orphan;          /* timed out: its checks are answered, its reply is dropped */
    bool is_reset;           /* one DEL of its one key (sl_store_reset), not a script call */
    struct pending *checks;
    size_t nchecks;
    size_t checks_cap;
    /* Both already RESP bulk strings: sending copies each in one piece. */
    struct sl_buf keys;      /* the KEYS */
    size_t nkeys;
    struct sl_buf args;      /* the ARGV after the check count */
    size_t nargs;
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
    struct sl_redis_url url;
    char *name;              /* for log lines: address, never credentials */
    uint64_t timeout_ms;     /* 0: no timeout */
    const char *script;
    size_t script_len;
    char sha[41];
    bool has_sha;

    struct ssl_ctx_st *ssl_ctx; /* rediss://: the config's, up-referenced; else NULL */
    char *server_name;          /* TLS: SNI and the name checked; NULL: the url's host */
    struct sl_resolved *dns;    /* the url's host, looked up by the daemon; NULL: by the link */
    unsigned dns_turn;          /* which of its addresses the next connect takes */
    bool is_tls_verify;
    struct sl_redis_link *link;
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
    unsigned nowned;         /* link callbacks still owed to us */
    bool is_freeing;

    struct param_cache params[PARAM_CACHE];
    unsigned param_next;
    struct sl_buf cmd;       /* the EVALSHA being sent, RESP-encoded by us */
    struct sl_store_result *results;
    size_t results_cap;
    struct reply_pool *replies;

    atomic_uint_fast64_t checks, calls, errors_timeout, errors_connection, errors_reply;
    atomic_uint_fast64_t connects, reconnects, noscript_reloads;
};

/* ---- small helpers, inline ------------------------------------------------------- */

/* Counters have one writer (the worker): a relaxed load and store is enough. */
static inline void
sl_redis_bump(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void
sl_redis_set_state(struct redis_store *rs, enum conn_state state)
{
    atomic_store_explicit(&rs->state, (int)state, memory_order_relaxed);
}

static inline enum conn_state
sl_redis_get_state(const struct redis_store *rs)
{
    return (enum conn_state)atomic_load_explicit(&rs->state, memory_order_relaxed);
}

/* Every entry point (a link or libevent callback, a store call) brackets
 * itself with enter/leave, so that a store freed meanwhile is destroyed only
 * once the stack has unwound. */
static inline void
sl_redis_enter(struct redis_store *rs)
{
    rs->depth++;
}

/* ---- store_redis.c ----------------------------------------------------------------- */

/* Returns true when the store is gone: the caller must return at once. */
bool sl_redis_leave(struct redis_store *rs);

/* ---- store_redis_conn.c ------------------------------------------------------------ */

/* Creates the connection's timers (fatal when libevent cannot); frees them. */
void sl_redis_conn_init(struct redis_store *rs);
void sl_redis_conn_fini(struct redis_store *rs);
/* Starts connecting unless connected, connecting, or the store is freeing. */
void sl_redis_connect_now(struct redis_store *rs);
void sl_redis_conn_down(struct redis_store *rs, enum sl_store_status status, const char *why);
bool sl_redis_handshake_reply_ok(struct redis_store *rs, struct sl_redis_link *link,
                                 const redisReply *reply, const char *what);
/* A call timed out and its reply is now owed late; a late reply came. */
void sl_redis_orphan_added(struct redis_store *rs);
void sl_redis_orphan_answered(struct redis_store *rs);

/* ---- store_redis_batch.c ----------------------------------------------------------- */

/* The flush event, the reply pool and the command buffer; freed with the
 * free batches (the pool may outlive the store, see reply_pool). */
void sl_redis_batch_init(struct redis_store *rs);
void sl_redis_batch_fini(struct redis_store *rs);
/* The reply object functions that build replies from the store's pool. */
extern redisReplyObjectFunctions sl_redis_reply_functions;

struct batch *sl_redis_batch_get(struct redis_store *rs);
void sl_redis_batch_release(struct redis_store *rs, struct batch *b);
bool sl_redis_batch_is_full(const struct batch *b);
void sl_redis_count_status(struct redis_store *rs, enum sl_store_status status, uint64_t n);
/* Fails every check of the queue, or of the queue and the calls out. */
void sl_redis_fail_queue(struct redis_store *rs, enum sl_store_status status);
void sl_redis_fail_all(struct redis_store *rs, enum sl_store_status status);
/* Sends what may go now (see the batching notes in store_redis.c). */
void sl_redis_flush(struct redis_store *rs);

/* Decimal text of v plus a NUL; returns the length without the NUL. */
size_t sl_redis_fmt_i64(char *out, int64_t v);
/* Appends a RESP bulk string: 0, or -1 when out is at its maximum. */
int sl_redis_resp_arg(struct sl_buf *out, const char *arg, size_t len);

#endif
