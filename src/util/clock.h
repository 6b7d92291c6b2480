/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Monotonic time for durations and for the embedded store's buckets. Tests
 * replace it with a clock they move by hand, so no test needs to sleep.
 */
#ifndef SL_UTIL_CLOCK_H
#define SL_UTIL_CLOCK_H

#include <stdint.h>

/* Microseconds on CLOCK_MONOTONIC, or the fake clock when one is set. */
uint64_t sl_clock_now_us(void);
/* Seconds since the epoch (CLOCK_REALTIME), for log timestamps only. */
double sl_clock_wall(void);
/* Points the clock at *now_us (NULL: back to the real clock). Tests only. */
void sl_clock_set_fake(const uint64_t *now_us);

#endif
