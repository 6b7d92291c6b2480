/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The response cache's store (include/sluice/cache.h): sharded hash tables
 * with an LRU list each, a TinyLFU admission sketch per shard, claims for
 * request collapsing, and the process's registry of stores by route. No
 * HTTP here: src/phase_cache.c decides what goes in and comes out.
 */
#include "sluice/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/siphash.h"

#define SKETCH_ROWS 4
#define SKETCH_MAX 15     /* 4-bit counters, kept in bytes for speed */
#define SKETCH_SAMPLE 10  /* halve every SKETCH_SAMPLE x entries counts (the paper's W) */
#define ENTRY_OVERHEAD 64 /* allocator headers and the hash slot, roughly */

struct entry {
    struct entry *hnext;
    struct entry *prev, *next; /* LRU: shard->lru.next is the most recent */
    uint64_t hash;
    struct sl_cache_obj *obj;
    size_t charge;
    size_t key_len;
    char key[];
};

struct claim {
    struct claim *next;
    uint64_t hash;
    uint64_t since_us;
    size_t key_len;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct entry **slots;
    size_t nslots; /* a power of two */
    size_t count;
    struct entry lru; /* sentinel */
    uint64_t bytes, max_bytes;
    uint8_t *sketch; /* SKETCH_ROWS rows of `width` counters */
    size_t width;    /* a power of two */
    uint64_t sketch_adds;
    struct claim *claims;
    uint64_t evictions, refused;
};

struct sl_cache {
    _Atomic uint64_t events[SL_CACHE_NEVENTS];
    unsigned nshards;
    uint64_t k0, k1; /* the hash key: clients cannot aim URLs at one shard */
    uint64_t max_memory;
    struct shard *shards;
};

/* ---- objects ------------------------------------------------------------- */

struct sl_cache_obj *
sl_cache_obj_new(void)
{
    struct sl_cache_obj *obj = sl_xcalloc(1, sizeof(*obj));

    atomic_init(&obj->refs, 1);
    obj->last_modified_s = -1;
    return obj;
}

struct sl_cache_obj *
sl_cache_obj_ref(struct sl_cache_obj *obj)
{
    atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
    return obj;
}

void
sl_cache_obj_unref(struct sl_cache_obj *obj)
{
    if (obj == NULL)
        return;
    if (atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(obj->head);
    free(obj->body);
    free(obj->vary);
    free(obj);
}

bool
sl_cache_obj_append(struct sl_cache_obj *obj, const char *at, size_t len, size_t max)
{
    if (len > max || obj->body_len > max - len)
        return false;
    if (obj->body_len + len > obj->body_cap) {
        size_t cap = obj->body_cap ? obj->body_cap * 2 : 4096;
        while (cap < obj->body_len + len)
            cap *= 2;
        if (cap > max)
            cap = max;
        obj->body = sl_xrealloc(obj->body, cap);
        obj->body_cap = cap;
    }
    memcpy(obj->body + obj->body_len, at, len);
    obj->body_len += len;
    return true;
}

uint64_t
sl_cache_obj_age_s(const struct sl_cache_obj *obj, uint64_t now_us)
{
    return now_us > obj->stored_us ? (now_us - obj->stored_us) / 1000000u : 0;
}

static size_t
obj_charge(const struct sl_cache_obj *obj, size_t key_len)
{
    return sizeof(struct entry) + key_len + sizeof(*obj) + obj->head_len + obj->body_cap
        + obj->vary_len + 3 * ENTRY_OVERHEAD;
}

/* ---- the admission sketch -------------------------------------------------- */

static size_t
sketch_index(const struct shard *s, uint64_t hash, unsigned row)
{
    /* double hashing over one 64-bit hash: rows independent enough */
    uint64_t h2 = (hash >> 32) | 1;

    return row * s->width + (size_t)((hash + row * h2 * 0x9e3779b97f4a7c15ULL) & (s->width - 1));
}

static void
sketch_add(struct shard *s, uint64_t hash)
{
    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        uint8_t *c = &s->sketch[sketch_index(s, hash, r)];
        if (*c < SKETCH_MAX)
            (*c)++;
    }
    /* Aging: halving every counter keeps the sketch about the recent past,
     * so a key hot yesterday does not block today's. The period is W = 10
     * times the entries held, as in the paper: long enough to tell hot from
     * cold, short enough that one-time keys do not fill the counters. */
    if (++s->sketch_adds >= SKETCH_SAMPLE * (uint64_t)(s->count > 64 ? s->count : 64)) {
        for (size_t i = 0; i < SKETCH_ROWS * s->width; i++)
            s->sketch[i] >>= 1;
        s->sketch_adds = 0;
    }
}

