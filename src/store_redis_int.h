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
 *                        reply parsing into a pool of elements;
 *   store_redis_sentinel.c  redis-sentinel:// urls: the master asked of the
 *                        sentinels, and +switch-master followed;
 *   store_redis_cluster.c   redis-cluster:// urls: a store of stores, one
 *                        redis_store per master, the slot map, redirects,
 *                        checks split over slots (take, then refund).
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
struct redis_cluster;
struct reply_pool;
struct sentinel;
struct sl_redis_node;
struct sl_store_conf;

#define BATCH_CHECKS 128            /* checks per script call */
#define BATCH_BYTES (256u << 10)    /* key bytes per script call */
#define INFLIGHT_MAX 4              /* calls out at once (only full ones beyond the first) */
/* A check sent again (a key its master did not serve, MOVED, ASK) at most
 * this often, then SL_STORE_REPLY: a slot is not moved that often. */
#define NODE_REDIRECTS_MAX 3
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
    /* its part of the batch's keys and args, to send it again on its own */
    size_t keys_off, keys_len, args_off, args_len, nkeys, nargs;
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
    bool is_declared;        /* cluster: one check, its keys declared (for redirects) */
    bool is_answering;       /* on the store's answering stack */
    size_t answered;         /* checks answered (or sent again) so far, while on it */
    struct batch *answering_next;
    bool is_asking;          /* cluster: ASKING goes first (an ASK redirect) */
    unsigned redirects;      /* cluster: times its checks were sent again */
    uint64_t sent_us;        /* when it went out, for the node's latency */
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
    struct sl_resolver *resolver; /* the daemon's, for sentinel names; NULL: none */
    unsigned dns_turn;          /* which of its addresses the next connect takes */
    bool is_tls_verify;
    struct sentinel *sentinel;  /* redis-sentinel:// url; else NULL */
    struct redis_cluster *cluster; /* a node of a redis-cluster:// store; else NULL */
    struct sl_redis_node *node; /* this server's process-wide counters (metrics) */
    struct sl_redis_link *link;
    _Atomic int state;       /* enum conn_state; read by is_up from any thread */
    bool is_accepting;       /* CONNECTING: still within timeout_ms, checks may queue */
    bool was_ever_up;
    bool is_logged_down;     /* a "down" line was logged: log the recovery */
    char refused_why[256];   /* the server's last handshake refusal logged this outage */
    bool is_logged_reply_error;
    uint64_t reply_error_us; /* the last reply error (see reply_error_is_news) */
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
    /* batches whose checks are being answered one by one, innermost first:
     * a store freed from one of their callbacks fails the rest at once, as
     * it does every other pending check */
    struct batch *answering;
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
/* A connection attempt found no address: the next after the backoff. */
void sl_redis_retry_later(struct redis_store *rs);
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

/* ---- store_redis_sentinel.c -------------------------------------------------------- */

/* Sets up rs->sentinel for a redis-sentinel:// url and opens its
 * +switch-master subscription; stop closes the sentinel links (the store
 * is freeing), fini frees what is left. */
void sl_redis_sentinel_init(struct redis_store *rs, const struct sl_store_conf *conf);
void sl_redis_sentinel_stop(struct redis_store *rs);
void sl_redis_sentinel_fini(struct redis_store *rs);
/* The master's address into t when known; else false, and the sentinels
 * are asked (unless they are being asked already): sl_redis_connect_now()
 * is called again once one answers, or sl_redis_retry_later() when none
 * does. */
bool sl_redis_sentinel_target(struct redis_store *rs, struct sl_redis_target *t);
/* The connection to the master is gone: ask the sentinels again. */
void sl_redis_sentinel_forget(struct redis_store *rs);

/* ---- the node interface, for store_redis_cluster.c -------------------------------- */

/* A node of a cluster: the url's user, password and TLS, at host:port. */
struct redis_node_spec {
    const struct sl_redis_url *url;
    const char *host;
    int port;
    uint64_t timeout_ms;
    struct ssl_ctx_st *ssl_ctx;
    const char *server_name;
    bool is_tls_verify;
};
struct redis_store *sl_redis_node_new(struct event_base *base, const struct redis_node_spec *spec,
                                      struct redis_cluster *cluster);
/* The store interface on one master; a refund gives one bucket's cost back
 * (lua/token_bucket.lua, k = -3) and answers as a lease operation does. */
void sl_redis_node_check(struct redis_store *rs, const struct sl_store_bucket *buckets,
                         size_t n, sl_store_cb *cb, void *arg);
void sl_redis_node_lease(struct redis_store *rs, const struct sl_store_bucket *bucket,
                         enum sl_lease_op op, int64_t milli, int64_t held_milli,
                         uint64_t ttl2_ms, const char *holder, sl_store_lease_cb *cb, void *arg);
void sl_redis_node_refund(struct redis_store *rs, const struct sl_store_bucket *bucket,
                          sl_store_lease_cb *cb, void *arg);
void sl_redis_node_reset(struct redis_store *rs, const char *key, size_t key_len,
                         sl_store_cb *cb, void *arg);
/* Hands b's checks (b came back from another node with a redirect) to `to`,
 * at the end of its queue; they fail at once when `to` cannot take them. */
void sl_redis_batch_move(struct redis_store *from, struct batch *b, struct redis_store *to,
                         bool is_asking);
void sl_redis_batch_fail(struct redis_store *rs, struct batch *b, enum sl_store_status status);
/* Check i of b, which its master did not serve (-9 from the script, or the
 * master became a replica), sent again on its own with its keys declared,
 * for Redis to redirect (MOVED, ASK); answered with an error when it was
 * sent again too often or cannot queue. */
void sl_redis_check_resend(struct redis_store *rs, const struct batch *b, size_t i);

/* The redis store a command about `key` goes to: `store` itself, or a
 * cluster's master of the key's slot; NULL for any other store. */
struct redis_store *sl_redis_store_for_key(struct sl_store *store, const char *key,
                                           size_t key_len);
/* A redis store, single server or cluster. */
bool sl_redis_is_store(const struct sl_store *store);

/* ---- store_redis_cluster.c ----------------------------------------------------------- */

struct sl_store *sl_redis_cluster_new(const struct sl_store_conf *conf, struct event_base *base,
                                      struct sl_resolver *resolver, char *err, size_t err_size);
/* A node answered MOVED or ASK (`text`, the error reply): the node the
 * checks go to instead, NULL when the text is no redirect. A MOVED has the
 * slot map asked again. */
struct redis_store *sl_redis_cluster_redirect(struct redis_cluster *c, const char *text,
                                              bool *is_ask);
/* The master of key's slot when store is a cluster; else NULL. */
struct redis_store *sl_redis_cluster_node_for(struct sl_store *store, const char *key,
                                              size_t key_len);
bool sl_redis_cluster_is(const struct sl_store *store);
/* A node's connection went down: the map may have changed. */
void sl_redis_cluster_node_down(struct redis_cluster *c);

/* Decimal text of v plus a NUL; returns the length without the NUL. */
size_t sl_redis_fmt_i64(char *out, int64_t v);
/* Appends a RESP bulk string: 0, or -1 when out is at its maximum. */
int sl_redis_resp_arg(struct sl_buf *out, const char *arg, size_t len);

#endif
