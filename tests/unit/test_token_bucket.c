/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The token-bucket algorithm: lua/token_bucket.lua run in LuaJIT against a
 * fake redis.call (tests/unit/fakes/tb_lua.h), and its C port in
 * store_local.c, both driven with simulated time. A table of hand-computed
 * sequences (admit/refuse, remaining, retry, reset) holds for both; random
 * sequences give identical answers from both; all-or-nothing, fractional
 * cost, quantization and the fleet bound are checked on their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fakes/tb_lua.h"
#include "sluice/store.h"
#include "store_int.h"
#include "util/clock.h"

#define T0 1700000000000000ull /* a realistic Redis TIME, in us */
#define MAXB 8                 /* buckets per check in these tests */

struct outcome {
    enum sl_store_status status;
    bool is_admitted;
    size_t n;
    int ncalls;
    struct sl_store_result res[MAXB];
};

struct env {
    struct tb_lua lua;
    struct sl_store_local_table *table;
    struct sl_store *local;
    uint64_t now;
};

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    tb_lua_init(&e->lua);
    e->table = sl_store_local_table_new(100000);
    e->local = sl_store_local_new(e->table);
    e->now = T0;
    sl_clock_set_fake(&e->now);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;

    sl_clock_set_fake(NULL);
    sl_store_free(e->local);
    sl_store_local_table_free(e->table);
    tb_lua_fini(&e->lua);
    free(e);
    return 0;
}

static void
on_result(void *arg, enum sl_store_status status, bool is_admitted,
          const struct sl_store_result *results, size_t nresults)
{
    struct outcome *o = arg;

    o->ncalls++;
    o->status = status;
    o->is_admitted = is_admitted;
    o->n = nresults;
    if (status == SL_STORE_OK)
        memcpy(o->res, results, nresults * sizeof(*results));
}

/* The embedded store: one check at e->now. */
static void
c_check(struct env *e, const struct sl_store_bucket *b, size_t n, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    sl_store_check(e->local, b, n, on_result, o);
    assert_int_equal(o->ncalls, 1);
}

/* The script: `nchecks` checks in one call at e->now, as store_redis sends them. */
static void
lua_checks(struct env *e, const struct sl_store_bucket *const *checks, const size_t *ns,
           size_t nchecks, struct outcome *out)
{
    const char *keys[64], *argv[512];
    size_t key_lens[64], argv_lens[512], nkeys = 0, nargv = 0;
    char numbers[512][24];
    long long reply[512];
    char err[256];
    long nreply, r = 0;

#define PUSH_NUM(v)                                                                      \
    do {                                                                                 \
        argv_lens[nargv] = (size_t)snprintf(numbers[nargv], sizeof(numbers[0]), "%lld", \
                                            (long long)(v));                            \
        argv[nargv] = numbers[nargv];                                                    \
        nargv++;                                                                         \
    } while (0)

    PUSH_NUM(nchecks);
    for (size_t c = 0; c < nchecks; c++) {
        PUSH_NUM(ns[c]);
        for (size_t i = 0; i < ns[c]; i++) {
            struct sl_tb_params pr = { 0 };

            assert_int_equal(sl_tb_params_from_bucket(&pr, &checks[c][i]), 0);
            keys[nkeys] = checks[c][i].key;
            key_lens[nkeys++] = checks[c][i].key_len;
            PUSH_NUM(pr.q);
            PUSH_NUM(pr.p);
            PUSH_NUM(pr.tu);
            PUSH_NUM(pr.burst);
            PUSH_NUM(pr.cost);
        }
    }
#undef PUSH_NUM
    tb_lua_set_now(&e->lua, e->now);
    nreply = tb_lua_eval(&e->lua, keys, key_lens, nkeys, argv, argv_lens, nargv, reply, 512,
                         err, sizeof(err));
    if (nreply < 0)
        fail_msg("script error: %s", err);
    for (size_t c = 0; c < nchecks; c++) {
        struct outcome *o = &out[c];

        memset(o, 0, sizeof(*o));
        o->ncalls = 1;
        assert_true(r < nreply);
        o->is_admitted = reply[r++] == 1;
        o->n = ns[c];
        for (size_t i = 0; i < ns[c]; i++) {
            assert_true(r + 3 <= nreply);
            o->res[i].remaining = (double)reply[r] / 1000.0;
            o->res[i].retry_ms = reply[r + 1] < 0 ? SL_STORE_RETRY_NEVER
                                                  : (uint64_t)reply[r + 1];
            o->res[i].reset_ms = (uint64_t)reply[r + 2];
            r += 3;
        }
    }
    assert_int_equal(r, nreply);
}

