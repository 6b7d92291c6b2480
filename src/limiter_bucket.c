/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The bucket API's side of the limiter: one bucket, named by a limit and a
 * key value, looked at or reset. The key is built by limiter.c's own code,
 * so the bucket is the one requests use; the numbers come from the store's
 * own script (or its C port), so they are what the next request would see.
 *
 * Looking takes nothing, without a mode of its own in the script: a check
 * that is refused takes nothing and reports every bucket of it as it is
 * (lua/token_bucket.lua). A look is therefore a check of two buckets on the
 * same key: the first costs more than the burst, so the check is refused
 * at once; the second costs one request, so its answer is the wait for one
 * request. A reset deletes the key (an absent key is a full bucket), then
 * looks.
 */
#include "sluice/limiter.h"

#include <stdlib.h>
#include <string.h>

#include "limiter_int.h"
#include "sluice/config.h"
#include "sluice/store.h"
#include "util/alloc.h"

struct lookup {
    struct sl_limiter *limiter;
    size_t limit;
    sl_bucket_cb *cb;
    void *arg;
    size_t key_len;
    char key[]; /* sl_limiter_key_max bytes */
};

static double
request_cost(const struct sl_limit_conf *conf)
{
    return !conf->is_cost_function && conf->cost > 0 ? conf->cost : 1;
}

static void
on_look(void *arg, enum sl_store_status status, bool is_admitted,
        const struct sl_store_result *results, size_t nresults)
{
    struct lookup *lk = arg;
    const struct sl_limit_conf *conf = &sl_limiter_config(lk->limiter)->limits[lk->limit];
    struct sl_bucket_view view = {
        .limit = conf->name,
        .store = sl_limiter_store(lk->limiter)->ops->name,
        .key = lk->key,
        .key_len = lk->key_len,
        .burst = conf->burst,
        .rate = conf->rate,
        .per_ms = conf->per_ms,
        .cost = request_cost(conf),
    };

    /* admitted would mean the script took tokens: not the script we know */
    if (status == SL_STORE_OK && (is_admitted || nresults != 2))
        status = SL_STORE_REPLY;
    if (status == SL_STORE_OK) {
        view.tokens = results[1].remaining;
        view.full_ms = results[1].reset_ms;
        view.retry_ms = results[1].retry_ms;
    }
    lk->cb(lk->arg, (int)status, status == SL_STORE_OK ? &view : NULL);
    free(lk);
}

static void
look(struct lookup *lk)
{
    const struct sl_limit_conf *conf = &sl_limiter_config(lk->limiter)->limits[lk->limit];
    struct sl_store_bucket b = {
        .key = lk->key,
        .key_len = lk->key_len,
        .rate = conf->rate,
        .per_ms = conf->per_ms,
        .burst = conf->burst,
    };
    struct sl_store_bucket buckets[2] = { b, b };

    buckets[0].cost = conf->burst + 1;
    buckets[1].cost = request_cost(conf);
    sl_store_check(sl_limiter_store(lk->limiter), buckets, 2, on_look, lk);
}

static void
on_reset(void *arg, enum sl_store_status status, bool is_admitted,
         const struct sl_store_result *results, size_t nresults)
{
    struct lookup *lk = arg;

    (void)is_admitted;
    (void)results;
    (void)nresults;
    if (status != SL_STORE_OK) {
        lk->cb(lk->arg, (int)status, NULL);
        free(lk);
        return;
    }
    sl_limiter_shared_note_reset(sl_limiter_get_shared(lk->limiter));
    look(lk);
}

static bool
find_limit(const struct sl_config *cfg, const char *name, size_t *limit)
{
    for (size_t i = 0; i < cfg->nlimits; i++) {
        if (strcmp(cfg->limits[i].name, name) == 0) {
            *limit = i;
            return true;
        }
    }
    return false;
}

enum sl_bucket_status
sl_limiter_bucket(struct sl_limiter *limiter, const char *name, const char *const *values,
                  const size_t *lens, size_t nvalues, bool is_reset, sl_bucket_cb *cb,
                  void *arg)
{
    const struct sl_config *cfg = sl_limiter_config(limiter);
    static const char *const global_value[1] = { "" };
    static const size_t global_len[1] = { 0 };
    struct lookup *lk;
    size_t limit;

    if (!find_limit(cfg, name, &limit))
        return SL_BUCKET_NO_LIMIT;
    if (nvalues == 0 && cfg->limits[limit].nparts == 1
        && cfg->limits[limit].parts[0].kind == SL_KEY_GLOBAL) {
        values = global_value;
        lens = global_len;
        nvalues = 1;
    }
    if (nvalues != cfg->limits[limit].nparts)
        return SL_BUCKET_BAD_KEY;
    lk = sl_xmalloc(sizeof(*lk) + sl_limiter_key_max(limiter));
    lk->limiter = limiter;
    lk->limit = limit;
    lk->cb = cb;
    lk->arg = arg;
    lk->key_len = sl_limiter_bucket_key(limiter, limit, values, lens, lk->key);
    if (is_reset)
        sl_store_reset(sl_limiter_store(limiter), lk->key, lk->key_len, on_reset, lk);
    else
        look(lk);
    return SL_BUCKET_OK;
}
