/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream pools, one per worker thread and config generation: the choice
 * of a server (the upstream's balance), connect with failover, a bounded cache of idle keep-alive
 * connections, and the in-flight bound with its waiting queue.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>

struct sl_stream;
struct event_base;
struct sl_upstream_conf;
struct sl_upstream_pool;
struct sl_upconn;

/* status: 0 with a connection, else the HTTP status to answer: 502 (no server
 * reachable), 504 (connect timeout), 503 (queue full or queue wait timed out,
 * or every server down by the active health check: is_all_down). */
typedef void sl_upstream_cb(void *arg, struct sl_upconn *conn, int status);

/* A request's place in line; embedded in the caller's request so waiting
 * allocates nothing. Fields are the pool's, but for hash and has_hash. */
struct sl_upstream_wait {
    struct sl_upstream_pool *pool;
    sl_upstream_cb *cb;
    void *arg;
    struct sl_upstream_wait *next, *prev; /* queue links */
    struct sl_upconn *connecting;
    struct event timer;
    /* Set by the caller before acquire (kept by it) for balance = "hash:...":
     * the hash of the request's key; without it the request is spread as
     * round-robin would. */
    uint64_t hash;
    bool has_hash;
    unsigned attempts;      /* servers chosen for this request so far */
    uint64_t tried[4];      /* which ones (the first 256 of the pool) */
    int last_status;
    int phase;      /* what the timer means now: queued, connecting, delivering */
    bool is_queued;
    bool is_active; /* between acquire and the callback */
    /* retries (sl_upstream_retry): kept from one attempt of a request to the next */
    unsigned retries_used;
    unsigned nconnects;       /* connects begun in this acquisition */
    bool is_retry_counted;    /* counted in the pool's retries in flight */
    char avoid[120];          /* the server the last attempt failed on, tried last; "": none */
    bool is_all_down; /* the 503 is the health check's: no server is up */
};

struct sl_health;
struct sl_metrics_worker;
struct sl_resolver;

/* Counts into `metrics` (may be NULL) under upstream slot `slot`. The
 * servers of conf given by host name take their addresses from resolver
 * (NULL: none are used), checked again at every acquire. Server states are
 * health's, shared with the process's other pools (NULL: the pool's own). */
struct sl_upstream_pool *sl_upstream_pool_new(struct event_base *base,
                                              const struct sl_upstream_conf *conf,
                                              unsigned nworkers,
                                              struct sl_metrics_worker *metrics, unsigned slot,
                                              struct sl_resolver *resolver,
                                              struct sl_health *health);
/* The conf the pool was made from. */
const struct sl_upstream_conf *sl_upstream_pool_conf(const struct sl_upstream_pool *pool);
/* Closes idle connections. Every acquired connection must have been released. */
void sl_upstream_pool_free(struct sl_upstream_pool *pool);

/*
 * Gets a connection, from the idle cache or newly connected. cb fires exactly
 * once, never before this returns, unless sl_upstream_cancel is called first.
 * A connection handed out counts against max_inflight until released.
 */
void sl_upstream_acquire(struct sl_upstream_pool *pool, struct sl_upstream_wait *wait,
                         sl_upstream_cb *cb, void *arg);
/* Withdraws a waiting request (client went away); cb will not fire. */
void sl_upstream_cancel(struct sl_upstream_wait *wait);
/* Returns a connection. Reusable ones go to the idle cache (bounded by keepalive). */
void sl_upstream_release(struct sl_upconn *conn, bool is_reusable);
/* The response head's status, for passive health (5xx with passive_5xx). */
void sl_upstream_report(struct sl_upconn *conn, int status);

/*
 * Another attempt at the request that `wait` acquired `conn` for, after the
 * attempt on conn failed for `reason` (an SL_RETRY_ON_* bit) before any byte
 * of a response was passed on; the caller has decided that the request is
 * safe to send again (sl_upstream_is_resendable). True when the attempt is
 * made: conn is closed, and cb fires as for sl_upstream_acquire (never
 * before this returns), with a connection to another server when the pool
 * has one. False when the upstream's retry_on leaves reason out, the
 * request used its retries, or the retry budget is spent (counted in
 * metrics): nothing changed, conn is still the caller's.
 * Connect failures are retried inside the pool the same way, within the same
 * count and budget.
 */
bool sl_upstream_retry(struct sl_upconn *conn, struct sl_upstream_wait *wait, unsigned reason,
                       sl_upstream_cb *cb, void *arg);

/* ---- upstream_retry.c: when a request may go again -------------------------- */

/* GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 section 9.2.2). */
bool sl_upstream_method_is_idempotent(const char *method, size_t len);
/*
 * Whether a request may be sent again after an attempt failed:
 * bytes_written is what went into the upstream socket of that attempt,
 * is_body_kept says the request's body (none counts) can be sent whole
 * again. A request none of whose bytes was written may always go again;
 * otherwise only an idempotent one, since the upstream may have acted on it.
 */
bool sl_upstream_is_resendable(bool is_idempotent, bool is_body_kept, uint64_t bytes_written);
/*
 * Envoy's retry budget: one more retry may begin while fewer than
 * max(min, percent % of in_flight) are in flight already.
 */
bool sl_upstream_retry_budget_ok(unsigned percent, unsigned min, unsigned in_flight,
                                 unsigned retrying);

/* The connection's socket; its callback is the caller's until release. */
struct sl_stream *sl_upconn_stream(struct sl_upconn *conn);
const char *sl_upconn_address(const struct sl_upconn *conn);
/* Whether the connection came from the idle cache (already used before). */
bool sl_upconn_is_reused(const struct sl_upconn *conn);

/* Counters for metrics and readiness. */
struct sl_upstream_stats {
    unsigned idle;
    unsigned active;
    unsigned queued;
    uint64_t connect_failures;
    uint64_t connect_timeouts;
    uint64_t shed;
    unsigned retrying;         /* requests on a retry now */
    bool has_reachable_server; /* some server neither down nor ejected */
};
void sl_upstream_pool_stats(const struct sl_upstream_pool *pool, struct sl_upstream_stats *out);

#endif
