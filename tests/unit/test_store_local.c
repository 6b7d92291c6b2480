/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The embedded store's table: the max_keys bound under many distinct keys,
 * reclaiming buckets once they are full again, which bucket an eviction
 * drops, atomic checks across worker threads, memory per key, and the
 * callback contract. The algorithm itself is test_token_bucket.c's.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/store.h"
#include "util/clock.h"

#define MS 1000ull

static uint64_t now_us;

struct outcome {
    int ncalls;
    enum sl_store_status status;
    bool is_admitted;
    struct sl_store_result res[4];
};

static void
on_result(void *arg, enum sl_store_status status, bool is_admitted,
          const struct sl_store_result *results, size_t nresults)
{
    struct outcome *o = arg;

    o->ncalls++;
    o->status = status;
    o->is_admitted = is_admitted;
    if (status == SL_STORE_OK)
        memcpy(o->res, results, (nresults < 4 ? nresults : 4) * sizeof(*results));
}

static bool
check_key(struct sl_store *s, const char *key, double rate, uint64_t per_ms, double burst,
          double cost)
{
    struct sl_store_bucket b = { .key = key, .key_len = strlen(key), .rate = rate,
                                 .per_ms = per_ms, .burst = burst, .cost = cost };
    struct outcome o = { 0 };

    sl_store_check(s, &b, 1, on_result, &o);
    assert_int_equal(o.ncalls, 1); /* before check returns, exactly once */
    assert_int_equal(o.status, SL_STORE_OK);
    return o.is_admitted;
}

static int
setup(void **state)
{
    (void)state;
    now_us = 5000000000ull;
    sl_clock_set_fake(&now_us);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sl_clock_set_fake(NULL);
    return 0;
}

static struct sl_store_local_table_stats
stats_of(struct sl_store_local_table *t)
{
    struct sl_store_local_table_stats st;

    sl_store_local_table_get_stats(t, &st);
    return st;
}

/* A million distinct keys into a table of 1000: never more than 1000 live. */
static void
test_bound_many_keys(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(1000);
    struct sl_store *s = sl_store_local_new(t);
    char key[32];

    (void)state;
    for (int i = 0; i < 1000000; i++) {
        snprintf(key, sizeof(key), "k:%d", i);
        /* 1 per hour: none is full again during the test */
        assert_true(check_key(s, key, 1, 3600000, 5, 1));
        if (i % 1000 == 0)
            assert_true(stats_of(t).keys <= 1000);
    }
    assert_true(stats_of(t).keys <= 1000);
    assert_true(stats_of(t).keys >= 900);
    assert_true(stats_of(t).evictions >= 1000000 - 1000);
    assert_true(stats_of(t).bytes <= 2048 * 40);
    sl_store_free(s);
    sl_store_local_table_free(t);
}

/* Buckets full again are reclaimed, by later calls, with no eviction. */
static void
test_reclaim(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(200000);
    struct sl_store *s = sl_store_local_new(t);
    struct sl_store_local_table_stats st;
    char key[32];

    (void)state;
    for (int i = 0; i < 150000; i++) {
        snprintf(key, sizeof(key), "a:%d", i);
        assert_true(check_key(s, key, 10, 1000, 10, 1)); /* full again after 100 ms */
    }
    st = stats_of(t);
    assert_int_equal(st.keys, 150000);
    assert_int_equal(st.evictions, 0);
    now_us += 100 * MS;
    /* other keys' traffic sweeps the old ones away, and takes their places */
    for (int i = 0; i < 150000; i++) {
        snprintf(key, sizeof(key), "b:%d", i);
        assert_true(check_key(s, key, 10, 1000, 10, 1));
    }
    st = stats_of(t);
    assert_int_equal(st.evictions, 0);
    assert_true(st.reclaimed >= 100000);
    assert_true(st.keys <= 200000);
    /* a bucket read after it is full again is a full one */
    now_us += 100 * MS;
    for (int i = 0; i < 10; i++)
        assert_true(check_key(s, "b:7", 10, 1000, 10, 1));
    assert_false(check_key(s, "b:7", 10, 1000, 10, 1));
    sl_store_free(s);
    sl_store_local_table_free(t);
}

