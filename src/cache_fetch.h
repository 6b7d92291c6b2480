/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Background refreshes of stale cache entries (RFC 5861
 * stale-while-revalidate): a GET of the cache's own on an upstream
 * connection from the route's pool, its response stored (a 200) or the
 * stale entry confirmed (a 304), no client waiting on it. Private to the
 * cache phase (src/phase_cache.c); runs on one worker's loop.
 */
#ifndef SL_CACHE_FETCH_H
#define SL_CACHE_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sl_cache;
struct sl_cache_conf;
struct sl_cache_obj;
struct sl_upstream_pool;
struct sl_cache_fetch;

struct sl_cache_fetch_args {
    struct sl_cache *store;
    const struct sl_cache_conf *cc;
    struct event_base *base;
    struct sl_upstream_pool *pool;
    uint64_t timeout_ms;       /* the upstream's timeout: the whole fetch */
    char *claim_key;           /* claimed (sl_cache_claim); released and freed at the end */
    size_t claim_key_len;
    char *store_key;           /* where the entry lives (the key or a variant); freed */
    size_t store_key_len;
    struct sl_cache_obj *stale; /* a reference, dropped at the end */
    char *head;                /* the request head to send; freed */
    size_t head_len;
};

/* Starts a fetch, taking over everything in *args, and links it in *list
 * (the route's, for sl_cache_fetch_abort_all). */
void sl_cache_fetch_start(struct sl_cache_fetch **list, const struct sl_cache_fetch_args *args);
/* Ends every fetch of the list: the generation goes (its pools still live). */
void sl_cache_fetch_abort_all(struct sl_cache_fetch **list);

#endif
