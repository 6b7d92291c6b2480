/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Calendar dates as seconds since the Unix epoch, in both directions, for
 * the API lifecycle dates of routes: RFC 3339 timestamps in the conf
 * ("2026-03-01T00:00:00Z", "2026-03-01T02:00:00+02:00"), IMF-fixdate for the
 * Sunset header (RFC 9110 section 5.6.7, RFC 8594), RFC 3339 in UTC for
 * sluice -T. Proleptic Gregorian, UTC, no time zone database, no locale:
 * nothing here reads the clock or the environment.
 */
#ifndef SL_UTIL_DATETIME_H
#define SL_UTIL_DATETIME_H

#include <stddef.h>
#include <stdint.h>

/* "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes and a NUL. */
#define SL_IMF_FIXDATE_SIZE 30
/* "2026-03-01T00:00:00Z": 20 bytes and a NUL. */
#define SL_RFC3339_SIZE 21

/*
 * An RFC 3339 date-time (section 5.6): full-date "T" full-time, with "Z" or
 * a numeric offset; 't' and 'z' as well (section 5.6's note). Fractions of
 * a second are accepted and dropped; a leap second (:60) counts as the
 * next minute's :00. Years 1970 to 9999 after the offset is applied.
 * Returns NULL and sets *epoch_s, or a short message saying what is wrong.
 */
const char *sl_datetime_parse_rfc3339(const char *s, size_t len, int64_t *epoch_s);
/* IMF-fixdate of epoch_s (0 to 253402300799, the end of 9999). */
void sl_datetime_format_imf(int64_t epoch_s, char out[SL_IMF_FIXDATE_SIZE]);
/* RFC 3339 in UTC, whole seconds, "Z": what the parser reads back. */
void sl_datetime_format_rfc3339(int64_t epoch_s, char out[SL_RFC3339_SIZE]);

#endif
