/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
#include "util/siphash.h"

#include <endian.h>
#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
    do {                                                                           \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                  \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                     \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                     \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                  \
    } while (0)

/* One load per 8-byte block (keys are hashed on every embedded-store check);
 * the standard reads the message as little-endian words. */
static uint64_t
load_le64(const unsigned char *p)
{
    uint64_t m;

    memcpy(&m, p, sizeof(m));
    return le64toh(m);
}

uint64_t
sl_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const unsigned char *in = data;
    const unsigned char *end = in + (len & ~(size_t)7);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    unsigned char tail[8] = { 0 };

    for (; in != end; in += 8) {
        m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    if ((len & 7) != 0)
        memcpy(tail, in, len & 7);
    b |= load_le64(tail);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
