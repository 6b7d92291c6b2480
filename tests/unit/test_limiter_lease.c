/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The lease store (src/limiter_lease.c) in front of a fake inner store that
 * records checks and lease operations and answers them when the test says,
 * with time from a fake clock: hot-key detection, block sizes within
 * max_share x burst, local admission, all-or-nothing with a plain bucket,
 * expiry and give-back, late takes, the drain's give-back and a free with
 * blocks out. The script's side of leases is test_token_bucket.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/limiter_lease.c"

#define MAX_OPS 64

struct op {
    enum sl_lease_op op;
    int64_t milli, held;
    sl_store_lease_cb *cb;
    void *arg;
};

struct inner {
    struct sl_store base;
    bool is_refusing;          /* checks are refused */
    size_t nchecks;            /* checks seen */
    size_t last_n;             /* buckets in the last check */
    struct op ops[MAX_OPS];    /* lease operations not answered yet */
    size_t nops;
    size_t nops_total;
    int64_t level;             /* milli-tokens a take can get */
    bool *freed;
};

static void
inner_check(struct sl_store *store, const struct sl_store_bucket *b, size_t n, sl_store_cb *cb,
            void *arg)
{
    struct inner *in = (struct inner *)store;
    struct sl_store_result res[8] = { { 0 } };

    (void)b;
    in->nchecks++;
    in->last_n = n;
    for (size_t i = 0; i < n; i++)
        res[i].retry_ms = in->is_refusing ? 1000 : 0;
    cb(arg, SL_STORE_OK, !in->is_refusing, res, n);
}

static void
inner_lease(struct sl_store *store, const struct sl_store_bucket *b, enum sl_lease_op op,
            int64_t milli, int64_t held, uint64_t ttl2_ms, const char *holder,
            sl_store_lease_cb *cb, void *arg)
{
    struct inner *in = (struct inner *)store;

    (void)b;
    assert_int_equal(ttl2_ms, 500);
    assert_int_equal(strlen(holder), 32);
    assert_true(in->nops < MAX_OPS);
    in->ops[in->nops++] = (struct op){ op, milli, held, cb, arg };
    in->nops_total++;
}

/* Answers the lease operations out, in order; takes get min(asked, level). */
static void
inner_answer(struct inner *in, enum sl_store_status status)
{
    size_t n = in->nops;
    struct op ops[MAX_OPS];

    memcpy(ops, in->ops, n * sizeof(*ops));
    in->nops = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_store_result r = { .remaining = 0 };
        int64_t moved = ops[i].milli;
        if (ops[i].op == SL_LEASE_TAKE) {
            if (moved > in->level)
                moved = in->level;
            in->level -= moved;
        } else {
            in->level += moved;
        }
        r.remaining = (double)in->level / 1000.0;
        ops[i].cb(ops[i].arg, status, status == SL_STORE_OK ? moved : 0,
                  status == SL_STORE_OK ? &r : NULL);
    }
}

static bool
inner_is_up(const struct sl_store *store)
{
    (void)store;
    return true;
}

static void
inner_free(struct sl_store *store)
{
    struct inner *in = (struct inner *)store;

    inner_answer(in, SL_STORE_CONNECTION);
    if (in->freed != NULL)
        *in->freed = true;
    free(in);
}

static const struct sl_store_ops inner_ops = {
    .name = "inner", .check = inner_check, .is_up = inner_is_up, .free = inner_free,
    .lease = inner_lease,
};

struct env {
    uint64_t now;
    struct event_base *base;
    struct sl_config cfg;
    struct sl_limit_conf limit;
    struct inner *in;
    struct sl_store *store;
    bool is_inner_freed;
};

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    e->now = 1000000000;
    sl_clock_set_fake(&e->now);
    e->base = event_base_new();
    e->limit.is_leased = true;
    e->cfg.limits = &e->limit;
    e->cfg.nlimits = 1;
    e->cfg.store.lease_ttl_ms = 250;
    e->cfg.store.lease_max_share = 0.1;
    e->in = calloc(1, sizeof(*e->in));
    e->in->base.ops = &inner_ops;
    e->in->level = 1000000;
    e->in->freed = &e->is_inner_freed;
    e->store = sl_lease_store_wrap(&e->in->base, &e->cfg, e->base);
    assert_ptr_not_equal(e->store, &e->in->base);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;

    if (e->store != NULL) {
        event_base_loopbreak(e->base); /* the loop is over: free at once */
        sl_store_free(e->store);
    }
    assert_true(e->is_inner_freed);
    event_base_free(e->base);
    sl_clock_set_fake(NULL);
    free(e);
    return 0;
}

struct answer {
    int ncalls;
    enum sl_store_status status;
    bool is_admitted;
    size_t n;
};