/* At the bound with nothing to reclaim, the bucket nearest to full goes. */
static void
test_eviction_choice(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(64); /* one shard */
    struct sl_store *s = sl_store_local_new(t);
    char key[32];

    (void)state;
    /* empty a slow bucket: 1 per minute, full again in a minute */
    assert_true(check_key(s, "slow", 1, 60000, 1, 1));
    assert_false(check_key(s, "slow", 1, 60000, 1, 1));
    /* 63 buckets full again in a second, then 500 more keys */
    for (int i = 0; i < 563; i++) {
        snprintf(key, sizeof(key), "fast:%d", i);
        assert_true(check_key(s, key, 1, 1000, 1, 1));
        assert_true(stats_of(t).keys <= 64);
    }
    assert_true(stats_of(t).evictions >= 500);
    /* the slow bucket kept its state: still empty */
    assert_false(check_key(s, "slow", 1, 60000, 1, 1));
    sl_store_free(s);
    sl_store_local_table_free(t);
}

/* ---- threads --------------------------------------------------------------------- */

struct worker {
    struct sl_store_local_table *table;
    int admitted_a;
    int admitted_pair;
    int bad_calls; /* cmocka asserts are not for threads: count, assert after join */
    int id;
};

static bool
check_in_thread(struct worker *w, struct sl_store *s, const struct sl_store_bucket *b, size_t n)
{
    struct outcome o = { 0 };

    sl_store_check(s, b, n, on_result, &o);
    if (o.ncalls != 1 || o.status != SL_STORE_OK)
        w->bad_calls++;
    return o.is_admitted;
}

static void *
hammer(void *arg)
{
    struct worker *w = arg;
    struct sl_store *s = sl_store_local_new(w->table);

    for (int i = 0; i < 20000; i++) {
        struct sl_store_bucket pair[2] = {
            { .key = "x", .key_len = 1, .rate = 1, .per_ms = 3600000, .burst = 3000, .cost = 1 },
            { .key = "y", .key_len = 1, .rate = 1, .per_ms = 3600000, .burst = 2000, .cost = 1 },
        };
        struct sl_store_bucket swapped[2] = { pair[1], pair[0] };
        struct sl_store_bucket one = { .key = "a", .key_len = 1, .rate = 1, .per_ms = 3600000,
                                       .burst = 1000, .cost = 1 };
        struct sl_store_bucket churn = one;
        char key[32];

        if (check_in_thread(w, s, &one, 1))
            w->admitted_a++;
        /* both lock orders, from every thread: no deadlock, all or nothing */
        if (check_in_thread(w, s, (i + w->id) % 2 ? pair : swapped, 2))
            w->admitted_pair++;
        /* and churn in every shard */
        snprintf(key, sizeof(key), "t%d:%d", w->id, i);
        churn.key = key;
        churn.key_len = strlen(key);
        check_in_thread(w, s, &churn, 1);
    }
    sl_store_free(s);
    return NULL;
}

static void
test_threads(void **state)
{
    /* Room for every churn key: this test is about locking, and evicting a
     * live bucket at the bound (test_eviction) would refill x or y. */
    struct sl_store_local_table *t = sl_store_local_table_new(200000);
    struct worker w[4];
    pthread_t th[4];
    int a = 0, pairs = 0;
    struct sl_store *s;
    struct outcome o = { 0 };
    struct sl_store_bucket x = { .key = "x", .key_len = 1, .rate = 1, .per_ms = 3600000,
                                 .burst = 3000, .cost = 0 };

    (void)state;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ .table = t, .id = i };
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        a += w[i].admitted_a;
        pairs += w[i].admitted_pair;
        assert_int_equal(w[i].bad_calls, 0);
    }
    /* time stands still: exactly the burst, however the threads interleave */
    assert_int_equal(a, 1000);
    assert_int_equal(pairs, 2000);
    /* y ran out first; x lost exactly what the admitted pairs took */
    s = sl_store_local_new(t);
    sl_store_check(s, &x, 1, on_result, &o);
    assert_true(o.is_admitted && o.res[0].remaining == 1000);
    sl_store_free(s);
    sl_store_local_table_free(t);
}

