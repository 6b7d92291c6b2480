/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The cache's admin endpoint: POST /cache/purge with a JSON body
 * {"key": "api.example.com/v1/items?a=1"} (that key and its Vary variants)
 * or {"prefix": "api.example.com/v1/"} (every key that starts so), in the
 * stores of every route. Answers {"purged": N}. docs/caching.md describes
 * keys. Authentication is the admin listener's (daemon.c), done before
 * this runs; it runs on the main thread (the stores lock per shard).
 */
#ifndef SL_ADMIN_CACHE_H
#define SL_ADMIN_CACHE_H

#include <stddef.h>

struct evhttp_request;

#define SL_ADMIN_CACHE_PURGE_PATH "/cache/purge"

/* 200, 400 (bad body), 405 (not POST). */
void sl_admin_cache_purge(struct evhttp_request *req);

/*
 * The pure part: the body's key or prefix. 0 with *value (malloc'd) and
 * *is_prefix, or -1 with a message for a 400 in err.
 */
int sl_admin_cache_parse(const char *body, size_t len, char **value, size_t *value_len,
                         int *is_prefix, char *err, size_t err_size);

#endif