static void
lua_check(struct env *e, const struct sl_store_bucket *b, size_t n, struct outcome *o)
{
    lua_checks(e, &b, &n, 1, o);
}

/* Redis Cluster's calls: no key declared, the keys in ARGV after 'keys' and
 * their count; one check per bucket here. Returns the reply's length. */
static long
lua_sharded(struct env *e, const struct sl_store_bucket *b, size_t n, long long *reply)
{
    const char *argv[128];
    size_t argv_lens[128], nargv = 0;
    char numbers[128][24], err[256];
    long nreply;

#define PUSH_NUM(v)                                                                      \
    do {                                                                                 \
        argv_lens[nargv] = (size_t)snprintf(numbers[nargv], sizeof(numbers[0]), "%lld", \
                                            (long long)(v));                            \
        argv[nargv] = numbers[nargv];                                                    \
        nargv++;                                                                         \
    } while (0)

    argv[nargv] = "keys";
    argv_lens[nargv++] = 4;
    PUSH_NUM(n);
    for (size_t i = 0; i < n; i++) {
        argv[nargv] = b[i].key;
        argv_lens[nargv++] = b[i].key_len;
    }
    PUSH_NUM(n);
    for (size_t i = 0; i < n; i++) {
        struct sl_tb_params pr = { 0 };

        assert_int_equal(sl_tb_params_from_bucket(&pr, &b[i]), 0);
        PUSH_NUM(1);
        PUSH_NUM(pr.q);
        PUSH_NUM(pr.p);
        PUSH_NUM(pr.tu);
        PUSH_NUM(pr.burst);
        PUSH_NUM(pr.cost);
    }
#undef PUSH_NUM
    tb_lua_set_now(&e->lua, e->now);
    nreply = tb_lua_eval(&e->lua, NULL, NULL, 0, argv, argv_lens, nargv, reply, 64, err,
                         sizeof(err));
    if (nreply < 0)
        fail_msg("script error: %s", err);
    return nreply;
}


static struct sl_store_bucket
bucket(const char *key, double rate, uint64_t per_ms, double burst, double cost)
{
    return (struct sl_store_bucket){ .key = key, .key_len = strlen(key), .rate = rate,
                                     .per_ms = per_ms, .burst = burst, .cost = cost };
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *what)
{
    if (a->status != b->status || a->is_admitted != b->is_admitted || a->n != b->n)
        fail_msg("%s: admitted %d/%d status %d/%d", what, a->is_admitted, b->is_admitted,
                 a->status, b->status);
    for (size_t i = 0; i < a->n; i++) {
        const struct sl_store_result *x = &a->res[i], *y = &b->res[i];

        if (x->remaining != y->remaining || x->retry_ms != y->retry_ms
            || x->reset_ms != y->reset_ms)
            fail_msg("%s: bucket %zu: remaining %.3f/%.3f retry %llu/%llu reset %llu/%llu",
                     what, i, x->remaining, y->remaining, (unsigned long long)x->retry_ms,
                     (unsigned long long)y->retry_ms, (unsigned long long)x->reset_ms,
                     (unsigned long long)y->reset_ms);
    }
}

/* ---- hand-computed sequences ----------------------------------------------------- */

struct step {
    uint64_t at_us; /* since T0 */
    const char *key;
    double rate;
    uint64_t per_ms;
    double burst;
    double cost;
    bool is_admitted;
    double remaining;
    uint64_t retry_ms;
    uint64_t reset_ms;
};

#define MS 1000ull
#define NEVER SL_STORE_RETRY_NEVER

