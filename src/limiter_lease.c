/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Token leases (docs/rate-limiting.md, "Leases"): a store in front of the
 * redis store that admits requests of hot keys from blocks of tokens taken
 * from Redis in one call, and passes everything else through unchanged.
 *
 * Per worker, a fixed table of keys seen on buckets of `lease = true`
 * limits counts each key's requests. A key with at least HOT_REQUESTS in a
 * window of WINDOW_US is hot: its entry asks for a block (the script's
 * "take up to": never more than the bucket holds, never more than
 * max_share x burst) sized to the key's local rate over a quarter of the
 * ttl and at least a few round trips, and asks for the next one while the
 * rest still covers about three round trips, so the next block usually
 * arrives before this one is spent. A request finding its block short, or
 * its refill in flight, goes the ordinary per-request way: waiting on a
 * refill would make latency worse than without leases.
 *
 * Exactness. Only tokens Redis handed out are spent, and only for `ttl`
 * after the take that brought them was sent; Redis keeps each holder's
 * share out of the bucket's refill and forgets it 2 x ttl after the take
 * ran (lua/token_bucket.lua), so the fleet bound holds. A take answered
 * later than ttl after it was sent is not spent at all. Unused tokens go
 * back when the block expires (a sweep every ttl / 5), and all of them
 * before a drain ends and when a reload frees the old limiter.
 *
 * All-or-nothing with other limits: leased buckets are taken from locally
 * first (reversible), the other buckets of the request go to Redis in one
 * check, and a refusal or an error puts the local tokens back.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/event.h>

#include "limiter_int.h"
#include "sluice/config.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/store.h"
#include "store_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"

#define SLOTS 4096u            /* keys tracked per worker, power of two */
#define PROBE 8u               /* slots looked at per key */
#define WINDOW_US 100000u      /* rate window */
#define HOT_REQUESTS 8u        /* per window: the key gets blocks */
#define IDLE_US 2000000u       /* an entry holding nothing, unseen this long, may go */
#define BACKOFF_US 100000u     /* after a failed lease operation */
#define RTT_INIT_US 1000.0
#define RETURN_MAX_MS 1000u    /* longest wait for give-backs at drain and free */

struct lease_store;

struct entry {
    uint64_t hash;          /* 0: free */
    char *key;              /* the bucket's key, once hot; NULL before */
    struct sl_store_bucket bucket; /* key points at `key`; rate, per, burst, cost last seen */
    uint64_t gen;           /* changes when the block goes: late put-backs are dropped */
    uint64_t win_start_us;
    uint64_t win_milli;     /* milli-tokens asked for in this window */
    unsigned win_requests;
    double rate_milli_s;    /* estimate of the key's local demand, milli-tokens/s */
    uint64_t seen_us;
    int64_t balance;        /* milli-tokens of the block not spent */
    uint64_t expiry_us;     /* spend only before */
    int64_t remaining;      /* Redis's level as of the last lease operation */
    uint64_t reset_ms;
    bool is_hot;
    bool is_op;             /* a lease operation is out */
    bool is_taking;         /* ... and it is a take */
    bool is_give_after;     /* give everything back when the take returns */
    uint64_t op_sent_us;
    uint64_t backoff_until_us;
    struct lease_store *ls;
};

/* A check passed on to Redis, with the local takes to undo on refusal. */
struct wcheck {
    struct wcheck *next;    /* free list or pending list */
    struct wcheck *prev;
    struct lease_store *ls;
    sl_store_cb *cb;
    void *arg;
    bool is_detached;       /* answered already (the store was freed) */
    size_t n, cap;
    struct sl_store_bucket *sub;   /* the buckets sent */
    size_t nsub;
    size_t *sub_index;      /* sub[j] is bucket sub_index[j] of the check */
    struct entry **local;   /* [n]: the entry a bucket was taken from locally, or NULL */
    uint64_t *local_gen;
    int64_t *local_milli;
    struct sl_store_result *results;
};

