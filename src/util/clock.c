/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
#include "util/clock.h"

#include <stddef.h>
#include <time.h>

#define WALL_OFFSET_MAX_AGE_US 1000000u

static const uint64_t *fake_now_us;

/* Per thread: each worker runs its own event loop. 0 = outside a bracket. */
static _Thread_local uint64_t cached_us;
static _Thread_local uint64_t wall_offset_taken_us;
static _Thread_local double wall_offset_s;

uint64_t
sl_clock_now_us(void)
{
    struct timespec ts;

    if (fake_now_us != NULL)
        return *fake_now_us;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

double
sl_clock_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
sl_clock_set_fake(const uint64_t *now_us)
{
    fake_now_us = now_us;
}

uint64_t
sl_clock_enter(void)
{
    uint64_t saved = cached_us;

    cached_us = sl_clock_now_us();
    if (cached_us == 0)
        cached_us = 1;
    return saved;
}

/* An outer bracket goes on with the inner one's later time rather than
 * its own: per thread the cached time never steps back, so no duration
 * taken across brackets comes out negative. */
void
sl_clock_leave(uint64_t saved)
{
    if (saved == 0)
        cached_us = 0;
}

uint64_t
sl_clock_cached_us(void)
{
    if (fake_now_us != NULL)
        return *fake_now_us;
    return cached_us != 0 ? cached_us : sl_clock_now_us();
}

double
sl_clock_wall_at(uint64_t mono_us)
{
    uint64_t now = sl_clock_cached_us();

    if (fake_now_us != NULL)
        return sl_clock_wall() - ((double)now - (double)mono_us) / 1e6;
    if (wall_offset_taken_us == 0 || now > wall_offset_taken_us + WALL_OFFSET_MAX_AGE_US) {
        now = sl_clock_now_us();
        wall_offset_s = sl_clock_wall() - (double)now / 1e6;
        wall_offset_taken_us = now;
    }
    return wall_offset_s + (double)mono_us / 1e6;
}
