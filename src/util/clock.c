/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
#include "util/clock.h"

#include <stddef.h>
#include <time.h>

static const uint64_t *fake_now_us;

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