struct lease_store {
    struct sl_store base;
    struct sl_store *inner;
    struct event_base *evbase;
    struct event *sweep;
    struct event *return_timer;
    uint64_t ttl_us;
    double max_share;
    char holder[33];
    double rtt_us;
    uint64_t gen_seq;
    struct entry *slots;
    struct wcheck *pending, *free_checks;
    struct sl_metrics_worker *metrics;
    unsigned nops;          /* lease operations out */
    bool is_returning;      /* drain or free: no new blocks, no spending */
    bool is_freeing;
    bool is_destroy_wanted; /* once no entry point is on the stack */
    bool is_destroying;
    unsigned depth;         /* our entry points on the stack */
    void (*returned_cb)(void *arg);
    void *returned_arg;
};

static const struct sl_store_ops lease_ops;
static void destroy(struct lease_store *ls);

/* Every entry point (a check, a store callback, a timer) brackets itself,
 * so that a store freed from inside a callback it made (the limiter goes
 * when a decision's callback returns) is destroyed only once the stack has
 * unwound, as the redis store does. */
static void
enter(struct lease_store *ls)
{
    ls->depth++;
}

static void
leave(struct lease_store *ls)
{
    if (--ls->depth == 0 && ls->is_destroy_wanted && !ls->is_destroying)
        destroy(ls);
}

static void
count(struct lease_store *ls, enum sl_metrics_lease what, uint64_t n)
{
    if (ls->metrics != NULL && n > 0)
        sl_metrics_lease(ls->metrics, what, n);
}

