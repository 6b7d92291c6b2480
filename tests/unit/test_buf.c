/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/buf: growing up to the maximum and no further, a refused append
 * leaving the buffer as it was, printf, truncate, reset and take.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"

static void
test_empty(void **state)
{
    struct sl_buf b;
    size_t len = 99;
    char *s;

    (void)state;
    sl_buf_init(&b, 10);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    s = sl_buf_take(&b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
    sl_buf_fini(&b);
    sl_buf_fini(&b); /* twice: still fine */
}

static void
test_grow_to_max(void **state)
{
    struct sl_buf b;
    char big[1000];

    (void)state;
    memset(big, 'x', sizeof(big));
    sl_buf_init(&b, 1000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sl_buf_append(&b, big, 10), 0);
    assert_int_equal(b.len, 1000);
    assert_true(b.cap <= 1001);   /* never more than the maximum can use */
    assert_int_equal(b.data[1000], '\0');
    /* one byte past: refused, nothing changed */
    assert_int_equal(sl_buf_append(&b, "y", 1), -1);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[999], 'x');
    assert_int_equal(b.data[1000], '\0');
    /* nothing more is always fine */
    assert_int_equal(sl_buf_append(&b, "", 0), 0);
    sl_buf_fini(&b);
    assert_null(b.data);
    assert_int_equal(b.max, 1000);

    /* the whole maximum in one append, then a piece that would pass it */
    assert_int_equal(sl_buf_append(&b, big, 1000), 0);
    sl_buf_truncate(&b, 0);
    assert_int_equal(sl_buf_append(&b, "ab", 2), 0);
    assert_int_equal(sl_buf_append(&b, big, 999), -1);
    assert_string_equal(b.data, "ab");
    sl_buf_fini(&b);
}

static void
test_printf(void **state)
{
    struct sl_buf b;
    char *s;
    size_t len;

    (void)state;
    sl_buf_init(&b, 100);
    assert_int_equal(sl_buf_printf(&b, "%s=%d", "q", 42), 0);
    assert_int_equal(sl_buf_printf(&b, ";w=%u", 1u), 0);
    assert_string_equal(b.data, "q=42;w=1");
    /* longer than the room allocated so far: grows, same text */
    assert_int_equal(sl_buf_printf(&b, "%80s", "z"), 0);
    assert_int_equal(b.len, 88);
    /* past the maximum: refused and the text before is intact */
    assert_int_equal(sl_buf_printf(&b, "%20s", "z"), -1);
    assert_int_equal(b.len, 88);
    assert_int_equal(strlen(b.data), 88);
    assert_memory_equal(b.data, "q=42;w=1", 8);
    s = sl_buf_take(&b, &len);
    assert_int_equal(len, 88);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
}

static void
test_truncate_reset(void **state)
{
    struct sl_buf b;
    char big[4096];

    (void)state;
    memset(big, 'x', sizeof(big));
    sl_buf_init(&b, 1 << 20);
    assert_int_equal(sl_buf_append(&b, "hello world", 11), 0);
    sl_buf_truncate(&b, 5);
    assert_string_equal(b.data, "hello");
    sl_buf_truncate(&b, 50); /* longer than held: nothing */
    assert_string_equal(b.data, "hello");
    sl_buf_reset(&b, 1024); /* small: memory kept */
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(sl_buf_append(&b, big, sizeof(big)), 0);
    sl_buf_reset(&b, 1024); /* grown past keep: freed */
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 1 << 20);
    assert_int_equal(sl_buf_append(&b, "again", 5), 0);
    assert_string_equal(b.data, "again");
    sl_buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_grow_to_max),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_truncate_reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