/* ---- memory ---------------------------------------------------------------------- */

static long
rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return kib;
}

/* A million live keys in the default-sized table stay well under 128 MiB. */
static void
test_memory_million(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(2000000);
    struct sl_store *s = sl_store_local_new(t);
    long before = rss_kib(), after;
    char key[64];

    (void)state;
    for (int i = 0; i < 1000000; i++) {
        /* client values can be long; only a digest is kept */
        snprintf(key, sizeof(key), "sluice:per_ip:2001:db8:%08x:%08x", (unsigned)i,
                 (unsigned)i * 7919u);
        check_key(s, key, 100, 1000, 200, 1);
    }
    assert_int_equal(stats_of(t).keys, 1000000);
    assert_true(stats_of(t).bytes <= 96ull << 20);
    after = rss_kib();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* sanitizer shadow memory makes RSS meaningless here */
    before = -1;
#endif
    if (before > 0 && after > 0) {
        print_message("rss grew by %ld KiB for 1,000,000 keys (%llu bytes of slots)\n",
                      after - before, (unsigned long long)stats_of(t).bytes);
        assert_true(after - before <= 100 * 1024);
    }
    sl_store_free(s);
    sl_store_local_table_free(t);
}

static void
test_invalid_and_stats(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(100);
    struct sl_store *s = sl_store_local_new(t);
    struct sl_store_bucket bad = { .key = "k", .key_len = 1, .rate = 1, .per_ms = 0,
                                   .burst = 1, .cost = 1 };
    struct outcome o = { 0 };
    struct sl_store_stats st;

    (void)state;
    sl_store_check(s, &bad, 1, on_result, &o);
    assert_int_equal(o.ncalls, 1);
    assert_int_equal(o.status, SL_STORE_REPLY);
    assert_true(check_key(s, "k", 1, 1000, 1, 1));
    sl_store_get_stats(s, &st);
    assert_true(st.is_up);
    assert_int_equal(st.checks, 2);
    assert_int_equal(st.errors_reply, 1);
    assert_string_equal(s->ops->name, "local");
    sl_store_free(s);
    sl_store_local_table_free(t);
    sl_store_free(NULL);
    sl_store_local_table_free(NULL);
}

/* Each handle counts the evictions its own checks caused: the handles' counts
 * add up to the table's, and a handle that only reads evicts nothing. */
static void
test_evictions_per_handle(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(10);
    struct sl_store *a = sl_store_local_new(t), *b = sl_store_local_new(t);
    struct sl_store_stats sa, sb;
    char key[32];

    (void)state;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "a:%d", i);
        assert_true(check_key(a, key, 1, 3600000, 5, 1));
    }
    sl_store_get_stats(a, &sa);
    assert_int_equal(sa.evictions, 0);
    assert_int_equal(stats_of(t).evictions, 0);
    for (int i = 0; i < 25; i++) {
        snprintf(key, sizeof(key), "b:%d", i);
        assert_true(check_key(b, key, 1, 3600000, 5, 1));
    }
    sl_store_get_stats(a, &sa);
    sl_store_get_stats(b, &sb);
    assert_int_equal(sa.evictions, 0);
    assert_true(sb.evictions >= 15);
    assert_int_equal(sa.evictions + sb.evictions, stats_of(t).evictions);
    /* a check of a key still there evicts nothing */
    assert_true(check_key(b, "b:24", 1, 3600000, 5, 1));
    sl_store_get_stats(b, &sa);
    assert_int_equal(sa.evictions, sb.evictions);
    sl_store_free(a);
    sl_store_free(b);
    sl_store_local_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bound_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_choice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_million, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evictions_per_handle, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
