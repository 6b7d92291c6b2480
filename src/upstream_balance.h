/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The choice of a server, shared by upstream.c and its tests and by nothing
 * else: smooth weighted round-robin, least requests in flight, two random
 * choices, and a consistent-hash ring. Pure functions over arrays indexed
 * like the pool's servers; `ok[i]` says whether server i may be chosen now
 * (up, and not yet tried by this request). They keep no state of their own
 * but what the caller passes in.
 */
#ifndef SL_UPSTREAM_BALANCE_H
#define SL_UPSTREAM_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One server as the choosers see it. */
struct sl_balance_peer {
    unsigned weight;   /* 1..SL_UPSTREAM_WEIGHT_MAX */
    unsigned inflight; /* requests connecting to it or using a connection to it */
    int64_t current;   /* smooth round-robin's running weight; kept between choices */
};

/*
 * nginx's smooth weighted round-robin (ngx_http_upstream_round_robin.c):
 * every candidate gains its weight, the highest wins and pays back the sum.
 * Weights 3 and 1 give a a b a, never a a a b. Only candidates' `current`
 * moves. Returns the index, or -1 when no ok[i] is set.
 */
int sl_balance_swrr(struct sl_balance_peer *peers, size_t n, const bool *ok);

/*
 * Fewest requests in flight for its weight (inflight / weight, compared
 * exactly); ties are broken by smooth round-robin among the tied, so idle
 * servers take turns. -1 when no ok[i] is set.
 */
int sl_balance_least(struct sl_balance_peer *peers, size_t n, const bool *ok);

/*
 * Power of two choices: two distinct candidates drawn at random, each with a
 * probability proportional to its weight, and the one with fewer requests in
 * flight for its weight wins (the first drawn on a tie). *rng is a xorshift
 * state, advanced; never 0. -1 when no ok[i] is set.
 */
int sl_balance_p2c(const struct sl_balance_peer *peers, size_t n, const bool *ok, uint64_t *rng);

/* A seed for sl_balance_p2c's state from anything (never 0). */
uint64_t sl_balance_seed(uint64_t x);

/*
 * A consistent-hash ring (Karger et al.; libketama's shape): each server is
 * placed at points derived from its address text only, as many as its
 * weight asks, so a server leaving moves only the keys that were on it and
 * a server joining takes only the keys it now owns; every worker and every
 * sluice instance with the same servers and weights builds the same ring.
 */
struct sl_ring_point {
    uint64_t hash;
    uint32_t server;
};

struct sl_ring {
    struct sl_ring_point *points; /* sorted by hash */
    size_t npoints;
};

#define SL_RING_POINTS_PER_WEIGHT 100
#define SL_RING_POINTS_MAX (1u << 18) /* 4 MiB of points per pool and worker at most */

/*
 * Builds the ring of servers ids[0..n) (their address text) with their
 * weights, replacing what `ring` held. Weights are first divided by their
 * greatest common divisor `gcd` (pass that of the conf's weights, so that
 * addresses coming and going do not change it); past SL_RING_POINTS_MAX
 * points every server gets fewer, in proportion.
 */
void sl_ring_build(struct sl_ring *ring, const char *const *ids, const unsigned *weights,
                   size_t n, unsigned gcd);
void sl_ring_fini(struct sl_ring *ring);
/*
 * The server owning `hash`: that of the first point at or after it, going
 * round; when that server is not ok, the next point's whose server is.
 * -1 when none is ok (or the ring is empty).
 */
int sl_ring_pick(const struct sl_ring *ring, uint64_t hash, const bool *ok);

/* The hash of a request's key value: the same in every process. */
uint64_t sl_balance_key_hash(const void *data, size_t len);

#endif
