/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The per-node table behind sluice_redis_node_*: a fixed array of entries,
 * filled in order under a mutex and never emptied. An entry's name is
 * written once, before the entry is published by raising the count
 * (release), so the scrape reads entries below the count without the lock.
 *
 * Unlike the per-worker counters of metrics.c, every worker talking to a
 * node bumps that node's words, so they take an atomic add (relaxed: the
 * counters order nothing). That is one or two adds per Redis call, a call
 * carrying a whole batch of checks; each entry has cache lines of its own.
 */
#include "store_redis_nodes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "sluice/log.h"
#include "sluice/store.h"

#define CACHE_LINE 64

struct sl_redis_node {
    _Alignas(CACHE_LINE) _Atomic int64_t conns_up;
    _Atomic uint64_t errors[SL_REDIS_NODE_NERRORS];
    _Atomic uint64_t redirects[2];
    _Atomic uint64_t buckets[SL_METRICS_MAX_BUCKETS + 1]; /* +Inf last in use */
    _Atomic uint64_t sum_us;
    char name[SL_REDIS_NODE_NAME_MAX + 1];
};

_Static_assert(SL_STORE_CONNECTION - SL_STORE_TIMEOUT == SL_REDIS_NODE_CONNECTION &&
                   SL_STORE_REPLY - SL_STORE_TIMEOUT == SL_REDIS_NODE_REPLY,
               "node error kinds follow enum sl_store_status");

static struct sl_redis_node nodes[SL_REDIS_NODES_MAX];
static _Atomic size_t nnodes;
/* Guards making entries and the bounds; never taken by the counting functions. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool is_full_logged;
/*
 * Written only while no entry exists (under the lock), so whoever holds an
 * entry got it after the last write: through the lock in sl_redis_node_get,
 * or through the count's release for the scrape.
 */
static uint64_t bounds_us[SL_METRICS_MAX_BUCKETS];
static size_t nbounds;

int
sl_redis_nodes_set_bounds(const uint64_t *bounds, size_t n)
{
    int rc = 0;

    if (n > SL_METRICS_MAX_BUCKETS)
        return -1;
    pthread_mutex_lock(&lock);
    if (atomic_load_explicit(&nnodes, memory_order_relaxed) == 0) {
        memcpy(bounds_us, bounds, n * sizeof(*bounds));
        nbounds = n;
    } else if (n != nbounds || memcmp(bounds_us, bounds, n * sizeof(*bounds)) != 0) {
        rc = -1;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

struct sl_redis_node *
sl_redis_node_get(const char *name)
{
    struct sl_redis_node *node = NULL;
    size_t len, n;

    if (name == NULL)
        return NULL;
    len = strnlen(name, SL_REDIS_NODE_NAME_MAX + 1);
    if (len == 0 || len > SL_REDIS_NODE_NAME_MAX)
        return NULL;
    pthread_mutex_lock(&lock);
    n = atomic_load_explicit(&nnodes, memory_order_relaxed);
    for (size_t i = 0; i < n && node == NULL; i++)
        if (strcmp(nodes[i].name, name) == 0)
            node = &nodes[i];
    if (node == NULL && n < SL_REDIS_NODES_MAX) {
        node = &nodes[n];
        memcpy(node->name, name, len + 1);
        atomic_store_explicit(&nnodes, n + 1, memory_order_release);
    } else if (node == NULL && !is_full_logged) {
        is_full_logged = true;
        sl_log_warnx("redis: more than %d nodes, node \"%s\" and later ones are left out of "
                     "the per-node metrics",
                     SL_REDIS_NODES_MAX, name);
    }
    pthread_mutex_unlock(&lock);
    return node;
}

static void
add(_Atomic uint64_t *word, uint64_t n)
{
    atomic_fetch_add_explicit(word, n, memory_order_relaxed);
}

void
sl_redis_node_conn(struct sl_redis_node *node, int delta)
{
    if (node != NULL)
        atomic_fetch_add_explicit(&node->conns_up, delta, memory_order_relaxed);
}

void
sl_redis_node_call(struct sl_redis_node *node, uint64_t latency_us)
{
    size_t b = 0;

    if (node == NULL)
        return;
    /* the first bound >= latency: buckets are "less than or equal" */
    while (b < nbounds && bounds_us[b] < latency_us)
        b++;
    add(&node->buckets[b], 1);
    add(&node->sum_us, latency_us);
}

void
sl_redis_node_error(struct sl_redis_node *node, int kind, uint64_t n)
{
    if (node != NULL && kind >= SL_STORE_TIMEOUT && kind <= SL_STORE_REPLY)
        add(&node->errors[kind - SL_STORE_TIMEOUT], n);
}

void
sl_redis_node_redirect(struct sl_redis_node *node, bool is_ask)
{
    if (node != NULL)
        add(&node->redirects[is_ask ? 1 : 0], 1);
}

size_t
sl_redis_nodes_count(void)
{
    return atomic_load_explicit(&nnodes, memory_order_acquire);
}

static uint64_t
peek(_Atomic uint64_t *word)
{
    return atomic_load_explicit(word, memory_order_relaxed);
}

void
sl_redis_nodes_stats(size_t i, struct sl_redis_node_stats *st)
{
    struct sl_redis_node *node;

    memset(st, 0, sizeof(*st));
    if (i >= sl_redis_nodes_count())
        return;
    node = &nodes[i];
    st->name = node->name;
    st->conns_up = atomic_load_explicit(&node->conns_up, memory_order_relaxed);
    for (size_t k = 0; k < SL_REDIS_NODE_NERRORS; k++)
        st->errors[k] = peek(&node->errors[k]);
    for (size_t k = 0; k < 2; k++)
        st->redirects[k] = peek(&node->redirects[k]);
    st->nbounds = nbounds;
    st->bounds_us = bounds_us;
    for (size_t b = 0; b <= nbounds; b++) {
        st->buckets[b] = peek(&node->buckets[b]);
        st->calls += st->buckets[b];
    }
    st->sum_us = peek(&node->sum_us);
}
