/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Bearer tokens for the admin listener: read from a file an operator wrote,
 * kept only as a SHA-256 digest, and compared in time that depends on
 * neither the token nor how much of it a guess got right.
 */
#ifndef SL_UTIL_TOKEN_H
#define SL_UTIL_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sha256.h"

#define SL_TOKEN_MAX 4096 /* bytes of a token */

/*
 * Reads the token in the file at `path`: its content without leading and
 * trailing whitespace (so `echo secret > file` works), at most SL_TOKEN_MAX
 * bytes of visible ASCII, which a header can carry. Writes its digest and
 * returns 0; -1 with the reason in err when the file cannot be read or its
 * token is empty, too long or holds other bytes. Never logs, never keeps the
 * token.
 */
int sl_token_read(const char *path, uint8_t digest[SL_SHA256_LEN], char *err, size_t err_size);

/* Whether `got` is the token of `digest`. Its time depends only on got_len
 * (known to whoever sent it): both sides are hashed, and the digests are
 * compared without stopping at the first difference. */
bool sl_token_matches(const char *got, size_t got_len, const uint8_t digest[SL_SHA256_LEN]);

/* Whether two buffers of n bytes are equal, in time that depends on n only. */
bool sl_token_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* The token of an Authorization field value "Bearer <token>" (RFC 6750
 * section 2.1: the scheme is case-insensitive); false when it has no such
 * form. */
bool sl_token_from_bearer(const char *field, const char **token, size_t *len);

#endif
