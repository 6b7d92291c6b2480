/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Process-wide counters per Redis node, shared by every worker's stores and
 * read by /metrics (src/metrics.c renders them as sluice_redis_node_*).
 *
 * An entry is made the first time a node's name is asked for and lives
 * until the process ends, so its counters never go backwards across reloads
 * or reconnections. There are at most SL_REDIS_NODES_MAX entries; past that
 * sl_redis_node_get returns NULL (a warning is logged once per process) and
 * the counting functions ignore a NULL node, so callers need no test.
 *
 * Threads: every function may be called from any thread. sl_redis_node_get
 * takes a mutex (call it when a connection is set up, not per call); the
 * counting functions are relaxed atomic adds, no lock, no allocation.
 *
 * The latency histogram has the bounds of every other sluice histogram:
 * sl_metrics_new hands them over with sl_redis_nodes_set_bounds. They are
 * fixed once the first entry exists (its counts were made against them).
 */
#ifndef SL_STORE_REDIS_NODES_H
#define SL_STORE_REDIS_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/metrics.h"

struct sl_redis_node;

/* Entries at most, over the life of the process. */
#define SL_REDIS_NODES_MAX 64
/* Longest name kept; a longer one gets NULL (a host name is at most 253
 * bytes, a unix socket path 107). */
#define SL_REDIS_NODE_NAME_MAX 300

/* The errors counted per node, in this order (label kind). */
enum sl_redis_node_error {
    SL_REDIS_NODE_TIMEOUT,
    SL_REDIS_NODE_CONNECTION,
    SL_REDIS_NODE_REPLY,
    SL_REDIS_NODE_NERRORS
};

/*
 * The entry for `name` ("host:port", "[::1]:6379", "unix:/path", ...; the
 * caller picks one spelling per node: names are compared byte for byte),
 * made on first use. NULL when the table is full, the name is NULL, empty
 * or longer than SL_REDIS_NODE_NAME_MAX. The entry lives as long as the
 * process: keep the pointer.
 */
struct sl_redis_node *sl_redis_node_get(const char *name);

/* A connection to the node came up (+1) or went down (-1). NULL: no-op. */
void sl_redis_node_conn(struct sl_redis_node *node, int delta);
/* A call got its reply after latency_us: once per call that Redis answered,
 * error replies included (count those with sl_redis_node_error too); a call
 * that timed out or lost its connection is only an error. NULL: no-op. */
void sl_redis_node_call(struct sl_redis_node *node, uint64_t latency_us);
/* n calls failed with `kind`, an enum sl_store_status: SL_STORE_TIMEOUT,
 * SL_STORE_CONNECTION or SL_STORE_REPLY (anything else is ignored). NULL: no-op. */
void sl_redis_node_error(struct sl_redis_node *node, int kind, uint64_t n);
/* The node answered MOVED (is_ask false) or ASK (is_ask true). NULL: no-op. */
void sl_redis_node_redirect(struct sl_redis_node *node, bool is_ask);

/* ---- for sl_metrics_new and the scrape ------------------------------------------------ */

/*
 * The histogram's upper bounds in µs, increasing, at most
 * SL_METRICS_MAX_BUCKETS of them (sl_metrics_new has checked them). Taken
 * while the table is empty; once an entry exists they stay as they are and
 * this returns -1. Until the first call there are no bounds: every
 * observation lands in +Inf.
 */
int sl_redis_nodes_set_bounds(const uint64_t *bounds_us, size_t nbounds);

/* One entry's counters, read with relaxed loads (a scrape racing a call may
 * see one counter moved and not yet another). */
struct sl_redis_node_stats {
    const char *name; /* valid for the life of the process */
    int64_t conns_up; /* connections up now, summed over every worker */
    uint64_t calls;   /* answered calls: the histogram's count */
    uint64_t errors[SL_REDIS_NODE_NERRORS];
    uint64_t redirects[2]; /* MOVED, ASK */
    size_t nbounds;
    const uint64_t *bounds_us; /* nbounds of them, fixed for the life of the process */
    uint64_t buckets[SL_METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; +Inf last */
    uint64_t sum_us;
};

/* Entries made so far; they are numbered 0 .. count - 1 in the order they were made. */
size_t sl_redis_nodes_count(void);
/* The counters of entry i < sl_redis_nodes_count(). */
void sl_redis_nodes_stats(size_t i, struct sl_redis_node_stats *st);

#endif
