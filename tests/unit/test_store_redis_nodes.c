/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The per-node table of the redis store: find-or-create by name, the
 * counters and the latency buckets, NULL tolerance, the bound of
 * SL_REDIS_NODES_MAX entries, and threads counting on one entry at once.
 *
 * The table is process-wide and never forgets, so the tests run in the
 * order listed and each uses names of its own: the bounds are set before
 * the first entry exists (group setup), and the table is filled last.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sluice/store.h"
#include "store_redis_nodes.h"

#define NTHREADS 4
#define PER_THREAD 100000

/* 1 ms, 10 ms, 100 ms */
static const uint64_t bounds[] = { 1000, 10000, 100000 };

static int
set_bounds(void **state)
{
    (void)state;
    return sl_redis_nodes_set_bounds(bounds, 3);
}

/* The stats of the entry named `name`; fails when there is none. */
static void
stats_of(const char *name, struct sl_redis_node_stats *st)
{
    for (size_t i = 0; i < sl_redis_nodes_count(); i++) {
        sl_redis_nodes_stats(i, st);
        if (strcmp(st->name, name) == 0)
            return;
    }
    fail_msg("no entry %s", name);
}

static void
test_find_or_create(void **state)
{
    size_t before = sl_redis_nodes_count();
    struct sl_redis_node *a = sl_redis_node_get("127.0.0.1:7000");
    struct sl_redis_node *b = sl_redis_node_get("[::1]:7000");
    struct sl_redis_node *c = sl_redis_node_get("unix:/run/redis.sock");
    struct sl_redis_node_stats st;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(b, c);
    assert_ptr_equal(sl_redis_node_get("127.0.0.1:7000"), a);
    assert_ptr_equal(sl_redis_node_get("unix:/run/redis.sock"), c);
    assert_int_equal(sl_redis_nodes_count(), before + 3);
    /* in the order they were made, names as given */
    sl_redis_nodes_stats(before, &st);
    assert_string_equal(st.name, "127.0.0.1:7000");
    sl_redis_nodes_stats(before + 2, &st);
    assert_string_equal(st.name, "unix:/run/redis.sock");
    assert_int_equal(st.calls, 0);
    assert_int_equal(st.conns_up, 0);
}

static void
test_counts(void **state)
{
    struct sl_redis_node *n = sl_redis_node_get("10.0.0.1:6379");
    struct sl_redis_node_stats st;

    (void)state;
    sl_redis_node_conn(n, 1);
    sl_redis_node_conn(n, 1);
    sl_redis_node_conn(n, -1);
    sl_redis_node_error(n, SL_STORE_TIMEOUT, 1);
    sl_redis_node_error(n, SL_STORE_CONNECTION, 5); /* a dropped connection fails its queue */
    sl_redis_node_error(n, SL_STORE_REPLY, 2);
    sl_redis_node_error(n, SL_STORE_OK, 7); /* not an error: ignored, as are unknown kinds */
    sl_redis_node_error(n, -1, 7);
    sl_redis_node_error(n, 99, 7);
    sl_redis_node_redirect(n, false);
    sl_redis_node_redirect(n, false);
    sl_redis_node_redirect(n, true);
    stats_of("10.0.0.1:6379", &st);
    assert_int_equal(st.conns_up, 1);
    assert_int_equal(st.errors[SL_REDIS_NODE_TIMEOUT], 1);
    assert_int_equal(st.errors[SL_REDIS_NODE_CONNECTION], 5);
    assert_int_equal(st.errors[SL_REDIS_NODE_REPLY], 2);
    assert_int_equal(st.redirects[0], 2); /* MOVED */
    assert_int_equal(st.redirects[1], 1); /* ASK */
    assert_int_equal(st.calls, 0);

    /* down more than up on this worker, up on another: the sum is what counts */
    sl_redis_node_conn(n, -1);
    sl_redis_node_conn(n, -1);
    stats_of("10.0.0.1:6379", &st);
    assert_int_equal(st.conns_up, -1);
    sl_redis_node_conn(n, 1);
}

static void
test_latency_buckets(void **state)
{
    struct sl_redis_node *n = sl_redis_node_get("10.0.0.2:6379");
    /* 0, on each bound, one µs above each bound, far past the last */
    const uint64_t values[] = { 0, 1000, 1001, 10000, 10001, 100000, 100001, 60000000 };
    uint64_t sum = 0;
    struct sl_redis_node_stats st;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        sl_redis_node_call(n, values[i]);
        sum += values[i];
    }
    stats_of("10.0.0.2:6379", &st);
    assert_int_equal(st.nbounds, 3);
    assert_memory_equal(st.bounds_us, bounds, sizeof(bounds));
    assert_int_equal(st.buckets[0], 2); /* 0, 1000: "le" is less than or equal */
    assert_int_equal(st.buckets[1], 2); /* 1001, 10000 */
    assert_int_equal(st.buckets[2], 2); /* 10001, 100000 */
    assert_int_equal(st.buckets[3], 2); /* +Inf */
    assert_int_equal(st.calls, 8);
    assert_int_equal(st.sum_us, sum);
}

