/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* Request path normalisation; see path.h. */
#include "util/path.h"

#include <stdbool.h>
#include <string.h>

#include "util/hex.h"

/* unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 section 2.3) */
static bool
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
        || c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * First pass: escapes decoded or made canonical, slashes merged. Decoding
 * comes before the dot segments are looked at, so "%2E%2E" is "..", as
 * RFC 3986 section 6.2.2 orders it.
 */
static enum sl_path_result
decode_merge(const char *in, size_t len, char *out, size_t *out_len, unsigned flags)
{
    static const char upper[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int hi, lo;

        if (c == '/') {
            if (o == 0 || out[o - 1] != '/')
                out[o++] = '/';
            continue;
        }
        if (c != '%') {
            out[o++] = (char)c;
            continue;
        }
        hi = i + 2 < len ? sl_hex_value(in[i + 1]) : -1;
        lo = i + 2 < len ? sl_hex_value(in[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return SL_PATH_BAD_ESCAPE;
        i += 2;
        c = (unsigned char)(hi * 16 + lo);
        if (c == '/' && (flags & SL_PATH_REJECT_ENCODED_SLASH))
            return SL_PATH_ENCODED_SLASH;
        if (is_unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = upper[hi];
            out[o++] = upper[lo];
        }
    }
    *out_len = o;
    return SL_PATH_OK;
}

/*
 * Second pass, in place: RFC 3986 section 5.2.4 over a path whose segments
 * are all non-empty but perhaps the last. The output is built as "/seg"
 * units at w, never ahead of the reading position r.
 */
static size_t
remove_dots(char *p, size_t n)
{
    size_t w = 0, r = 0;

    while (r < n) {
        size_t start = r + 1, end = start;
        size_t seg_len;

        while (end < n && p[end] != '/')
            end++;
        seg_len = end - start;
        if (seg_len == 1 && p[start] == '.') {
            if (end == n)
                p[w++] = '/';
        } else if (seg_len == 2 && p[start] == '.' && p[start + 1] == '.') {
            while (w > 0 && p[--w] != '/')
                ;
            if (end == n)
                p[w++] = '/';
        } else {
            memmove(p + w, p + r, end - r);
            w += end - r;
        }
        r = end;
    }
    if (w == 0)
        p[w++] = '/';
    return w;
}

enum sl_path_result
sl_path_normalize(const char *in, size_t len, char *out, size_t *out_len, unsigned flags)
{
    enum sl_path_result r;
    size_t n;

    if (len == 0 || in[0] != '/')
        return SL_PATH_NOT_ABSOLUTE;
    r = decode_merge(in, len, out, &n, flags);
    if (r != SL_PATH_OK)
        return r;
    *out_len = remove_dots(out, n);
    return SL_PATH_OK;
}
