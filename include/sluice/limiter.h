/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Rate-limit policy: which limits of a route apply to a request, their keys
 * and cost, one atomic check against the configured store, and the response
 * header lines that describe the outcome. One limiter per worker thread and
 * config generation; it is only ever used from that worker's event loop.
 * docs/rate-limiting.md describes the keys, headers and failure policies.
 */
#ifndef SL_LIMITER_H
#define SL_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sl_config;
struct sl_route_conf;
struct sl_request;
struct sl_store;
struct sl_limiter;
struct sl_limiter_shared;
struct sl_metrics_worker;

enum sl_verdict {
    SL_VERDICT_ALLOW,       /* forward it (also: shadow-only refusals, fail-open) */
    SL_VERDICT_DENY,        /* 429 */
    SL_VERDICT_UNAVAILABLE, /* store failed and on_error = "deny": 503 */
    SL_VERDICT_DELAY,       /* refused for now: check again after wait_ms */
};

struct sl_decision {
    enum sl_verdict verdict;
    unsigned retry_after_s; /* DENY and UNAVAILABLE: >= 1 */
    /* DELAY: every limit that refused has a `delay` long enough for its
     * tokens to come back within this wait (it took nothing). The caller
     * must call sl_limiter_delay_end once the wait is over, then check again
     * with sl_limiter_recheck. */
    uint64_t wait_ms;
    /* Complete header lines ("Name: value\r\n" ...) to add to the response,
     * whatever the verdict; may be empty. Retry-After is among them for DENY
     * and UNAVAILABLE. Content-Type is not: the body below is always
     * application/problem+json. */
    const char *headers;
    size_t headers_len;
    /* DENY and UNAVAILABLE: the RFC 9457 problem+json body (for DENY it names
     * the violated policies); NULL for ALLOW. */
    const char *problem;
    size_t problem_len;
    double limiter_ms; /* time spent deciding, store round trip included */
    const char *outcome; /* short word for the access log: "admitted", "limited",
                            "shadow_limited", "store_error", "none",
                            "delayed"; a static
                            string, so it may be kept after the callback */
};

/*
 * Called exactly once per sl_limiter_check, also when the store fails or the
 * limiter is freed while the check waits (on_error decides those). It may
 * run before sl_limiter_check returns: when no limit applies, when the
 * embedded store or the deny cache decides, or when the redis store fails
 * fast; otherwise it runs later, from the worker's event loop. The
 * decision is valid until the callback returns (outcome excepted). The
 * callback may start new checks, and may free the limiter: it then goes
 * when the callback returns.
 */
typedef void sl_limiter_cb(void *arg, const struct sl_decision *decision);

/* Process-wide state every worker's limiter shares: the embedded store's
 * table (bounded to max_keys live buckets) and the store up/down state that
 * transition log lines are written from. Lives for the life of the process,
 * across reloads, so buckets survive a reload. Thread-safe. */
struct sl_limiter_shared *sl_limiter_shared_new(size_t max_keys);
void sl_limiter_shared_free(struct sl_limiter_shared *shared);
struct sl_idem_table;
/* Where the process's embedded idempotency table goes (made on first use
 * by src/phase_idem.c, freed with the shared state); NULL without one. */
struct sl_idem_table *_Atomic *sl_limiter_idem_slot(const struct sl_limiter *limiter);
/* The daemon's resolver, for a redis store whose url names its host: set
 * before the first limiter is made; it must outlive every limiter. */
struct sl_resolver;
void sl_limiter_shared_set_resolver(struct sl_limiter_shared *shared,
                                    struct sl_resolver *resolver);

/*
 * A worker's limiter for one config generation. `cfg` must outlive it. Redis
 * connections it opens run on `base`. Builds the store cfg->store names (and
 * the embedded fallback for on_error = "local") and a Lua runtime when a
 * limit has a key or cost function. Returns NULL and fills err on failure
 * (e.g. a key function that does not load).
 */
struct sl_limiter *sl_limiter_new(const struct sl_config *cfg, struct event_base *base,
                                  struct sl_limiter_shared *shared, char *err, size_t err_size);
/*
 * The same with the stores given (the seam unit tests use): `store` is the
 * primary, `fallback` (may be NULL) is checked when the primary fails and
 * cfg->store.on_error is SL_ON_ERROR_LOCAL. The limiter owns both from here
 * on, also when it returns NULL.
 */
struct sl_limiter *sl_limiter_new_with_stores(const struct sl_config *cfg,
                                              struct sl_store *store,
                                              struct sl_store *fallback,
                                              struct sl_limiter_shared *shared, char *err,
                                              size_t err_size);