static void
test_bounds_fixed_once_used(void **state)
{
    const uint64_t other[] = { 5, 50 };

    (void)state;
    assert_true(sl_redis_nodes_count() > 0);
    assert_int_equal(sl_redis_nodes_set_bounds(other, 2), -1);
    assert_int_equal(sl_redis_nodes_set_bounds(bounds, 3), 0); /* the same ones: fine */
    assert_int_equal(sl_redis_nodes_set_bounds(bounds, SL_METRICS_MAX_BUCKETS + 1), -1);
}

static void
test_null_tolerance(void **state)
{
    char long_name[SL_REDIS_NODE_NAME_MAX + 2];
    size_t before = sl_redis_nodes_count();
    struct sl_redis_node_stats st;

    (void)state;
    memset(long_name, 'h', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_null(sl_redis_node_get(NULL));
    assert_null(sl_redis_node_get(""));
    assert_null(sl_redis_node_get(long_name));
    long_name[SL_REDIS_NODE_NAME_MAX] = '\0'; /* the longest kept */
    assert_non_null(sl_redis_node_get(long_name));
    assert_int_equal(sl_redis_nodes_count(), before + 1);

    sl_redis_node_conn(NULL, 1);
    sl_redis_node_call(NULL, 10);
    sl_redis_node_error(NULL, SL_STORE_TIMEOUT, 1);
    sl_redis_node_redirect(NULL, true);

    /* past the count: zeros, no name */
    sl_redis_nodes_stats(sl_redis_nodes_count(), &st);
    assert_null(st.name);
    assert_int_equal(st.calls, 0);
}

static void *
hammer(void *p)
{
    struct sl_redis_node *n = sl_redis_node_get("shared:6379");

    (void)p;
    sl_redis_node_conn(n, 1);
    for (unsigned i = 0; i < PER_THREAD; i++) {
        sl_redis_node_call(n, i % 2 == 0 ? 500 : 50000);
        if (i % 100 == 0)
            sl_redis_node_error(n, SL_STORE_TIMEOUT, 1);
        if (i % 1000 == 0)
            sl_redis_node_redirect(n, i % 2000 == 0);
    }
    return NULL;
}

static void
test_threads_on_one_entry(void **state)
{
    pthread_t threads[NTHREADS];
    struct sl_redis_node_stats st;
    uint64_t last = 0;

    (void)state;
    assert_non_null(sl_redis_node_get("shared:6379"));
    for (unsigned i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, NULL), 0);
    /* read while they run: counts never go backwards */
    for (int i = 0; i < 1000; i++) {
        stats_of("shared:6379", &st);
        assert_true(st.calls >= last);
        last = st.calls;
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(threads[i], NULL);
    stats_of("shared:6379", &st);
    assert_int_equal(st.conns_up, NTHREADS);
    assert_int_equal(st.calls, NTHREADS * PER_THREAD);
    assert_int_equal(st.buckets[0], NTHREADS * PER_THREAD / 2); /* 500 µs */
    assert_int_equal(st.buckets[2], NTHREADS * PER_THREAD / 2); /* 50 ms */
    assert_int_equal(st.sum_us, (uint64_t)NTHREADS * PER_THREAD / 2 * 50500);
    assert_int_equal(st.errors[SL_REDIS_NODE_TIMEOUT], NTHREADS * PER_THREAD / 100);
    assert_int_equal(st.redirects[0], NTHREADS * PER_THREAD / 2000);
    assert_int_equal(st.redirects[1], NTHREADS * PER_THREAD / 2000);
}

/* Last: it fills the table. */
static void
test_the_bound(void **state)
{
    char name[32];
    struct sl_redis_node *first = sl_redis_node_get("127.0.0.1:7000");

    (void)state;
    for (unsigned i = 0; sl_redis_nodes_count() < SL_REDIS_NODES_MAX; i++) {
        snprintf(name, sizeof(name), "10.1.0.%u:6379", i);
        assert_non_null(sl_redis_node_get(name));
    }
    assert_int_equal(sl_redis_nodes_count(), SL_REDIS_NODES_MAX);
    /* full: new names get NULL (logged once), known ones are still found */
    assert_null(sl_redis_node_get("10.2.0.1:6379"));
    assert_null(sl_redis_node_get("10.2.0.2:6379"));
    assert_int_equal(sl_redis_nodes_count(), SL_REDIS_NODES_MAX);
    assert_ptr_equal(sl_redis_node_get("127.0.0.1:7000"), first);
    assert_ptr_equal(sl_redis_node_get(name), sl_redis_node_get(name));
    sl_redis_node_call(sl_redis_node_get("10.2.0.1:6379"), 10); /* counting nothing is fine */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_or_create),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_bounds_fixed_once_used),
        cmocka_unit_test(test_null_tolerance),
        cmocka_unit_test(test_threads_on_one_entry),
        cmocka_unit_test(test_the_bound),
    };

    return cmocka_run_group_tests(tests, set_bounds, NULL);
}
