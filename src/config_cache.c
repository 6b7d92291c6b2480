/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A route's `cache = { ttl = "60s", max_memory = "64m", ... }`: reading and
 * checking the values only. What they mean at run time is
 * src/phase_cache.c's and docs/caching.md's.
 */
#include "config_int.h"

#include <stdlib.h>

#include "util/alloc.h"

const struct opt sl_conf_cache_opts[] = {
    ROW_DURATION("ttl", "60s", 0, 8760 * MS_HOUR, struct sl_cache_conf, ttl_ms),
    ROW_SIZE64("max_memory", "64m", 64 * 1024, UINT64_C(1) << 40, struct sl_cache_conf,
               max_memory),
    ROW_SIZE64("max_object", "1m", 1, UINT64_C(1) << 32, struct sl_cache_conf, max_object),
    ROW_DURATION("stale_while_revalidate", "0s", 0, 8760 * MS_HOUR, struct sl_cache_conf,
                 stale_while_revalidate_ms),
    ROW_DURATION("stale_if_error", "0s", 0, 8760 * MS_HOUR, struct sl_cache_conf,
                 stale_if_error_ms),
    ROW_DURATION("lock_timeout", "5s", 0, 60 * MS_SECOND, struct sl_cache_conf,
                 lock_timeout_ms),
};
const size_t sl_conf_ncache_opts = NOPTS(sl_conf_cache_opts);

bool
sl_conf_set_route_cache(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    struct sl_cache_conf *c;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { ttl = \"60s\", max_memory = \"64m\", ... }"))
        return false;
    c = sl_xcalloc(1, sizeof(*c));
    sl_conf_defaults(sl_conf_cache_opts, sl_conf_ncache_opts, c);
    w = sl_conf_walk(ld, idx, sl_conf_cache_opts, sl_conf_ncache_opts, c);
    if (w.bad != 0) {
        free(c);
        return false;
    }
    /* A store holds objects in 16 or more shards: an object above a shard's
     * share could never be stored, which the conf should say, not the logs. */
    if (c->max_object > c->max_memory / 64) {
        sl_conf_push_key(ld, "max_object");
        fail(ld, "max_object is more than 1/64 of max_memory: raise max_memory or lower "
                 "max_object");
        sl_conf_pop_key(ld);
        free(c);
        return false;
    }
    free(r->cache);
    r->cache = c;
    return true;
}
