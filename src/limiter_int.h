/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Shared by the files of the limiter module, and by nothing else:
 *   limiter.c         the request path: keys, the check, the decision
 *   limiter_bucket.c  the bucket API: one bucket looked at or reset
 * struct sl_limiter stays private to limiter.c; these read it.
 */
#ifndef SL_LIMITER_INT_H
#define SL_LIMITER_INT_H

#include <stddef.h>

struct event_base;
struct sl_metrics_worker;
struct sl_config;
struct sl_limiter;
struct sl_limiter_shared;
struct sl_store;

const struct sl_config *sl_limiter_config(const struct sl_limiter *limiter);
struct sl_store *sl_limiter_store(const struct sl_limiter *limiter);
struct sl_limiter_shared *sl_limiter_get_shared(const struct sl_limiter *limiter);
/* The longest full key the limiter can build, in bytes. */
size_t sl_limiter_key_max(const struct sl_limiter *limiter);
/*
 * Writes the full store key of cfg->limits[limit] for the values of its key
 * parts (values[j] of lens[j] bytes, one per part, in order) into `key`
 * (sl_limiter_key_max bytes), exactly as a request with those values gets
 * it; returns its length.
 */
size_t sl_limiter_bucket_key(const struct sl_limiter *limiter, size_t limit,
                             const char *const *values, const size_t *lens, char *key);
/* A bucket was reset: every limiter sharing `shared` forgets its cached
 * refusals before its next check. Any thread; NULL is a no-op. */
void sl_limiter_shared_note_reset(struct sl_limiter_shared *shared);

/* limiter_lease.c: `inner` (redis) behind a store that admits hot keys of
 * `lease = true` limits from leased blocks; `inner` itself when no limit
 * leases or it cannot lease. The result owns inner. */
struct sl_store *sl_lease_store_wrap(struct sl_store *inner, const struct sl_config *cfg,
                                     struct event_base *base);
/* The store under a lease wrapper (the redis store itself, for commands of
 * its own); any other store as it is. */
struct sl_store *sl_lease_store_inner(struct sl_store *store);
/* Lease counters go to `metrics`; a no-op for any other store. */
void sl_lease_store_set_metrics(struct sl_store *store, struct sl_metrics_worker *metrics);

#endif