static const struct step steps[] = {
    /* 10/s, burst 10: one token per 100 ms */
    { 0, "a", 10, 1000, 10, 1, true, 9, 0, 100 },
    { 0, "a", 10, 1000, 10, 1, true, 8, 0, 200 },
    { 0, "a", 10, 1000, 10, 1, true, 7, 0, 300 },
    { 0, "a", 10, 1000, 10, 1, true, 6, 0, 400 },
    { 0, "a", 10, 1000, 10, 1, true, 5, 0, 500 },
    { 0, "a", 10, 1000, 10, 1, true, 4, 0, 600 },
    { 0, "a", 10, 1000, 10, 1, true, 3, 0, 700 },
    { 0, "a", 10, 1000, 10, 1, true, 2, 0, 800 },
    { 0, "a", 10, 1000, 10, 1, true, 1, 0, 900 },
    { 0, "a", 10, 1000, 10, 1, true, 0, 100, 1000 },
    { 0, "a", 10, 1000, 10, 1, false, 0, 100, 1000 },
    { 50 * MS, "a", 10, 1000, 10, 1, false, 0.5, 50, 950 },
    { 99999, "a", 10, 1000, 10, 1, false, 0.999, 1, 901 },
    { 100 * MS, "a", 10, 1000, 10, 1, true, 0, 100, 1000 },
    { 1100 * MS, "a", 10, 1000, 10, 1, true, 9, 0, 100 },
    { 5000 * MS, "a", 10, 1000, 10, 1, true, 9, 0, 100 },
    /* fractional cost: 1/s, burst 1, cost 0.5 */
    { 0, "b", 1, 1000, 1, 0.5, true, 0.5, 0, 500 },
    { 0, "b", 1, 1000, 1, 0.5, true, 0, 500, 1000 },
    { 0, "b", 1, 1000, 1, 0.5, false, 0, 500, 1000 },
    { 250 * MS, "b", 1, 1000, 1, 0.5, false, 0.25, 250, 750 },
    { 500 * MS, "b", 1, 1000, 1, 0.5, true, 0, 500, 1000 },
    /* 3/s: a token every 333333.33 us; retries round up to the next ms */
    { 0, "c", 3, 1000, 2, 1, true, 1, 0, 334 },
    { 0, "c", 3, 1000, 2, 1, true, 0, 334, 667 },
    { 0, "c", 3, 1000, 2, 1, false, 0, 334, 667 },
    { 333 * MS, "c", 3, 1000, 2, 1, false, 0.999, 1, 334 },
    { 334 * MS, "c", 3, 1000, 2, 1, true, 0.002, 333, 666 },
    /* 1/min, burst 3 */
    { 0, "d", 1, 60000, 3, 1, true, 2, 0, 60000 },
    { 0, "d", 1, 60000, 3, 1, true, 1, 0, 120000 },
    { 0, "d", 1, 60000, 3, 1, true, 0, 60000, 180000 },
    { 0, "d", 1, 60000, 3, 1, false, 0, 60000, 180000 },
    { 30000 * MS, "d", 1, 60000, 3, 1, false, 0.5, 30000, 150000 },
    { 60000 * MS, "d", 1, 60000, 3, 1, true, 0, 60000, 180000 },
    /* cost above burst: never */
    { 0, "e", 10, 1000, 5, 6, false, 5, NEVER, 0 },
    /* cost 0 always passes and leaves the bucket full */
    { 0, "f", 1, 1000, 1, 0, true, 1, 0, 0 },
    /* burst x per too big for 1 us ticks: 1 ms ticks */
    { 0, "g", 9999997, 86400000, 9999997, 1, true, 9999996, 0, 9 },
    { 0, "g", 9999997, 86400000, 9999997, 9999996, true, 0, 86399992, 86400000 },
    /* TIME steps back: nothing is credited until it passes the stamp again,
     * and retry/reset count from the stamp */
    { 0, "back", 10, 1000, 10, 5, true, 5, 0, 500 },
    { 100 * MS, "back", 10, 1000, 10, 1, true, 5, 0, 500 },
    { 50 * MS, "back", 10, 1000, 10, 1, true, 4, 0, 650 },
    { 50 * MS, "back", 10, 1000, 10, 5, false, 4, 150, 650 },
    { 120 * MS, "back", 10, 1000, 10, 1, true, 3.2, 0, 680 },
    /* 4.35/s is 4350 milli-tokens per second, not 4349 */
    { 0, "h", 4.35, 1000, 4.35, 4.35, true, 0, 1000, 1000 },
    { 1000 * MS, "h", 4.35, 1000, 4.35, 4.35, true, 0, 1000, 1000 },
};

static void
run_steps(struct env *e, bool is_lua)
{
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const struct step *s = &steps[i];
        struct sl_store_bucket b = bucket(s->key, s->rate, s->per_ms, s->burst, s->cost);
        struct outcome o, want = { .status = SL_STORE_OK, .is_admitted = s->is_admitted,
                                   .n = 1, .ncalls = 1 };
        char what[64];

        want.res[0] = (struct sl_store_result){ s->remaining, s->retry_ms, s->reset_ms };
        e->now = T0 + s->at_us;
        if (is_lua)
            lua_check(e, &b, 1, &o);
        else
            c_check(e, &b, 1, &o);
        snprintf(what, sizeof(what), "%s step %zu (key %s)", is_lua ? "lua" : "c", i, s->key);
        assert_same(&o, &want, what);
    }
}

