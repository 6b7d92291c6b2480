/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The backend interface the limiter talks to, picked by name from the conf
 * (redis or local). A check names every bucket one request matches; the store
 * takes `cost` from all of them or from none, atomically, with the algorithm
 * of lua/token_bucket.lua.
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

struct sl_store_bucket {
    const char *key;   /* full key: "<prefix>:<limit name>:<escaped key value>" */
    size_t key_len;
    double rate;       /* tokens per per_ms */
    uint64_t per_ms;
    double burst;      /* capacity */
    double cost;       /* tokens this request takes */
};

struct sl_store_result {
    double remaining;  /* tokens left (after taking, when admitted) */
    uint64_t retry_ms; /* until `cost` tokens are there again; 0 when there are */
    uint64_t reset_ms; /* until the bucket is full again */
};

/*
 * Added notes on the fields above (lua/token_bucket.lua is the reference):
 * - token amounts are exact in thousandths of a token: rate and burst are
 *   rounded down, cost up, so rounding can only refuse more, never admit more;
 *   `remaining` is a multiple of 0.001;
 * - retry_ms is SL_STORE_RETRY_NEVER when cost > burst (it can never pass);
 * - a bucket with rate < 0.001, per_ms == 0, or a negative/NaN burst or cost
 *   fails its check with SL_STORE_REPLY (config validation should stop these).
 */
#define SL_STORE_RETRY_NEVER UINT64_MAX

enum sl_store_status {
    SL_STORE_OK,
    SL_STORE_TIMEOUT,      /* no reply within the configured timeout */
    SL_STORE_CONNECTION,   /* not connected, refused, reset */
    SL_STORE_REPLY,        /* an error reply or a reply of the wrong shape */
};

/* `results` has one entry per bucket, in order; valid until the callback
 * returns and only when status is SL_STORE_OK. */
/* (Added) The redis store too may call it before check returns: when it is
 * down it fails fast with SL_STORE_CONNECTION instead of queueing. */
typedef void sl_store_cb(void *arg, enum sl_store_status status, bool is_admitted,
                         const struct sl_store_result *results, size_t nresults);

struct sl_store_ops {
    const char *name;
    /* Calls cb exactly once, on success, error, timeout and on free; the
     * embedded store calls it before check returns. `buckets` need only stay
     * valid until check returns. */
    void (*check)(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
                  sl_store_cb *cb, void *arg);
    /* Connected and answering (the embedded store always is). */
    bool (*is_up)(const struct sl_store *store);
    void (*free)(struct sl_store *store);
    /* Added: counters for metrics, see sl_store_get_stats; may be NULL. */
    void (*stats)(const struct sl_store *store, struct sl_store_stats *stats);
};

struct sl_store {
    const struct sl_store_ops *ops;
};

/* One per worker: a hiredis async connection on `base`. NULL + err on a bad url. */
struct sl_store *sl_store_redis_new(const struct sl_store_conf *conf, struct event_base *base,
                                    char *err, size_t err_size);

/* The embedded store's table, shared by all workers (thread-safe); bounded to
 * max_keys live buckets, expired buckets reclaimed. */
struct sl_store_local_table *sl_store_local_table_new(size_t max_keys);
void sl_store_local_table_free(struct sl_store_local_table *table);
/* A worker's handle on the shared table. */
struct sl_store *sl_store_local_new(struct sl_store_local_table *table);

/*
 * Added: counters for metrics. Every field counts since the store was made;
 * all getters may be called from any thread (relaxed atomic reads).
 */
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
};

/* Fills *stats (zeroes when the store keeps none). */
static inline void
sl_store_get_stats(const struct sl_store *store, struct sl_store_stats *stats)
{
    *stats = (struct sl_store_stats){ .is_up = store->ops->is_up(store) };
    if (store->ops->stats != NULL)
        store->ops->stats(store, stats);
}

/* Added: the shared table's own numbers (one table per process, so read them
 * once, not per worker). */
struct sl_store_local_table_stats {
    uint64_t keys;      /* live buckets now (some may already be full, not yet reclaimed) */
    uint64_t max_keys;
    uint64_t reclaimed; /* buckets dropped because they were full again */
    uint64_t evictions; /* buckets dropped before they were full, to stay within max_keys */
    uint64_t bytes;     /* memory held by the table's slots */
};
void sl_store_local_table_get_stats(const struct sl_store_local_table *table,
                                    struct sl_store_local_table_stats *stats);

static inline void
sl_store_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
               sl_store_cb *cb, void *arg)
{
    store->ops->check(store, buckets, n, cb, arg);
}

static inline void
sl_store_free(struct sl_store *store)
{
    if (store != NULL)
        store->ops->free(store);
}

#endif