static uint64_t
key_hash(const struct sl_store_bucket *b)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    double nums[2] = { b->rate, b->burst };
    const unsigned char *p = (const unsigned char *)b->key;

    for (size_t i = 0; i < b->key_len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    p = (const unsigned char *)nums;
    for (size_t i = 0; i < sizeof(nums); i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h = (h ^ b->per_ms) * 0x100000001b3ULL;
    return h | 1;
}

static bool
entry_is_key(const struct entry *e, uint64_t h, const struct sl_store_bucket *b)
{
    if (e->hash != h)
        return false;
    /* a hot entry is its key exactly; a cold one only counts, and two keys
     * sharing a 64-bit hash would only share a count */
    return e->key == NULL
        || (e->bucket.key_len == b->key_len && memcmp(e->key, b->key, b->key_len) == 0
            && e->bucket.rate == b->rate && e->bucket.burst == b->burst
            && e->bucket.per_ms == b->per_ms);
}

static bool
entry_is_idle(const struct entry *e, uint64_t now)
{
    return !e->is_op && e->balance == 0 && now - e->seen_us > IDLE_US;
}

static void
entry_clear(struct lease_store *ls, struct entry *e)
{
    free(e->key);
    *e = (struct entry){ .ls = ls };
}

/* The key's entry, made when there is room; NULL when every slot it may use
 * is busy (the request goes the ordinary way). */
static struct entry *
entry_find(struct lease_store *ls, const struct sl_store_bucket *b, uint64_t now)
{
    uint64_t h = key_hash(b);
    struct entry *spare = NULL;

    for (unsigned i = 0; i < PROBE; i++) {
        struct entry *e = &ls->slots[(h + i) & (SLOTS - 1)];
        if (entry_is_key(e, h, b))
            return e;
        if (spare == NULL && (e->hash == 0 || entry_is_idle(e, now)))
            spare = e;
    }
    if (spare == NULL) {
        /* a cold entry (no block, nothing out) gives way to the newcomer */
        for (unsigned i = 0; i < PROBE && spare == NULL; i++) {
            struct entry *e = &ls->slots[(h + i) & (SLOTS - 1)];
            if (!e->is_hot && !e->is_op && e->balance == 0)
                spare = e;
        }
        if (spare == NULL)
            return NULL;
    }
    entry_clear(ls, spare);
    spare->hash = h;
    spare->gen = ++ls->gen_seq;
    spare->win_start_us = now;
    return spare;
}

/* Counts a request of `milli` on e; promotes or demotes the key. */
static void
entry_count(struct lease_store *ls, struct entry *e, const struct sl_store_bucket *b,
            int64_t milli, uint64_t now)
{
    uint64_t el = now - e->win_start_us;

    (void)ls;
    e->seen_us = now;
    if (el >= WINDOW_US) {
        double r = (double)e->win_milli * 1e6 / (double)el;
        e->rate_milli_s = el >= 2 * WINDOW_US ? r : (e->rate_milli_s + r) / 2;
        if (e->is_hot && e->win_requests < HOT_REQUESTS / 2)
            e->is_hot = false;
        e->win_start_us = now;
        e->win_milli = 0;
        e->win_requests = 0;
    }
    e->win_milli += (uint64_t)milli;
    e->win_requests++;
    if (!e->is_hot && e->win_requests >= HOT_REQUESTS) {
        e->is_hot = true;
        if (e->rate_milli_s * (double)WINDOW_US / 1e6 < (double)e->win_milli)
            e->rate_milli_s = (double)e->win_milli * 1e6 / (double)WINDOW_US;
    }
    if (e->is_hot && e->key == NULL) {
        e->key = sl_xmalloc(b->key_len + 1);
        memcpy(e->key, b->key, b->key_len);
        e->key[b->key_len] = '\0';
    }
    if (e->key != NULL) {
        e->bucket = *b;
        e->bucket.key = e->key;
    }
}

/* ---- lease operations ------------------------------------------------------------- */

static void on_lease_reply(void *arg, enum sl_store_status status, int64_t moved,
                           const struct sl_store_result *result);
static void lease_reply(struct lease_store *ls, struct entry *e, enum sl_store_status status,
                        int64_t moved, const struct sl_store_result *result);
static void maybe_returned(struct lease_store *ls);

static void
lease_op(struct lease_store *ls, struct entry *e, enum sl_lease_op op, int64_t milli)
{
    e->is_op = true;
    e->is_taking = op == SL_LEASE_TAKE;
    e->op_sent_us = sl_clock_cached_us();
    ls->nops++;
    if (op == SL_LEASE_TAKE)
        count(ls, SL_METRICS_LEASE_TAKES, 1);
    sl_store_lease(ls->inner, &e->bucket, op, milli, op == SL_LEASE_TAKE ? e->balance : 0,
                   2 * ls->ttl_us / 1000, ls->holder, on_lease_reply, e);
}

/* The block ends: nothing more is spent from it, what is left goes back
 * (with a take out: when it returns, with what it brings), and late
 * put-backs are dropped. */
static void
give_back(struct lease_store *ls, struct entry *e)
{
    int64_t milli = e->balance;

    e->expiry_us = 0;
    e->gen = ++ls->gen_seq;
    if (e->is_op) {
        e->is_give_after = e->is_taking;
        return;
    }
    e->balance = 0;
    /* a give of 0 still ends the holder's share in Redis at once */
    lease_op(ls, e, SL_LEASE_GIVE, milli);
}

static void
on_lease_reply(void *arg, enum sl_store_status status, int64_t moved,
               const struct sl_store_result *result)
{
    struct entry *e = arg;
    struct lease_store *ls = e->ls;

    enter(ls);
    lease_reply(ls, e, status, moved, result);
    leave(ls);
}

static void
lease_reply(struct lease_store *ls, struct entry *e, enum sl_store_status status, int64_t moved,
            const struct sl_store_result *result)
{
    uint64_t now = sl_clock_now_us();
    bool was_take = e->is_taking;

    ls->nops--;
    e->is_op = false;
    e->is_taking = false;
    if (status != SL_STORE_OK) {
        /* a take may or may not have run: Redis forgets it in 2 x ttl; a
         * block that was to go back with it cannot: it is dropped */
        e->backoff_until_us = now + BACKOFF_US;
        if (e->is_give_after)
            e->balance = 0;
        e->is_give_after = false;
        maybe_returned(ls);
        return;
    }
    e->remaining = (int64_t)(result->remaining * 1000.0 + 0.5);
    e->reset_ms = result->reset_ms;
    if (!was_take) {
        count(ls, SL_METRICS_LEASE_RETURNED_MILLI, (uint64_t)moved);
        maybe_returned(ls);
        return;
    }
    count(ls, SL_METRICS_LEASE_TAKEN_MILLI, (uint64_t)moved);
    ls->rtt_us = (ls->rtt_us * 7 + (double)(now - e->op_sent_us)) / 8;
    if (now - e->op_sent_us >= ls->ttl_us) {
        /* too late to spend safely: Redis may forget it before we would */
        e->balance = 0;
        e->gen = ++ls->gen_seq;
        e->is_give_after = false;
        lease_op(ls, e, SL_LEASE_GIVE, 0);
        return;
    }
    if (e->is_give_after || ls->is_returning) {
        /* the block ended while the take was out */
        e->is_give_after = false;
        e->balance += moved;
        give_back(ls, e);
        return;
    }
    e->balance += moved;
    /* Redis renewed this holder's share (2 x ttl from when the take ran,
     * which was after we sent it) when it had one or gave some now */
    if (e->balance > 0)
        e->expiry_us = e->op_sent_us + ls->ttl_us;
    if (moved == 0)
        e->backoff_until_us = now + BACKOFF_US; /* the bucket is empty: per request */
}

/* Asks for the next block when the key is hot and the block runs low. */
static void
maybe_refill(struct lease_store *ls, struct entry *e, int64_t cost_milli, uint64_t now)
{
    uint64_t el = now - e->win_start_us;
    /* milli-tokens per us: the estimate, or this window's pace when higher
     * (a key that comes back after a quiet spell gets full blocks at once) */
    double rate_us = e->rate_milli_s / 1e6;
    double cur = (double)e->win_milli / (double)(el > WINDOW_US / 10 ? el : WINDOW_US / 10);
    double low;

    if (cur > rate_us)
        rate_us = cur;
    low = rate_us * (3 * ls->rtt_us + 2000.0);
    double block = rate_us * (double)(ls->ttl_us / 4 > 4 * ls->rtt_us ? ls->ttl_us / 4
                                                                     : 4 * ls->rtt_us);
    int64_t burst_milli, max, want;

    if (!e->is_hot || e->key == NULL || e->is_op || ls->is_returning || now < e->backoff_until_us)
        return;
    if (e->expiry_us != 0 && now >= e->expiry_us) {
        /* never report held tokens Redis may have forgotten: end it first */
        give_back(ls, e);
        return;
    }
    if ((double)e->balance >= low && e->balance >= cost_milli
        && e->expiry_us > now + (uint64_t)(3 * ls->rtt_us) + 2000)
        return;
    burst_milli = (int64_t)(e->bucket.burst * 1000.0);
    max = (int64_t)((double)burst_milli * ls->max_share);
    want = (int64_t)block - e->balance;
    if (want < cost_milli)
        want = cost_milli;
    if (want > max - e->balance)
        want = max - e->balance;
    if (want <= 0 && e->balance > 0 && e->expiry_us > now + (uint64_t)(3 * ls->rtt_us) + 2000)
        return;
    /* a take of 0 still renews the block's time */
    lease_op(ls, e, SL_LEASE_TAKE, want > 0 ? want : 0);
}

/* ---- checks ----------------------------------------------------------------------- */

static struct wcheck *
wcheck_get(struct lease_store *ls, size_t n)
{
    struct wcheck *w = ls->free_checks;

    if (w != NULL)
        ls->free_checks = w->next;
    else
        w = sl_xcalloc(1, sizeof(*w));
    if (n > w->cap) {
        w->cap = n;
        w->sub = sl_xrealloc(w->sub, n * sizeof(*w->sub));
        w->sub_index = sl_xrealloc(w->sub_index, n * sizeof(*w->sub_index));
        w->local = sl_xrealloc(w->local, n * sizeof(*w->local));
        w->local_gen = sl_xrealloc(w->local_gen, n * sizeof(*w->local_gen));
        w->local_milli = sl_xrealloc(w->local_milli, n * sizeof(*w->local_milli));
        w->results = sl_xrealloc(w->results, n * sizeof(*w->results));
    }
    w->ls = ls;
    w->n = n;
    w->nsub = 0;
    w->is_detached = false;
    memset(w->local, 0, n * sizeof(*w->local));
    return w;
}

static void
wcheck_put(struct lease_store *ls, struct wcheck *w)
{
    w->next = ls->free_checks;
    ls->free_checks = w;
}

static void
wcheck_destroy(struct wcheck *w)
{
    free(w->sub);
    free(w->sub_index);
    free(w->local);
    free(w->local_gen);
    free(w->local_milli);
    free(w->results);
    free(w);
}

static void
pending_add(struct lease_store *ls, struct wcheck *w)
{
    w->prev = NULL;
    w->next = ls->pending;
    if (ls->pending != NULL)
        ls->pending->prev = w;
    ls->pending = w;
}

static void
pending_remove(struct lease_store *ls, struct wcheck *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        ls->pending = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
}

/* Puts the local takes of a refused or failed check back in their blocks,
 * unless a block ended meanwhile (then the tokens stay unused in Redis's
 * count of what this holder has, until the holder's share lapses). */
static void
undo_local(struct wcheck *w)
{
    for (size_t i = 0; i < w->n; i++) {
        struct entry *e = w->local[i];
        if (e != NULL && e->gen == w->local_gen[i])
            e->balance += w->local_milli[i];
        w->local[i] = NULL;
    }
}

/* A locally admitted bucket, as the response headers will show it: what
 * Redis had at the last lease operation plus what this block still holds. */
static struct sl_store_result
local_result(const struct entry *e)
{
    int64_t r = e->remaining + e->balance;

    return (struct sl_store_result){ .remaining = (double)(r > 0 ? r : 0) / 1000.0,
                                     .retry_ms = 0, .reset_ms = e->reset_ms };
}

static void
on_inner(void *arg, enum sl_store_status status, bool is_admitted,
         const struct sl_store_result *results, size_t nresults)
{
    struct wcheck *w = arg;
    struct lease_store *ls = w->ls;

    enter(ls);
    pending_remove(ls, w);
    if (w->is_detached) {
        wcheck_put(ls, w);
        leave(ls);
        return;
    }
    if (status != SL_STORE_OK || nresults != w->nsub || !is_admitted)
        undo_local(w);
    if (status == SL_STORE_OK && nresults == w->nsub) {
        for (size_t j = 0; j < w->nsub; j++)
            w->results[w->sub_index[j]] = results[j];
        for (size_t i = 0; i < w->n; i++) {
            if (w->local[i] != NULL)
                w->results[i] = local_result(w->local[i]);
        }
        w->cb(w->arg, SL_STORE_OK, is_admitted, w->results, w->n);
    } else {
        w->cb(w->arg, status == SL_STORE_OK ? SL_STORE_REPLY : status, false, NULL, 0);
    }
    wcheck_put(ls, w);
    leave(ls);
}

/* Takes bucket i of the check from its block when it can; counts it. */
static void
take_local(struct lease_store *ls, struct wcheck *w, size_t i, const struct sl_store_bucket *b,
           uint64_t now)
{
    struct entry *e;
    int64_t milli;

    if (sl_tb_milli(b->cost, true, &milli) == -1 || milli <= 0)
        return;
    e = entry_find(ls, b, now);
    if (e == NULL)
        return;
    entry_count(ls, e, b, milli, now);
    if (!ls->is_returning && e->balance >= milli && now < e->expiry_us) {
        e->balance -= milli;
        w->local[i] = e;
        w->local_gen[i] = e->gen;
        w->local_milli[i] = milli;
    }
    maybe_refill(ls, e, milli, now);
}

static void
lease_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
            sl_store_cb *cb, void *arg)
{
    struct lease_store *ls = (struct lease_store *)store;
    struct wcheck *w = wcheck_get(ls, n);
    uint64_t now = sl_clock_now_us();

    enter(ls);
    w->cb = cb;
    w->arg = arg;
    for (size_t i = 0; i < n; i++) {
        if (buckets[i].is_leased)
            take_local(ls, w, i, &buckets[i], now);
        if (w->local[i] == NULL) {
            w->sub[w->nsub] = buckets[i];
            w->sub_index[w->nsub++] = i;
        }
    }
    if (w->nsub == 0) {
        for (size_t i = 0; i < n; i++)
            w->results[i] = local_result(w->local[i]);
        count(ls, SL_METRICS_LEASE_ADMITTED, 1);
        cb(arg, SL_STORE_OK, true, w->results, n);
        wcheck_put(ls, w);
    } else {
        pending_add(ls, w);
        sl_store_check(ls->inner, w->sub, w->nsub, on_inner, w);
    }
    leave(ls);
}