static void
test_steps_c(void **state)
{
    run_steps(*state, false);
}

static void
test_steps_lua(void **state)
{
    run_steps(*state, true);
}

/* ---- quantization ---------------------------------------------------------------- */

static void
test_params(void **state)
{
    struct sl_tb_params pr = { 0 };
    struct env *e = *state;
    struct sl_store_bucket bad = bucket("x", 0.0001, 1000, 1, 1);
    struct outcome o;

    (void)e;
    assert_int_equal(sl_tb_params_init(&pr, 10, 1000, 10, 1), 0);
    assert_true(pr.q == 1 && pr.p == 100 && pr.tu == 1 && pr.burst == 10000 && pr.cost == 1000);
    assert_int_equal(sl_tb_params_init(&pr, 4.35, 1000, 4.35, 0.0001), 0);
    assert_true(pr.burst == 4350 && pr.cost == 1); /* cost rounds up */
    assert_int_equal(sl_tb_params_init(&pr, 0.0015, 1000, 0.0015, 0.0015), 0);
    assert_true(pr.burst == 1 && pr.cost == 2); /* burst down, cost up */
    assert_int_equal(sl_tb_params_init(&pr, 9999997, 86400000, 9999997, 1), 0);
    assert_true(pr.tu == 1000 && pr.q == 9999997 && pr.p == 86400);
    assert_true(pr.burst * pr.p + pr.q < SL_TB_LIMIT);
    assert_int_equal(sl_tb_params_init(&pr, 0.0001, 1000, 1, 1), -1); /* rate < 0.001 */
    assert_int_equal(sl_tb_params_init(&pr, 1, 0, 1, 1), -1);
    assert_int_equal(sl_tb_params_init(&pr, 1, 1000, -1, 1), -1);
    assert_int_equal(sl_tb_params_init(&pr, 1, 1000, 1, 0.0 / 0.0), -1);
    assert_int_equal(sl_tb_params_init(&pr, 1, 1000, 1e15, 1), -1); /* beyond 2^52 */

    /* an unrepresentable bucket fails its check, once, with SL_STORE_REPLY */
    memset(&o, 0, sizeof(o));
    sl_store_check(e->local, &bad, 1, on_result, &o);
    assert_int_equal(o.ncalls, 1);
    assert_int_equal(o.status, SL_STORE_REPLY);
}

/* ---- several buckets ------------------------------------------------------------- */

static void
run_all_or_nothing(struct env *e, bool is_lua)
{
    struct sl_store_bucket both[2] = { bucket("p:k1", 10, 1000, 10, 1),
                                       bucket("p:k2", 1, 1000, 2, 1) };
    struct outcome o;

    e->now = T0;
    for (int i = 0; i < 3; i++) {
        if (is_lua)
            lua_check(e, both, 2, &o);
        else
            c_check(e, both, 2, &o);
        assert_int_equal(o.is_admitted, i < 2);
    }
    /* refused by k2: k1 kept its tokens */
    assert_true(o.res[0].remaining == 8 && o.res[0].retry_ms == 0);
    assert_true(o.res[1].remaining == 0 && o.res[1].retry_ms == 1000);
    if (is_lua)
        lua_check(e, both, 1, &o);
    else
        c_check(e, both, 1, &o);
    assert_true(o.is_admitted && o.res[0].remaining == 7);
}

static void
test_all_or_nothing_c(void **state)
{
    run_all_or_nothing(*state, false);
}

static void
test_all_or_nothing_lua(void **state)
{
    run_all_or_nothing(*state, true);
}

/* Checks of one script call are independent and applied in order. */
static void
test_batch_in_order(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket one = bucket("q:k", 1, 1000, 2, 1);
    struct sl_store_bucket pair[2] = { bucket("q:j", 1, 1000, 1, 1), bucket("q:k", 1, 1000, 2, 1) };
    const struct sl_store_bucket *checks[4] = { &one, pair, &one, pair };
    size_t ns[4] = { 1, 2, 1, 2 };
    struct outcome o[4];

    e->now = T0;
    lua_checks(e, checks, ns, 4, o);
    assert_true(o[0].is_admitted && o[0].res[0].remaining == 1);
    assert_true(o[1].is_admitted && o[1].res[0].remaining == 0 && o[1].res[1].remaining == 0);
    assert_false(o[2].is_admitted); /* k is empty now */
    assert_false(o[3].is_admitted);
    assert_true(o[3].res[0].remaining == 0 && o[3].res[0].retry_ms == 1000);
    /* written once per key, expiring 1 ms after the bucket is full again */
    assert_int_equal(tb_lua_shim_int(&e->lua, "nkeys", NULL), 2);
    assert_int_equal(tb_lua_shim_int(&e->lua, "pttl", "q:k"), 2001);
    assert_int_equal(tb_lua_shim_int(&e->lua, "pttl", "q:j"), 1001);
    e->now = T0 + 2001 * MS;
    tb_lua_set_now(&e->lua, e->now);
    assert_int_equal(tb_lua_shim_int(&e->lua, "nkeys", NULL), 1);
    e->now = T0 + 2002 * MS;
    tb_lua_set_now(&e->lua, e->now);
    assert_int_equal(tb_lua_shim_int(&e->lua, "nkeys", NULL), 0);
}

