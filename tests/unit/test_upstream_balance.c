/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The choosers of src/upstream_balance.c, driven directly: the order smooth
 * weighted round-robin gives, least requests in flight with its tie-break,
 * two random choices never taking the busiest, and the hash ring's promise
 * that a server leaving moves only its own keys (about 1/N of them).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upstream_balance.h"

#define NKEYS 20000

static void
peers_init(struct sl_balance_peer *peers, const unsigned *weights, size_t n)
{
    memset(peers, 0, n * sizeof(*peers));
    for (size_t i = 0; i < n; i++)
        peers[i].weight = weights[i];
}

/* nginx's example: weights 5, 1, 1 give a a b a c a a, every cycle. */
static void
test_swrr_order(void **state)
{
    static const unsigned weights[] = { 5, 1, 1 };
    static const int want[] = { 0, 0, 1, 0, 2, 0, 0 };
    struct sl_balance_peer peers[3];
    bool ok[3] = { true, true, true };
    (void)state;

    peers_init(peers, weights, 3);
    for (int cycle = 0; cycle < 3; cycle++) {
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
            assert_int_equal(sl_balance_swrr(peers, 3, ok), want[i]);
    }
}

/* Over a cycle each server gets exactly its weight, and the heaviest is
 * spread out: a c b a d c a, so at most twice in a row (across cycles). */
static void
test_swrr_distribution(void **state)
{
    static const unsigned weights[] = { 3, 1, 2, 1 };
    struct sl_balance_peer peers[4];
    bool ok[4] = { true, true, true, true };
    unsigned count[4] = { 0 }, run = 0, max_run = 0;
    int last = -1;
    (void)state;

    peers_init(peers, weights, 4);
    for (int i = 0; i < 7 * 100; i++) {
        int pick = sl_balance_swrr(peers, 4, ok);
        assert_in_range(pick, 0, 3);
        count[pick]++;
        run = pick == last ? run + 1 : 1;
        max_run = run > max_run ? run : max_run;
        last = pick;
    }
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 200);
    assert_int_equal(count[3], 100);
    assert_true(max_run <= 2);
}

/*
 * 3:1 gives a a b a, not a a a b; 3:1:1 gives a b a c a, never three of a
 * in a row. (Between two turns of b, two servers at 3:1 must give a three
 * turns; the smoothness is in where b falls.)
 */
static void
test_swrr_three_to_one(void **state)
{
    static const unsigned two[] = { 3, 1 }, three[] = { 3, 1, 1 };
    static const int want[] = { 0, 0, 1, 0 };
    struct sl_balance_peer peers[3];
    bool ok[3] = { true, true, true };
    unsigned run = 0;
    int last = -1;
    (void)state;

    peers_init(peers, two, 2);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(sl_balance_swrr(peers, 2, ok), want[i]);
    peers_init(peers, three, 3);
    for (int i = 0; i < 500; i++) {
        int pick = sl_balance_swrr(peers, 3, ok);
        run = pick == last ? run + 1 : 1;
        assert_true(run <= 2);
        last = pick;
    }
}

static void
test_swrr_skips_not_ok(void **state)
{
    static const unsigned weights[] = { 1, 1, 1 };
    struct sl_balance_peer peers[3];
    bool ok[3] = { true, false, true };
    bool none[3] = { false, false, false };
    (void)state;

    peers_init(peers, weights, 3);
    for (int i = 0; i < 10; i++)
        assert_int_not_equal(sl_balance_swrr(peers, 3, ok), 1);
    assert_int_equal(sl_balance_swrr(peers, 3, none), -1);
    assert_int_equal(sl_balance_least(peers, 3, none), -1);
}

static void
test_least_conn(void **state)
{
    static const unsigned weights[] = { 1, 1, 2 };
    struct sl_balance_peer peers[3];
    bool ok[3] = { true, true, true };
    unsigned count[3] = { 0 };
    (void)state;

    peers_init(peers, weights, 3);
    peers[0].inflight = 3;
    peers[1].inflight = 1;
    peers[2].inflight = 3; /* 1.5 per weight */
    assert_int_equal(sl_balance_least(peers, 3, ok), 1);
    peers[1].inflight = 2; /* 2 per weight: server 2 is now the lightest */
    assert_int_equal(sl_balance_least(peers, 3, ok), 2);
    ok[2] = false;
    assert_int_equal(sl_balance_least(peers, 3, ok), 1);
    /* equal loads take turns, by weight */
    ok[2] = true;
    peers_init(peers, weights, 3);
    for (int i = 0; i < 400; i++)
        count[sl_balance_least(peers, 3, ok)]++;
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 200);
}

