/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* util/datetime: RFC 3339 in, IMF-fixdate and RFC 3339 out, checked against
 * dates worked out by hand and against glibc's gmtime_r over a sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "util/datetime.h"

static int64_t
parse_ok(const char *s)
{
    int64_t t = -1;
    const char *err = sl_datetime_parse_rfc3339(s, strlen(s), &t);

    if (err != NULL)
        fail_msg("%s: %s", s, err);
    return t;
}

static void
test_parse(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("1994-11-06T08:49:37Z"), 784111777);
    assert_int_equal(parse_ok("2026-03-01T00:00:00Z"), 1772323200);
    assert_int_equal(parse_ok("2026-03-01t00:00:00z"), 1772323200);
    /* an offset east of UTC is earlier in UTC */
    assert_int_equal(parse_ok("2026-03-01T02:00:00+02:00"), 1772323200);
    assert_int_equal(parse_ok("2026-02-28T19:30:00-04:30"), 1772323200);
    assert_int_equal(parse_ok("2026-03-01T00:00:00.999Z"), 1772323200);
    assert_int_equal(parse_ok("2024-02-29T12:00:00Z"), 1709208000);
    /* a leap second is the next minute's first */
    assert_int_equal(parse_ok("2016-12-31T23:59:60Z"), 1483228800);
    assert_int_equal(parse_ok("9999-12-31T23:59:59Z"), 253402300799LL);
}

static void
test_parse_refuses(void **state)
{
    static const char *const bad[] = {
        "", "2026", "2026-03-01", "2026-03-01 00:00:00Z", "2026-03-01T00:00:00",
        "2026-03-01T00:00Z", "2026-3-01T00:00:00Z", "2026-03-01T00:00:00+0200",
        "2026-03-01T00:00:00+02", "2026-03-01T00:00:00.Z", "2026-03-01T00:00:00Zx",
        "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T00:60:00Z",
        "2026-03-01T00:00:61Z", "2026-03-01T00:00:00+24:00", "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00+00:01", "+2026-03-01T00:00:00Z", "2026-03-01T00:00:00GMT",
        "１９７０-01-01T00:00:00Z",
    };
    int64_t t = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sl_datetime_parse_rfc3339(bad[i], strlen(bad[i]), &t) == NULL)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(t, 42);
    /* the length is the end, not a NUL */
    assert_null(sl_datetime_parse_rfc3339("1970-01-01T00:00:00Zjunk", 20, &t));
    assert_int_equal(t, 0);
}

static void
test_format(void **state)
{
    char imf[SL_IMF_FIXDATE_SIZE], rfc[SL_RFC3339_SIZE];

    (void)state;
    /* RFC 9110 section 5.6.7's example */
    sl_datetime_format_imf(784111777, imf);
    assert_string_equal(imf, "Sun, 06 Nov 1994 08:49:37 GMT");
    sl_datetime_format_imf(0, imf);
    assert_string_equal(imf, "Thu, 01 Jan 1970 00:00:00 GMT");
    sl_datetime_format_imf(1788220800, imf);
    assert_string_equal(imf, "Tue, 01 Sep 2026 00:00:00 GMT");
    sl_datetime_format_rfc3339(1772323200, rfc);
    assert_string_equal(rfc, "2026-03-01T00:00:00Z");
    sl_datetime_format_rfc3339(253402300799LL, rfc);
    assert_string_equal(rfc, "9999-12-31T23:59:59Z");
}

/* Every day from 1970 to 2400 at an odd time of day: both directions agree
 * with gmtime_r and with each other. */
static void
test_sweep(void **state)
{
    (void)state;
    for (int64_t t = 12345; t < 13569465600LL; t += 86400 * 3 + 3601) {
        char imf[SL_IMF_FIXDATE_SIZE], want[64], rfc[SL_RFC3339_SIZE];
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        sl_datetime_format_imf(t, imf);
        assert_string_equal(imf, want);
        sl_datetime_format_rfc3339(t, rfc);
        assert_int_equal(parse_ok(rfc), t);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