/* ---- expiry, drain, free ---------------------------------------------------------- */

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct lease_store *ls = arg;
    uint64_t now = sl_clock_now_us();

    (void)fd;
    (void)what;
    enter(ls);
    for (size_t i = 0; i < SLOTS; i++) {
        struct entry *e = &ls->slots[i];
        if (e->hash == 0)
            continue;
        /* also a spent block: its share in Redis ends now, not at its lapse */
        if (e->expiry_us != 0 && now >= e->expiry_us && !e->is_op)
            give_back(ls, e);
        else if (entry_is_idle(e, now) && e->key != NULL)
            entry_clear(ls, e);
    }
    leave(ls);
}

static void
destroy(struct lease_store *ls)
{
    struct wcheck *w;

    ls->is_destroying = true;
    sl_store_free(ls->inner); /* its callbacks run now: ours only count */
    for (size_t i = 0; i < SLOTS; i++)
        free(ls->slots[i].key);
    free(ls->slots);
    while ((w = ls->free_checks) != NULL) {
        ls->free_checks = w->next;
        wcheck_destroy(w);
    }
    event_free(ls->sweep);
    event_free(ls->return_timer);
    free(ls);
}

/* Every give-back answered (or the wait over): the drain goes on, or the
 * freed store goes. */
static void
returned(struct lease_store *ls)
{
    void (*cb)(void *) = ls->returned_cb;

    evtimer_del(ls->return_timer);
    ls->returned_cb = NULL;
    if (cb != NULL)
        cb(ls->returned_arg);
    if (ls->is_freeing)
        ls->is_destroy_wanted = true;
}