static void
on_answer(void *arg, enum sl_store_status status, bool is_admitted,
          const struct sl_store_result *results, size_t n)
{
    struct answer *a = arg;

    (void)results;
    a->ncalls++;
    a->status = status;
    a->is_admitted = is_admitted;
    a->n = n;
}

static struct sl_store_bucket
leased(const char *key)
{
    return (struct sl_store_bucket){ .key = key, .key_len = strlen(key), .rate = 1000,
                                     .per_ms = 1000, .burst = 1000, .cost = 1,
                                     .is_leased = true };
}

/* One check of buckets b[0..n); its answer (asserted to come at once). */
static struct answer
check(struct env *e, const struct sl_store_bucket *b, size_t n)
{
    struct answer a = { 0 };

    sl_store_check(e->store, b, n, on_answer, &a);
    assert_int_equal(a.ncalls, 1);
    return a;
}

/* Makes "k" hot and its first block arrive; returns the block's size. */
static int64_t
make_hot(struct env *e, const struct sl_store_bucket *b)
{
    int64_t block;

    for (unsigned i = 0; i < HOT_REQUESTS; i++) {
        e->now += 1000;
        check(e, b, 1);
    }
    assert_int_equal(e->in->nops, 1);
    assert_int_equal(e->in->ops[0].op, SL_LEASE_TAKE);
    block = e->in->ops[0].milli;
    inner_answer(e->in, SL_STORE_OK);
    return block;
}

static void
test_cold_keys_pass_through(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = leased("k");
    struct sl_store_bucket plain = leased("p");

    plain.is_leased = false;
    for (int i = 0; i < 100; i++) {
        check(e, &plain, 1);
        e->now += 200000; /* 5 a second: never hot */
        assert_true(check(e, &b, 1).is_admitted);
    }
    assert_int_equal(e->in->nchecks, 200);
    assert_int_equal(e->in->nops_total, 0);
}

static void
test_hot_key_admitted_locally(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = leased("k");
    int64_t block = make_hot(e, &b);
    size_t before = e->in->nchecks;

    /* max_share 0.1 of burst 1000: at most 100 tokens */
    assert_true(block >= 1000 && block <= 100000);
    for (int i = 0; i < 5; i++) {
        struct answer a = check(e, &b, 1);
        assert_true(a.is_admitted);
        assert_int_equal(a.n, 1);
    }
    assert_int_equal(e->in->nchecks, before);
}

static void
test_all_or_nothing(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket two[2] = { leased("k"), leased("u") };
    struct entry *ent;
    int64_t balance;

    two[1].is_leased = false;
    make_hot(e, &two[0]);
    ent = entry_find((struct lease_store *)e->store, &two[0], e->now);
    balance = ent->balance;
    assert_true(balance > 0);
    e->in->is_refusing = true;
    assert_false(check(e, two, 2).is_admitted);
    assert_int_equal(e->in->last_n, 1); /* only the plain bucket went out */
    assert_int_equal(ent->balance, balance);
    e->in->is_refusing = false;
    assert_true(check(e, two, 2).is_admitted);
    assert_int_equal(ent->balance, balance - 1000);
}

static void
test_expiry_gives_back(void **state)
{
    struct env *e = *state;
    struct lease_store *ls = (struct lease_store *)e->store;
    struct sl_store_bucket b = leased("k");
    struct entry *ent;
    size_t before;

    make_hot(e, &b);
    ent = entry_find(ls, &b, e->now);
    assert_true(ent->balance > 0);
    e->now += 300000; /* past the ttl of 250 ms */
    before = e->in->nchecks;
    e->in->level = 0; /* no new block */
    check(e, &b, 1);
    assert_int_equal(e->in->nchecks, before + 1); /* not from the expired block */
    on_sweep(-1, 0, ls);
    assert_int_equal(ent->balance, 0);
    /* the expired block went back, whole */
    assert_true(e->in->nops >= 1);
    assert_int_equal(e->in->ops[e->in->nops - 1].op, SL_LEASE_GIVE);
    inner_answer(e->in, SL_STORE_OK);
    assert_true(e->in->level > 0);
}

static int ncalled;

static void
on_returned(void *arg)
{
    (void)arg;
    ncalled++;
}

