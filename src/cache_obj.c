/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Stored responses made from upstream responses (src/cache_http.h): whether
 * a shared cache may store one (RFC 9111 section 3), the object with its
 * head, validators and freshness, and the object a 304 refreshes. Shared by
 * the cache phase and its background refreshes; no I/O, times passed in.
 */
#include "cache_http.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/cache.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "util/alloc.h"

/* Header lines of a stored response: the upstream's, less hop-by-hop
 * fields, framing, Age (made per hit) and Cache-Status (ours per hit). */
static void
build_head(struct sl_cache_obj *obj, const struct sl_header *h, size_t n)
{
    size_t cap = 1, at = 0;

    for (size_t i = 0; i < n; i++)
        cap += h[i].name_len + h[i].value_len + 4;
    obj->head = sl_xmalloc(cap);
    for (size_t i = 0; i < n; i++) {
        if (sl_http_is_hop_by_hop(h, n, &h[i]) || sl_http_name_is(&h[i], SL_LIT("content-length"))
            || sl_http_name_is(&h[i], SL_LIT("transfer-encoding"))
            || sl_http_name_is(&h[i], SL_LIT("age"))
            || sl_http_name_is(&h[i], SL_LIT("cache-status")))
            continue;
        memcpy(obj->head + at, h[i].name, h[i].name_len);
        at += h[i].name_len;
        memcpy(obj->head + at, ": ", 2);
        at += 2;
        if (sl_http_name_is(&h[i], SL_LIT("etag")) && obj->etag == NULL) {
            obj->etag = obj->head + at;
            obj->etag_len = h[i].value_len;
        } else if (sl_http_name_is(&h[i], SL_LIT("last-modified"))
                   && obj->last_modified == NULL) {
            obj->last_modified = obj->head + at;
            obj->last_modified_len = h[i].value_len;
            obj->last_modified_s = sl_http_date_parse(h[i].value, h[i].value_len);
        }
        memcpy(obj->head + at, h[i].value, h[i].value_len);
        at += h[i].value_len;
        memcpy(obj->head + at, "\r\n", 2);
        at += 2;
    }
    obj->head_len = at;
}

static uint64_t
stored_at(uint64_t now_us, uint64_t age_s)
{
    return age_s * 1000000u < now_us ? now_us - age_s * 1000000u : 0;
}

/* RFC 5861's directives of the response, else the route's settings. */
static void
set_grace(struct sl_cache_obj *obj, const struct sl_cc *cc, const struct sl_cache_conf *conf)
{
    obj->swr_ms = cc->swr_s >= 0 ? (uint64_t)cc->swr_s * 1000u : conf->stale_while_revalidate_ms;
    obj->sie_ms = cc->sie_s >= 0 ? (uint64_t)cc->sie_s * 1000u : conf->stale_if_error_ms;
}

bool
sl_cache_is_storable(const struct sl_cache_conf *conf, int status, const struct sl_header *h,
                     size_t n, bool has_auth)
{
    const struct sl_header *cl = sl_cache_header(h, n, SL_LIT("content-length"));
    struct sl_cc cc;
    bool has_explicit;

    sl_cc_parse(h, n, &cc);
    if (cc.no_store || cc.is_private)
        return false;
    if (has_auth && !cc.is_public && cc.s_maxage_s < 0)
        return false;
    if (sl_cache_header(h, n, SL_LIT("set-cookie")) != NULL)
        return false;
    has_explicit = cc.max_age_s >= 0 || cc.s_maxage_s >= 0
        || sl_cache_header(h, n, SL_LIT("expires")) != NULL;
    if (!sl_cache_status_storable(status, has_explicit))
        return false;
    return cl == NULL || (cl->value_len <= 19 && strtoull(cl->value, NULL, 10) <= conf->max_object);
}

struct sl_cache_obj *
sl_cache_obj_build(const struct sl_cache_conf *conf, int status, const struct sl_header *h,
                   size_t n, int64_t now_s, uint64_t now_us)
{
    struct sl_cache_obj *obj;
    struct sl_cc cc;
    uint64_t age_s;

    sl_cc_parse(h, n, &cc);
    obj = sl_cache_obj_new();
    obj->status = status;
    build_head(obj, h, n);
    obj->fresh_ms = sl_cache_freshness_ms(status, h, n, &cc, now_s, conf->ttl_ms, &age_s);
    obj->must_revalidate = cc.no_cache || cc.must_revalidate;
    obj->is_public = cc.is_public || cc.s_maxage_s >= 0;
    set_grace(obj, &cc, conf);
    obj->stored_us = stored_at(now_us, age_s);
    if ((obj->fresh_ms == 0 || obj->must_revalidate) && obj->etag == NULL
        && obj->last_modified == NULL) {
        sl_cache_obj_unref(obj); /* never fresh and no way to revalidate it */
        return NULL;
    }
    return obj;
}

struct sl_cache_obj *
sl_cache_obj_refreshed(const struct sl_cache_obj *old, const struct sl_cache_conf *conf,
                       const struct sl_header *h, size_t n, int64_t now_s, uint64_t now_us)
{
    struct sl_cache_obj *obj = sl_cache_obj_new();
    struct sl_cc cc;
    uint64_t age_s = 0;

    sl_cc_parse(h, n, &cc);
    obj->status = old->status;
    obj->head = sl_xmalloc(old->head_len + 1);
    memcpy(obj->head, old->head, old->head_len);
    obj->head_len = old->head_len;
    if (old->etag != NULL) {
        obj->etag = obj->head + (old->etag - old->head);
        obj->etag_len = old->etag_len;
    }
    if (old->last_modified != NULL) {
        obj->last_modified = obj->head + (old->last_modified - old->head);
        obj->last_modified_len = old->last_modified_len;
    }
    obj->last_modified_s = old->last_modified_s;
    (void)sl_cache_obj_append(obj, old->body, old->body_len, old->body_len);
    obj->fresh_ms = old->fresh_ms;
    obj->must_revalidate = old->must_revalidate;
    obj->is_public = old->is_public;
    obj->swr_ms = old->swr_ms;
    obj->sie_ms = old->sie_ms;
    if (cc.max_age_s >= 0 || cc.s_maxage_s >= 0
        || sl_cache_header(h, n, SL_LIT("expires")) != NULL) {
        obj->fresh_ms = sl_cache_freshness_ms(old->status, h, n, &cc, now_s, conf->ttl_ms, &age_s);
        obj->must_revalidate = cc.no_cache || cc.must_revalidate;
        set_grace(obj, &cc, conf);
    }
    obj->stored_us = stored_at(now_us, age_s);
    return obj;
}
