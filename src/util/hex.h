/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Hexadecimal digits, for the decoders that read them: %-escapes in URLs,
 * chunk sizes in HTTP/1.1 bodies.
 */
#ifndef SL_UTIL_HEX_H
#define SL_UTIL_HEX_H

/* The value of one hex digit (either case), 0 to 15; -1 for any other byte. */
int sl_hex_value(char c);

#endif
