/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/clock: the per-callback cached time and wall times of monotonic readings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "util/clock.h"

static void
test_cached_outside_bracket_reads_clock(void **state)
{
    uint64_t a, b;

    (void)state;
    a = sl_clock_cached_us();
    b = sl_clock_now_us();
    assert_true(a > 0);
    assert_true(b >= a);
}

static void
test_bracket_freezes_time(void **state)
{
    uint64_t saved, first;
    struct timespec pause = { 0, 2000000 }; /* 2 ms: the real clock moves on */

    (void)state;
    saved = sl_clock_enter();
    first = sl_clock_cached_us();
    nanosleep(&pause, NULL);
    assert_int_equal(sl_clock_cached_us(), first);
    assert_true(sl_clock_now_us() >= first + 2000);
    sl_clock_leave(saved);
    assert_true(sl_clock_cached_us() >= first + 2000);
}

static void
test_brackets_nest(void **state)
{
    uint64_t outer_saved, inner_saved, outer, inner;
    struct timespec pause = { 0, 1000000 };

    (void)state;
    outer_saved = sl_clock_enter();
    outer = sl_clock_cached_us();
    nanosleep(&pause, NULL);
    inner_saved = sl_clock_enter();
    inner = sl_clock_cached_us();
    assert_true(inner >= outer + 1000);
    sl_clock_leave(inner_saved);
    /* never back to the outer time: a span taken inside stays positive */
    assert_int_equal(sl_clock_cached_us(), inner);
    sl_clock_leave(outer_saved);
}

static void
test_fake_clock_wins(void **state)
{
    uint64_t fake = 5000000, saved;

    (void)state;
    saved = sl_clock_enter();
    sl_clock_set_fake(&fake);
    assert_int_equal(sl_clock_cached_us(), 5000000);
    fake += 250;
    assert_int_equal(sl_clock_cached_us(), 5000250);
    sl_clock_set_fake(NULL);
    sl_clock_leave(saved);
}

static void
test_wall_at(void **state)
{
    uint64_t mono = sl_clock_now_us();
    double wall = sl_clock_wall();

    (void)state;
    /* the same instant, within scheduling noise */
    assert_true(sl_clock_wall_at(mono) > wall - 0.05);
    assert_true(sl_clock_wall_at(mono) < wall + 0.05);
    /* a reading 1.5 s earlier is 1.5 s earlier on the wall too */
    assert_true(sl_clock_wall_at(mono - 1500000) < wall - 1.45);
    assert_true(sl_clock_wall_at(mono - 1500000) > wall - 1.55);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_outside_bracket_reads_clock),
        cmocka_unit_test(test_bracket_freezes_time),
        cmocka_unit_test(test_brackets_nest),
        cmocka_unit_test(test_fake_clock_wins),
        cmocka_unit_test(test_wall_at),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
