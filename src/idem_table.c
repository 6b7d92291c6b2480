/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The embedded idempotency table: one per process, shared by the workers
 * under one mutex (a claim is a few hundred nanoseconds of work per
 * non-idempotent request, far from the limiter's hot path). Chained hash
 * buckets keyed with SipHash, plus an age list for eviction. Memory is
 * bounded in bytes: when an entry does not fit, expired entries go, then
 * the oldest completed records. Claims are never evicted: evicting one would
 * let a retry of a request in flight run twice, the one thing this table is
 * for; they are bounded by the requests in flight anyway.
 */
#include "sluice/idem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/siphash.h"

#define INITIAL_BUCKETS 1024u

struct entry {
    struct entry *chain;             /* same bucket */
    struct entry *older, *newer;     /* age list, by last write */
    uint64_t hash;
    uint64_t expires_ms;
    const struct sl_idem_record *record; /* NULL: a claim */
    uint8_t token[SL_IDEM_TOKEN_LEN];
    size_t key_len;
    char key[];
};

struct sl_idem_table {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets;
    size_t nentries;
    size_t bytes, max_bytes;
    struct entry *oldest, *newest;
    uint64_t k0, k1;
};

struct sl_idem_record *
sl_idem_record_new(size_t len)
{
    struct sl_idem_record *r = sl_xcalloc(1, sizeof(*r) + len);

    atomic_init(&r->refs, 1);
    r->len = len;
    return r;
}

const struct sl_idem_record *
sl_idem_record_get(const struct sl_idem_record *record)
{
    struct sl_idem_record *r = (struct sl_idem_record *)(uintptr_t)record;

    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return record;
}

void
sl_idem_record_put(const struct sl_idem_record *record)
{
    struct sl_idem_record *r = (struct sl_idem_record *)(uintptr_t)record;

    if (r != NULL && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        free(r);
}

struct sl_idem_table *
sl_idem_table_new(size_t max_bytes)
{
    struct sl_idem_table *t = sl_xcalloc(1, sizeof(*t));
    uint64_t key[2];

    pthread_mutex_init(&t->lock, NULL);
    t->nbuckets = INITIAL_BUCKETS;
    t->buckets = sl_xcalloc(t->nbuckets, sizeof(*t->buckets));
    t->max_bytes = max_bytes;
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        /* no entropy source: still distinct per process, just guessable */
        key[0] = sl_clock_now_us() ^ ((uint64_t)getpid() << 32);
        key[1] = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
    }
    t->k0 = key[0];
    t->k1 = key[1];
    return t;
}

static size_t
entry_bytes(const struct entry *e)
{
    return sizeof(*e) + e->key_len + (e->record != NULL ? sizeof(*e->record) + e->record->len : 0);
}

static void
age_unlink(struct sl_idem_table *t, struct entry *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    e->older = e->newer = NULL;
}

static void
age_push(struct sl_idem_table *t, struct entry *e)
{
    e->older = t->newest;
    e->newer = NULL;
    if (t->newest != NULL)
        t->newest->newer = e;
    else
        t->oldest = e;
    t->newest = e;
}

static void
entry_remove(struct sl_idem_table *t, struct entry *e)
{
    struct entry **at = &t->buckets[e->hash & (t->nbuckets - 1)];

    while (*at != e)
        at = &(*at)->chain;
    *at = e->chain;
    age_unlink(t, e);
    t->bytes -= entry_bytes(e);
    t->nentries--;
    sl_idem_record_put(e->record);
    free(e);
}

void
sl_idem_table_free(struct sl_idem_table *t)
{
    if (t == NULL)
        return;
    while (t->oldest != NULL)
        entry_remove(t, t->oldest);
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct entry *
lookup(struct sl_idem_table *t, const char *key, size_t key_len, uint64_t hash)
{
    struct entry *e = t->buckets[hash & (t->nbuckets - 1)];

    for (; e != NULL; e = e->chain) {
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            break;
    }
    if (e != NULL && e->expires_ms <= sl_clock_now_us() / 1000) {
        entry_remove(t, e);
        return NULL;
    }
    return e;
}

static void
grow(struct sl_idem_table *t)
{
    size_t n = t->nbuckets * 2;
    struct entry **b = sl_xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* Room for `need` more bytes: expired entries first, then the oldest
 * records. False when only claims are left. */
static bool
make_room(struct sl_idem_table *t, size_t need)
{
    uint64_t now_ms = sl_clock_now_us() / 1000;
    struct entry *e = t->oldest;

    while (e != NULL && t->bytes + need > t->max_bytes) {
        struct entry *newer = e->newer;
        if (e->expires_ms <= now_ms)
            entry_remove(t, e);
        e = newer;
    }
    for (e = t->oldest; e != NULL && t->bytes + need > t->max_bytes;) {
        struct entry *newer = e->newer;
        if (e->record != NULL)
            entry_remove(t, e);
        e = newer;
    }
    return t->bytes + need <= t->max_bytes;
}

static enum sl_idem_result
claim_locked(struct sl_idem_table *t, const char *key, size_t key_len, const uint8_t *token,
             uint64_t lock_ms, const struct sl_idem_record **record)
{
    uint64_t hash = sl_siphash24(t->k0, t->k1, key, key_len);
    struct entry *e = lookup(t, key, key_len, hash);

    if (e != NULL && e->record == NULL)
        return SL_IDEM_IN_FLIGHT;
    if (e != NULL) {
        *record = sl_idem_record_get(e->record);
        return SL_IDEM_DONE;
    }
    if (!make_room(t, sizeof(*e) + key_len))
        return SL_IDEM_FULL;
    e = sl_xcalloc(1, sizeof(*e) + key_len);
    e->hash = hash;
    e->expires_ms = sl_clock_now_us() / 1000 + lock_ms;
    memcpy(e->token, token, SL_IDEM_TOKEN_LEN);
    e->key_len = key_len;
    memcpy(e->key, key, key_len);
    if (t->nentries >= t->nbuckets)
        grow(t);
    e->chain = t->buckets[hash & (t->nbuckets - 1)];
    t->buckets[hash & (t->nbuckets - 1)] = e;
    age_push(t, e);
    t->bytes += entry_bytes(e);
    t->nentries++;
    return SL_IDEM_CLAIMED;
}

enum sl_idem_result
sl_idem_table_claim(struct sl_idem_table *t, const char *key, size_t key_len,
                    const uint8_t *token, uint64_t lock_ms, const struct sl_idem_record **record)
{
    enum sl_idem_result r;

    *record = NULL;
    pthread_mutex_lock(&t->lock);
    r = claim_locked(t, key, key_len, token, lock_ms, record);
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* The live claim of `token` on key, or NULL. */
static struct entry *
own_claim(struct sl_idem_table *t, const char *key, size_t key_len, const uint8_t *token)
{
    uint64_t hash = sl_siphash24(t->k0, t->k1, key, key_len);
    struct entry *e = lookup(t, key, key_len, hash);

    if (e == NULL || e->record != NULL || memcmp(e->token, token, SL_IDEM_TOKEN_LEN) != 0)
        return NULL;
    return e;
}

bool
sl_idem_table_complete(struct sl_idem_table *t, const char *key, size_t key_len,
                       const uint8_t *token, const uint8_t *fingerprint, const char *response,
                       size_t len, uint64_t ttl_ms)
{
    struct sl_idem_record *r;
    struct entry *e;
    bool ok = false;

    pthread_mutex_lock(&t->lock);
    e = own_claim(t, key, key_len, token);
    if (e != NULL) {
        /* the claim's own bytes are counted already; age it out of the way
         * of make_room, which must not take it */
        age_unlink(t, e);
        age_push(t, e);
        ok = make_room(t, sizeof(*r) + len);
    }
    if (ok) {
        r = sl_idem_record_new(len);
        memcpy(r->fingerprint, fingerprint, SL_SHA256_LEN);
        memcpy(r->response, response, len);
        e->record = r;
        e->expires_ms = sl_clock_now_us() / 1000 + ttl_ms;
        t->bytes += sizeof(*r) + len;
    } else if (e != NULL) {
        entry_remove(t, e); /* no room to remember it: the client may retry */
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

void
sl_idem_table_release(struct sl_idem_table *t, const char *key, size_t key_len,
                      const uint8_t *token)
{
    struct entry *e;

    pthread_mutex_lock(&t->lock);
    e = own_claim(t, key, key_len, token);
    if (e != NULL)
        entry_remove(t, e);
    pthread_mutex_unlock(&t->lock);
}

void
sl_idem_table_usage(struct sl_idem_table *t, size_t *entries, size_t *bytes)
{
    pthread_mutex_lock(&t->lock);
    *entries = t->nentries;
    *bytes = t->bytes;
    pthread_mutex_unlock(&t->lock);
}
