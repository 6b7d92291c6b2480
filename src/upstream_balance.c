/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * How a pool picks a server (see upstream_balance.h). Nothing here knows a
 * socket or an event loop: upstream.c says which servers may be chosen and
 * keeps the counts, and the tests drive these functions directly.
 */
#include "upstream_balance.h"

#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/siphash.h"

/*
 * A fixed key, unlike the embedded store's random one: every worker and
 * every sluice instance must send a key to the same server. Clients can
 * choose keys that land on one server, but a client that sets the hashed
 * header can do that by sending the same value anyway.
 */
#define RING_K0 0x736c756963652d72ull /* "sluice-r" */
#define RING_K1 0x696e672d6b657930ull /* "ing-key0" */

int
sl_balance_swrr(struct sl_balance_peer *peers, size_t n, const bool *ok)
{
    int64_t total = 0;
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        peers[i].current += peers[i].weight;
        total += peers[i].weight;
        if (best < 0 || peers[i].current > peers[best].current)
            best = (int)i;
    }
    if (best >= 0)
        peers[best].current -= total;
    return best;
}

/* Whether a carries less for its weight than b: a.in / a.w < b.in / b.w. */
static bool
is_lighter(const struct sl_balance_peer *a, const struct sl_balance_peer *b)
{
    return (uint64_t)a->inflight * b->weight < (uint64_t)b->inflight * a->weight;
}

int
sl_balance_least(struct sl_balance_peer *peers, size_t n, const bool *ok)
{
    int64_t total = 0;
    int best = -1, pick = -1;

    for (size_t i = 0; i < n; i++) {
        if (ok[i] && (best < 0 || is_lighter(&peers[i], &peers[best])))
            best = (int)i;
    }
    if (best < 0)
        return -1;
    /* smooth round-robin among those as light as the best */
    for (size_t i = 0; i < n; i++) {
        if (!ok[i] || is_lighter(&peers[best], &peers[i]))
            continue;
        peers[i].current += peers[i].weight;
        total += peers[i].weight;
        if (pick < 0 || peers[i].current > peers[pick].current)
            pick = (int)i;
    }
    peers[pick].current -= total;
    return pick;
}

uint64_t
sl_balance_seed(uint64_t x)
{
    /* splitmix64's finaliser: any input, well mixed */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x != 0 ? x : 1;
}

static uint64_t
next_random(uint64_t *rng)
{
    /* xorshift64* (Vigna): plenty for spreading load, and no lock */
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* One candidate drawn with odds by weight, `skip` left out; -1 when none. */
static int
draw(const struct sl_balance_peer *peers, size_t n, const bool *ok, int skip, uint64_t *rng)
{
    uint64_t total = 0, r;

    for (size_t i = 0; i < n; i++) {
        if (ok[i] && (int)i != skip)
            total += peers[i].weight;
    }
    if (total == 0)
        return -1;
    r = next_random(rng) % total;
    for (size_t i = 0; i < n; i++) {
        if (!ok[i] || (int)i == skip)
            continue;
        if (r < peers[i].weight)
            return (int)i;
        r -= peers[i].weight;
    }
    return -1;
}

int
sl_balance_p2c(const struct sl_balance_peer *peers, size_t n, const bool *ok, uint64_t *rng)
{
    int a = draw(peers, n, ok, -1, rng), b;

    if (a < 0)
        return -1;
    b = draw(peers, n, ok, a, rng);
    if (b < 0)
        return a;
    return is_lighter(&peers[b], &peers[a]) ? b : a;
}

/* ---- the ring ------------------------------------------------------------ */

uint64_t
sl_balance_key_hash(const void *data, size_t len)
{
    return sl_siphash24(RING_K0, RING_K1, data, len);
}

static int
cmp_points(const void *a, const void *b)
{
    const struct sl_ring_point *x = a, *y = b;

    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->server < y->server ? -1 : x->server > y->server;
}

void
sl_ring_build(struct sl_ring *ring, const char *const *ids, const unsigned *weights, size_t n,
              unsigned gcd)
{
    uint64_t units = 0, per_unit = SL_RING_POINTS_PER_WEIGHT;
    size_t k = 0;

    sl_ring_fini(ring);
    if (gcd == 0)
        gcd = 1;
    for (size_t i = 0; i < n; i++)
        units += weights[i] / gcd > 0 ? weights[i] / gcd : 1;
    if (units * per_unit > SL_RING_POINTS_MAX)
        per_unit = SL_RING_POINTS_MAX / units > 0 ? SL_RING_POINTS_MAX / units : 1;
    ring->points = sl_xcalloc(units * per_unit > 0 ? units * per_unit : 1, sizeof(*ring->points));
    for (size_t i = 0; i < n; i++) {
        uint64_t base = sl_balance_key_hash(ids[i], strlen(ids[i]));
        uint64_t npoints = (weights[i] / gcd > 0 ? weights[i] / gcd : 1) * per_unit;
        /* point j of a server depends on its address and j alone, so the
         * other servers' points stay where they are when it comes or goes */
        for (uint64_t j = 0; j < npoints; j++)
            ring->points[k++] = (struct sl_ring_point){ sl_balance_seed(base + j), (uint32_t)i };
    }
    ring->npoints = k;
    qsort(ring->points, ring->npoints, sizeof(*ring->points), cmp_points);
}

void
sl_ring_fini(struct sl_ring *ring)
{
    free(ring->points);
    ring->points = NULL;
    ring->npoints = 0;
}

int
sl_ring_pick(const struct sl_ring *ring, uint64_t hash, const bool *ok)
{
    size_t lo = 0, hi = ring->npoints;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring->points[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < ring->npoints; k++) {
        const struct sl_ring_point *p = &ring->points[(lo + k) % ring->npoints];
        if (ok[p->server])
            return (int)p->server;
    }
    return -1;
}
