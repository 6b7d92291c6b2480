/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Admin bearer tokens: reading the token file, keeping a digest only, and
 * the constant-time comparison. See token.h.
 */
#include "util/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/secret.h"

static bool
is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int
sl_token_read(const char *path, uint8_t digest[SL_SHA256_LEN], char *err, size_t err_size)
{
    /* room for the token, blanks around it, and one byte to see it is too long */
    char buf[SL_TOKEN_MAX + 64 + 1];
    ssize_t n = sl_secret_read_bounded(path, buf, sizeof(buf));
    size_t start = 0, end;
    int rc = -1;

    if (n < 0) {
        snprintf(err, err_size, "cannot read it: %s", strerror(errno));
        return -1;
    }
    end = (size_t)n;
    while (start < end && is_blank((unsigned char)buf[start]))
        start++;
    while (end > start && is_blank((unsigned char)buf[end - 1]))
        end--;
    if ((size_t)n == sizeof(buf) || end - start > SL_TOKEN_MAX) {
        snprintf(err, err_size, "the token is longer than %d bytes", SL_TOKEN_MAX);
        goto out;
    }
    if (start == end) {
        snprintf(err, err_size, "the file holds no token (it is empty or blank)");
        goto out;
    }
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(err, err_size,
                     "the token holds a byte 0x%02x: use visible ASCII only, on one line", c);
            goto out;
        }
    }
    sl_sha256(buf + start, end - start, digest);
    rc = 0;
out:
    /* the token goes no further than its digest */
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

bool
sl_token_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t diff = 0;

    for (size_t i = 0; i < n; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

bool
sl_token_matches(const char *got, size_t got_len, const uint8_t digest[SL_SHA256_LEN])
{
    uint8_t mine[SL_SHA256_LEN];
    bool is_equal;

    sl_sha256(got, got_len, mine);
    is_equal = sl_token_equal(mine, digest, SL_SHA256_LEN);
    explicit_bzero(mine, sizeof(mine));
    return is_equal;
}

bool
sl_token_from_bearer(const char *field, const char **token, size_t *len)
{
    const char *p;
    size_t n;

    if (field == NULL || strncasecmp(field, "Bearer", 6) != 0 || (field[6] != ' '))
        return false;
    p = field + 7;
    while (*p == ' ')
        p++;
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0)
        return false;
    *token = p;
    *len = n;
    return true;
}
