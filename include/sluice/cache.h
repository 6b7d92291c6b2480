/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The response cache's store: stored responses by key, bounded in memory,
 * shared by the worker threads of a process. It knows nothing of HTTP
 * beyond what an object carries; src/phase_cache.c decides what is stored,
 * served and revalidated (RFC 9111).
 *
 * A store is a set of shards, each a hash table and an LRU list under a
 * mutex of its own, holding at most max_memory / nshards bytes. In front of
 * the LRU sits a TinyLFU admission filter (Einziger, Friedman, Manes 2017):
 * every lookup counts its key in a small count-min sketch of 4-bit counters,
 * halved every so many counts, and a new object that would push entries out
 * is admitted only if its key was asked for more often than each entry it
 * would push out. A scan of one-time URLs then cannot flush the hot set.
 *
 * Objects are immutable once inserted and counted by reference: a hit holds
 * its object while its body is being written, even if the entry is evicted
 * or purged meanwhile. Everything here is thread-safe.
 *
 * A process-wide registry hands out one store per name (the route), so that
 * every worker and every config generation of a route share it, and the
 * admin listener can purge them all.
 */
#ifndef SL_CACHE_H
#define SL_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_cache;

/* A stored response, or a Vary marker (is_vary): the header names the
 * response to that key varies on, in `vary` ("accept-encoding\nx-lang"). */
struct sl_cache_obj {
    atomic_uint refs;
    bool is_vary;
    int status;
    char *head;           /* header lines to replay, "Name: value\r\n"... */
    size_t head_len;
    char *body;
    size_t body_len, body_cap;
    char *vary;           /* lower-case names, '\n'-separated; NULL: none */
    size_t vary_len;
    const char *etag;     /* into head; NULL: none */
    size_t etag_len;
    const char *last_modified; /* into head; NULL: none */
    size_t last_modified_len;
    int64_t last_modified_s;   /* parsed, for If-Modified-Since; -1: none */
    uint64_t stored_us;   /* monotonic clock when the response came, less its age then */
    uint64_t fresh_ms;    /* freshness lifetime */
    uint64_t swr_ms;      /* stale-while-revalidate: may be served that long past fresh */
    uint64_t sie_ms;      /* stale-if-error */
    bool must_revalidate; /* no-cache, must-revalidate or proxy-revalidate */
    bool is_public;       /* public or s-maxage: may answer a request with Authorization */
    size_t charge;        /* what it counts against max_memory */
};

/* New, empty, one reference; its buffers are the caller's to fill (sl_xmalloc). */
struct sl_cache_obj *sl_cache_obj_new(void);
struct sl_cache_obj *sl_cache_obj_ref(struct sl_cache_obj *obj);
/* Drops a reference; the last frees it. NULL is a no-op. */
void sl_cache_obj_unref(struct sl_cache_obj *obj);
/* Appends to the body; false (and nothing appended) past max bytes. */
bool sl_cache_obj_append(struct sl_cache_obj *obj, const char *at, size_t len, size_t max);
/* Its age now, in seconds, by the monotonic clock (util/clock.h). */
uint64_t sl_cache_obj_age_s(const struct sl_cache_obj *obj, uint64_t now_us);

/* What the cache phase counts per store (sluice_cache_*_total). */
enum sl_cache_event {
    SL_CACHE_EV_HIT,         /* served from the cache, fresh */
    SL_CACHE_EV_MISS,        /* went upstream: nothing stored, or not usable */
    SL_CACHE_EV_STALE,       /* served stale (while revalidating, or on an upstream error) */
    SL_CACHE_EV_COLLAPSED,   /* waited for another request's fetch and was served by it */
    SL_CACHE_EV_REVALIDATED, /* a stale entry the upstream confirmed (304) */
    SL_CACHE_EV_NOT_MODIFIED, /* a 304 from the cache to a conditional request */
    SL_CACHE_NEVENTS,
};

void sl_cache_count(struct sl_cache *cache, enum sl_cache_event ev);

struct sl_cache_stats {
    uint64_t events[SL_CACHE_NEVENTS];
    uint64_t bytes;      /* what the entries count against max_memory */
    uint64_t entries;
    uint64_t evictions;  /* entries pushed out to make room */
    uint64_t refused;    /* objects the admission filter kept out */
    uint64_t max_memory;
};

/* ---- one store ------------------------------------------------------------ */

/* nshards: a power of two (0: a default for the machine). */
struct sl_cache *sl_cache_new(uint64_t max_memory, unsigned nshards);
void sl_cache_free(struct sl_cache *cache);

/*
 * The object at key, with a reference for the caller, or NULL. Counts the
 * key in the admission sketch either way (is_counted false: a look that is
 * not a request, and does not count).
 */
struct sl_cache_obj *sl_cache_lookup(struct sl_cache *cache, const char *key, size_t key_len,
                                     bool is_counted);

enum sl_cache_insert_result {
    SL_CACHE_STORED,
    SL_CACHE_REFUSED,   /* the admission filter kept it out */
    SL_CACHE_TOO_LARGE, /* larger than a shard */
};

/* Stores obj at key (the store takes a reference of its own), replacing
 * what was there. */
enum sl_cache_insert_result sl_cache_insert(struct sl_cache *cache, const char *key,
                                            size_t key_len, struct sl_cache_obj *obj);
/* Removes the entry at key if it still holds obj (a stale one found bad). */
void sl_cache_remove(struct sl_cache *cache, const char *key, size_t key_len,
                     const struct sl_cache_obj *obj);
/*
 * Removes key and its variants (keys that continue with a '\0'), or, with
 * is_prefix, every key that starts with key. Returns how many entries went.
 */
size_t sl_cache_purge(struct sl_cache *cache, const char *key, size_t key_len, bool is_prefix);

/*
 * Request collapsing: true when the caller is the one to fetch key (no one
 * else holds it, or the holder is older than hold_us: it is presumed gone);
 * false when another request is fetching it. The holder calls
 * sl_cache_release when its fetch ended, stored or not.
 */
bool sl_cache_claim(struct sl_cache *cache, const char *key, size_t key_len, uint64_t now_us,
                    uint64_t hold_us);
/* Is key claimed (by a holder younger than hold_us)? */
bool sl_cache_is_claimed(struct sl_cache *cache, const char *key, size_t key_len,
                         uint64_t now_us, uint64_t hold_us);
void sl_cache_release(struct sl_cache *cache, const char *key, size_t key_len);

void sl_cache_stats(struct sl_cache *cache, struct sl_cache_stats *st);
/* Changes the bound; entries past it go at the next inserts. */
void sl_cache_set_max_memory(struct sl_cache *cache, uint64_t max_memory);

/* ---- the process's registry ------------------------------------------------ */

/*
 * The store named `name` (a route's [host]path), made on first use with
 * max_memory, else the existing one with its bound set to max_memory. Each
 * call takes a reference, dropped by sl_cache_put; the last one frees it.
 */
struct sl_cache *sl_cache_get(const char *name, uint64_t max_memory);
void sl_cache_put(struct sl_cache *cache);
/* Purges in every store (sl_cache_purge); the entries removed in all. */
size_t sl_cache_purge_all(const char *key, size_t key_len, bool is_prefix);
/* Calls fn for every store in the registry, under its lock. */
void sl_cache_each(void (*fn)(void *arg, const char *name, struct sl_cache *cache), void *arg);

#endif
