/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/hex: every byte value, digits of both cases and nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/hex.h"

static void
test_hex_value(void **state)
{
    (void)state;
    assert_int_equal(sl_hex_value('0'), 0);
    assert_int_equal(sl_hex_value('9'), 9);
    assert_int_equal(sl_hex_value('a'), 10);
    assert_int_equal(sl_hex_value('F'), 15);
    assert_int_equal(sl_hex_value('f'), 15);
    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;

        assert_int_equal(sl_hex_value((char)c), want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_value),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
