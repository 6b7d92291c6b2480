/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The backend interface the limiter talks to, picked by name from the conf:
 * redis (store_redis*.c) or the embedded store (store_local.c). A check
 * names every bucket one request matches; the store takes `cost` from all
 * of them or from none, atomically, with the algorithm of
 * lua/token_bucket.lua, and both stores give the same answers for the same
 * inputs.
 *
 * Threads and ownership. A struct sl_store is a worker's handle: made, used
 * and freed on that worker's thread only (the redis store runs on the
 * worker's event_base). Whoever makes one owns it and frees it with
 * sl_store_free. The embedded store's table is the one thing shared: every
 * worker's handle points at it, it is thread-safe, and it must outlive them.
 * The stats getters may be called from any thread.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sl_store_conf;
struct sl_store;
struct sl_store_local_table;
struct sl_store_stats;

/*
 * One bucket of a check. Token amounts are exact in thousandths of a token:
 * rate and burst are rounded down, cost up, so rounding can only refuse
 * more, never admit more. A bucket with rate < 0.001, per_ms == 0, or a
 * negative or NaN burst or cost fails its whole check with SL_STORE_REPLY
 * (config validation keeps such numbers out).
 */
struct sl_store_bucket {
    const char *key;   /* full key: "<prefix>:<limit name>:<escaped key value>" */
    size_t key_len;
    double rate;       /* tokens per per_ms */
    uint64_t per_ms;
    double burst;      /* capacity */
    double cost;       /* tokens this request takes */
    bool is_leased;    /* its limit has lease = true: a leasing store may use a block */
};

struct sl_store_result {
    double remaining;  /* tokens left (after taking, when admitted); a multiple of 0.001 */
    uint64_t retry_ms; /* until `cost` tokens are there again; 0 when they are;
                          SL_STORE_RETRY_NEVER when cost > burst */
    uint64_t reset_ms; /* until the bucket is full again */
};

#define SL_STORE_RETRY_NEVER UINT64_MAX

enum sl_store_status {
    SL_STORE_OK,
    SL_STORE_TIMEOUT,      /* no reply within the configured timeout, or too much queued */
    SL_STORE_CONNECTION,   /* not connected, refused, reset, or the store was freed */
    SL_STORE_REPLY,        /* an error reply, a reply of the wrong shape, or a bad bucket */
};

/*
 * The answer to one check. `results` has one entry per bucket, in the
 * order of the check, only when status is SL_STORE_OK (else NULL, 0); it is
 * valid until the callback returns. The callback may start new checks and
 * may free the store.
 */
typedef void sl_store_cb(void *arg, enum sl_store_status status, bool is_admitted,
                         const struct sl_store_result *results, size_t nresults);

/*
 * Leases (docs/rate-limiting.md, lua/token_bucket.lua): a worker, the
 * "holder" (a random hex id of at most 32 digits), takes a block of tokens
 * in one call and admits from it locally, and gives the rest back when it is
 * done. The store remembers what each holder was given, so the bucket never
 * refills over burst minus what is held, and forgets a holder ttl2_ms after
 * its last take (the holder must stop spending long before).
 */
enum sl_lease_op {
    SL_LEASE_TAKE, /* take up to `milli`, the holder still holding `held_milli` */
    SL_LEASE_GIVE, /* give back `milli` (the lease ends: the holder holds nothing) */
};

/*
 * The answer to a lease operation: the milli-tokens taken (TAKE) or put
 * back (GIVE), and the bucket as it now is (for a request of the bucket's
 * cost); `result` is NULL unless status is SL_STORE_OK, valid until the
 * callback returns. Called exactly once, as a check's callback is.
 */
typedef void sl_store_lease_cb(void *arg, enum sl_store_status status, int64_t moved_milli,
                               const struct sl_store_result *result);

struct sl_store_ops {
    const char *name;
    /*
     * Calls cb exactly once: with the answer, on error, on timeout, and with
     * SL_STORE_CONNECTION when the store is freed first. The embedded store
     * always calls it before check returns; the redis store does so when it
     * fails fast (not connected, the queue full, a bad bucket) and otherwise
     * later, from the event loop. `buckets` need only stay valid until check
     * returns.
     */
    void (*check)(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
                  sl_store_cb *cb, void *arg);
    /* Connected and answering (the embedded store always is). A store of
     * several servers is up while any of them is: checks on a server that
     * is down fail fast in check, so the other servers' keys are still
     * decided. */
    bool (*is_up)(const struct sl_store *store);
    /* Every pending check's callback runs (SL_STORE_CONNECTION) before this
     * returns. Safe from inside one of the store's callbacks. */
    void (*free)(struct sl_store *store);
    /* Counters for metrics, see sl_store_get_stats; may be NULL. */
    void (*stats)(const struct sl_store *store, struct sl_store_stats *stats);
    /*
     * Makes one bucket full again, as if no request had ever touched it: the
     * script's absent key (redis: DEL; embedded: the entry goes). Calls cb
     * exactly once, as check does, with no results and is_admitted true on
     * success. Support tools only (the admin bucket API), never the request
     * path. NULL: the store cannot (sl_store_reset answers SL_STORE_REPLY).
     */
    void (*reset)(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb,
                  void *arg);
    /*
     * One lease operation on one bucket, queued and ordered with the checks
     * (a give-back sent before a take runs before it). Calls cb exactly
     * once, as check does. NULL: the store does not lease (the embedded
     * store, whose checks cost no round trip).
     */
    void (*lease)(struct sl_store *store, const struct sl_store_bucket *bucket,
                  enum sl_lease_op op, int64_t milli, int64_t held_milli, uint64_t ttl2_ms,
                  const char *holder, sl_store_lease_cb *cb, void *arg);
};