static unsigned
sketch_estimate(const struct shard *s, uint64_t hash)
{
    unsigned min = SKETCH_MAX;

    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        unsigned c = s->sketch[sketch_index(s, hash, r)];
        if (c < min)
            min = c;
    }
    return min;
}

/* ---- shards ---------------------------------------------------------------- */

static size_t
pow2_at_least(size_t n)
{
    size_t p = 1;

    while (p < n)
        p <<= 1;
    return p;
}

/* A row of counters per ~128 bytes of room: several per entry, whatever
 * their size, so that the counters stay sparse over a period (the sketch
 * is 1/32 of max_memory at most, outside of it). */
static size_t
sketch_width(uint64_t max_bytes)
{
    uint64_t n = max_bytes / 128;

    if (n < 1024)
        n = 1024;
    if (n > (1u << 18))
        n = 1u << 18;
    return pow2_at_least((size_t)n);
}

static void
shard_init(struct shard *s, uint64_t max_bytes)
{
    pthread_mutex_init(&s->lock, NULL);
    s->nslots = 64;
    s->slots = sl_xcalloc(s->nslots, sizeof(*s->slots));
    s->lru.next = s->lru.prev = &s->lru;
    s->max_bytes = max_bytes;
    s->width = sketch_width(max_bytes);
    s->sketch = sl_xcalloc(SKETCH_ROWS, s->width);
}

static struct entry **
find_slot(struct shard *s, uint64_t hash, const char *key, size_t key_len)
{
    struct entry **p = &s->slots[hash & (s->nslots - 1)];

    for (; *p != NULL; p = &(*p)->hnext) {
        if ((*p)->hash == hash && (*p)->key_len == key_len
            && memcmp((*p)->key, key, key_len) == 0)
            break;
    }
    return p;
}

