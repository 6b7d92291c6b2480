/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The bucket API of the admin listener, for support teams: GET
 * /ratelimit/buckets?limit=NAME&key=VALUE shows one bucket as the store
 * sees it, DELETE on the same URL makes it full again. It runs on the main
 * thread's loop, next to the other admin endpoints, with a limiter of its
 * own (sl_limiter_new_lookup): its own redis connection, async on that
 * loop, so a slow Redis delays only the admin answers, bounded by
 * store.timeout, and never a worker. docs/operations.md describes it.
 * Authentication is the admin listener's (daemon.c), done before this runs.
 */
#ifndef SL_ADMIN_BUCKETS_H
#define SL_ADMIN_BUCKETS_H

#include <stdbool.h>
#include <stddef.h>

struct evhttp_request;
struct event_base;
struct sl_bucket_view;
struct sl_config;
struct sl_limiter_shared;
struct sl_admin_buckets;

#define SL_ADMIN_BUCKETS_PATH "/ratelimit/buckets"

/* Requests are answered on `base`; `shared` is the process's limiter state
 * (the embedded store's table). Both must outlive it. */
struct sl_admin_buckets *sl_admin_buckets_new(struct event_base *base,
                                              struct sl_limiter_shared *shared);
/*
 * Looks buckets up in `cfg` from now on (at start and after each reload);
 * cfg must stay valid until the next call or the free. Lookups still
 * waiting on the previous config's store are answered 503 first. -1 with
 * err when the store cannot be set up: lookups are then answered 503 until
 * a config that works.
 */
int sl_admin_buckets_set_config(struct sl_admin_buckets *b, const struct sl_config *cfg,
                                char *err, size_t err_size);
/* Lookups still waiting are answered 503 before this returns. NULL: no-op. */
void sl_admin_buckets_free(struct sl_admin_buckets *b);
/* Answers req, now or later from the loop: 200, 400, 404, 405 or 503. */
void sl_admin_buckets_handle(struct sl_admin_buckets *b, struct evhttp_request *req);

/* ---- the pure parts, exposed for tests ---------------------------------- */

#define SL_BUCKET_QUERY_MAX 8192 /* bytes of a query string */
#define SL_BUCKET_KEYS_MAX 16    /* key= values: one per part of a composite key */

struct sl_bucket_query {
    char *limit;                            /* NUL-terminated, decoded */
    char *values[SL_BUCKET_KEYS_MAX];       /* decoded; may hold NUL bytes */
    size_t lens[SL_BUCKET_KEYS_MAX];
    size_t nvalues;
};

/*
 * Parses "limit=NAME&key=VALUE[&key=VALUE2...]" (percent-decoded; '+' is a
 * plus sign, not a space). 0, or -1 with a message for a 400 in err: no
 * limit, a parameter given twice (limit) or unknown, a bad escape, too
 * long, a value that is not UTF-8. q is empty after -1 and is released
 * with sl_bucket_query_fini either way.
 */
int sl_bucket_query_parse(const char *query, struct sl_bucket_query *q, char *err,
                          size_t err_size);
void sl_bucket_query_fini(struct sl_bucket_query *q);
/* The JSON document of a bucket (malloc'd, NUL-terminated). */
char *sl_bucket_view_json(const struct sl_bucket_view *view, const struct sl_bucket_query *q);
/* An RFC 9457 problem document (malloc'd) with title and detail. */
char *sl_admin_problem_json(int status, const char *title, const char *detail);

#endif
