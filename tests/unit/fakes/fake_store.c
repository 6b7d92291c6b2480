/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The fake store's token buckets follow DESIGN.md's contract in the simplest
 * way (refill on read, take from all or none); it is a test double for the
 * limiter, not a second copy of lua/token_bucket.lua.
 */
#include "fakes/fake_store.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

static struct fake_bucket *
find(struct fake_store *fs, const char *key, size_t len, bool is_create, double burst)
{
    for (size_t i = 0; i < fs->nkeys; i++) {
        if (strlen(fs->table[i].key) == len && memcmp(fs->table[i].key, key, len) == 0)
            return &fs->table[i];
    }
    if (!is_create || fs->nkeys == FAKE_MAX_KEYS || len >= FAKE_KEY_MAX)
        return NULL;
    memcpy(fs->table[fs->nkeys].key, key, len);
    fs->table[fs->nkeys].key[len] = '\0';
    fs->table[fs->nkeys].tokens = burst;
    fs->table[fs->nkeys].at_us = sl_clock_now_us();
    return &fs->table[fs->nkeys++];
}

static void
answer(const struct fake_pending *p)
{
    p->cb(p->arg, p->status, p->is_admitted, p->status == SL_STORE_OK ? p->results : NULL,
          p->status == SL_STORE_OK ? p->n : 0);
}

static void
fake_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
           sl_store_cb *cb, void *arg)
{
    struct fake_store *fs = (struct fake_store *)store;
    struct fake_pending p = { .cb = cb, .arg = arg, .n = n, .is_admitted = true };
    struct fake_bucket *b[FAKE_MAX_BUCKETS];
    uint64_t now = sl_clock_now_us();

    if (fs->ncalls < FAKE_MAX_CALLS) {
        struct fake_call *call = &fs->calls[fs->ncalls];
        call->n = n;
        for (size_t i = 0; i < n && i < FAKE_MAX_BUCKETS; i++) {
            size_t len = buckets[i].key_len < FAKE_KEY_MAX - 1 ? buckets[i].key_len
                                                               : FAKE_KEY_MAX - 1;
            memcpy(call->keys[i], buckets[i].key, len);
            call->keys[i][len] = '\0';
            call->costs[i] = buckets[i].cost;
        }
    }
    fs->ncalls++;

    p.status = fs->fail;
    if (fs->fail == SL_STORE_OK && fs->has_script) {
        fs->has_script = false;
        p.is_admitted = fs->script_admitted;
        memcpy(p.results, fs->script, sizeof(fs->script));
    } else if (fs->fail == SL_STORE_OK) {
        for (size_t i = 0; i < n && i < FAKE_MAX_BUCKETS; i++) {
            double rate_per_ms = buckets[i].rate / (double)buckets[i].per_ms;
            b[i] = find(fs, buckets[i].key, buckets[i].key_len, true, buckets[i].burst);
            b[i]->tokens += (double)(now - b[i]->at_us) / 1000.0 * rate_per_ms;
            if (b[i]->tokens > buckets[i].burst)
                b[i]->tokens = buckets[i].burst;
            b[i]->at_us = now;
            if (b[i]->tokens < buckets[i].cost)
                p.is_admitted = false;
        }
        for (size_t i = 0; i < n && i < FAKE_MAX_BUCKETS; i++) {
            double rate_per_ms = buckets[i].rate / (double)buckets[i].per_ms;
            if (p.is_admitted)
                b[i]->tokens -= buckets[i].cost;
            p.results[i].remaining = b[i]->tokens;
            p.results[i].retry_ms = b[i]->tokens >= buckets[i].cost
                ? 0 : (uint64_t)ceil((buckets[i].cost - b[i]->tokens) / rate_per_ms);
            p.results[i].reset_ms = (uint64_t)ceil((buckets[i].burst - b[i]->tokens)
                                                   / rate_per_ms);
        }
    }
    if (fs->is_async && fs->npending < FAKE_MAX_CALLS) {
        fs->pending[fs->npending++] = p;
        return;
    }
    answer(&p);
}

static bool
fake_is_up(const struct sl_store *store)
{
    return ((const struct fake_store *)store)->is_up;
}

static void
fake_free(struct sl_store *store)
{
    struct fake_store *fs = (struct fake_store *)store;

    /* the contract: pending calls are answered, with an error, on free */
    for (size_t i = 0; i < fs->npending; i++) {
        fs->pending[i].status = SL_STORE_CONNECTION;
        answer(&fs->pending[i]);
    }
    if (fs->freed != NULL)
        *fs->freed = true;
    free(fs);
}

static const struct sl_store_ops fake_ops = {
    .name = "fake", .check = fake_check, .is_up = fake_is_up, .free = fake_free,
};

struct fake_store *
fake_store_new(const char *name)
{
    struct fake_store *fs = calloc(1, sizeof(*fs));

    fs->ops = fake_ops;
    if (name != NULL)
        fs->ops.name = name;
    fs->base.ops = &fs->ops;
    fs->is_up = true;
    return fs;
}

void
fake_store_flush(struct fake_store *fs)
{
    size_t n = fs->npending;
    struct fake_pending held[FAKE_MAX_CALLS];

    memcpy(held, fs->pending, n * sizeof(held[0]));
    fs->npending = 0;
    for (size_t i = 0; i < n; i++)
        answer(&held[i]);
}

void
fake_store_script(struct fake_store *fs, bool is_admitted, const struct sl_store_result *results,
                  size_t n)
{
    fs->has_script = true;
    fs->script_admitted = is_admitted;
    memset(fs->script, 0, sizeof(fs->script));
    memcpy(fs->script, results, n * sizeof(*results));
}

double
fake_store_tokens(const struct fake_store *fs, const char *key)
{
    for (size_t i = 0; i < fs->nkeys; i++) {
        if (strcmp(fs->table[i].key, key) == 0)
            return fs->table[i].tokens;
    }
    return -1;
}
