/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * SHA-256 (FIPS 180-4), incremental. The limiter hashes key values too long
 * to keep in a bucket key with it; nothing here is secret or needs to run in
 * constant time.
 */
#ifndef SL_UTIL_SHA256_H
#define SL_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SL_SHA256_LEN 32 /* bytes of a digest */

/* Caller-owned state; no allocation. */
struct sl_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
};

void sl_sha256_init(struct sl_sha256 *s);
void sl_sha256_update(struct sl_sha256 *s, const void *data, size_t len);
/* Writes the digest; s must be initialised again before another use. */
void sl_sha256_final(struct sl_sha256 *s, uint8_t out[SL_SHA256_LEN]);
/* The digest of one buffer. */
void sl_sha256(const void *data, size_t len, uint8_t out[SL_SHA256_LEN]);

#endif