static void
lru_unlink(struct entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void
lru_push_front(struct shard *s, struct entry *e)
{
    e->next = s->lru.next;
    e->prev = &s->lru;
    s->lru.next->prev = e;
    s->lru.next = e;
}

static void
entry_remove(struct shard *s, struct entry *e)
{
    struct entry **p = find_slot(s, e->hash, e->key, e->key_len);

    *p = e->hnext;
    lru_unlink(e);
    s->count--;
    s->bytes -= e->charge;
    sl_cache_obj_unref(e->obj);
    free(e);
}

static void
grow(struct shard *s)
{
    size_t n = s->nslots * 2;
    struct entry **slots = sl_xcalloc(n, sizeof(*slots));

    for (size_t i = 0; i < s->nslots; i++) {
        struct entry *e = s->slots[i];
        while (e != NULL) {
            struct entry *next = e->hnext;
            e->hnext = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = n;
}

static void
shard_fini(struct shard *s)
{
    while (s->lru.next != &s->lru)
        entry_remove(s, s->lru.next);
    while (s->claims != NULL) {
        struct claim *c = s->claims;
        s->claims = c->next;
        free(c);
    }
    free(s->slots);
    free(s->sketch);
    pthread_mutex_destroy(&s->lock);
}

/* ---- the store ---------------------------------------------------------------- */

struct sl_cache *
sl_cache_new(uint64_t max_memory, unsigned nshards)
{
    struct sl_cache *cache = sl_xcalloc(1, sizeof(*cache));
    uint64_t k[2];

    /* 16: little contention for the workers of one process, and a shard's
     * share stays large next to max_object (config_cache.c checks 1/64) */
    if (nshards == 0)
        nshards = 16;
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
        k[0] = (uint64_t)(uintptr_t)cache * 0x9e3779b97f4a7c15ULL;
        k[1] = (uint64_t)getpid();
    }
    cache->k0 = k[0];
    cache->k1 = k[1];
    cache->nshards = (unsigned)pow2_at_least(nshards);
    cache->max_memory = max_memory;
    cache->shards = sl_xcalloc(cache->nshards, sizeof(*cache->shards));
    for (unsigned i = 0; i < cache->nshards; i++)
        shard_init(&cache->shards[i], max_memory / cache->nshards);
    return cache;
}

void
sl_cache_free(struct sl_cache *cache)
{
    if (cache == NULL)
        return;
    for (unsigned i = 0; i < cache->nshards; i++)
        shard_fini(&cache->shards[i]);
    free(cache->shards);
    free(cache);
}

static uint64_t
hash_key(const struct sl_cache *cache, const char *key, size_t key_len)
{
    return sl_siphash24(cache->k0, cache->k1, key, key_len);
}

/* Variants of a key are stored under key '\0' ...: they land in the shard
 * of the key itself, so that one shard holds a key and all its variants. */
static uint64_t
shard_hash(const struct sl_cache *cache, const char *key, size_t key_len)
{
    const char *nul = memchr(key, '\0', key_len);

    return hash_key(cache, key, nul != NULL ? (size_t)(nul - key) : key_len);
}

static struct shard *
shard_of(struct sl_cache *cache, uint64_t shash)
{
    return &cache->shards[(shash >> 40) & (cache->nshards - 1)];
}

struct sl_cache_obj *
sl_cache_lookup(struct sl_cache *cache, const char *key, size_t key_len, bool is_counted)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));
    struct sl_cache_obj *obj = NULL;
    struct entry *e;

    pthread_mutex_lock(&s->lock);
    if (is_counted)
        sketch_add(s, hash);
    e = *find_slot(s, hash, key, key_len);
    if (e != NULL) {
        if (is_counted) {
            lru_unlink(e);
            lru_push_front(s, e);
        }
        obj = sl_cache_obj_ref(e->obj);
    }
    pthread_mutex_unlock(&s->lock);
    return obj;
}

/*
 * Can `need` more bytes come in? Walks the LRU from its cold end for the
 * entries that would go: each must have been asked for less often than the
 * newcomer (TinyLFU's duel, against every victim). `keep` is never a victim
 * (the entry being replaced). Nothing is evicted here.
 */
static bool
admit(struct shard *s, uint64_t hash, uint64_t need, const struct entry *keep)
{
    unsigned freq = sketch_estimate(s, hash);
    uint64_t freed = 0;

    for (struct entry *e = s->lru.prev; e != &s->lru && s->bytes + need - freed > s->max_bytes;
         e = e->prev) {
        if (e == keep)
            continue;
        if (sketch_estimate(s, e->hash) >= freq)
            return false;
        freed += e->charge;
    }
    return s->bytes + need - freed <= s->max_bytes;
}

static void
evict_for(struct shard *s, uint64_t need, const struct entry *keep)
{
    struct entry *e = s->lru.prev;

    while (e != &s->lru && s->bytes + need > s->max_bytes) {
        struct entry *prev = e->prev;
        if (e != keep) {
            entry_remove(s, e);
            s->evictions++;
        }
        e = prev;
    }
}

