/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* Hex digit decoding; see hex.h. */
#include "util/hex.h"

int
sl_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
