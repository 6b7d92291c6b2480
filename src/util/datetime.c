/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Date arithmetic with Howard Hinnant's days_from_civil / civil_from_days
 * (http://howardhinnant.github.io/date_algorithms.html): exact over the
 * proleptic Gregorian calendar without timegm(3), which glibc documents as
 * nonstandard and which reads the TZ machinery, or gmtime_r's struct tm.
 */
#include "util/datetime.h"

#include <stdbool.h>
#include <stdio.h>

#define DAY_S 86400
#define MAX_EPOCH_S 253402300799LL /* 9999-12-31T23:59:59Z */

static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
month_days(int64_t y, unsigned m)
{
    static const unsigned days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Exactly n digits at s[*i]; false otherwise. */
static bool
digits(const char *s, size_t len, size_t *i, unsigned n, unsigned *out)
{
    unsigned v = 0;

    if (len - *i < n)
        return false;
    for (unsigned k = 0; k < n; k++) {
        char c = s[*i + k];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *i += n;
    *out = v;
    return true;
}

static bool
expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

static const char *const shape =
    "not an RFC 3339 date-time (use e.g. \"2026-03-01T00:00:00Z\" or "
    "\"2026-03-01T00:00:00+02:00\")";

/* The offset part ("Z" or "+hh:mm") at s[*i]: seconds east of UTC. */
static const char *
parse_offset(const char *s, size_t len, size_t *i, int64_t *offset_s)
{
    unsigned oh, om;
    char sign;

    if (*i < len && (s[*i] == 'Z' || s[*i] == 'z')) {
        (*i)++;
        *offset_s = 0;
        return NULL;
    }
    if (*i >= len || (s[*i] != '+' && s[*i] != '-'))
        return "no time zone (end it with \"Z\" for UTC or an offset such as \"+02:00\")";
    sign = s[(*i)++];
    if (!digits(s, len, i, 2, &oh) || !expect(s, len, i, ':') || !digits(s, len, i, 2, &om))
        return shape;
    if (oh > 23 || om > 59)
        return "time zone offset out of range";
    *offset_s = (int64_t)(oh * 3600 + om * 60) * (sign == '-' ? -1 : 1);
    return NULL;
}

const char *
sl_datetime_parse_rfc3339(const char *s, size_t len, int64_t *epoch_s)
{
    unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    size_t i = 0;
    int64_t offset_s, t;
    const char *err;

    if (!digits(s, len, &i, 4, &y) || !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &mo)
        || !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &d))
        return shape;
    if (i == len)
        return "a date without a time (add e.g. \"T00:00:00Z\")";
    if (s[i] != 'T' && s[i] != 't')
        return shape;
    i++;
    if (!digits(s, len, &i, 2, &h) || !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &mi)
        || !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &sec))
        return shape;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return shape;
    }
    if ((err = parse_offset(s, len, &i, &offset_s)) != NULL)
        return err;
    if (i != len)
        return shape;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo))
        return "no such day";
    if (h > 23 || mi > 59 || sec > 60)
        return "no such time of day";
    t = days_from_civil(y, mo, d) * DAY_S + h * 3600 + mi * 60 + sec - offset_s;
    if (t < 0 || t > MAX_EPOCH_S)
        return "out of range (years 1970 to 9999)";
    *epoch_s = t;
    return NULL;
}

static void
split(int64_t epoch_s, int64_t *y, unsigned *mo, unsigned *d, unsigned *h, unsigned *mi,
      unsigned *s, unsigned *wday)
{
    int64_t days, rem;

    if (epoch_s < 0)
        epoch_s = 0;
    if (epoch_s > MAX_EPOCH_S)
        epoch_s = MAX_EPOCH_S;
    days = epoch_s / DAY_S;
    rem = epoch_s % DAY_S;
    civil_from_days(days, y, mo, d);
    *h = (unsigned)(rem / 3600);
    *mi = (unsigned)(rem / 60 % 60);
    *s = (unsigned)(rem % 60);
    *wday = (unsigned)((days + 4) % 7); /* 1970-01-01 was a Thursday */
}

void
sl_datetime_format_imf(int64_t epoch_s, char out[SL_IMF_FIXDATE_SIZE])
{
    static const char wdays[][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    int64_t y;
    unsigned mo, d, h, mi, s, wday;

    split(epoch_s, &y, &mo, &d, &h, &mi, &s, &wday);
    snprintf(out, SL_IMF_FIXDATE_SIZE, "%s, %02u %s %04u %02u:%02u:%02u GMT", wdays[wday], d,
             months[mo - 1], (unsigned)y, h, mi, s);
}

void
sl_datetime_format_rfc3339(int64_t epoch_s, char out[SL_RFC3339_SIZE])
{
    int64_t y;
    unsigned mo, d, h, mi, s, wday;

    split(epoch_s, &y, &mo, &d, &h, &mi, &s, &wday);
    /* split() keeps every field to two digits; the remainders say so to the
     * compiler, which otherwise warns of ten */
    snprintf(out, SL_RFC3339_SIZE, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(y % 10000),
             mo % 100, d % 100, h % 100, mi % 100, s % 100);
}