enum sl_cache_insert_result
sl_cache_insert(struct sl_cache *cache, const char *key, size_t key_len, struct sl_cache_obj *obj)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));
    struct entry *old, *e;
    uint64_t need;
    size_t charge;

    /* the room a streamed body grew into, given back while the object is
     * still the caller's alone */
    if (obj->body_cap > obj->body_len && atomic_load(&obj->refs) == 1) {
        obj->body = obj->body_len ? sl_xrealloc(obj->body, obj->body_len) : obj->body;
        obj->body_cap = obj->body_len ? obj->body_len : obj->body_cap;
    }
    charge = obj_charge(obj, key_len);
    obj->charge = charge;

    pthread_mutex_lock(&s->lock);
    if (charge > s->max_bytes) {
        pthread_mutex_unlock(&s->lock);
        return SL_CACHE_TOO_LARGE;
    }
    old = *find_slot(s, hash, key, key_len);
    /* the replaced entry's bytes come back, the rest must be made room for */
    need = old != NULL && old->charge >= charge ? 0 : charge - (old ? old->charge : 0);
    if (s->bytes + need > s->max_bytes && !admit(s, hash, need, old)) {
        s->refused++;
        if (old != NULL)
            entry_remove(s, old); /* its newer version was refused: the old one is done */
        pthread_mutex_unlock(&s->lock);
        return SL_CACHE_REFUSED;
    }
    if (old != NULL)
        entry_remove(s, old);
    evict_for(s, charge, NULL);
    e = sl_xmalloc(sizeof(*e) + key_len);
    e->hash = hash;
    e->obj = sl_cache_obj_ref(obj);
    e->charge = charge;
    e->key_len = key_len;
    memcpy(e->key, key, key_len);
    if (s->count >= s->nslots)
        grow(s);
    e->hnext = s->slots[hash & (s->nslots - 1)];
    s->slots[hash & (s->nslots - 1)] = e;
    lru_push_front(s, e);
    s->count++;
    s->bytes += charge;
    pthread_mutex_unlock(&s->lock);
    return SL_CACHE_STORED;
}

void
sl_cache_remove(struct sl_cache *cache, const char *key, size_t key_len,
                const struct sl_cache_obj *obj)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));
    struct entry *e;

    pthread_mutex_lock(&s->lock);
    e = *find_slot(s, hash, key, key_len);
    if (e != NULL && (obj == NULL || e->obj == obj))
        entry_remove(s, e);
    pthread_mutex_unlock(&s->lock);
}

static bool
purge_match(const struct entry *e, const char *key, size_t key_len, bool is_prefix)
{
    if (e->key_len < key_len || memcmp(e->key, key, key_len) != 0)
        return false;
    return is_prefix || e->key_len == key_len || e->key[key_len] == '\0';
}

size_t
sl_cache_purge(struct sl_cache *cache, const char *key, size_t key_len, bool is_prefix)
{
    size_t n = 0;

    for (unsigned i = 0; i < cache->nshards; i++) {
        struct shard *s = &cache->shards[i];
        pthread_mutex_lock(&s->lock);
        for (struct entry *e = s->lru.next; e != &s->lru;) {
            struct entry *next = e->next;
            if (purge_match(e, key, key_len, is_prefix)) {
                entry_remove(s, e);
                n++;
            }
            e = next;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

bool
sl_cache_claim(struct sl_cache *cache, const char *key, size_t key_len, uint64_t now_us,
               uint64_t hold_us)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));
    struct claim *c;
    bool is_mine = true;

    pthread_mutex_lock(&s->lock);
    for (c = s->claims; c != NULL; c = c->next) {
        if (c->hash == hash && c->key_len == key_len && memcmp(c->key, key, key_len) == 0)
            break;
    }
    if (c != NULL && now_us - c->since_us < hold_us) {
        is_mine = false;
    } else if (c != NULL) {
        c->since_us = now_us; /* the holder is presumed gone: taken over */
    } else {
        c = sl_xmalloc(sizeof(*c) + key_len);
        c->hash = hash;
        c->since_us = now_us;
        c->key_len = key_len;
        memcpy(c->key, key, key_len);
        c->next = s->claims;
        s->claims = c;
    }
    pthread_mutex_unlock(&s->lock);
    return is_mine;
}

