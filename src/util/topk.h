/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The heaviest hitters of a stream of short strings in bounded memory: the
 * Space-Saving algorithm (Metwally, Agrawal, El Abbadi, "Efficient
 * Computation of Frequent and Top-k Elements in Data Streams", ICDT 2005).
 * A table of `cap` counters; a string not in a full table takes the place
 * of the smallest counter and inherits its count plus one. Every string
 * whose true count exceeds total / cap is in the table, each count is an
 * overestimate by at most the count it inherited, and the counts add up to
 * exactly the number of strings seen. Not thread-safe: the owner locks.
 */
#ifndef SL_UTIL_TOPK_H
#define SL_UTIL_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define SL_TOPK_KEY_MAX 64 /* longer strings are cut to this many bytes */

struct sl_topk_entry {
    uint64_t count;
    uint8_t len;
    char key[SL_TOPK_KEY_MAX];
};

struct sl_topk {
    struct sl_topk_entry *entries;
    size_t n, cap;
    uint64_t total; /* strings seen: the sum of the counts */
};

void sl_topk_init(struct sl_topk *t, size_t cap);
void sl_topk_fini(struct sl_topk *t);
/* Room for at least cap counters; the counts so far are kept. */
void sl_topk_grow(struct sl_topk *t, size_t cap);
void sl_topk_add(struct sl_topk *t, const char *key, size_t len);

/*
 * Sums tables (one per worker) string by string and returns the `top`
 * largest into out[0..return), by count, then by string; *other is the
 * total of everything else, so the results add up to all the tables'
 * totals. `out` has room for `top` entries.
 */
size_t sl_topk_merge(const struct sl_topk *const *tables, size_t ntables, size_t top,
                     struct sl_topk_entry *out, uint64_t *other);

#endif