static void
maybe_returned(struct lease_store *ls)
{
    if (ls->is_returning && !ls->is_destroying && ls->nops == 0
        && (ls->returned_cb != NULL || ls->is_freeing))
        returned(ls);
}

static void
on_return_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lease_store *ls = arg;

    (void)fd;
    (void)what;
    enter(ls);
    returned(ls);
    leave(ls);
}

/* Gives every block back; true when something is out to wait for. */
static bool
return_all(struct lease_store *ls)
{
    struct timeval tv = sl_timeval_from_ms(RETURN_MAX_MS);

    ls->is_returning = true;
    for (size_t i = 0; i < SLOTS; i++) {
        struct entry *e = &ls->slots[i];
        if (e->key != NULL && (e->balance > 0 || e->expiry_us != 0) && !e->is_op) {
            give_back(ls, e);
        } else if (e->is_op && e->is_taking) {
            e->is_give_after = true;
        }
    }
    if (ls->nops == 0)
        return false;
    evtimer_add(ls->return_timer, &tv);
    return true;
}

static void
lease_free(struct sl_store *store)
{
    struct lease_store *ls = (struct lease_store *)store;
    struct wcheck *w;

    if (ls->is_freeing)
        return;
    enter(ls);
    event_del(ls->sweep);
    /* the limiter going away wants its checks answered now */
    for (w = ls->pending; w != NULL; w = w->next) {
        w->is_detached = true;
        undo_local(w);
        w->cb(w->arg, SL_STORE_CONNECTION, false, NULL, 0);
    }
    ls->is_freeing = true;
    /* with the loop stopped (the end of the process) no reply would come */
    if (event_base_got_exit(ls->evbase) || event_base_got_break(ls->evbase)
        || !return_all(ls))
        ls->is_destroy_wanted = true;
    leave(ls);
}

