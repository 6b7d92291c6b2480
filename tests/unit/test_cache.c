/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The cache store: lookups and replacement, the memory bound under a
 * million keys, LRU order, TinyLFU admission keeping a hot set through a
 * scan of cold keys, variants and purge (exact and prefix), collapsing
 * claims, the registry, and many threads at once.
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

#include "sluice/cache.h"
#include "util/alloc.h"

static struct sl_cache_obj *
make_obj(size_t body_len)
{
    struct sl_cache_obj *obj = sl_cache_obj_new();
    char chunk[256];

    memset(chunk, 'x', sizeof(chunk));
    obj->status = 200;
    obj->head = sl_xstrdup("Content-Type: text/plain\r\n");
    obj->head_len = strlen(obj->head);
    while (obj->body_len < body_len) {
        size_t n = body_len - obj->body_len < sizeof(chunk) ? body_len - obj->body_len
                                                            : sizeof(chunk);
        assert_true(sl_cache_obj_append(obj, chunk, n, body_len));
    }
    return obj;
}

static enum sl_cache_insert_result
put(struct sl_cache *c, const char *key, size_t body_len)
{
    struct sl_cache_obj *obj = make_obj(body_len);
    enum sl_cache_insert_result r = sl_cache_insert(c, key, strlen(key), obj);

    sl_cache_obj_unref(obj);
    return r;
}

static bool
has(struct sl_cache *c, const char *key)
{
    struct sl_cache_obj *obj = sl_cache_lookup(c, key, strlen(key), false);

    sl_cache_obj_unref(obj);
    return obj != NULL;
}

static void
test_lookup_replace(void **state)
{
    struct sl_cache *c = sl_cache_new(1 << 20, 1);
    struct sl_cache_obj *obj;
    struct sl_cache_stats st;

    (void)state;
    assert_null(sl_cache_lookup(c, "a/x", 3, true));
    assert_int_equal(put(c, "a/x", 10), SL_CACHE_STORED);
    obj = sl_cache_lookup(c, "a/x", 3, true);
    assert_non_null(obj);
    assert_int_equal(obj->body_len, 10);
    assert_int_equal(put(c, "a/x", 20), SL_CACHE_STORED);
    /* the old object lives on while held */
    assert_int_equal(obj->body_len, 10);
    sl_cache_obj_unref(obj);
    obj = sl_cache_lookup(c, "a/x", 3, true);
    assert_int_equal(obj->body_len, 20);
    sl_cache_obj_unref(obj);
    sl_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    sl_cache_remove(c, "a/x", 3, NULL);
    sl_cache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    sl_cache_free(c);
}

static void
test_append_bound(void **state)
{
    struct sl_cache_obj *obj = sl_cache_obj_new();

    (void)state;
    assert_true(sl_cache_obj_append(obj, "abcd", 4, 6));
    assert_false(sl_cache_obj_append(obj, "abcd", 4, 6));
    assert_true(sl_cache_obj_append(obj, "ab", 2, 6));
    assert_int_equal(obj->body_len, 6);
    assert_memory_equal(obj->body, "abcdab", 6);
    sl_cache_obj_unref(obj);
}

static void
test_too_large(void **state)
{
    struct sl_cache *c = sl_cache_new(64 * 1024, 4);

    (void)state;
    assert_int_equal(put(c, "big", 32 * 1024), SL_CACHE_TOO_LARGE);
    assert_false(has(c, "big"));
    sl_cache_free(c);
}

/* A million distinct keys through a 4 MiB cache: the bound holds all along. */
static void
test_memory_million(void **state)
{
    const uint64_t max = 4u << 20;
    struct sl_cache *c = sl_cache_new(max, 16);
    struct sl_cache_stats st;
    char key[64];
    uint64_t stored = 0;

    (void)state;
    for (unsigned i = 0; i < 1000000; i++) {
        int n = snprintf(key, sizeof(key), "host/item/%u", i);
        struct sl_cache_obj *obj = sl_cache_lookup(c, key, (size_t)n, true);
        assert_null(obj);
        obj = make_obj(100);
        stored += sl_cache_insert(c, key, (size_t)n, obj) == SL_CACHE_STORED;
        sl_cache_obj_unref(obj);
        if (i % 65536 == 0) {
            sl_cache_stats(c, &st);
            assert_true(st.bytes <= max);
        }
    }
    sl_cache_stats(c, &st);
    assert_true(st.bytes <= max);
    assert_true(st.entries > 1000);
    assert_true(stored > st.entries);
    sl_cache_free(c);
}

/* With equal frequencies, the least recently used goes first. */
static void
test_lru_order(void **state)
{
    struct sl_cache *c = sl_cache_new(16 * 1024, 1);
    char key[32];
    struct sl_cache_obj *obj;

    (void)state;
    /* everyone asked for twice, so newcomers win duels with one-time keys */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 40; i++) {
            int n = snprintf(key, sizeof(key), "k%d", i);
            sl_cache_obj_unref(sl_cache_lookup(c, key, (size_t)n, true));
        }
    }
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(put(c, key, 2000), SL_CACHE_STORED);
    }
    /* k0 is used again: k1 is now the coldest */
    obj = sl_cache_lookup(c, "k0", 2, true);
    sl_cache_obj_unref(obj);
    for (int i = 6; i < 9; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        sl_cache_obj_unref(sl_cache_lookup(c, key, strlen(key), true));
        sl_cache_obj_unref(sl_cache_lookup(c, key, strlen(key), true));
        put(c, key, 2000);
    }
    assert_true(has(c, "k0"));
    assert_false(has(c, "k1"));
    sl_cache_free(c);
}

