/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * SipHash-2-4 (Aumasson, Bernstein), 64-bit output: the embedded store's
 * bucket hash, keyed per process so that clients cannot aim keys at one
 * shard or slot.
 */
#ifndef SL_UTIL_SIPHASH_H
#define SL_UTIL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* k0, k1: the 128-bit key as two little-endian halves. */
uint64_t sl_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len);

#endif
