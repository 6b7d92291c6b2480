/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Milliseconds, the unit of every duration in the conf, as the struct
 * timeval that libevent's timers take.
 */
#ifndef SL_UTIL_TIMEVAL_H
#define SL_UTIL_TIMEVAL_H

#include <stdint.h>
#include <sys/time.h>

/* ms as seconds and microseconds (tv_usec below 1,000,000). */
struct timeval sl_timeval_from_ms(uint64_t ms);

#endif
