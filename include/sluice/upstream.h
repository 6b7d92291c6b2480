/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream pools, one per worker thread and config generation: round-robin
 * over the servers, connect with failover, a bounded cache of idle keep-alive
 * connections, and the in-flight bound with its waiting queue.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
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
 * allocates nothing. Fields are the pool's. */
struct sl_upstream_wait {
    struct sl_upstream_pool *pool;
    sl_upstream_cb *cb;
    void *arg;
    struct sl_upstream_wait *next, *prev; /* queue links */
    struct sl_upconn *connecting;
    struct event timer;
    unsigned servers_tried;
    unsigned first_server;
    uint64_t skipped_down;  /* servers (first 64) passed over as down */
    int last_status;
    int phase;      /* what the timer means now: queued, connecting, delivering */
    bool is_queued;
    bool is_active; /* between acquire and the callback */
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
    bool has_reachable_server; /* some server neither down nor ejected */
};
void sl_upstream_pool_stats(const struct sl_upstream_pool *pool, struct sl_upstream_stats *out);

#endif
