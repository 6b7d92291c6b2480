/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Space-Saving with linear scans: tables hold tens of counters, where a
 * scan of a few cache lines beats keeping a heap and an index in step.
 */
#include "util/topk.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void
sl_topk_init(struct sl_topk *t, size_t cap)
{
    t->cap = cap ? cap : 1;
    t->n = 0;
    t->total = 0;
    t->entries = sl_xcalloc(t->cap, sizeof(*t->entries));
}

void
sl_topk_fini(struct sl_topk *t)
{
    free(t->entries);
    t->entries = NULL;
}

void
sl_topk_grow(struct sl_topk *t, size_t cap)
{
    if (cap <= t->cap)
        return;
    t->entries = sl_xrealloc(t->entries, cap * sizeof(*t->entries));
    t->cap = cap;
}

static bool
same(const struct sl_topk_entry *e, const char *key, size_t len)
{
    return e->len == len && memcmp(e->key, key, len) == 0;
}

void
sl_topk_add(struct sl_topk *t, const char *key, size_t len)
{
    struct sl_topk_entry *e = NULL, *min = NULL;

    if (len > SL_TOPK_KEY_MAX)
        len = SL_TOPK_KEY_MAX;
    t->total++;
    for (size_t i = 0; i < t->n; i++) {
        if (same(&t->entries[i], key, len)) {
            t->entries[i].count++;
            return;
        }
        if (min == NULL || t->entries[i].count < min->count)
            min = &t->entries[i];
    }
    if (t->n < t->cap) {
        e = &t->entries[t->n++];
        e->count = 0;
    } else {
        e = min; /* keeps its count: the newcomer may have been it all along */
    }
    e->count++;
    e->len = (uint8_t)len;
    memcpy(e->key, key, len);
}

static int
by_count(const void *a, const void *b)
{
    const struct sl_topk_entry *x = a, *y = b;
    int c;

    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c != 0 ? c : (int)x->len - (int)y->len;
}

size_t
sl_topk_merge(const struct sl_topk *const *tables, size_t ntables, size_t top,
              struct sl_topk_entry *out, uint64_t *other)
{
    size_t cap = 0, n = 0, nout;
    uint64_t total = 0, shown = 0;
    struct sl_topk_entry *all;

    for (size_t i = 0; i < ntables; i++)
        cap += tables[i]->n;
    all = sl_xcalloc(cap ? cap : 1, sizeof(*all));
    for (size_t i = 0; i < ntables; i++) {
        total += tables[i]->total;
        for (size_t j = 0; j < tables[i]->n; j++) {
            const struct sl_topk_entry *e = &tables[i]->entries[j];
            size_t k = 0;
            while (k < n && !same(&all[k], e->key, e->len))
                k++;
            if (k == n)
                all[n++] = *e;
            else
                all[k].count += e->count;
        }
    }
    qsort(all, n, sizeof(*all), by_count);
    nout = n < top ? n : top;
    for (size_t i = 0; i < nout; i++) {
        out[i] = all[i];
        shown += all[i].count;
    }
    *other = total - shown;
    free(all);
    return nout;
}