/* A refused check writes nothing; a key absent from Redis is a full bucket. */
static void
test_refusal_writes_nothing(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket pair[2] = { bucket("r:new", 5, 1000, 5, 1),
                                       bucket("r:big", 5, 1000, 5, 6) };
    struct outcome o;

    e->now = T0;
    lua_check(e, pair, 2, &o);
    assert_false(o.is_admitted);
    assert_true(o.res[0].remaining == 5 && o.res[0].reset_ms == 0);
    assert_true(o.res[1].retry_ms == SL_STORE_RETRY_NEVER);
    assert_int_equal(tb_lua_shim_int(&e->lua, "nkeys", NULL), 0);
}

/* ---- the script and the port agree ----------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(uint64_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n == 0 ? 0 : rng_state % n;
}

static const struct {
    double rate;
    uint64_t per_ms;
    double burst;
    double cost;
} limits[] = {
    { 10, 1000, 10, 1 },         { 3, 1000, 2, 0.7 },        { 7, 3000, 5, 1.3 },
    { 100, 1000, 200, 1 },       { 0.5, 1000, 1, 1 },        { 1000000, 1000, 1000, 3 },
    { 9999997, 86400000, 9999997, 4000000 }, { 6000, 60000, 6000, 1 }, { 1, 1, 1, 1 },
    { 2.5, 7, 3.25, 0.125 },     { 1, 1000, 5, 6 },          { 50, 1000, 50, 0 },
};
#define NLIMITS (sizeof(limits) / sizeof(limits[0]))

static void
test_lua_equals_c(void **state)
{
    struct env *e = *state;
    char names[24][32];
    struct sl_store_bucket pool[24];

    /* keys are namespaced by limit, as the limiter builds them */
    for (size_t i = 0; i < 24; i++) {
        size_t l = i % NLIMITS;

        snprintf(names[i], sizeof(names[i]), "eq:%zu:%zu", l, i);
        pool[i] = bucket(names[i], limits[l].rate, limits[l].per_ms, limits[l].burst,
                         limits[l].cost);
    }
    e->now = T0 + 123457;
    for (int step = 0; step < 20000; step++) {
        struct sl_store_bucket checks[8][MAXB];
        const struct sl_store_bucket *cp[8];
        size_t ns[8], nchecks = 1 + rnd(6);
        struct outcome lo[8], co;

        switch (rnd(6)) {
        case 0: break;
        case 1: e->now += rnd(1000); break;
        case 2: e->now += rnd(100000); break;
        case 3: e->now += rnd(3000000); break;
        case 4: e->now += rnd(90000000); break;
        default:
            /* no steps back here: once a bucket is full again, the table may
             * reclaim it before Redis expires the key, and a clock going back
             * past that moment would tell them apart (see the "back" steps) */
            e->now += 1 + rnd(50);
        }
        for (size_t c = 0; c < nchecks; c++) {
            ns[c] = 1 + (rnd(4) == 0 ? rnd(3) : 0);
            for (size_t i = 0; i < ns[c]; i++) {
                checks[c][i] = pool[rnd(rnd(3) == 0 ? 24 : 6)];
                if (rnd(50) == 0) /* a request-dependent cost */
                    checks[c][i].cost = (double)rnd(3000) / 1000.0;
            }
            cp[c] = checks[c];
        }
        lua_checks(e, cp, ns, nchecks, lo);
        for (size_t c = 0; c < nchecks; c++) {
            char what[64];

            c_check(e, checks[c], ns[c], &co);
            snprintf(what, sizeof(what), "step %d check %zu", step, c);
            assert_same(&lo[c], &co, what);
        }
    }
}

/* ---- the fleet bound ------------------------------------------------------------- */

