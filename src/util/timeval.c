/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* Milliseconds to struct timeval; see timeval.h. */
#include "util/timeval.h"

struct timeval
sl_timeval_from_ms(uint64_t ms)
{
    return (struct timeval){ .tv_sec = (time_t)(ms / 1000),
                             .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
}