/* The hot set survives a scan of a hundred thousand one-time keys. */
static void
test_scan_resistance(void **state)
{
    struct sl_cache *c = sl_cache_new(256 * 1024, 4);
    struct sl_cache_stats st;
    char key[64];
    int hot_kept = 0;

    (void)state;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 50; i++) {
            int n = snprintf(key, sizeof(key), "hot/%d", i);
            struct sl_cache_obj *obj = sl_cache_lookup(c, key, (size_t)n, true);
            if (obj == NULL)
                put(c, key, 1000);
            sl_cache_obj_unref(obj);
        }
    }
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof(key), "cold/%d", i);
        struct sl_cache_obj *obj = sl_cache_lookup(c, key, (size_t)n, true);
        if (obj == NULL)
            put(c, key, 1000);
        sl_cache_obj_unref(obj);
        if (i % 1000 == 0) {
            /* the hot set keeps being asked for while the scan runs */
            for (int j = 0; j < 50; j++) {
                int m = snprintf(key, sizeof(key), "hot/%d", j);
                sl_cache_obj_unref(sl_cache_lookup(c, key, (size_t)m, true));
            }
        }
    }
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "hot/%d", i);
        hot_kept += has(c, key);
    }
    assert_true(hot_kept >= 48);
    sl_cache_stats(c, &st);
    assert_true(st.refused > 50000);
    sl_cache_free(c);
}

static void
test_purge(void **state)
{
    struct sl_cache *c = sl_cache_new(1 << 20, 4);
    static const char variant[] = "h/a\0accept:json\n";

    (void)state;
    put(c, "h/a", 10);
    put(c, "h/ab", 10);
    put(c, "h/b/1", 10);
    put(c, "h/b/2", 10);
    put(c, "g/b/1", 10);
    sl_cache_obj_unref(NULL);
    {
        struct sl_cache_obj *obj = make_obj(5);
        sl_cache_insert(c, variant, sizeof(variant) - 1, obj);
        sl_cache_obj_unref(obj);
    }
    /* exact: the key and its variants, not keys it is a prefix of */
    assert_int_equal(sl_cache_purge(c, "h/a", 3, false), 2);
    assert_false(has(c, "h/a"));
    assert_true(has(c, "h/ab"));
    assert_int_equal(sl_cache_purge(c, "h/b/", 4, true), 2);
    assert_false(has(c, "h/b/1"));
    assert_true(has(c, "g/b/1"));
    assert_int_equal(sl_cache_purge(c, "nothing", 7, false), 0);
    sl_cache_free(c);
}

static void
test_claims(void **state)
{
    struct sl_cache *c = sl_cache_new(1 << 20, 2);

    (void)state;
    assert_true(sl_cache_claim(c, "k", 1, 1000, 500));
    assert_false(sl_cache_claim(c, "k", 1, 1200, 500));
    assert_true(sl_cache_claim(c, "j", 1, 1200, 500));
    /* the holder is presumed gone after hold_us */
    assert_true(sl_cache_claim(c, "k", 1, 1600, 500));
    sl_cache_release(c, "k", 1);
    assert_true(sl_cache_claim(c, "k", 1, 1700, 500));
    sl_cache_release(c, "k", 1);
    sl_cache_release(c, "j", 1);
    sl_cache_release(c, "none", 4);
    sl_cache_free(c);
}

static void
test_registry(void **state)
{
    struct sl_cache *a = sl_cache_get("route-a", 1 << 20);
    struct sl_cache *a2 = sl_cache_get("route-a", 2 << 20);
    struct sl_cache *b = sl_cache_get("route-b", 1 << 20);
    struct sl_cache_stats st;

    (void)state;
    assert_ptr_equal(a, a2);
    assert_ptr_not_equal(a, b);
    sl_cache_stats(a, &st);
    assert_int_equal(st.max_memory, 2 << 20);
    put(a, "x/1", 10);
    put(b, "x/2", 10);
    assert_int_equal(sl_cache_purge_all("x/", 2, true), 2);
    sl_cache_put(a);
    sl_cache_put(a2);
    sl_cache_put(b);
    sl_cache_put(NULL);
}

struct worker_arg {
    struct sl_cache *c;
    unsigned seed;
};

static void *
worker(void *p)
{
    struct worker_arg *w = p;
    char key[32];

    for (unsigned i = 0; i < 20000; i++) {
        unsigned k = (i * 2654435761u + w->seed) % 2000;
        int n = snprintf(key, sizeof(key), "t/%u", k);
        struct sl_cache_obj *obj = sl_cache_lookup(w->c, key, (size_t)n, true);
        if (obj == NULL)
            put(w->c, key, 300);
        else if (i % 97 == 0)
            sl_cache_purge(w->c, key, (size_t)n, false);
        sl_cache_obj_unref(obj);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct sl_cache *c = sl_cache_new(128 * 1024, 8);
    pthread_t t[4];
    struct worker_arg args[4];
    struct sl_cache_stats st;

    (void)state;
    for (unsigned i = 0; i < 4; i++) {
        args[i].c = c;
        args[i].seed = i * 7919;
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    sl_cache_stats(c, &st);
    assert_true(st.bytes <= 128 * 1024);
    sl_cache_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_replace),
        cmocka_unit_test(test_append_bound),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_memory_million),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_scan_resistance),
        cmocka_unit_test(test_purge),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
