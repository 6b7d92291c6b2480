/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Normalising the path of a request-target, so that every spelling of one
 * resource matches the same route and counts against the same limits:
 * RFC 3986 section 6.2.2 (percent-decoding of unreserved characters,
 * upper-case hex in the escapes that stay) and section 5.2.4 (dot segments
 * removed), with runs of slashes merged first, as nginx's merge_slashes.
 */
#ifndef SL_UTIL_PATH_H
#define SL_UTIL_PATH_H

#include <stddef.h>

enum sl_path_result {
    SL_PATH_OK = 0,
    SL_PATH_BAD_ESCAPE = -1,    /* a '%' not followed by two hex digits */
    SL_PATH_ENCODED_SLASH = -2, /* %2F with SL_PATH_REJECT_ENCODED_SLASH */
    SL_PATH_NOT_ABSOLUTE = -3,  /* empty, or not starting with '/' */
};

/* Refuse %2F (either case) instead of keeping it encoded. */
#define SL_PATH_REJECT_ENCODED_SLASH 1u

/*
 * Normalises `in` (len bytes, starting with '/', without the query) into
 * `out`, which has room for len bytes (the result is never longer); sets
 * *out_len. An encoded slash is not a segment separator: it stays as "%2F"
 * unless flags refuse it. A ".." above the root is dropped ("/../x" is
 * "/x"). Returns SL_PATH_OK or the reason the path is refused; `out` is
 * then undefined. `in` and `out` must not overlap.
 */
enum sl_path_result sl_path_normalize(const char *in, size_t len, char *out, size_t *out_len,
                                      unsigned flags);

#endif
