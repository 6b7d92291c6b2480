/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/text: decimal formatting and UTF-8 sequence lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/text.h"

static void
test_u64_dec(void **state)
{
    char out[SL_U64_DEC_MAX];

    (void)state;
    assert_int_equal(sl_u64_dec(0, out), 1);
    assert_memory_equal(out, "0", 1);
    assert_int_equal(sl_u64_dec(429, out), 3);
    assert_memory_equal(out, "429", 3);
    assert_int_equal(sl_u64_dec(9, out), 1);
    assert_memory_equal(out, "9", 1);
    assert_int_equal(sl_u64_dec(10, out), 2);
    assert_memory_equal(out, "10", 2);
    assert_int_equal(sl_u64_dec(99, out), 2);
    assert_memory_equal(out, "99", 2);
    assert_int_equal(sl_u64_dec(100, out), 3);
    assert_memory_equal(out, "100", 3);
    assert_int_equal(sl_u64_dec(1000, out), 4);
    assert_memory_equal(out, "1000", 4);
    assert_int_equal(sl_u64_dec(100000000, out), 9);
    assert_memory_equal(out, "100000000", 9);
    /* every value up to 10^6 against printf */
    for (uint64_t v = 0; v < 1000000; v++) {
        char want[24];
        size_t n = (size_t)snprintf(want, sizeof(want), "%" PRIu64, v);
        assert_int_equal(sl_u64_dec(v, out), n);
        assert_memory_equal(out, want, n);
    }
    assert_int_equal(sl_u64_dec(UINT64_MAX, out), 20);
    assert_memory_equal(out, "18446744073709551615", 20);
}

static size_t
len_of(const char *bytes, size_t n)
{
    return sl_utf8_len((const unsigned char *)bytes, n);
}

static void
test_utf8_len(void **state)
{
    (void)state;
    assert_int_equal(len_of("a", 1), 1);
    assert_int_equal(len_of("\xc3\xa9", 2), 2);          /* é */
    assert_int_equal(len_of("\xe2\x82\xac", 3), 3);      /* € */
    assert_int_equal(len_of("\xf0\x9f\x98\x80", 4), 4);  /* emoji */
    assert_int_equal(len_of("\xc3", 1), 0);              /* truncated */
    assert_int_equal(len_of("\xc0\xaf", 2), 0);          /* overlong */
    assert_int_equal(len_of("\xe0\x80\xaf", 3), 0);      /* overlong */
    assert_int_equal(len_of("\xed\xa0\x80", 3), 0);      /* surrogate */
    assert_int_equal(len_of("\xf4\x90\x80\x80", 4), 0);  /* past U+10FFFF */
    assert_int_equal(len_of("\x80", 1), 0);              /* stray continuation */
    assert_int_equal(len_of("\xff", 1), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64_dec),
        cmocka_unit_test(test_utf8_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
