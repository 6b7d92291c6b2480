/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Shared by the two stores: a limit's numbers turned into the integers that
 * lua/token_bucket.lua and its C port in store_local.c compute with. Both
 * stores must quantize identically, so this is the only place that does it.
 *
 * The script keeps a bucket's level in units of 1/p milli-token and refills
 * it by q units per tick of tu microseconds; burst b and cost c are in
 * milli-tokens. Every value the algorithm can reach stays below
 * SL_TB_LIMIT (2^52), where a double (Lua's number) is still exact, so Redis
 * and the C port compute the very same integers, and no rounding ever
 * credits a token the configured rate has not produced.
 */
#ifndef SL_STORE_INT_H
#define SL_STORE_INT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/store.h"

#define SL_TB_LIMIT ((int64_t)1 << 52)

struct sl_tb_params {
    int64_t q;     /* units (1/p milli-token) added per tick */
    int64_t p;
    int64_t tu;    /* microseconds per tick */
    int64_t burst; /* milli-tokens */
    int64_t cost;  /* milli-tokens */
};

static inline int64_t
sl_tb_gcd(int64_t a, int64_t b)
{
    while (b != 0) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/*
 * Thousandths of x, as an integer: values within a hair of a whole number of
 * thousandths (4.35 is 4349.999... in binary) count as that number, the rest
 * is rounded down (rate, burst) or up (cost), so that rounding only ever
 * makes a limit stricter. -1 for NaN, negatives and absurdly large values.
 */
static inline int
sl_tb_milli(double x, bool is_round_up, int64_t *out)
{
    double y, r;

    if (!(x >= 0.0) || x > (double)SL_TB_LIMIT / 1000.0)
        return -1;
    y = x * 1000.0;
    r = nearbyint(y);
    if (fabs(y - r) <= 1e-9 * (r > 1.0 ? r : 1.0))
        y = r;
    else
        y = is_round_up ? ceil(y) : floor(y);
    *out = (int64_t)y;
    return 0;
}

/*
 * Fills *pr for a bucket. The tick is 1 us unless burst x per is too big for
 * 2^52 units; then the smallest power of ten (dividing per) that fits. -1
 * when the numbers cannot be represented (rate below 0.001, per 0, ...).
 */
static inline int
sl_tb_params_init(struct sl_tb_params *pr, double rate, uint64_t per_ms, double burst,
                  double cost)
{
    int64_t rate_m, burst_m, cost_m, per_us;

    if (sl_tb_milli(rate, false, &rate_m) == -1 || sl_tb_milli(burst, false, &burst_m) == -1
        || sl_tb_milli(cost, true, &cost_m) == -1)
        return -1;
    if (rate_m < 1 || per_ms == 0 || per_ms > (uint64_t)SL_TB_LIMIT / 1000u)
        return -1;
    /* the time to fill from empty, in microseconds, must be representable too */
    if ((double)burst_m * (double)per_ms * 1000.0 / (double)rate_m >= (double)SL_TB_LIMIT / 2)
        return -1;
    per_us = (int64_t)per_ms * 1000;
    for (int64_t tu = 1; tu <= per_us && per_us % tu == 0; tu *= 10) {
        int64_t per_ticks = per_us / tu;
        int64_t g = sl_tb_gcd(rate_m, per_ticks);
        int64_t q = rate_m / g, p = per_ticks / g;

        if (q < SL_TB_LIMIT && burst_m <= (SL_TB_LIMIT - q) / p) {
            *pr = (struct sl_tb_params){ .q = q, .p = p, .tu = tu, .burst = burst_m,
                                         .cost = cost_m };
            return 0;
        }
    }
    return -1;
}

static inline int
sl_tb_params_from_bucket(struct sl_tb_params *pr, const struct sl_store_bucket *b)
{
    return sl_tb_params_init(pr, b->rate, b->per_ms, b->burst, b->cost);
}

#endif