/*
 * Saturating traffic on one key: over every window between two admissions,
 * admitted cost <= burst + rate * T / per, in exact integers (milli-tokens,
 * microseconds), and the limit is not much stricter than that either.
 */
static void
run_bound(struct env *e, bool is_lua, double rate, uint64_t per_ms, double burst, double cost,
          uint64_t max_gap_us, size_t attempts)
{
    char key[96];
    struct sl_store_bucket b;
    struct sl_tb_params pr = { 0 };
    uint64_t *at = malloc(attempts * sizeof(*at));
    int64_t *sum = malloc((attempts + 1) * sizeof(*sum));
    size_t n = 0;
    int64_t rate_m = 0, burst_m = 0;
    uint64_t start = e->now;

    snprintf(key, sizeof(key), "bound:%s:%g/%llu:%g:%g", is_lua ? "lua" : "c", rate,
             (unsigned long long)per_ms, burst, cost);
    b = bucket(key, rate, per_ms, burst, cost);
    assert_int_equal(sl_tb_params_from_bucket(&pr, &b), 0);
    sl_tb_milli(rate, false, &rate_m);
    sl_tb_milli(burst, false, &burst_m);
    sum[0] = 0;
    for (size_t i = 0; i < attempts; i++) {
        struct outcome o;

        e->now += rnd(max_gap_us + 1);
        if (is_lua)
            lua_check(e, &b, 1, &o);
        else
            c_check(e, &b, 1, &o);
        if (o.is_admitted) {
            at[n] = e->now;
            sum[n + 1] = sum[n] + pr.cost;
            n++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i; j < n; j++) {
            __int128 lhs = (__int128)(sum[j + 1] - sum[i]) * (__int128)per_ms * 1000;
            __int128 rhs = (__int128)burst_m * per_ms * 1000 + (__int128)rate_m * (at[j] - at[i]);

            if (lhs > rhs)
                fail_msg("bound broken between admissions %zu and %zu", i, j);
        }
    }
    /* and not much stricter: within one cost of the bound over the whole run */
    double allowed = burst + rate * (double)(e->now - start) / 1000.0 / (double)per_ms;
    if ((double)sum[n] / 1000.0 < allowed - 2 * cost - 0.001 * allowed)
        fail_msg("%s: admitted %.3f of %.3f", key, (double)sum[n] / 1000.0, allowed);
    free(at);
    free(sum);
}

static void
test_bound_c(void **state)
{
    struct env *e = *state;

    e->now = T0 + 777;
    run_bound(e, false, 7, 3000, 5, 0.3, 2000, 30000);
    run_bound(e, false, 3, 1000, 2, 1, 500, 20000);
    run_bound(e, false, 100, 1000, 200, 1.7, 300, 20000);
}

static void
test_bound_lua(void **state)
{
    struct env *e = *state;

    e->now = T0 + 999;
    run_bound(e, true, 7, 3000, 5, 0.3, 2000, 10000);
    run_bound(e, true, 3, 1000, 2, 1, 500, 10000);
}

/* ---- leases ---------------------------------------------------------------- */

/* One lease operation (or a refund: holder NULL) through the script at
 * e->now; returns the milli-tokens moved, *res the bucket after it. */
static long long
lua_lease(struct env *e, const struct sl_store_bucket *b, int op, long long a, long long held,
          long long ttl2_us, const char *holder, struct sl_store_result *res)
{
    const char *keys[1] = { b->key }, *argv[11];
    size_t key_lens[1] = { b->key_len }, argv_lens[11];
    char numbers[11][24];
    long long reply[8], v[10];
    struct sl_tb_params pr = { 0 };
    char err[256];
    long nreply;

    assert_int_equal(sl_tb_params_from_bucket(&pr, b), 0);
    v[0] = 1;
    v[1] = op;
    v[2] = pr.q;
    v[3] = pr.p;
    v[4] = pr.tu;
    v[5] = pr.burst;
    v[6] = pr.cost;
    v[7] = a;
    v[8] = held;
    v[9] = ttl2_us;
    /* a refund (no holder) stops after the bucket's numbers */
    size_t nargv = holder != NULL ? 11 : 7;

    for (size_t i = 0; i < 10; i++) {
        argv_lens[i] = (size_t)snprintf(numbers[i], sizeof(numbers[0]), "%lld", v[i]);
        argv[i] = numbers[i];
    }
    argv[10] = holder;
    argv_lens[10] = holder != NULL ? strlen(holder) : 0;
    tb_lua_set_now(&e->lua, e->now);
    nreply = tb_lua_eval(&e->lua, keys, key_lens, 1, argv, argv_lens, nargv, reply, 8, err,
                         sizeof(err));
    if (nreply < 0)
        fail_msg("script error: %s", err);
    assert_int_equal(nreply, 4);
    if (res != NULL) {
        res->remaining = (double)reply[1] / 1000.0;
        res->retry_ms = reply[2] < 0 ? SL_STORE_RETRY_NEVER : (uint64_t)reply[2];
        res->reset_ms = (uint64_t)reply[3];
    }
    return reply[0];
}