bool
sl_cache_is_claimed(struct sl_cache *cache, const char *key, size_t key_len, uint64_t now_us,
                    uint64_t hold_us)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));
    bool is_claimed = false;

    pthread_mutex_lock(&s->lock);
    for (struct claim *c = s->claims; c != NULL; c = c->next) {
        if (c->hash == hash && c->key_len == key_len && memcmp(c->key, key, key_len) == 0) {
            is_claimed = now_us - c->since_us < hold_us;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return is_claimed;
}

void
sl_cache_count(struct sl_cache *cache, enum sl_cache_event ev)
{
    atomic_fetch_add_explicit(&cache->events[ev], 1, memory_order_relaxed);
}

void
sl_cache_release(struct sl_cache *cache, const char *key, size_t key_len)
{
    uint64_t hash = hash_key(cache, key, key_len);
    struct shard *s = shard_of(cache, shard_hash(cache, key, key_len));

    pthread_mutex_lock(&s->lock);
    for (struct claim **p = &s->claims; *p != NULL; p = &(*p)->next) {
        struct claim *c = *p;
        if (c->hash == hash && c->key_len == key_len && memcmp(c->key, key, key_len) == 0) {
            *p = c->next;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void
sl_cache_stats(struct sl_cache *cache, struct sl_cache_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->max_memory = cache->max_memory;
    for (unsigned i = 0; i < SL_CACHE_NEVENTS; i++)
        st->events[i] = atomic_load_explicit(&cache->events[i], memory_order_relaxed);
    for (unsigned i = 0; i < cache->nshards; i++) {
        struct shard *s = &cache->shards[i];
        pthread_mutex_lock(&s->lock);
        st->bytes += s->bytes;
        st->entries += s->count;
        st->evictions += s->evictions;
        st->refused += s->refused;
        pthread_mutex_unlock(&s->lock);
    }
}

void
sl_cache_set_max_memory(struct sl_cache *cache, uint64_t max_memory)
{
    cache->max_memory = max_memory;
    for (unsigned i = 0; i < cache->nshards; i++) {
        struct shard *s = &cache->shards[i];
        pthread_mutex_lock(&s->lock);
        s->max_bytes = max_memory / cache->nshards;
        evict_for(s, 0, NULL);
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---- the registry ---------------------------------------------------------------- */

struct reg {
    struct reg *next;
    char *name;
    unsigned refs;
    struct sl_cache *cache;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;

struct sl_cache *
sl_cache_get(const char *name, uint64_t max_memory)
{
    struct reg *r;

    pthread_mutex_lock(&reg_lock);
    for (r = regs; r != NULL && strcmp(r->name, name) != 0; r = r->next)
        ;
    if (r == NULL) {
        r = sl_xcalloc(1, sizeof(*r));
        r->name = sl_xstrdup(name);
        r->cache = sl_cache_new(max_memory, 0);
        r->next = regs;
        regs = r;
    } else if (r->cache->max_memory != max_memory) {
        sl_cache_set_max_memory(r->cache, max_memory);
    }
    r->refs++;
    pthread_mutex_unlock(&reg_lock);
    return r->cache;
}

void
sl_cache_put(struct sl_cache *cache)
{
    struct reg **p, *r = NULL;

    if (cache == NULL)
        return;
    pthread_mutex_lock(&reg_lock);
    for (p = &regs; *p != NULL; p = &(*p)->next) {
        if ((*p)->cache == cache) {
            r = *p;
            if (--r->refs == 0)
                *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (r != NULL && r->refs == 0) {
        sl_cache_free(r->cache);
        free(r->name);
        free(r);
    }
}

size_t
sl_cache_purge_all(const char *key, size_t key_len, bool is_prefix)
{
    size_t n = 0;

    pthread_mutex_lock(&reg_lock);
    for (struct reg *r = regs; r != NULL; r = r->next)
        n += sl_cache_purge(r->cache, key, key_len, is_prefix);
    pthread_mutex_unlock(&reg_lock);
    return n;
}

void
sl_cache_each(void (*fn)(void *arg, const char *name, struct sl_cache *cache), void *arg)
{
    pthread_mutex_lock(&reg_lock);
    for (struct reg *r = regs; r != NULL; r = r->next)
        fn(arg, r->name, r->cache);
    pthread_mutex_unlock(&reg_lock);
}
