/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The HTTP caching rules the cache phase needs (RFC 9111, RFC 9110 section
 * 13 conditionals, RFC 5861), as pure functions of header arrays: what a
 * response's Cache-Control says, its freshness lifetime, the cache key and
 * a Vary variant key, validators, and (cache_obj.c) the objects stored.
 * No I/O, no clock: times are passed in. src/phase_cache.c,
 * src/cache_fetch.c and tests/unit/test_cache_http.c are the users.
 */
#ifndef SL_CACHE_HTTP_H
#define SL_CACHE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_header;
struct sl_request;

/* What a response's Cache-Control (and friends) allow, RFC 9111 section 5.2.2. */
struct sl_cc {
    bool no_store, is_private, no_cache, is_public, must_revalidate;
    int64_t max_age_s, s_maxage_s; /* -1: absent */
    int64_t swr_s, sie_s;          /* stale-while-revalidate, stale-if-error; -1: absent */
};

void sl_cc_parse(const struct sl_header *headers, size_t n, struct sl_cc *cc);

/* An IMF-fixdate (and the two obsolete forms, RFC 9110 section 5.6.7) into
 * seconds since the epoch; -1 when it is not a date. */
int64_t sl_http_date_parse(const char *s, size_t len);

/* May a shared cache store a response with this status at all (RFC 9110
 * section 15.1: heuristically cacheable, or with explicit freshness)? */
bool sl_cache_status_storable(int status, bool has_explicit);

/*
 * The freshness lifetime in ms of a response received at `now_s` (wall
 * clock): s-maxage, max-age, Expires - Date, else `default_ms` when
 * the status is heuristically cacheable, else 0. *age_s gets its age on
 * arrival (Age, or now - Date when larger).
 */
uint64_t sl_cache_freshness_ms(int status, const struct sl_header *headers, size_t n,
                               const struct sl_cc *cc, int64_t now_s, uint64_t default_ms,
                               uint64_t *age_s);

struct sl_cache_conf;
struct sl_cache_obj;

/* ---- cache_obj.c: stored objects from responses ---------------------------- */

/*
 * May a shared cache store this response (RFC 9111 section 3): no no-store
 * or private, no Set-Cookie, a storable status, Content-Length within
 * max_object, and for a request with credentials (has_auth), public or
 * s-maxage. Vary is the caller's.
 */
bool sl_cache_is_storable(const struct sl_cache_conf *conf, int status,
                          const struct sl_header *h, size_t n, bool has_auth);
/*
 * The object to store for a response received at now_s (wall) / now_us
 * (monotonic): its head, validators, freshness and grace; the body is the
 * caller's to append. NULL when it would never be fresh and cannot be
 * revalidated (no ETag, no Last-Modified).
 */
struct sl_cache_obj *sl_cache_obj_build(const struct sl_cache_conf *conf, int status,
                                        const struct sl_header *h, size_t n, int64_t now_s,
                                        uint64_t now_us);
/* The stale object `old`, confirmed by a 304 with headers h: the same
 * response, fresh again with the freshness the 304 gives, else old's
 * (RFC 9111 section 4.3.4). */
struct sl_cache_obj *sl_cache_obj_refreshed(const struct sl_cache_obj *old,
                                            const struct sl_cache_conf *conf,
                                            const struct sl_header *h, size_t n, int64_t now_s,
                                            uint64_t now_us);

/* The first header of that name in a response's array, or NULL. */
const struct sl_header *sl_cache_header(const struct sl_header *headers, size_t n,
                                        const char *name, size_t name_len);

/*
 * The cache key of a request: the lower-cased host (no port), the
 * normalised path and the query as sent: "api.example.com/v1/items?a=1".
 * malloc'd; its length in *len.
 */
char *sl_cache_key(const struct sl_request *req, size_t *len);
/*
 * The Vary names of a response, lower-case, '\n'-separated, into a malloc'd
 * string (NULL: no Vary); *is_star when Vary lists "*".
 */
char *sl_cache_vary_names(const struct sl_header *headers, size_t n, size_t *len, bool *is_star);
/*
 * The key of the variant of `key` that req selects under the Vary names:
 * key '\0' then "name:value\n" for each, values of repeated fields joined
 * with ",". malloc'd.
 */
char *sl_cache_variant_key(const char *key, size_t key_len, const char *names, size_t names_len,
                           const struct sl_request *req, size_t *len);

/*
 * Does If-None-Match (the field's value) match the entity tag (weak
 * comparison, RFC 9110 section 13.1.2)? "*" matches any.
 */
bool sl_cache_etag_match(const char *inm, size_t inm_len, const char *etag, size_t etag_len);

#endif