#define TAKE (-1)
#define GIVE (-2)
#define REFUND (-3)
#define TTL2 500000 /* us */

/* A check on a key the master does not serve answers -9 and takes
 * nothing; the others in the call are decided as usual. */
static void
test_sharded_call(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b[3] = { bucket("a", 1, 1000, 5, 1), bucket("far:b", 1, 1000, 5, 1),
                                    bucket("c", 1, 1000, 5, 2) };
    long long reply[64];

    assert_int_equal(lua_sharded(e, b, 3, reply), 12);
    assert_int_equal(reply[0], 1);
    assert_int_equal(reply[1], 4000);
    assert_int_equal(reply[4], -9);
    assert_int_equal(reply[5] | reply[6] | reply[7], 0);
    assert_int_equal(reply[8], 1);
    assert_int_equal(reply[9], 3000);
    assert_true(tb_lua_shim_int(&e->lua, "pttl", "a") > 0);
    assert_int_equal(tb_lua_shim_int(&e->lua, "pttl", "far:b"), -2);
}

/* Redis Cluster's take-then-refund: a refund undoes a take, and never fills
 * a bucket past what it can hold (it may have refilled meanwhile). */
static void
test_refund(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bucket("r", 1, 1000, 5, 2); /* 1/s, burst 5, cost 2 */
    struct sl_store_result r;
    struct outcome o;

    lua_check(e, &b, 1, &o);
    assert_true(o.is_admitted);
    assert_true(o.res[0].remaining == 3.0);
    assert_int_equal(lua_lease(e, &b, REFUND, 0, 0, 0, NULL, &r), 2000);
    assert_true(r.remaining == 5.0);
    /* full already: nothing goes back, nothing is written */
    assert_int_equal(lua_lease(e, &b, REFUND, 0, 0, 0, NULL, &r), 0);
    assert_true(r.remaining == 5.0);
    lua_check(e, &b, 1, &o);
    lua_check(e, &b, 1, &o);
    assert_true(o.res[0].remaining == 1.0);
    /* 3 s later the bucket refilled to 4: only 1 of the 2 fits */
    e->now += 3000000;
    assert_int_equal(lua_lease(e, &b, REFUND, 0, 0, 0, NULL, &r), 1000);
    assert_true(r.remaining == 5.0);
}

static void
test_lease_take_give(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bucket("l", 10, 1000, 10, 1); /* 10/s, burst 10 */
    struct sl_store_result r;
    struct outcome o;

    /* a take never gets more than the bucket holds */
    assert_int_equal(lua_lease(e, &b, TAKE, 3000, 0, TTL2, "a1", &r), 3000);
    assert_true(r.remaining == 7.0);
    /* while it is held the bucket refills to burst minus it, not to burst */
    e->now += 200000;
    lua_check(e, &b, 1, &o);
    assert_true(o.is_admitted);
    assert_true(o.res[0].remaining == 6.0);
    /* another holder gets what is there, no more */
    assert_int_equal(lua_lease(e, &b, TAKE, 100000, 0, TTL2, "b2", &r), 6000);
    assert_true(r.remaining == 0.0);
    lua_check(e, &b, 1, &o);
    assert_false(o.is_admitted);
    assert_int_equal(o.res[0].retry_ms, 100);
    /* a1 gives 2 tokens back: the level gets them, its share leaves L */
    assert_int_equal(lua_lease(e, &b, GIVE, 2000, 0, TTL2, "a1", &r), 2000);
    assert_true(r.remaining == 2.0);
    /* b2 takes again still holding 1 token: its share is 1 + what it got */
    assert_int_equal(lua_lease(e, &b, TAKE, 1000, 1000, TTL2, "b2", &r), 1000);
    assert_true(r.remaining == 1.0);
    e->now += 200000;
    lua_check(e, &b, 1, &o);
    assert_true(o.res[0].remaining == 2.0); /* 1 + 2 refilled - this request's 1 */
    /* giving back more than it holds puts back only what it held */
    assert_int_equal(lua_lease(e, &b, GIVE, 5000, 0, TTL2, "b2", &r), 2000);
    assert_true(r.remaining == 4.0);
    /* a holder the store does not know gets nothing back in */
    assert_int_equal(lua_lease(e, &b, GIVE, 5000, 0, TTL2, "c3", &r), 0);
    assert_true(r.remaining == 4.0);
    /* with nothing held the cap is burst again */
    e->now += 10 * 1000000ull;
    lua_check(e, &b, 1, &o);
    assert_true(o.res[0].remaining == 9.0);
}

