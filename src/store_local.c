/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The embedded store: the token buckets of lua/token_bucket.lua kept in this
 * process, shared by all worker threads. The arithmetic is a line-by-line C
 * port of the script (same integers, same order of operations);
 * tests/unit/test_token_bucket.c runs the script in LuaJIT next to this file
 * and compares every answer.
 *
 * The table: keys are hashed to 64 bits with SipHash-2-4 under a per-process
 * random key, and only the digest is kept (40 bytes per bucket, no key
 * bytes). Two keys sharing a digest share a bucket; with n live keys a new
 * key meets an existing digest with odds n / 2^64 (1e-13 for 2M keys), the
 * shared bucket still never admits more than one key's limit, and outsiders
 * cannot aim for a collision without the random key. The table is split in
 * up to 64 shards, each an open-addressing array (linear probing, deletion
 * by backward shift, no tombstones) under its own mutex; a check locks the
 * shards of its buckets in index order, so it is atomic across them.
 *
 * Memory is bounded: at most max_keys live buckets. A bucket that is full
 * again is as good as absent (the script's key would have expired), so it is
 * reclaimed: on the way while probing, by a small sweep on every call, and
 * before any eviction. Only when a shard is at its bound with nothing to
 * reclaim is a live bucket dropped, the one nearest to full in a window.
 * Arrays grow by doubling up to the size the bound needs and never shrink.
 */
#include "sluice/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "sluice/log.h"
#include "store_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/siphash.h"

#define SHARDS_MAX 64
#define SHARD_MIN_KEYS 64  /* fewer shards for small tables, so each holds this many */
#define INITIAL_SLOTS 64
#define SWEEP_PER_CALL 8   /* slots looked at per shard touched by a check */
#define ROOM_SCAN 64       /* slots looked at to find room in a full shard */
#define SMALL_CHECK 8      /* buckets per check handled without allocating */

struct entry {
    uint64_t hash;       /* 0: empty slot */
    uint64_t stamp_us;   /* the state below is as of this tick */
    uint64_t full_at_us; /* full again from then on: as good as absent */
    int64_t tokens;      /* milli-tokens */
    int64_t rem;         /* and units of 1/p milli-token */
};

struct shard {
    pthread_mutex_t lock;
    struct entry *slots;
    size_t mask;         /* slots - 1, a power of two minus one */
    size_t count;        /* written under lock, read by stats without it */
    size_t max_count;
    size_t max_slots;
    size_t sweep;        /* reclaim cursor */
} __attribute__((aligned(64)));

struct sl_store_local_table {
    uint64_t k0, k1;     /* SipHash key */
    size_t max_keys;
    size_t nshards;
    unsigned shard_shift;
    struct shard *shards;
    atomic_uint_fast64_t reclaimed;
    atomic_uint_fast64_t evictions;
};

struct local_store {
    struct sl_store base;
    struct sl_store_local_table *table;
    atomic_uint_fast64_t checks;
    atomic_uint_fast64_t errors_reply;
    atomic_uint_fast64_t evictions; /* this handle's share of the table's */
};

/* one bucket's state while a check runs; tokens -1: absent, i.e. full */
struct state {
    int64_t tokens;
    int64_t rem;
    uint64_t stamp;
};

/* ---- the algorithm: a port of lua/token_bucket.lua ------------------------------- */

static int64_t
ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

/* The script's level(): the level now, in units, and the stamp it is as of. */
static int64_t
level(const struct state *st, const struct sl_tb_params *pr, uint64_t now, uint64_t *stamp)
{
    uint64_t tu = (uint64_t)pr->tu;
    uint64_t cur = now / tu * tu;
    int64_t full = pr->burst * pr->p;
    int64_t r, v, el;

    if (st->tokens < 0 || st->tokens >= pr->burst) {
        *stamp = cur;
        return full;
    }
    r = st->rem >= pr->p ? pr->p - 1 : st->rem;
    v = st->tokens * pr->p + r;
    el = (int64_t)(now / tu) - (int64_t)(st->stamp / tu);
    if (el <= 0) {
        *stamp = st->stamp;
        return v;
    }
    *stamp = cur;
    if (el >= ceil_div(full - v, pr->q))
        return full;
    return v + pr->q * el;
}

/* The start of the tick `ticks` ticks after the one of `stamp`, in us. */
static uint64_t
tick_after(int64_t ticks, int64_t tu, uint64_t stamp)
{
    return stamp / (uint64_t)tu * (uint64_t)tu + (uint64_t)(ticks * tu);
}

/* The script's ms_until(): ms from now until `ticks` ticks after the tick of
 * `stamp` (later than now when the clock stepped back). */
static uint64_t
ms_until(int64_t ticks, int64_t tu, uint64_t stamp, uint64_t now)
{
    if (ticks <= 0)
        return 0;
    return (uint64_t)ceil_div((int64_t)(tick_after(ticks, tu, stamp) - now), 1000);
}

/* ---- the table ------------------------------------------------------------------- */

static void
relaxed_inc(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void
set_count(struct shard *sh, size_t count)
{
    __atomic_store_n(&sh->count, count, __ATOMIC_RELAXED);
}

static size_t
home(const struct shard *sh, uint64_t hash)
{
    return (size_t)hash & sh->mask;
}

static bool
is_reclaimable(const struct entry *e, uint64_t now)
{
    return e->hash != 0 && e->full_at_us <= now;
}

/* Empties slot i and shifts later entries of the run back (Knuth 6.4, R). */
static void
delete_at(struct shard *sh, size_t i)
{
    size_t j = i;

    for (;;) {
        size_t k;

        j = (j + 1) & sh->mask;
        if (sh->slots[j].hash == 0)
            break;
        k = home(sh, sh->slots[j].hash);
        /* the entry at j may stay if its home lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        sh->slots[i] = sh->slots[j];
        i = j;
    }
    sh->slots[i].hash = 0;
    set_count(sh, sh->count - 1);
}

static struct entry *
find(struct shard *sh, uint64_t hash)
{
    for (size_t i = home(sh, hash);; i = (i + 1) & sh->mask) {
        if (sh->slots[i].hash == hash)
            return &sh->slots[i];
        if (sh->slots[i].hash == 0)
            return NULL;
    }
}

/* Reclaims full-again buckets among the next `n` slots of the cursor. */
static void
sweep(struct sl_store_local_table *t, struct shard *sh, uint64_t now, size_t n)
{
    while (n-- > 0) {
        size_t i = sh->sweep & sh->mask;

        if (is_reclaimable(&sh->slots[i], now)) {
            delete_at(sh, i); /* slot i now holds a shifted entry: look again */
            relaxed_inc(&t->reclaimed);
        } else {
            sh->sweep = i + 1;
        }
    }
}

/* Rebuilds the shard with `nslots` slots, leaving out full-again buckets. */
static void
resize(struct sl_store_local_table *t, struct shard *sh, size_t nslots, uint64_t now)
{
    struct entry *old = sh->slots;
    size_t old_slots = sh->mask + 1, count = 0;

    sh->slots = sl_xcalloc(nslots, sizeof(*sh->slots));
    sh->mask = nslots - 1;
    sh->sweep = 0;
    for (size_t i = 0; i < old_slots; i++) {
        size_t j;

        if (old[i].hash == 0)
            continue;
        if (old[i].full_at_us <= now) {
            relaxed_inc(&t->reclaimed);
            continue;
        }
        for (j = home(sh, old[i].hash); sh->slots[j].hash != 0; j = (j + 1) & sh->mask)
            ;
        sh->slots[j] = old[i];
        count++;
    }
    set_count(sh, count);
    free(old);
}

/* Frees one slot of a shard at its bound: a full-again bucket if the cursor
 * finds one, else the live bucket nearest to full among those it saw.
 * Returns true in the second case: a live bucket was evicted. */
static bool
make_room(struct sl_store_local_table *t, struct shard *sh, uint64_t now)
{
    size_t victim = SIZE_MAX;
    uint64_t soonest = UINT64_MAX;

    for (size_t n = 0; n < ROOM_SCAN; n++) {
        size_t i = (sh->sweep + n) & sh->mask;

        if (sh->slots[i].hash == 0)
            continue;
        if (sh->slots[i].full_at_us <= now) {
            delete_at(sh, i);
            relaxed_inc(&t->reclaimed);
            return false;
        }
        if (sh->slots[i].full_at_us < soonest) {
            soonest = sh->slots[i].full_at_us;
            victim = i;
        }
    }
    sh->sweep += ROOM_SCAN;
    if (victim == SIZE_MAX) {
        /* ROOM_SCAN empty slots in a row in a shard at its bound: only when
         * the bound is tiny; take any entry */
        for (victim = 0; sh->slots[victim].hash == 0; victim++)
            ;
    }
    delete_at(sh, victim);
    atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
    return true;
}

/* Returns whether a live bucket was evicted to make room. */
static bool
store_state(struct sl_store_local_table *t, struct shard *sh, uint64_t hash,
            const struct state *st, uint64_t full_at, uint64_t now)
{
    struct entry *slot = find(sh, hash);
    bool is_evicted = false;
    size_t i;

    if (slot == NULL) {
        /* a full-again bucket on the key's probe run can give up its place:
         * lookups of the key reach it before any empty slot */
        for (i = home(sh, hash); sh->slots[i].hash != 0; i = (i + 1) & sh->mask) {
            if (is_reclaimable(&sh->slots[i], now)) {
                slot = &sh->slots[i];
                relaxed_inc(&t->reclaimed);
                break;
            }
        }
    }
    if (slot == NULL) {
        if (sh->count >= sh->max_count)
            is_evicted = make_room(t, sh, now);
        else if ((sh->count + 1) * 4 > (sh->mask + 1) * 3 && sh->mask + 1 < sh->max_slots)
            resize(t, sh, (sh->mask + 1) * 2, now);
        for (i = home(sh, hash); sh->slots[i].hash != 0; i = (i + 1) & sh->mask)
            ;
        slot = &sh->slots[i];
        set_count(sh, sh->count + 1);
    }
    *slot = (struct entry){ .hash = hash, .stamp_us = st->stamp, .full_at_us = full_at,
                            .tokens = st->tokens, .rem = st->rem };
    return is_evicted;
}

static struct shard *
shard_of(struct sl_store_local_table *t, uint64_t hash)
{
    return &t->shards[t->nshards == 1 ? 0 : hash >> t->shard_shift];
}

struct sl_store_local_table *
sl_store_local_table_new(size_t max_keys)
{
    struct sl_store_local_table *t = sl_xcalloc(1, sizeof(*t));
    uint64_t key[2];

    if (max_keys == 0)
        max_keys = 1;
    t->max_keys = max_keys;
    t->nshards = SHARDS_MAX;
    while (t->nshards > 1 && max_keys / t->nshards < SHARD_MIN_KEYS)
        t->nshards /= 2;
    t->shard_shift = 64;
    for (size_t n = t->nshards; n > 1; n /= 2)
        t->shard_shift--;
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        /* no entropy source: still distinct per process, just guessable */
        key[0] = sl_clock_now_us() ^ ((uint64_t)getpid() << 32);
        key[1] = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
    }
    t->k0 = key[0];
    t->k1 = key[1];
    t->shards = aligned_alloc(64, t->nshards * sizeof(*t->shards));
    if (t->shards == NULL)
        sl_fatalx("out of memory allocating %zu bytes", t->nshards * sizeof(*t->shards));
    memset(t->shards, 0, t->nshards * sizeof(*t->shards));
    for (size_t i = 0; i < t->nshards; i++) {
        struct shard *sh = &t->shards[i];

        pthread_mutex_init(&sh->lock, NULL);
        sh->max_count = max_keys / t->nshards + (i < max_keys % t->nshards);
        sh->max_slots = INITIAL_SLOTS;
        while (sh->max_count * 4 > sh->max_slots * 3)
            sh->max_slots *= 2;
        sh->mask = (sh->max_slots < INITIAL_SLOTS ? sh->max_slots : INITIAL_SLOTS) - 1;
        sh->slots = sl_xcalloc(sh->mask + 1, sizeof(*sh->slots));
    }
    return t;
}

void
sl_store_local_table_free(struct sl_store_local_table *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < table->nshards; i++) {
        pthread_mutex_destroy(&table->shards[i].lock);
        free(table->shards[i].slots);
    }
    free(table->shards);
    free(table);
}

void
sl_store_local_table_get_stats(const struct sl_store_local_table *table,
                               struct sl_store_local_table_stats *stats)
{
    *stats = (struct sl_store_local_table_stats){ .max_keys = table->max_keys };
    for (size_t i = 0; i < table->nshards; i++) {
        stats->keys += __atomic_load_n(&table->shards[i].count, __ATOMIC_RELAXED);
        stats->bytes += (__atomic_load_n(&table->shards[i].mask, __ATOMIC_RELAXED) + 1)
                        * sizeof(struct entry);
    }
    stats->reclaimed = atomic_load_explicit(&table->reclaimed, memory_order_relaxed);
    stats->evictions = atomic_load_explicit(&table->evictions, memory_order_relaxed);
}

/* ---- a check --------------------------------------------------------------------- */

/* Per check scratch: on the stack for small checks. */
struct scratch {
    struct sl_tb_params *params;
    uint64_t *hash;
    size_t *first;        /* index of the first bucket with the same key */
    struct state *st;     /* indexed by first[]: one state per distinct key */
    struct state *undo;   /* state before each take */
    uint64_t *full_at;    /* indexed by first[] */
    size_t *shards;       /* distinct shard indexes, ascending */
    struct sl_store_result *results;
};

/*
 * Runs one check against states already loaded in s->st (the script's pass 1
 * and pass 2). Returns whether it was admitted; fills s->results and, when
 * admitted, s->full_at for every key to write.
 */
static bool
run_check(struct scratch *s, size_t n, uint64_t now)
{
    bool is_admitted = true;
    size_t nundo = 0;

    for (size_t j = 0; j < n; j++) {
        const struct sl_tb_params *pr = &s->params[j];
        struct state *st = &s->st[s->first[j]];
        uint64_t stamp;
        int64_t v = level(st, pr, now, &stamp);

        if (pr->cost > pr->burst || v < pr->cost * pr->p) {
            is_admitted = false;
            break;
        }
        s->undo[nundo++] = *st;
        v -= pr->cost * pr->p;
        st->tokens = v / pr->p;
        st->rem = v - st->tokens * pr->p;
        st->stamp = stamp;
    }
    if (!is_admitted) {
        while (nundo-- > 0)
            s->st[s->first[nundo]] = s->undo[nundo];
    }
    for (size_t j = 0; j < n; j++) {
        const struct sl_tb_params *pr = &s->params[j];
        uint64_t stamp;
        int64_t v = level(&s->st[s->first[j]], pr, now, &stamp);
        int64_t reset_ticks = ceil_div(pr->burst * pr->p - v, pr->q);
        struct sl_store_result *res = &s->results[j];

        res->remaining = (double)(v / pr->p) / 1000.0;
        if (pr->cost > pr->burst)
            res->retry_ms = SL_STORE_RETRY_NEVER;
        else if (v >= pr->cost * pr->p)
            res->retry_ms = 0;
        else
            res->retry_ms = ms_until(ceil_div(pr->cost * pr->p - v, pr->q), pr->tu, stamp, now);
        res->reset_ms = ms_until(reset_ticks, pr->tu, stamp, now);
        if (is_admitted)
            s->full_at[s->first[j]] = tick_after(reset_ticks, pr->tu, stamp);
    }
    return is_admitted;
}

/* Points s at one allocation for a check of n buckets, too many for the
 * stack arrays; returns it for the caller to free. */
static void *
scratch_alloc(struct scratch *s, size_t n)
{
    size_t each = sizeof(*s->params) + sizeof(*s->hash) + sizeof(*s->first) + sizeof(*s->st)
                  + sizeof(*s->undo) + sizeof(*s->full_at) + sizeof(*s->shards)
                  + sizeof(*s->results);
    char *heap = sl_xmalloc(each * n), *p = heap;

    /* largest alignment first */
    s->params = (void *)p, p += n * sizeof(*s->params);
    s->hash = (void *)p, p += n * sizeof(*s->hash);
    s->first = (void *)p, p += n * sizeof(*s->first);
    s->st = (void *)p, p += n * sizeof(*s->st);
    s->undo = (void *)p, p += n * sizeof(*s->undo);
    s->full_at = (void *)p, p += n * sizeof(*s->full_at);
    s->shards = (void *)p, p += n * sizeof(*s->shards);
    s->results = (void *)p;
    return heap;
}

/*
 * Fills the scratch from the buckets, without locking anything: parameters,
 * key hashes, the first bucket of each distinct key, and the ascending set
 * of shards to lock (its size in *nshards). -1 when a bucket's numbers are
 * not representable.
 */
static int
prepare(struct sl_store_local_table *t, struct scratch *s, const struct sl_store_bucket *buckets,
        size_t n, size_t *nshards)
{
    *nshards = 0;
    for (size_t i = 0; i < n; i++) {
        size_t si, k = *nshards;
        bool is_new = true;

        if (sl_tb_params_from_bucket(&s->params[i], &buckets[i]) == -1)
            return -1;
        s->hash[i] = sl_siphash24(t->k0, t->k1, buckets[i].key, buckets[i].key_len);
        if (s->hash[i] == 0)
            s->hash[i] = 1;
        s->first[i] = i;
        for (size_t j = 0; j < i; j++) {
            if (s->hash[j] == s->hash[i]) {
                s->first[i] = s->first[j];
                break;
            }
        }
        /* insertion into the sorted set of shards to lock */
        si = (size_t)(shard_of(t, s->hash[i]) - t->shards);
        for (size_t j = 0; j < *nshards; j++)
            is_new = is_new && s->shards[j] != si;
        if (is_new) {
            while (k > 0 && s->shards[k - 1] > si) {
                s->shards[k] = s->shards[k - 1];
                k--;
            }
            s->shards[k] = si;
            (*nshards)++;
        }
    }
    return 0;
}

/* The state of each distinct key as of now (shards locked). */
static void
load_states(struct sl_store_local_table *t, struct scratch *s, size_t n, uint64_t now)
{
    for (size_t i = 0; i < n; i++) {
        const struct entry *e;

        if (s->first[i] != i)
            continue;
        e = find(shard_of(t, s->hash[i]), s->hash[i]);
        if (e == NULL || e->full_at_us <= now)
            s->st[i] = (struct state){ .tokens = -1 };
        else
            s->st[i] = (struct state){ .tokens = e->tokens, .rem = e->rem, .stamp = e->stamp_us };
    }
}

static void
local_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
            sl_store_cb *cb, void *arg)
{
    struct local_store *ls = (struct local_store *)store;
    struct sl_store_local_table *t = ls->table;
    struct sl_tb_params params[SMALL_CHECK];
    uint64_t hash[SMALL_CHECK], full_at[SMALL_CHECK];
    size_t first[SMALL_CHECK], shards[SMALL_CHECK];
    struct state st[SMALL_CHECK], undo[SMALL_CHECK];
    struct sl_store_result results[SMALL_CHECK];
    struct scratch s = { params, hash, first, st, undo, full_at, shards, results };
    void *heap = n > SMALL_CHECK ? scratch_alloc(&s, n) : NULL;
    size_t nshards;
    uint64_t now, nevicted = 0;
    bool is_admitted;

    if (prepare(t, &s, buckets, n, &nshards) == -1) {
        free(heap);
        atomic_fetch_add_explicit(&ls->checks, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ls->errors_reply, 1, memory_order_relaxed);
        cb(arg, SL_STORE_REPLY, false, NULL, 0);
        return;
    }
    for (size_t k = 0; k < nshards; k++)
        pthread_mutex_lock(&t->shards[s.shards[k]].lock);
    /* read the clock under the locks, so a later writer never stamps earlier */
    now = sl_clock_now_us();
    load_states(t, &s, n, now);
    is_admitted = run_check(&s, n, now);
    if (is_admitted) {
        for (size_t i = 0; i < n; i++) {
            if (s.first[i] == i)
                nevicted += store_state(t, shard_of(t, s.hash[i]), s.hash[i], &s.st[i],
                                        s.full_at[i], now);
        }
    }
    for (size_t k = 0; k < nshards; k++) {
        struct shard *sh = &t->shards[s.shards[k]];

        sweep(t, sh, now, SWEEP_PER_CALL);
        pthread_mutex_unlock(&sh->lock);
    }
    atomic_fetch_add_explicit(&ls->checks, 1, memory_order_relaxed);
    if (nevicted > 0)
        atomic_fetch_add_explicit(&ls->evictions, nevicted, memory_order_relaxed);
    cb(arg, SL_STORE_OK, is_admitted, s.results, n);
    free(heap);
}

/* The script's absent key: the entry goes, so the bucket reads full. */
static void
local_reset(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb, void *arg)
{
    struct local_store *ls = (struct local_store *)store;
    struct sl_store_local_table *t = ls->table;
    uint64_t hash = sl_siphash24(t->k0, t->k1, key, key_len);
    struct shard *sh;
    struct entry *e;

    if (hash == 0)
        hash = 1; /* as prepare() does: 0 marks an empty slot */
    sh = shard_of(t, hash);
    pthread_mutex_lock(&sh->lock);
    e = find(sh, hash);
    if (e != NULL)
        delete_at(sh, (size_t)(e - sh->slots));
    pthread_mutex_unlock(&sh->lock);
    cb(arg, SL_STORE_OK, true, NULL, 0);
}

static bool
local_is_up(const struct sl_store *store)
{
    (void)store;
    return true;
}

static void
local_stats(const struct sl_store *store, struct sl_store_stats *stats)
{
    const struct local_store *ls = (const struct local_store *)store;

    stats->checks = atomic_load_explicit(&ls->checks, memory_order_relaxed);
    stats->errors_reply = atomic_load_explicit(&ls->errors_reply, memory_order_relaxed);
    stats->evictions = atomic_load_explicit(&ls->evictions, memory_order_relaxed);
}

static void
local_free(struct sl_store *store)
{
    free(store);
}

static const struct sl_store_ops local_ops = {
    .name = "local",
    .check = local_check,
    .is_up = local_is_up,
    .free = local_free,
    .stats = local_stats,
    .reset = local_reset,
};

struct sl_store *
sl_store_local_new(struct sl_store_local_table *table)
{
    struct local_store *ls = sl_xcalloc(1, sizeof(*ls));

    ls->base.ops = &local_ops;
    ls->table = table;
    return &ls->base;
}