static bool
lease_is_up(const struct sl_store *store)
{
    const struct lease_store *ls = (const struct lease_store *)store;

    return ls->inner->ops->is_up(ls->inner);
}

static void
lease_stats(const struct sl_store *store, struct sl_store_stats *stats)
{
    const struct lease_store *ls = (const struct lease_store *)store;

    sl_store_get_stats(ls->inner, stats);
}

static void
lease_reset(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb, void *arg)
{
    struct lease_store *ls = (struct lease_store *)store;

    sl_store_reset(ls->inner, key, key_len, cb, arg);
}

static const struct sl_store_ops lease_ops = {
    .name = "redis",
    .check = lease_check,
    .is_up = lease_is_up,
    .free = lease_free,
    .stats = lease_stats,
    .reset = lease_reset,
};

/* ---- the limiter's side ----------------------------------------------------------- */

static void
make_holder(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        uint64_t x = sl_clock_now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof(r); i++, x = x * 6364136223846793005ULL + 1)
            r[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < sizeof(r); i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

struct sl_store *
sl_lease_store_wrap(struct sl_store *inner, const struct sl_config *cfg,
                    struct event_base *base)
{
    struct lease_store *ls;
    struct timeval tv;
    bool is_any = false;

    for (size_t i = 0; i < cfg->nlimits; i++)
        is_any = is_any || cfg->limits[i].is_leased;
    if (!is_any || inner == NULL || inner->ops->lease == NULL || base == NULL)
        return inner;
    ls = sl_xcalloc(1, sizeof(*ls));
    ls->base.ops = &lease_ops;
    ls->inner = inner;
    ls->evbase = base;
    ls->ttl_us = cfg->store.lease_ttl_ms * 1000;
    ls->max_share = cfg->store.lease_max_share;
    ls->rtt_us = RTT_INIT_US;
    make_holder(ls->holder);
    ls->slots = sl_xcalloc(SLOTS, sizeof(*ls->slots));
    for (size_t i = 0; i < SLOTS; i++)
        ls->slots[i].ls = ls;
    ls->sweep = event_new(base, -1, EV_PERSIST, on_sweep, ls);
    ls->return_timer = evtimer_new(base, on_return_timeout, ls);
    if (ls->sweep == NULL || ls->return_timer == NULL)
        sl_fatalx("leases: cannot create timers");
    tv = sl_timeval_from_ms(cfg->store.lease_ttl_ms / 5 > 0 ? cfg->store.lease_ttl_ms / 5 : 1);
    event_add(ls->sweep, &tv);
    return &ls->base;
}

struct sl_store *
sl_lease_store_inner(struct sl_store *store)
{
    return store != NULL && store->ops == &lease_ops ? ((struct lease_store *)store)->inner
                                                      : store;
}

void
sl_lease_store_set_metrics(struct sl_store *store, struct sl_metrics_worker *metrics)
{
    if (store != NULL && store->ops == &lease_ops)
        ((struct lease_store *)store)->metrics = metrics;
}

static void
store_return_leases(struct sl_store *store, void (*cb)(void *arg), void *arg)
{
    struct lease_store *ls;

    if (store == NULL || store->ops != &lease_ops) {
        cb(arg);
        return;
    }
    ls = (struct lease_store *)store;
    if (ls->returned_cb != NULL) {
        /* one drain at a time; a second caller is told at once */
        cb(arg);
        return;
    }
    ls->returned_cb = cb;
    ls->returned_arg = arg;
    enter(ls);
    if (!return_all(ls))
        returned(ls);
    leave(ls);
}

void
sl_limiter_return_leases(struct sl_limiter *limiter, void (*cb)(void *arg), void *arg)
{
    store_return_leases(limiter != NULL ? sl_limiter_store(limiter) : NULL, cb, arg);
}