/* The most loaded of three is never taken: it always meets a lighter one. */
static void
test_p2c_less_loaded(void **state)
{
    static const unsigned weights[] = { 1, 1, 1 };
    struct sl_balance_peer peers[3];
    bool ok[3] = { true, true, true };
    unsigned count[3] = { 0 };
    uint64_t rng = sl_balance_seed(42);
    (void)state;

    peers_init(peers, weights, 3);
    peers[0].inflight = 0;
    peers[1].inflight = 5;
    peers[2].inflight = 9;
    for (int i = 0; i < 3000; i++)
        count[sl_balance_p2c(peers, 3, ok, &rng)]++;
    assert_int_equal(count[2], 0);
    /* the idle one wins whenever it is drawn: 2 draws in 3 */
    assert_in_range(count[0], 1800, 2200);
    /* two servers: the less loaded, always */
    ok[0] = false;
    for (int i = 0; i < 100; i++)
        assert_int_equal(sl_balance_p2c(peers, 3, ok, &rng), 1);
    ok[1] = false;
    assert_int_equal(sl_balance_p2c(peers, 3, ok, &rng), 2);
    ok[2] = false;
    assert_int_equal(sl_balance_p2c(peers, 3, ok, &rng), -1);
}

/* Idle servers are drawn by weight. */
static void
test_p2c_weighted(void **state)
{
    static const unsigned weights[] = { 3, 1 };
    struct sl_balance_peer peers[2];
    bool ok[2] = { true, true };
    unsigned count[2] = { 0 };
    uint64_t rng = sl_balance_seed(7);
    (void)state;

    peers_init(peers, weights, 2);
    for (int i = 0; i < 4000; i++)
        count[sl_balance_p2c(peers, 2, ok, &rng)]++;
    assert_in_range(count[0], 2700, 3300);
}

static void
ids_make(char ids[][32], const char **idp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], 32, "10.0.0.%zu:80", i + 1);
        idp[i] = ids[i];
    }
}

static uint64_t
key_hash(unsigned k)
{
    char key[32];
    int len = snprintf(key, sizeof(key), "tenant-%u", k);
    return sl_balance_key_hash(key, (size_t)len);
}

/*
 * Ten servers, one leaves: the keys it held move (about a tenth), no other
 * key moves, and skipping its points (a down server) lands every key where
 * the ring without it does.
 */
static void
test_ring_removal(void **state)
{
    enum { N = 10, GONE = 3 };
    char ids[N][32];
    const char *idp[N], *rest[N - 1];
    unsigned weights[N];
    bool ok[N], all[N];
    struct sl_ring ring = { 0 }, smaller = { 0 };
    unsigned moved = 0, count[N] = { 0 };
    (void)state;

    ids_make(ids, idp, N);
    for (size_t i = 0; i < N; i++) {
        weights[i] = 1;
        ok[i] = i != GONE;
        all[i] = true;
    }
    for (size_t i = 0, j = 0; i < N; i++) {
        if (i != GONE)
            rest[j++] = idp[i];
    }
    sl_ring_build(&ring, idp, weights, N, 1);
    sl_ring_build(&smaller, rest, weights, N - 1, 1);
    assert_int_equal(ring.npoints, N * SL_RING_POINTS_PER_WEIGHT);
    for (unsigned k = 0; k < NKEYS; k++) {
        uint64_t h = key_hash(k);
        int before = sl_ring_pick(&ring, h, all);
        int skipped = sl_ring_pick(&ring, h, ok);
        int after = sl_ring_pick(&smaller, h, all);
        assert_in_range(before, 0, N - 1);
        count[before]++;
        assert_string_equal(idp[skipped], rest[after]);
        if (before != GONE)
            assert_int_equal(skipped, before);
        else
            moved++;
    }
    /* about 1/N of the keys moved; each server held about 1/N */
    assert_in_range(moved, NKEYS / N / 2, NKEYS / N * 3 / 2);
    for (size_t i = 0; i < N; i++)
        assert_in_range(count[i], NKEYS / N / 2, NKEYS / N * 3 / 2);
    sl_ring_fini(&ring);
    sl_ring_fini(&smaller);
}

/* A server joining takes keys only for itself; the order servers are listed
 * in changes nothing. */
