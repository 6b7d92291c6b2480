/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/topk: Space-Saving keeps the heavy hitters in bounded memory, counts
 * add up to what was seen, and merging tables keeps the rest as "other". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/topk.h"

static void
add(struct sl_topk *t, const char *key, unsigned times)
{
    for (unsigned i = 0; i < times; i++)
        sl_topk_add(t, key, strlen(key));
}

static void
test_exact_when_it_fits(void **state)
{
    struct sl_topk t;
    const struct sl_topk *tables[] = { &t };
    struct sl_topk_entry out[2];
    uint64_t other;
    size_t n;

    (void)state;
    sl_topk_init(&t, 8);
    add(&t, "alice", 5);
    add(&t, "bob", 3);
    add(&t, "carol", 7);
    add(&t, "dave", 1);
    n = sl_topk_merge(tables, 1, 2, out, &other);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].count, 7);
    assert_memory_equal(out[0].key, "carol", 5);
    assert_int_equal(out[1].count, 5);
    assert_int_equal(other, 4);
    sl_topk_fini(&t);
}

/* A stream of many one-off callers around two heavy ones: the table stays
 * at its size, the heavy ones survive, and the counts still add up. */
static void
test_bounded_heavy_hitters(void **state)
{
    struct sl_topk t;
    const struct sl_topk *tables[] = { &t };
    struct sl_topk_entry out[2];
    uint64_t other, sum = 0;
    char key[32];

    (void)state;
    sl_topk_init(&t, 16);
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "once-%u", i);
        sl_topk_add(&t, key, strlen(key));
        if (i % 4 == 0)
            add(&t, "heavy-a", 1);
        if (i % 10 == 0)
            add(&t, "heavy-b", 1);
    }
    assert_int_equal(t.n, 16);
    for (size_t i = 0; i < t.n; i++)
        sum += t.entries[i].count;
    assert_int_equal(sum, t.total);
    assert_int_equal(t.total, 10000 + 2500 + 1000);
    assert_int_equal(sl_topk_merge(tables, 1, 2, out, &other), 2);
    assert_memory_equal(out[0].key, "heavy-a", 7);
    assert_memory_equal(out[1].key, "heavy-b", 7);
    /* overestimates, never under */
    assert_true(out[0].count >= 2500 && out[1].count >= 1000);
    assert_int_equal(out[0].count + out[1].count + other, t.total);
    sl_topk_fini(&t);
}

static void
test_merge_workers(void **state)
{
    struct sl_topk a, b;
    const struct sl_topk *tables[] = { &a, &b };
    struct sl_topk_entry out[3];
    uint64_t other;
    char longkey[100];

    (void)state;
    sl_topk_init(&a, 4);
    sl_topk_init(&b, 4);
    add(&a, "x", 2);
    add(&a, "y", 4);
    add(&b, "x", 3);
    add(&b, "z", 1);
    memset(longkey, 'k', sizeof(longkey));
    sl_topk_add(&b, longkey, sizeof(longkey)); /* cut to SL_TOPK_KEY_MAX */
    assert_int_equal(sl_topk_merge(tables, 2, 3, out, &other), 3);
    assert_memory_equal(out[0].key, "x", 1);
    assert_int_equal(out[0].count, 5);
    assert_memory_equal(out[1].key, "y", 1);
    assert_int_equal(out[2].len, SL_TOPK_KEY_MAX); /* ties: by string, 'k...' before 'z' */
    assert_int_equal(other, 1);
    /* growing keeps the counts */
    sl_topk_grow(&a, 64);
    add(&a, "x", 1);
    assert_int_equal(sl_topk_merge(tables, 2, 1, out, &other), 1);
    assert_int_equal(out[0].count, 6);
    assert_int_equal(other, 4 + 1 + 1);
    sl_topk_fini(&a);
    sl_topk_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_when_it_fits),
        cmocka_unit_test(test_bounded_heavy_hitters),
        cmocka_unit_test(test_merge_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
