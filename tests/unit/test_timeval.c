/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/timeval: milliseconds split into seconds and microseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/timeval.h"

static void
test_from_ms(void **state)
{
    static const struct {
        uint64_t ms;
        long sec, usec;
    } cases[] = {
        { 0, 0, 0 },        { 1, 0, 1000 },       { 999, 0, 999000 },
        { 1000, 1, 0 },     { 1001, 1, 1000 },    { 20, 0, 20000 },
        { 30000, 30, 0 },   { 86399999, 86399, 999000 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct timeval tv = sl_timeval_from_ms(cases[i].ms);

        assert_int_equal(tv.tv_sec, cases[i].sec);
        assert_int_equal(tv.tv_usec, cases[i].usec);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_ms),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
