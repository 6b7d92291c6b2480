/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Small text helpers shared by the modules that write protocol text: decimal
 * numbers without printf (request path), and UTF-8 validation for the
 * outputs that must be valid UTF-8 (JSON access log, metric labels).
 */
#ifndef SL_UTIL_TEXT_H
#define SL_UTIL_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define SL_U64_DEC_MAX 20 /* digits of UINT64_MAX */

/* Writes v in decimal at out (no NUL); returns the number of digits. */
size_t sl_u64_dec(uint64_t v, char out[SL_U64_DEC_MAX]);

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), 0 when the bytes there are not one.
 * n >= 1 bytes are readable at s. */
size_t sl_utf8_len(const unsigned char *s, size_t n);

#endif