static void
test_lease_lapse(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bucket("l", 10, 1000, 10, 1);
    struct sl_store_result r;
    struct outcome o;

    assert_int_equal(lua_lease(e, &b, TAKE, 4000, 0, TTL2, "a1", &r), 4000);
    /* the key outlives the holder, though the bucket is "full" (6) at once */
    e->now += 400000;
    assert_true(tb_lua_shim_int(&e->lua, "pttl", "l") > 0);
    lua_check(e, &b, 1, &o);
    assert_true(o.res[0].remaining == 5.0);
    /* lapsed: what it held is gone, never credited back; the cap is burst */
    e->now += 200000;
    assert_int_equal(lua_lease(e, &b, GIVE, 4000, 0, TTL2, "a1", &r), 0);
    assert_true(r.remaining == 7.0); /* 5 + 2 refilled, nothing of a1's */
    e->now += 1000000;
    lua_check(e, &b, 1, &o);
    assert_true(o.res[0].remaining == 9.0);
    /* an empty bucket leases nothing and remembers no holder */
    b = bucket("e", 1, 60000, 1, 1);
    lua_check(e, &b, 1, &o);
    assert_int_equal(lua_lease(e, &b, TAKE, 1000, 0, TTL2, "a1", &r), 0);
    assert_int_equal(lua_lease(e, &b, GIVE, 1000, 0, TTL2, "a1", &r), 0);
}

/*
 * The fleet bound with leases: three holders taking, spending locally for
 * less than the lapse, giving back, next to plain checks; over every window
 * the tokens admitted (spent from leases or by checks) stay within
 * burst + rate x T.
 */
struct spend {
    uint64_t at;
    long long milli;
};

static void
test_lease_bound(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bucket("f", 200, 1000, 20, 1); /* 200/s, burst 20 */
    long long held[3] = { 0 }, budget_until[3] = { 0 };
    const char *ids[3] = { "a1", "b2", "c3" };
    struct spend *log = calloc(20000, sizeof(*log));
    size_t nlog = 0;
    struct outcome o;

    for (int step = 0; step < 6000; step++) {
        int h = (int)rnd(4);

        /* idle spells: the bucket refills while blocks are held */
        e->now += step % 300 == 299 ? 200000 : rnd(3000);
        if (h == 3) {
            lua_check(e, &b, 1, &o);
            if (o.is_admitted)
                log[nlog++] = (struct spend){ e->now, 1000 };
            continue;
        }
        if (held[h] >= 1000 && e->now < (uint64_t)budget_until[h]) {
            held[h] -= 1000;
            log[nlog++] = (struct spend){ e->now, 1000 };
        } else if (held[h] > 0 || rnd(2) == 0) {
            if (e->now >= (uint64_t)budget_until[h] || rnd(3) == 0) {
                lua_lease(e, &b, GIVE, held[h], 0, TTL2, ids[h], NULL);
                held[h] = 0;
            } else {
                held[h] += lua_lease(e, &b, TAKE, 1000 * (long long)(1 + rnd(6)), held[h],
                                     TTL2, ids[h], NULL);
                budget_until[h] = (long long)e->now + TTL2 / 2;
            }
        } else {
            held[h] = lua_lease(e, &b, TAKE, 1000 * (long long)(1 + rnd(6)), 0, TTL2, ids[h],
                                NULL);
            budget_until[h] = (long long)e->now + TTL2 / 2;
        }
    }
    assert_true(nlog > 100);
    for (size_t i = 0; i < nlog; i++) {
        long long sum = 0;
        for (size_t j = i; j < nlog; j++) {
            double allowed = 20000.0 + 200.0 * (double)(log[j].at - log[i].at) / 1000.0;
            sum += log[j].milli;
            if ((double)sum > allowed + 1e-6)
                fail_msg("window %zu..%zu: %lld milli-tokens admitted, bound %.0f", i, j, sum,
                         allowed);
        }
    }
    free(log);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_steps_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_lua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing_lua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_equals_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_lua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sharded_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_take_give, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_lapse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_bound, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
