/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Idempotency keys as clients send them (the draft's sf-string, bare
 * tokens, what is refused) and kept responses: written without framing or
 * hop-by-hop fields, read back whole, and damaged bytes refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "sluice/http.h"
#include "sluice/idem.h"
#include "util/buf.h"

static void
test_parse_key(void **state)
{
    const char *key = NULL;
    char long_key[300];

    (void)state;
    assert_int_equal(sl_idem_parse_key(SL_LIT("\"8e03978e-40d5-43e8\""), &key), 18);
    assert_memory_equal(key, "8e03978e-40d5-43e8", 18);
    assert_int_equal(sl_idem_parse_key(SL_LIT("order-42"), &key), 8);
    assert_memory_equal(key, "order-42", 8);
    assert_int_equal(sl_idem_parse_key(SL_LIT("\"a b\""), &key), 3); /* sf-strings hold spaces */
    assert_int_equal(sl_idem_parse_key(SL_LIT("\"\""), &key), 0);
    assert_int_equal(sl_idem_parse_key(SL_LIT(""), &key), 0);
    assert_int_equal(sl_idem_parse_key(SL_LIT("\"a\\\"b\""), &key), 0); /* escapes refused */
    assert_int_equal(sl_idem_parse_key(SL_LIT("caf\xc3\xa9"), &key), 0);
    assert_int_equal(sl_idem_parse_key(SL_LIT("a\tb"), &key), 0);
    memset(long_key, 'k', sizeof(long_key));
    assert_int_equal(sl_idem_parse_key(long_key, SL_IDEM_KEY_MAX, &key), SL_IDEM_KEY_MAX);
    assert_int_equal(sl_idem_parse_key(long_key, SL_IDEM_KEY_MAX + 1, &key), 0);
}

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static void
test_response_round_trip(void **state)
{
    const struct sl_header headers[] = {
        H("Content-Type", "application/json"), H("Connection", "keep-alive, X-Hop"),
        H("X-Hop", "1"),         H("Content-Length", "11"),
        H("Location", "/orders/42"), H("Transfer-Encoding", "chunked"),
    };
    struct sl_buf b;
    struct sl_idem_response r;

    (void)state;
    sl_buf_init(&b, 4096);
    assert_int_equal(sl_idem_response_begin(&b, 201, headers, 6), 0);
    assert_int_equal(sl_buf_append(&b, "{\"id\":42}\r\n", 11), 0);
    assert_true(sl_idem_response_parse(b.data, b.len, &r));
    assert_int_equal(r.status, 201);
    assert_int_equal(r.headers_len, strlen("Content-Type: application/json\r\n"
                                           "Location: /orders/42\r\n"));
    assert_memory_equal(r.headers, "Content-Type: application/json\r\nLocation: /orders/42\r\n",
                        r.headers_len);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "{\"id\":42}\r\n", 11);

    /* damaged or cut bytes are no response */
    assert_false(sl_idem_response_parse(b.data, 20, &r));
    assert_false(sl_idem_response_parse("2x1 0\n", 6, &r));
    assert_false(sl_idem_response_parse("201 99999999999999999999999\n", 28, &r));
    assert_false(sl_idem_response_parse("101 0\n", 6, &r));
    assert_true(sl_idem_response_parse("204 0\n", 6, &r));
    assert_int_equal(r.body_len, 0);
    sl_buf_fini(&b);

    /* a bound too small for the head: -1, nothing half-kept is used */
    sl_buf_init(&b, 16);
    assert_int_equal(sl_idem_response_begin(&b, 200, headers, 6), -1);
    sl_buf_fini(&b);
}

/* What the Redis script answers to a claim (src/idem_redis.c). */
static void
test_redis_claim_result(void **state)
{
    char rec[1 + SL_SHA256_LEN + 5];
    redisReply r = { .type = REDIS_REPLY_STRING, .str = "C", .len = 1 };
    const struct sl_idem_record *record = (const void *)1;

    (void)state;
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_CLAIMED);
    assert_null(record);
    r.str = "I";
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_IN_FLIGHT);
    rec[0] = 'R';
    memset(rec + 1, 0xab, SL_SHA256_LEN);
    memcpy(rec + 1 + SL_SHA256_LEN, "hello", 5);
    r.str = rec;
    r.len = sizeof(rec);
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_DONE);
    assert_non_null(record);
    assert_int_equal(record->fingerprint[0], 0xab);
    assert_int_equal(record->len, 5);
    assert_memory_equal(record->response, "hello", 5);
    sl_idem_record_put(record);
    r.len = 1 + SL_SHA256_LEN - 1; /* too short for a fingerprint */
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_ERROR);
    r.str = "X";
    r.len = 1;
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_ERROR);
    r.type = REDIS_REPLY_ERROR;
    r.str = "ERR";
    r.len = 3;
    assert_int_equal(sl_idem_redis_claim_result(&r, &record), SL_IDEM_ERROR);
    assert_int_equal(sl_idem_redis_claim_result(NULL, &record), SL_IDEM_ERROR); /* timed out */
    assert_null(record);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_key),
        cmocka_unit_test(test_response_round_trip),
        cmocka_unit_test(test_redis_claim_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