/* Pending checks complete (as store errors) before this returns. From inside
 * a decision's callback, the limiter goes when that callback returns. NULL
 * is a no-op. */
void sl_limiter_free(struct sl_limiter *limiter);

/* Reports each limit's outcome, key-function errors, store call latency and
 * errors, reconnects, NOSCRIPT reloads, embedded-store evictions and the
 * store state to a worker's metrics. limit_slots[i] is the metrics slot of
 * cfg->limits[i]; both must outlive the limiter. */
void sl_limiter_set_metrics(struct sl_limiter *limiter, struct sl_metrics_worker *metrics,
                            const unsigned *limit_slots);

/* `route` must belong to the limiter's config; `req` need only stay valid
 * until this returns. See sl_limiter_cb for when cb runs. */
void sl_limiter_check(struct sl_limiter *limiter, const struct sl_route_conf *route,
                      const struct sl_request *req, sl_limiter_cb *cb, void *arg);

/*
 * The same for a request that has already waited `waited_ms` for its
 * tokens: a limit's `delay` bounds the whole wait, so the decision is DELAY
 * only while waited_ms plus the new wait stays within it. sl_limiter_check
 * is this with 0. A request is counted `delayed` in the metrics at its
 * first wait only.
 */
void sl_limiter_recheck(struct sl_limiter *limiter, const struct sl_route_conf *route,
                        const struct sl_request *req, uint64_t waited_ms, sl_limiter_cb *cb,
                        void *arg);
/* A DELAY decision's wait is over (or abandoned): its place among the
 * worker's max_delayed waiting requests is free again. */
void sl_limiter_delay_end(struct sl_limiter *limiter);

/*
 * Gives every leased block back to the store (docs/rate-limiting.md,
 * "Leases") and stops leasing; cb runs once the store has answered, or
 * after at most a second, or at once when nothing is leased. For the end of
 * a drain: the worker's loop must keep running until cb. NULL: cb at once.
 */
void sl_limiter_return_leases(struct sl_limiter *limiter, void (*cb)(void *arg), void *arg);

/* True when the store answers, or when on_error lets requests through anyway. */
bool sl_limiter_is_ready(const struct sl_limiter *limiter);

/* ---- the bucket API: one bucket, looked at or reset (docs/operations.md) ---- */

/*
 * A limiter for looking buckets up, on `base` (the admin listener's loop):
 * its own store handle of the kind cfg->store names (its own redis
 * connection, or the shared embedded table), no fallback, no Lua state.
 * Only sl_limiter_bucket and sl_limiter_free may be called on it.
 */
struct sl_limiter *sl_limiter_new_lookup(const struct sl_config *cfg, struct event_base *base,
                                         struct sl_limiter_shared *shared, char *err,
                                         size_t err_size);

enum sl_bucket_status {
    SL_BUCKET_OK,       /* the callback will run (it may have run already) */
    SL_BUCKET_NO_LIMIT, /* no limit of that name; no callback */
    SL_BUCKET_BAD_KEY,  /* not one value per part of the limit's key; no callback */
};

/* A bucket as the store sees it now (the store's clock, its arithmetic). */
struct sl_bucket_view {
    const char *limit;  /* the limit's name */
    const char *store;  /* "redis" or "local" */
    const char *key;    /* the full store key, as requests name it */
    size_t key_len;
    double tokens;      /* now; a multiple of 0.001 */
    double burst;
    double rate;        /* tokens per per_ms */
    uint64_t per_ms;
    double cost;        /* one request's cost (1 when a cost function decides) */
    uint64_t full_ms;   /* until the bucket is full */
    uint64_t retry_ms;  /* until a request of `cost` would pass, 0: now;
                           SL_STORE_RETRY_NEVER (store.h) when cost > burst */
};

/* `status` is the store's (enum sl_store_status); view is set only when it
 * is SL_STORE_OK, and valid until the callback returns. */
typedef void sl_bucket_cb(void *arg, int status, const struct sl_bucket_view *view);

/*
 * Looks at the bucket of limit `name` for the key `values` (one per part of
 * the limit's key, nvalues of them; a "global" key may be given none) and
 * calls cb exactly once with its state, also when the store fails or the
 * limiter is freed first. Looking takes no token. With `is_reset`, the
 * bucket is first made full again, as if never used, and every limiter of
 * the process forgets its cached refusals. cb may run before this returns.
 */
enum sl_bucket_status sl_limiter_bucket(struct sl_limiter *limiter, const char *name,
                                        const char *const *values, const size_t *lens,
                                        size_t nvalues, bool is_reset, sl_bucket_cb *cb,
                                        void *arg);

#endif