struct sl_store {
    const struct sl_store_ops *ops;
};

struct sl_resolver;

/* One per worker: a connection on `base`, connecting at once and
 * reconnecting by itself. NULL and a message in err on a bad url. */
struct sl_store *sl_store_redis_new(const struct sl_store_conf *conf, struct event_base *base,
                                    char *err, size_t err_size);
/* The same, the url's host name taken from `resolver` (the daemon's, on its
 * main loop) rather than looked up, blocking, at each connect. NULL
 * resolver: as sl_store_redis_new. */
struct sl_store *sl_store_redis_new_resolved(const struct sl_store_conf *conf,
                                             struct event_base *base,
                                             struct sl_resolver *resolver, char *err,
                                             size_t err_size);

struct redisReply;
/* The reply to one command, borrowed until the callback returns; NULL when
 * the store did not answer (timed out, connection lost, store freed). */
typedef void sl_store_reply_cb(void *arg, const struct redisReply *reply);
/* Is `store` the redis one? */
bool sl_store_is_redis(const struct sl_store *store);
/*
 * Sends one command (argv, binary-safe) about one key (key, key_len: with
 * Redis Cluster, the node of its slot takes it) over the redis store's
 * connection; cb is called exactly once, after this returns, with the reply
 * or NULL after store.timeout. -1 (cb never called) when the store is not
 * redis or the connection is not up.
 */
int sl_store_redis_call(struct sl_store *store, const char *key, size_t key_len, int argc,
                        const char **argv, const size_t *lens, sl_store_reply_cb *cb,
                        void *arg);

/* The embedded store's table, shared by all workers (thread-safe); bounded to
 * max_keys live buckets, buckets reclaimed once full again. Free it after
 * every handle on it. */
struct sl_store_local_table *sl_store_local_table_new(size_t max_keys);
void sl_store_local_table_free(struct sl_store_local_table *table);
/* A worker's handle on the shared table. */
struct sl_store *sl_store_local_new(struct sl_store_local_table *table);

/* A handle's counters, each counted since the handle was made. */
struct sl_store_stats {
    bool is_up;                 /* as ops->is_up */
    uint64_t checks;            /* checks answered, whatever the status */
    uint64_t calls;             /* redis: script calls sent (one carries many checks) */
    uint64_t errors_timeout;    /* checks failed with SL_STORE_TIMEOUT */
    uint64_t errors_connection; /* checks failed with SL_STORE_CONNECTION */
    uint64_t errors_reply;      /* checks failed with SL_STORE_REPLY */
    uint64_t connects;          /* redis: connections that became ready (first one included) */
    uint64_t reconnects;        /* redis: connections that became ready after a lost one */
    uint64_t noscript_reloads;  /* redis: SCRIPT LOAD sent again after a NOSCRIPT reply */
    uint64_t evictions;         /* local: live buckets this handle's checks dropped from
                                   the shared table to stay within max_keys */
};

/* Fills *stats (zeroes where the store keeps no count). Any thread. */
static inline void
sl_store_get_stats(const struct sl_store *store, struct sl_store_stats *stats)
{
    *stats = (struct sl_store_stats){ .is_up = store->ops->is_up(store) };
    if (store->ops->stats != NULL)
        store->ops->stats(store, stats);
}

/* The shared table's own numbers: one table per process, so read them once,
 * not per worker. Any thread. */
struct sl_store_local_table_stats {
    uint64_t keys;      /* live buckets now (some may already be full, not yet reclaimed) */
    uint64_t max_keys;
    uint64_t reclaimed; /* buckets dropped because they were full again */
    uint64_t evictions; /* buckets dropped before they were full, to stay within max_keys */
    uint64_t bytes;     /* memory held by the table's slots */
};
void sl_store_local_table_get_stats(const struct sl_store_local_table *table,
                                    struct sl_store_local_table_stats *stats);

/* See sl_store_ops.check. */
static inline void
sl_store_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
               sl_store_cb *cb, void *arg)
{
    store->ops->check(store, buckets, n, cb, arg);
}

/* See sl_store_ops.reset. */
static inline void
sl_store_reset(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb,
               void *arg)
{
    if (store->ops->reset == NULL)
        cb(arg, SL_STORE_REPLY, false, NULL, 0);
    else
        store->ops->reset(store, key, key_len, cb, arg);
}

/* See sl_store_ops.lease; SL_STORE_REPLY from a store that cannot lease. */
static inline void
sl_store_lease(struct sl_store *store, const struct sl_store_bucket *bucket, enum sl_lease_op op,
               int64_t milli, int64_t held_milli, uint64_t ttl2_ms, const char *holder,
               sl_store_lease_cb *cb, void *arg)
{
    if (store->ops->lease == NULL)
        cb(arg, SL_STORE_REPLY, 0, NULL);
    else
        store->ops->lease(store, bucket, op, milli, held_milli, ttl2_ms, holder, cb, arg);
}

/* See sl_store_ops.free; NULL is a no-op. */
static inline void
sl_store_free(struct sl_store *store)
{
    if (store != NULL)
        store->ops->free(store);
}

#endif