static void
test_ring_join_and_order(void **state)
{
    enum { N = 6 };
    char ids[N][32];
    const char *idp[N], *reversed[N];
    unsigned weights[N] = { 1, 1, 1, 1, 1, 1 };
    bool all[N] = { true, true, true, true, true, true };
    struct sl_ring five = { 0 }, six = { 0 }, rev = { 0 };
    unsigned moved = 0;
    (void)state;

    ids_make(ids, idp, N);
    for (size_t i = 0; i < N; i++)
        reversed[i] = idp[N - 1 - i];
    sl_ring_build(&five, idp, weights, N - 1, 1);
    sl_ring_build(&six, idp, weights, N, 1);
    sl_ring_build(&rev, reversed, weights, N, 1);
    for (unsigned k = 0; k < NKEYS; k++) {
        uint64_t h = key_hash(k);
        int a = sl_ring_pick(&five, h, all), b = sl_ring_pick(&six, h, all);
        if (a != b) {
            assert_int_equal(b, N - 1);
            moved++;
        }
        assert_string_equal(idp[b], reversed[sl_ring_pick(&rev, h, all)]);
    }
    assert_in_range(moved, NKEYS / N / 2, NKEYS / N * 3 / 2);
    sl_ring_fini(&five);
    sl_ring_fini(&six);
    sl_ring_fini(&rev);
}

/* Weight 3 against 1 holds about three quarters of the keys; weights are
 * reduced by their common divisor, and the point count is bounded. */
static void
test_ring_weights(void **state)
{
    char ids[20][32];
    const char *idp[20];
    unsigned weights[2] = { 3, 1 }, heavy = 0, big[20];
    bool all[2] = { true, true };
    struct sl_ring ring = { 0 };
    (void)state;

    ids_make(ids, idp, 20);
    for (size_t i = 0; i < 20; i++)
        big[i] = 256;
    sl_ring_build(&ring, idp, weights, 2, 1);
    assert_int_equal(ring.npoints, 4 * SL_RING_POINTS_PER_WEIGHT);
    for (unsigned k = 0; k < NKEYS; k++)
        heavy += sl_ring_pick(&ring, key_hash(k), all) == 0;
    assert_in_range(heavy, NKEYS * 65 / 100, NKEYS * 85 / 100);
    sl_ring_build(&ring, idp, big, 2, 256);
    assert_int_equal(ring.npoints, 2 * SL_RING_POINTS_PER_WEIGHT);
    sl_ring_build(&ring, idp, big, 20, 1);
    assert_true(ring.npoints <= SL_RING_POINTS_MAX);
    assert_true(ring.npoints >= SL_RING_POINTS_MAX / 2);
    sl_ring_fini(&ring);
}

static void
test_ring_none_ok(void **state)
{
    char ids[2][32];
    const char *idp[2];
    unsigned weights[2] = { 1, 1 };
    bool none[2] = { false, false }, one[2] = { false, true };
    struct sl_ring ring = { 0 };
    (void)state;

    assert_int_equal(sl_ring_pick(&ring, 1, none), -1); /* empty */
    ids_make(ids, idp, 2);
    sl_ring_build(&ring, idp, weights, 2, 1);
    assert_int_equal(sl_ring_pick(&ring, 12345, none), -1);
    for (unsigned k = 0; k < 100; k++)
        assert_int_equal(sl_ring_pick(&ring, key_hash(k), one), 1);
    /* the highest hash goes round to the first point */
    assert_in_range(sl_ring_pick(&ring, UINT64_MAX, (bool[]){ true, true }), 0, 1);
    sl_ring_fini(&ring);
    sl_ring_fini(&ring);
}

/* The same key hashes the same everywhere (a fixed key, not per process). */
static void
test_key_hash_fixed(void **state)
{
    (void)state;
    assert_true(sl_balance_key_hash("acme", 4) == sl_balance_key_hash("acme", 4));
    assert_true(sl_balance_key_hash("acme", 4) != sl_balance_key_hash("acme2", 5));
    assert_true(sl_balance_seed(0) != 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swrr_order),
        cmocka_unit_test(test_swrr_distribution),
        cmocka_unit_test(test_swrr_three_to_one),
        cmocka_unit_test(test_swrr_skips_not_ok),
        cmocka_unit_test(test_least_conn),
        cmocka_unit_test(test_p2c_less_loaded),
        cmocka_unit_test(test_p2c_weighted),
        cmocka_unit_test(test_ring_removal),
        cmocka_unit_test(test_ring_join_and_order),
        cmocka_unit_test(test_ring_weights),
        cmocka_unit_test(test_ring_none_ok),
        cmocka_unit_test(test_key_hash_fixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
