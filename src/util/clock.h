/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Monotonic time for durations and for the embedded store's buckets. Tests
 * replace it with a clock they move by hand, so no test needs to sleep.
 *
 * An event callback that takes several timestamps brackets itself with
 * sl_clock_enter()/sl_clock_leave(): inside, sl_clock_cached_us() is the
 * time the callback began, one clock read for all of them (as nginx and
 * libevent cache the time per loop pass). Outside any bracket it reads the
 * clock.
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

/* Reads the clock for the callback beginning now; returns what to hand back
 * to sl_clock_leave. Brackets nest; the cached time never steps back. */
uint64_t sl_clock_enter(void);
void sl_clock_leave(uint64_t saved);
/* The time the current bracket began, or the clock's reading outside one. */
uint64_t sl_clock_cached_us(void);
/* The wall time (seconds since the epoch) of a monotonic reading, through
 * an offset between the two clocks taken again at most once a second: a
 * step of the wall clock shows within a second. */
double sl_clock_wall_at(uint64_t mono_us);

#endif