/* A block that ends while its refill is out goes back whole, with the refill. */
static void
test_end_while_taking(void **state)
{
    struct env *e = *state;
    struct lease_store *ls = (struct lease_store *)e->store;
    struct sl_store_bucket b = leased("k");
    struct entry *ent;
    int64_t block = make_hot(e, &b), level, held, asked;
    size_t before;

    ent = entry_find(ls, &b, e->now);
    /* spend until a refill goes out */
    while (e->in->nops == 0) {
        e->now += 100;
        assert_true(check(e, &b, 1).is_admitted);
    }
    assert_int_equal(e->in->ops[0].op, SL_LEASE_TAKE);
    assert_true(ent->balance > 0 && ent->balance < block);
    held = ent->balance;
    asked = e->in->ops[0].milli;
    ncalled = 0;
    store_return_leases(e->store, on_returned, NULL);
    assert_int_equal(ncalled, 0);
    /* nothing is spent from it meanwhile */
    before = e->in->nchecks;
    check(e, &b, 1);
    assert_int_equal(e->in->nchecks, before + 1);
    level = e->in->level;
    inner_answer(e->in, SL_STORE_OK); /* the take returns: all of it goes back */
    assert_int_equal(e->in->nops, 1);
    assert_int_equal(e->in->ops[0].op, SL_LEASE_GIVE);
    assert_int_equal(e->in->ops[0].milli, held + asked);
    assert_int_equal(ent->balance, 0);
    inner_answer(e->in, SL_STORE_OK);
    assert_int_equal(ncalled, 1);
    assert_true(e->in->level > level);
}

static void
test_late_take_not_spent(void **state)
{
    struct env *e = *state;
    struct lease_store *ls = (struct lease_store *)e->store;
    struct sl_store_bucket b = leased("k");
    struct entry *ent;

    for (unsigned i = 0; i < HOT_REQUESTS; i++) {
        e->now += 1000;
        check(e, &b, 1);
    }
    assert_int_equal(e->in->nops, 1);
    e->now += 260000; /* the answer comes after the ttl */
    inner_answer(e->in, SL_STORE_OK);
    ent = entry_find(ls, &b, e->now);
    assert_int_equal(ent->balance, 0);
    /* and the share in Redis is ended at once */
    assert_int_equal(e->in->nops, 1);
    assert_int_equal(e->in->ops[0].op, SL_LEASE_GIVE);
    assert_int_equal(e->in->ops[0].milli, 0);
}

static void
test_drain_returns_all(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = leased("k"), c = leased("c");
    int64_t level;

    make_hot(e, &b);
    make_hot(e, &c);
    level = e->in->level;
    ncalled = 0;
    store_return_leases(e->store, on_returned, NULL);
    assert_int_equal(ncalled, 0);
    assert_int_equal(e->in->nops, 2);
    inner_answer(e->in, SL_STORE_OK);
    assert_int_equal(ncalled, 1);
    assert_true(e->in->level > level);
    /* nothing is leased any more */
    assert_true(check(e, &b, 1).is_admitted);
    assert_int_equal(e->in->nops, 0);
}

static void
test_free_with_blocks_out(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = leased("k");

    make_hot(e, &b);
    /* the loop runs: the store waits for the give-back before it goes */
    sl_store_free(e->store);
    assert_false(e->is_inner_freed);
    assert_int_equal(e->in->nops, 1);
    assert_int_equal(e->in->ops[0].op, SL_LEASE_GIVE);
    inner_answer(e->in, SL_STORE_OK);
    assert_true(e->is_inner_freed);
    e->store = NULL;
}

/* The limiter may free the store from inside a decision's callback. */
static void
on_answer_free(void *arg, enum sl_store_status status, bool is_admitted,
               const struct sl_store_result *results, size_t n)
{
    struct env *e = arg;

    (void)status;
    (void)is_admitted;
    (void)results;
    (void)n;
    sl_store_free(e->store);
    e->store = NULL;
}

static void
test_free_inside_callback(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = leased("k");

    make_hot(e, &b);
    /* admitted from the block, at once: the store waits for its give-back */
    sl_store_check(e->store, &b, 1, on_answer_free, e);
    assert_null(e->store);
    assert_false(e->is_inner_freed);
    inner_answer(e->in, SL_STORE_OK);
    assert_true(e->is_inner_freed);
}

static void
test_free_inside_inner_callback(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket plain = leased("p");

    plain.is_leased = false;
    /* nothing leased: the store goes when the stack unwinds */
    sl_store_check(e->store, &plain, 1, on_answer_free, e);
    assert_null(e->store);
    assert_true(e->is_inner_freed);
}

static void
test_no_lease_no_wrapper(void **state)
{
    struct env *e = *state;
    struct sl_store *s;

    e->limit.is_leased = false;
    s = sl_lease_store_wrap(&e->in->base, &e->cfg, e->base);
    assert_ptr_equal(s, &e->in->base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cold_keys_pass_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hot_key_admitted_locally, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_gives_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_while_taking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_take_not_spent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_returns_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_blocks_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_inner_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_lease_no_wrapper, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
