/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The embedded idempotency table: claim, in flight, complete, replay,
 * release; tokens that no longer own a claim; expiry of claims and records
 * on a fake clock; the byte bound, with records evicted oldest first and
 * claims never.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/idem.h"
#include "util/clock.h"

static uint64_t now_us = 1000000000;

static const uint8_t token_a[SL_IDEM_TOKEN_LEN] = { 1 };
static const uint8_t token_b[SL_IDEM_TOKEN_LEN] = { 2 };
static const uint8_t fp1[SL_SHA256_LEN] = { 0xaa };

static int
setup(void **state)
{
    (void)state;
    now_us = 1000000000;
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

static enum sl_idem_result
claim(struct sl_idem_table *t, const char *key, const uint8_t *token,
      const struct sl_idem_record **rec)
{
    return sl_idem_table_claim(t, key, strlen(key), token, 60000, rec);
}

static void
test_claim_complete_replay(void **state)
{
    struct sl_idem_table *t = sl_idem_table_new(1 << 20);
    const struct sl_idem_record *rec;

    (void)state;
    assert_int_equal(claim(t, "k1", token_a, &rec), SL_IDEM_CLAIMED);
    assert_null(rec);
    assert_int_equal(claim(t, "k1", token_b, &rec), SL_IDEM_IN_FLIGHT);
    /* only the claim's token completes it */
    assert_false(sl_idem_table_complete(t, "k1", 2, token_b, fp1, "x", 1, 1000));
    assert_true(sl_idem_table_complete(t, "k1", 2, token_a, fp1, "201 body", 8, 1000));
    assert_int_equal(claim(t, "k1", token_b, &rec), SL_IDEM_DONE);
    assert_non_null(rec);
    assert_memory_equal(rec->fingerprint, fp1, SL_SHA256_LEN);
    assert_int_equal(rec->len, 8);
    assert_memory_equal(rec->response, "201 body", 8);
    /* a record is not a claim: release leaves it */
    sl_idem_table_release(t, "k1", 2, token_a);
    sl_idem_record_put(rec);
    assert_int_equal(claim(t, "k1", token_b, &rec), SL_IDEM_DONE);
    sl_idem_table_free(t); /* the reference outlives the table */
    assert_memory_equal(rec->response, "201 body", 8);
    sl_idem_record_put(rec);
}

static void
test_release_and_expiry(void **state)
{
    struct sl_idem_table *t = sl_idem_table_new(1 << 20);
    const struct sl_idem_record *rec;

    (void)state;
    assert_int_equal(claim(t, "k", token_a, &rec), SL_IDEM_CLAIMED);
    sl_idem_table_release(t, "k", 1, token_b); /* not its claim */
    assert_int_equal(claim(t, "k", token_b, &rec), SL_IDEM_IN_FLIGHT);
    sl_idem_table_release(t, "k", 1, token_a);
    assert_int_equal(claim(t, "k", token_b, &rec), SL_IDEM_CLAIMED);

    /* a claim whose holder died expires; the late holder cannot complete */
    now_us += 60000 * 1000ull;
    assert_int_equal(claim(t, "k", token_a, &rec), SL_IDEM_CLAIMED);
    assert_false(sl_idem_table_complete(t, "k", 1, token_b, fp1, "x", 1, 1000));
    assert_true(sl_idem_table_complete(t, "k", 1, token_a, fp1, "x", 1, 1000));
    now_us += 999 * 1000ull;
    assert_int_equal(claim(t, "k", token_b, &rec), SL_IDEM_DONE);
    sl_idem_record_put(rec);
    now_us += 1000;
    assert_int_equal(claim(t, "k", token_b, &rec), SL_IDEM_CLAIMED); /* the record's ttl is over */
    sl_idem_table_free(t);
}

static void
test_bound_evicts_records_never_claims(void **state)
{
    struct sl_idem_table *t = sl_idem_table_new(4096);
    const struct sl_idem_record *rec;
    char key[16], body[512];
    size_t entries, bytes;
    int claimed = 0;

    (void)state;
    memset(body, 'b', sizeof(body));
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        assert_int_equal(claim(t, key, token_a, &rec), SL_IDEM_CLAIMED);
        assert_true(sl_idem_table_complete(t, key, strlen(key), token_a, fp1, body,
                                           sizeof(body), 60000));
        sl_idem_table_usage(t, &entries, &bytes);
        assert_true(bytes <= 4096);
    }
    assert_int_equal(claim(t, "r39", token_b, &rec), SL_IDEM_DONE); /* the newest stays */
    sl_idem_record_put(rec);
    assert_int_equal(claim(t, "r0", token_b, &rec), SL_IDEM_CLAIMED); /* the oldest went */
    /* claims fill it up; then there is no room, and they are all still there */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        if (claim(t, key, token_a, &rec) == SL_IDEM_CLAIMED)
            claimed++;
        else
            break;
    }
    assert_true(claimed > 0 && claimed < 200);
    assert_int_equal(claim(t, "c-more", token_a, &rec), SL_IDEM_FULL);
    assert_int_equal(claim(t, "c0", token_b, &rec), SL_IDEM_IN_FLIGHT);
    assert_int_equal(claim(t, "r0", token_a, &rec), SL_IDEM_IN_FLIGHT);
    /* no room for a response: the claim goes, so that the client may retry */
    assert_false(sl_idem_table_complete(t, "c0", 2, token_a, fp1, body, sizeof(body), 60000));
    assert_int_equal(claim(t, "c0", token_b, &rec), SL_IDEM_CLAIMED);
    sl_idem_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_claim_complete_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_evicts_records_never_claims, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
