/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Rate-limit policy. For each request: build the key of every limit of the
 * route from the request (absent key: the limit does not apply), check all
 * enforced buckets in one store call (all or nothing), then the shadow ones
 * in a second call when the first admitted, and turn the store's answer into
 * a verdict, the RateLimit header fields and a problem+json body.
 *
 * The store decides; this file never counts tokens. Store failures follow
 * cfg->store.on_error. Checks come from a per-limiter free list with their
 * buffers sized at creation, so the request path does not allocate once the
 * list has grown to the worker's concurrency.
 */
#include "sluice/limiter.h"

#include <arpa/inet.h>
#include <assert.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limiter_int.h"
#include "reqfield.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/idem.h"
#include "sluice/log.h"
#include "sluice/lua_rt.h"
#include "sluice/metrics.h"
#include "sluice/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/sha256.h"
#include "util/text.h"

/* Escaped key values longer than this are replaced by '#' and their SHA-256. */
#define VALUE_MAX 128
#define FUNCTION_LOG_INTERVAL_US (10u * 1000000u)
/* An outage ends with the first answer this long after the last failure: a
 * store that fails every other call is one outage, not a line per flip. */
#define RECOVERY_US (1000u * 1000u)

/* What happened to one request: the words of sl_decision.outcome. */
enum outcome {
    OUTCOME_ADMITTED,
    OUTCOME_LIMITED,
    OUTCOME_SHADOW_LIMITED,
    OUTCOME_STORE_ERROR,
    OUTCOME_NONE,
    OUTCOME_DELAYED,
    OUTCOME_COUNT
};

/* ---- key values ---------------------------------------------------------- */

/*
 * A key value is written into a fixed slot of VALUE_MAX bytes. Past that the
 * value is hashed instead: what was written so far and everything after it
 * goes into SHA-256, and the slot ends up holding "#" and 64 hex digits.
 * '#' is always escaped in plain values, so a hashed value never equals a
 * plain one.
 */
struct sink {
    char *buf;
    size_t len;
    bool is_hashing;
    struct sl_sha256 sha;
};

static void
sink_put(struct sink *s, const char *p, size_t n)
{
    if (!s->is_hashing) {
        if (s->len + n <= VALUE_MAX) {
            memcpy(s->buf + s->len, p, n);
            s->len += n;
            return;
        }
        sl_sha256_init(&s->sha);
        sl_sha256_update(&s->sha, s->buf, s->len);
        s->is_hashing = true;
    }
    sl_sha256_update(&s->sha, p, n);
}

static void
sink_finish(struct sink *s)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[SL_SHA256_LEN];

    if (!s->is_hashing)
        return;
    sl_sha256_final(&s->sha, digest);
    s->buf[0] = '#';
    for (int i = 0; i < 32; i++) {
        s->buf[1 + 2 * i] = hex[digest[i] >> 4];
        s->buf[2 + 2 * i] = hex[digest[i] & 15];
    }
    s->len = 65;
}

/*
 * ':' separates prefix, limit name and the parts of a composite value, '%'
 * starts an escape, '#' marks a hashed value; '{' and '}' would let a client
 * pick the Redis Cluster hash slot of its keys. Blanks, controls and
 * non-ASCII bytes are escaped so keys read cleanly in redis-cli.
 */
static bool
needs_escape(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || c == '%' || c == ':' || c == '#' || c == '{' || c == '}';
}

static void
escape_into(struct sink *s, const char *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[3];
        if (!needs_escape(c))
            continue;
        sink_put(s, p + run, i - run);
        esc[0] = '%';
        esc[1] = hex[c >> 4];
        esc[2] = hex[c & 15];
        sink_put(s, esc, 3);
        run = i + 1;
    }
    sink_put(s, p + run, len - run);
}

/* ---- the limiter --------------------------------------------------------- */

struct limit_info {
    char *key_prefix; /* "<prefix>:<escaped limit name>:" */
    size_t key_prefix_len;
    char *sf_name;    /* the name as a structured-field String, quotes included */
    size_t sf_name_len;
    char *json_name;  /* the name as a JSON string, quotes included */
    size_t json_name_len;
    char *policy;     /* RateLimit-Policy item: "name";q=Q;w=W */
    size_t policy_len;
    struct sl_log_gate function_log; /* a broken function fails on every request */
};

struct check {
    struct check *next_free;
    struct sl_limiter *limiter;
    const struct sl_route_conf *route;
    sl_limiter_cb *cb;
    void *arg;
    uint64_t start_us;
    uint64_t waited_ms;         /* already spent waiting for tokens (delay) */
    uint64_t call_start_us;     /* the store call in progress */
    uint64_t hash;              /* of the enforced keys and costs (deny cache) */
    struct sl_store *store;     /* where this check's buckets go */
    bool is_fallback;           /* store is the embedded fallback */
    size_t n;                   /* applicable limits: enforced ones, then shadow ones */
    size_t nenforced;
    size_t *limits;             /* [n] index into cfg->limits */
    struct sl_store_bucket *buckets;
    struct sl_store_result *results; /* enforced results, kept for the headers */
    bool *is_refused;
    bool is_shadow_refused;
    char *keys;                 /* n slots of limiter->key_max bytes */
    char *out;                  /* headers, then the problem body */
    size_t out_len;
    struct sl_decision decision;
};

struct sl_limiter_shared {
    struct sl_store_local_table *table;
    struct sl_resolver *resolver; /* the redis store's host name; NULL: looked up at connect */
    atomic_uint nworkers_down; /* limiters whose store is failing */
    atomic_uint_fast64_t resets; /* buckets reset by the bucket API, ever */
    struct sl_idem_table *_Atomic idem; /* made by the first phase to need it */
};

#define SL_IP_KEY_MAX (INET6_ADDRSTRLEN + 4) /* "<IPv6>/128" */

struct sl_limiter {
    const struct sl_config *cfg;
    struct sl_limiter_shared *shared;
    struct sl_store *store;
    struct sl_store *fallback;
    struct sl_lua_rt *rt;
    struct limit_info *info;   /* [ninfo] */
    size_t ninfo;              /* cfg->nlimits, kept: a deferred free outlives cfg */
    size_t max_limits;         /* most limits any route lists */
    size_t key_max;            /* longest full key */
    size_t out_cap;
    struct check *free_checks;
    size_t npending;
    unsigned ncallbacks;       /* decisions being handed out (finish) */
    unsigned ndelayed;         /* DELAY decisions whose wait is not over */
    bool is_free_deferred;     /* sl_limiter_free came from inside one */
    bool is_down;              /* the primary store failed within RECOVERY_US of its last answer */
    uint64_t last_failure_us;  /* of the primary store */
    bool is_freeing;
    struct sl_metrics_worker *metrics; /* NULL: not reported */
    const unsigned *limit_slots;       /* metrics slot of each cfg->limits[i] */
    uint64_t seen_reconnects, seen_noscripts;
    uint64_t seen_evictions;           /* of the one embedded store, primary or fallback */
    struct deny_entry *deny_cache;     /* redis store only; NULL otherwise */
    uint64_t seen_resets;              /* shared->resets when the deny cache was last valid */
    char ip_key[SL_IP_KEY_MAX];        /* an ip key part under ipv6_prefix, while a key is built */
};

/*
 * The deny cache (redis store): a check Redis refused stays refused at least
 * until the refusing bucket with the longest wait has tokens again, since
 * tokens only come back with time and other instances can only take more.
 * Repeating it from the cache therefore never admits more than Redis would:
 * the fleet-wide bound holds, and a hammering client costs Redis nothing
 * until its retry time. Entries are keyed by a 64-bit hash of the check's
 * keys and costs; the wait is counted from when the check was sent, so the
 * entry expires no later than Redis's own answer would change.
 */
#define DENY_CACHE_SIZE 2048u /* per worker, power of two */
#define DENY_CACHE_MAX_BUCKETS 4u

struct deny_entry {
    uint64_t hash;
    uint64_t base_us;  /* when the refused check was sent */
    uint64_t until_us; /* refused for sure until then */
    size_t n;
    struct sl_store_result results[DENY_CACHE_MAX_BUCKETS];
};

static const char *const outcome_names[OUTCOME_COUNT] = {
    "admitted", "limited", "shadow_limited", "store_error", "none", "delayed",
};

static void
count_limit(struct sl_limiter *limiter, size_t limit, enum sl_metrics_limit_result result)
{
    if (limiter->metrics != NULL)
        sl_metrics_limit(limiter->metrics, limiter->limit_slots[limit], result);
}

void
sl_limiter_set_metrics(struct sl_limiter *limiter, struct sl_metrics_worker *metrics,
                       const unsigned *limit_slots)
{
    limiter->metrics = metrics;
    limiter->limit_slots = limit_slots;
    sl_lease_store_set_metrics(limiter->store, metrics);
    sl_metrics_store_state(metrics, limiter->cfg->store.kind == SL_STORE_REDIS
                                        ? SL_METRICS_STATE_REDIS
                                        : SL_METRICS_STATE_LOCAL);
}

/* A store call returned: its latency, its error kind, and what the store
 * counted meanwhile (reconnects, NOSCRIPT reloads, evictions). */
static void
count_store_call(struct sl_limiter *limiter, const struct check *c, enum sl_store_status status)
{
    struct sl_store_stats stats;
    bool is_redis = !c->is_fallback && limiter->cfg->store.kind == SL_STORE_REDIS;

    if (limiter->metrics == NULL)
        return;
    sl_metrics_store_call(limiter->metrics,
                          is_redis ? SL_METRICS_BACKEND_REDIS : SL_METRICS_BACKEND_LOCAL,
                          sl_clock_cached_us() - c->call_start_us);
    if (status == SL_STORE_TIMEOUT)
        sl_metrics_store_error(limiter->metrics, SL_METRICS_STORE_TIMEOUT);
    else if (status == SL_STORE_CONNECTION)
        sl_metrics_store_error(limiter->metrics, SL_METRICS_STORE_CONNECTION);
    else if (status == SL_STORE_REPLY)
        sl_metrics_store_error(limiter->metrics, SL_METRICS_STORE_REPLY);
    sl_store_get_stats(c->store, &stats);
    if (!is_redis) {
        if (stats.evictions > limiter->seen_evictions) {
            sl_metrics_local_store_evictions(limiter->metrics,
                                             stats.evictions - limiter->seen_evictions);
            limiter->seen_evictions = stats.evictions;
        }
        return;
    }
    for (; limiter->seen_reconnects < stats.reconnects; limiter->seen_reconnects++)
        sl_metrics_store_reconnect(limiter->metrics);
    for (; limiter->seen_noscripts < stats.noscript_reloads; limiter->seen_noscripts++)
        sl_metrics_store_noscript(limiter->metrics);
}

static void
store_call(struct check *c, struct sl_store_bucket *buckets, size_t n, sl_store_cb *cb)
{
    c->call_start_us = sl_clock_cached_us();
    sl_store_check(c->store, buckets, n, cb, c);
}

/* ---- bounded output ------------------------------------------------------ */

static void
out_put(struct check *c, const char *p, size_t n)
{
    /* out_cap is computed from the longest names at creation */
    assert(c->out_len + n <= c->limiter->out_cap);
    if (c->out_len + n > c->limiter->out_cap)
        n = c->limiter->out_cap - c->out_len;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* a string literal: its length is known at compile time */
#define OUT_LIT(c, lit) out_put((c), "" lit, sizeof(lit) - 1)

/* Decimal without printf: these fields go on every admitted response. */
static void
out_u64(struct check *c, uint64_t v)
{
    char digits[SL_U64_DEC_MAX];

    out_put(c, digits, sl_u64_dec(v, digits));
}

/* printf into a bounded scratch buffer; returns the length kept. */
static size_t
vfmt(char *tmp, size_t size, const char *fmt, va_list ap)
{
    int n = vsnprintf(tmp, size, fmt, ap);

    if (n <= 0)
        return 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}

/* ---- per-limit texts, built once ------------------------------------------ */

/*
 * A per-limit text (key prefix, quoted names, policy item), built at
 * creation only. Names are at most CONF_MAX_NAME bytes and the prefix 64, so
 * even escaped three times over each text is far below TEXT_MAX; a limiter
 * made from an unchecked conf refuses a name that would pass it.
 */
#define TEXT_MAX 4096

struct text {
    struct sl_buf buf;
    bool is_too_long;
};

static void
text_init(struct text *t)
{
    sl_buf_init(&t->buf, TEXT_MAX);
    t->is_too_long = false;
}

static void
text_put(struct text *t, const char *p, size_t n)
{
    if (sl_buf_append(&t->buf, p, n) == -1)
        t->is_too_long = true;
}

/* The text as a string for the limiter to keep, or NULL when it is too long. */
static char *
text_take(struct text *t, size_t *len)
{
    if (t->is_too_long) {
        sl_buf_fini(&t->buf);
        return NULL;
    }
    return sl_buf_take(&t->buf, len);
}

static void
text_fmt(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_fmt(struct text *t, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = vfmt(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    text_put(t, tmp, n);
}

/* RFC 8941 section 3.3.3: printable ASCII, '"' and '\' escaped. Other bytes
 * cannot appear in an sf-string; they are percent-encoded. */
static void
text_sf_string(struct text *t, const char *s)
{
    text_put(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            text_put(t, "\\", 1);
            text_put(t, s, 1);
        } else if (c < 0x20 || c > 0x7e) {
            text_fmt(t, "%%%02X", c);
        } else {
            text_put(t, s, 1);
        }
    }
    text_put(t, "\"", 1);
}

static void
text_json_string(struct text *t, const char *s)
{
    text_put(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            text_put(t, "\\", 1);
            text_put(t, s, 1);
        } else if (c < 0x20) {
            text_fmt(t, "\\u%04x", c);
        } else {
            text_put(t, s, 1);
        }
    }
    text_put(t, "\"", 1);
}

/*
 * The draft's quota q is over a window of w whole seconds. A limit of `rate`
 * tokens per `per` becomes q = rate and w = per when per is whole seconds;
 * otherwise w is rounded up and q scaled to it (10 per 100ms: q=100;w=1),
 * and w grows until q is at least 1 (1 per 3600s stays q=1;w=3600).
 * The burst is not part of the policy: it only shows in r.
 */
static void
policy_quota(const struct sl_limit_conf *limit, uint64_t *q, uint64_t *w)
{
    double per_s = (double)limit->per_ms / 1000.0;
    double window = ceil(per_s);

    if (window < 1)
        window = 1;
    if (floor(limit->rate * window / per_s + 1e-9) < 1 && limit->rate > 0)
        window = ceil(per_s / limit->rate - 1e-9);
    *w = (uint64_t)window;
    *q = (uint64_t)floor(limit->rate * window / per_s + 1e-9);
}

/* The texts of cfg->limits[i]; -1 when one would pass TEXT_MAX. */
static int
build_info(struct sl_limiter *limiter, size_t i)
{
    const struct sl_limit_conf *limit = &limiter->cfg->limits[i];
    const char *prefix = limiter->cfg->store.prefix != NULL ? limiter->cfg->store.prefix
                                                            : "sluice";
    struct limit_info *info = &limiter->info[i];
    struct text t;
    char slot[VALUE_MAX];
    struct sink s = { .buf = slot };
    uint64_t q, w;

    text_init(&t);
    text_put(&t, prefix, strlen(prefix));
    text_put(&t, ":", 1);
    /* names are escaped like values: "a" + "b:c" and "a:b" + "c" differ */
    escape_into(&s, limit->name, strlen(limit->name));
    sink_finish(&s);
    text_put(&t, slot, s.len);
    text_put(&t, ":", 1);
    info->key_prefix = text_take(&t, &info->key_prefix_len);

    text_init(&t);
    text_sf_string(&t, limit->name);
    info->sf_name = text_take(&t, &info->sf_name_len);

    text_init(&t);
    text_json_string(&t, limit->name);
    info->json_name = text_take(&t, &info->json_name_len);
    if (info->key_prefix == NULL || info->sf_name == NULL || info->json_name == NULL)
        return -1;

    text_init(&t);
    policy_quota(limit, &q, &w);
    text_put(&t, info->sf_name, info->sf_name_len);
    text_fmt(&t, ";q=%llu;w=%llu", (unsigned long long)q, (unsigned long long)w);
    info->policy = text_take(&t, &info->policy_len);
    return info->policy != NULL ? 0 : -1;
}

/* ---- shared ------------------------------------------------------------- */

struct sl_limiter_shared *
sl_limiter_shared_new(size_t max_keys)
{
    struct sl_limiter_shared *shared = sl_xcalloc(1, sizeof(*shared));

    shared->table = sl_store_local_table_new(max_keys);
    atomic_init(&shared->nworkers_down, 0);
    atomic_init(&shared->resets, 0);
    return shared;
}

void
sl_limiter_shared_set_resolver(struct sl_limiter_shared *shared, struct sl_resolver *resolver)
{
    shared->resolver = resolver;
}

void
sl_limiter_shared_note_reset(struct sl_limiter_shared *shared)
{
    if (shared != NULL)
        atomic_fetch_add(&shared->resets, 1);
}

void
sl_limiter_shared_free(struct sl_limiter_shared *shared)
{
    if (shared == NULL)
        return;
    sl_store_local_table_free(shared->table);
    sl_idem_table_free(shared->idem);
    free(shared);
}

/* ---- creation ----------------------------------------------------------- */

struct sl_limiter *
sl_limiter_new(const struct sl_config *cfg, struct event_base *base,
               struct sl_limiter_shared *shared, char *err, size_t err_size)
{
    struct sl_store *store, *fallback = NULL;

    if (cfg->store.kind == SL_STORE_REDIS) {
        store = sl_store_redis_new_resolved(&cfg->store, base, shared->resolver, err, err_size);
        if (store == NULL)
            return NULL;
        store = sl_lease_store_wrap(store, cfg, base);
        if (cfg->store.on_error == SL_ON_ERROR_LOCAL)
            fallback = sl_store_local_new(shared->table);
    } else {
        store = sl_store_local_new(shared->table);
    }
    return sl_limiter_new_with_stores(cfg, store, fallback, shared, err, err_size);
}

static struct sl_limiter *create(const struct sl_config *cfg, struct sl_store *store,
                                 struct sl_store *fallback, struct sl_limiter_shared *shared,
                                 bool is_lookup, char *err, size_t err_size);

struct sl_limiter *
sl_limiter_new_with_stores(const struct sl_config *cfg, struct sl_store *store,
                           struct sl_store *fallback, struct sl_limiter_shared *shared,
                           char *err, size_t err_size)
{
    return create(cfg, store, fallback, shared, false, err, err_size);
}

/* The bucket API's limiter: it is handed key values, so it runs no key or
 * cost function and needs no Lua state; it reports on the store the conf
 * names, so it has no fallback; and it never refuses, so no deny cache. */
struct sl_limiter *
sl_limiter_new_lookup(const struct sl_config *cfg, struct event_base *base,
                      struct sl_limiter_shared *shared, char *err, size_t err_size)
{
    struct sl_store *store;

    if (cfg->store.kind == SL_STORE_REDIS) {
        store = sl_store_redis_new_resolved(&cfg->store, base, shared->resolver, err, err_size);
        if (store == NULL)
            return NULL;
    } else {
        store = sl_store_local_new(shared->table);
    }
    return create(cfg, store, NULL, shared, true, err, err_size);
}

static struct sl_limiter *
create(const struct sl_config *cfg, struct sl_store *store, struct sl_store *fallback,
       struct sl_limiter_shared *shared, bool is_lookup, char *err, size_t err_size)
{
    struct sl_limiter *limiter = sl_xcalloc(1, sizeof(*limiter));
    size_t longest_prefix = 0, longest_texts = 0;
    bool uses_lua = false;

    limiter->cfg = cfg;
    limiter->shared = shared;
    limiter->store = store;
    limiter->fallback = fallback;
    limiter->info = sl_xcalloc(cfg->nlimits + 1, sizeof(*limiter->info));
    limiter->ninfo = cfg->nlimits;
    if (shared != NULL)
        limiter->seen_resets = atomic_load(&shared->resets);
    if (cfg->store.kind == SL_STORE_REDIS && !is_lookup)
        limiter->deny_cache = sl_xcalloc(DENY_CACHE_SIZE, sizeof(*limiter->deny_cache));
    for (size_t i = 0; i < cfg->nlimits; i++) {
        struct limit_info *info = &limiter->info[i];
        size_t texts;

        if (build_info(limiter, i) == -1) {
            snprintf(err, err_size, "limit \"%.64s\": name too long", cfg->limits[i].name);
            sl_limiter_free(limiter);
            return NULL;
        }
        if (info->key_prefix_len > longest_prefix)
            longest_prefix = info->key_prefix_len;
        texts = info->policy_len + info->sf_name_len + info->json_name_len;
        if (texts > longest_texts)
            longest_texts = texts;
        uses_lua = uses_lua || sl_limit_uses_lua(&cfg->limits[i]);
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        if (cfg->routes[r].nlimits > limiter->max_limits)
            limiter->max_limits = cfg->routes[r].nlimits;
    }
    limiter->key_max = longest_prefix + VALUE_MAX;
    /* Retry-After, two field names and a problem body of fixed text, then per
     * limit its policy item, its RateLimit item (name + two 20-digit numbers)
     * and its name in violated-policies, each with separators. */
    limiter->out_cap = 512 + limiter->max_limits * (longest_texts + 64);

    if (uses_lua && !is_lookup) {
        limiter->rt = sl_lua_rt_new(cfg, err, err_size);
        if (limiter->rt == NULL) {
            sl_limiter_free(limiter);
            return NULL;
        }
    }
    return limiter;
}

static void
free_check(struct check *c)
{
    free(c->limits);
    free(c->buckets);
    free(c->results);
    free(c->is_refused);
    free(c->keys);
    free(c->out);
    free(c);
}

static void limiter_destroy(struct sl_limiter *limiter);

/* From inside a decision's callback (the request that held the last
 * reference to an old generation ends there), the limiter goes when the
 * callback returns: finish() still has the check to put back. The config
 * may be gone by then: destroying it reads nothing from cfg. */
void
sl_limiter_free(struct sl_limiter *limiter)
{
    if (limiter == NULL)
        return;
    if (limiter->ncallbacks > 0) {
        limiter->is_free_deferred = true;
        return;
    }
    limiter_destroy(limiter);
}

static void
limiter_destroy(struct sl_limiter *limiter)
{
    /* Freeing a store completes its pending calls: their checks finish (on
     * the fallback, or as store errors) and return to the free list. */
    limiter->is_freeing = true;
    sl_store_free(limiter->store);
    sl_store_free(limiter->fallback);
    assert(limiter->npending == 0);
    while (limiter->free_checks != NULL) {
        struct check *c = limiter->free_checks;
        limiter->free_checks = c->next_free;
        free_check(c);
    }
    if (limiter->is_down && limiter->shared != NULL)
        atomic_fetch_sub(&limiter->shared->nworkers_down, 1);
    sl_lua_rt_free(limiter->rt);
    for (size_t i = 0; i < limiter->ninfo; i++) {
        free(limiter->info[i].key_prefix);
        free(limiter->info[i].sf_name);
        free(limiter->info[i].json_name);
        free(limiter->info[i].policy);
    }
    free(limiter->info);
    free(limiter->deny_cache);
    free(limiter);
}

bool
sl_limiter_is_ready(const struct sl_limiter *limiter)
{
    return limiter->cfg->store.on_error != SL_ON_ERROR_DENY
        || limiter->store->ops->is_up(limiter->store);
}

const struct sl_config *
sl_limiter_config(const struct sl_limiter *limiter)
{
    return limiter->cfg;
}

struct sl_store *
sl_limiter_store(const struct sl_limiter *limiter)
{
    return limiter->store;
}

struct sl_idem_table *_Atomic *
sl_limiter_idem_slot(const struct sl_limiter *limiter)
{
    return limiter->shared != NULL ? &limiter->shared->idem : NULL;
}

struct sl_limiter_shared *
sl_limiter_get_shared(const struct sl_limiter *limiter)
{
    return limiter->shared;
}

size_t
sl_limiter_key_max(const struct sl_limiter *limiter)
{
    return limiter->key_max;
}

/* ---- the check pool ------------------------------------------------------ */

static struct check *
get_check(struct sl_limiter *limiter)
{
    struct check *c = limiter->free_checks;
    size_t n = limiter->max_limits > 0 ? limiter->max_limits : 1;

    if (c != NULL) {
        limiter->free_checks = c->next_free;
    } else {
        c = sl_xcalloc(1, sizeof(*c));
        c->limiter = limiter;
        c->limits = sl_xcalloc(n, sizeof(*c->limits));
        c->buckets = sl_xcalloc(n, sizeof(*c->buckets));
        c->results = sl_xcalloc(n, sizeof(*c->results));
        c->is_refused = sl_xcalloc(n, sizeof(*c->is_refused));
        c->keys = sl_xmalloc(n * limiter->key_max);
        c->out = sl_xmalloc(limiter->out_cap);
    }
    c->next_free = NULL;
    c->n = 0;
    c->nenforced = 0;
    c->out_len = 0;
    c->is_fallback = false;
    c->is_shadow_refused = false;
    memset(&c->decision, 0, sizeof(c->decision));
    limiter->npending++;
    return c;
}

static void
finish(struct check *c, enum outcome outcome)
{
    struct sl_limiter *limiter = c->limiter;

    c->decision.outcome = outcome_names[outcome];
    c->decision.limiter_ms = (double)(sl_clock_cached_us() - c->start_us) / 1000.0;
    if (c->decision.headers == NULL)
        c->decision.headers = c->out;
    limiter->ncallbacks++;
    c->cb(c->arg, &c->decision);
    limiter->ncallbacks--;
    /* Back to the free list only now: the decision's strings live in c until
     * the callback returns, and a check started from the callback takes
     * another one. */
    c->next_free = limiter->free_checks;
    limiter->free_checks = c;
    limiter->npending--;
    if (limiter->is_free_deferred && limiter->ncallbacks == 0)
        limiter_destroy(limiter); /* the callers of finish() touch nothing after it */
}

/* ---- keys ---------------------------------------------------------------- */

static void
log_function_error(struct sl_limiter *limiter, size_t limit, const char *what)
{
    struct limit_info *info = &limiter->info[limit];
    uint64_t held;

    if (limiter->metrics != NULL)
        sl_metrics_limit_key_error(limiter->metrics, limiter->limit_slots[limit]);
    /* a line per interval, limit and worker */
    if (!sl_log_gate_pass(&info->function_log, sl_clock_now_us(), FUNCTION_LOG_INTERVAL_US,
                          &held))
        return;
    sl_log_warnx("limit \"%s\": %s function: %s (%llu errors since the last report not "
                 "logged)", limiter->cfg->limits[limit].name, what,
                 sl_lua_rt_error(limiter->rt), (unsigned long long)held);
}

/*
 * An `ip` key part's value: an IPv6 client as its network, "2001:db8:1:2::/64"
 * under ipv6_prefix = 64, so that a host cannot get a fresh bucket for each
 * address of its /64 (RFC 6177 hands a site at least that many). IPv4 and a
 * prefix of 128 are the address as it is. buf holds the result when it
 * differs; returns the value to use.
 */
static const char *
ip_key(unsigned prefix, const char *ip, size_t *len, char buf[SL_IP_KEY_MAX])
{
    char text[INET6_ADDRSTRLEN];
    struct in6_addr a;
    size_t n;

    if (prefix == 0 || prefix >= 128 || *len == 0 || *len >= sizeof(text)
        || memchr(ip, ':', *len) == NULL)
        return ip;
    memcpy(text, ip, *len);
    text[*len] = '\0';
    if (inet_pton(AF_INET6, text, &a) != 1)
        return ip;
    for (unsigned bit = prefix; bit < 128; bit++)
        a.s6_addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    if (inet_ntop(AF_INET6, &a, buf, INET6_ADDRSTRLEN) == NULL)
        return ip;
    n = strlen(buf);
    n += (size_t)snprintf(buf + n, SL_IP_KEY_MAX - n, "/%u", prefix);
    *len = n;
    return buf;
}

/* The raw value of one key part; false when the request lacks it. */
static bool
part_value(struct sl_limiter *limiter, size_t limit, size_t j, const struct sl_request *req,
           const char **value, size_t *len)
{
    const struct sl_key_part *part = &limiter->cfg->limits[limit].parts[j];

    switch (part->kind) {
    case SL_KEY_IP:
        if (!sl_reqfield_selector(req, part, value, len))
            return false;
        *value = ip_key(limiter->cfg->limits[limit].ipv6_prefix, req->client_ip, len,
                        limiter->ip_key);
        return true;
    case SL_KEY_FUNCTION:
        if (limiter->rt == NULL)
            return false;
        switch (sl_lua_rt_key(limiter->rt, limit, j, req, value, len)) {
        case SL_LUA_VALUE:
            return true;
        case SL_LUA_ABSENT:
            return false;
        case SL_LUA_ERROR:
            log_function_error(limiter, limit, "key");
            return false;
        }
        return false;
    default:
        return sl_reqfield_selector(req, part, value, len);
    }
}

/*
 * A full key is written in three steps, shared by the request path
 * (build_key) and the bucket API (sl_limiter_bucket_key), so that both
 * always name the same bucket: the limit's prefix, each part's value
 * escaped, ':' between parts, then the hashing of an overlong value.
 */
static struct sink
key_begin(const struct sl_limiter *limiter, size_t limit, char *key)
{
    const struct limit_info *info = &limiter->info[limit];

    memcpy(key, info->key_prefix, info->key_prefix_len);
    return (struct sink){ .buf = key + info->key_prefix_len };
}

static void
key_part(struct sink *s, size_t j, const char *value, size_t len)
{
    if (j > 0)
        sink_put(s, ":", 1);
    escape_into(s, value, len);
}

static size_t
key_end(const struct sl_limiter *limiter, size_t limit, struct sink *s)
{
    sink_finish(s);
    return limiter->info[limit].key_prefix_len + s->len;
}

/* Writes the full key of `limit` into `key`; returns its length, 0 when the
 * limit does not apply to the request. */
static size_t
build_key(struct sl_limiter *limiter, size_t limit, const struct sl_request *req, char *key)
{
    const struct sl_limit_conf *conf = &limiter->cfg->limits[limit];
    struct sink s = key_begin(limiter, limit, key);

    for (size_t j = 0; j < conf->nparts; j++) {
        const char *value;
        size_t len;
        if (!part_value(limiter, limit, j, req, &value, &len))
            return 0;
        /* escape now: a function's value is only valid until the next call */
        key_part(&s, j, value, len);
    }
    return key_end(limiter, limit, &s);
}

size_t
sl_limiter_bucket_key(const struct sl_limiter *limiter, size_t limit, const char *const *values,
                      const size_t *lens, char *key)
{
    const struct sl_limit_conf *conf = &limiter->cfg->limits[limit];
    struct sink s = key_begin(limiter, limit, key);
    char buf[SL_IP_KEY_MAX];

    for (size_t j = 0; j < conf->nparts; j++) {
        size_t len = lens[j];
        const char *value = values[j];
        /* the bucket API names a client by its address, as requests do */
        if (conf->parts[j].kind == SL_KEY_IP)
            value = ip_key(conf->ipv6_prefix, value, &len, buf);
        key_part(&s, j, value, len);
    }
    return key_end(limiter, limit, &s);
}

static double
limit_cost(struct sl_limiter *limiter, size_t limit, const struct sl_request *req)
{
    const struct sl_limit_conf *conf = &limiter->cfg->limits[limit];
    double cost;

    if (!conf->is_cost_function || limiter->rt == NULL)
        return conf->cost > 0 ? conf->cost : 1;
    switch (sl_lua_rt_cost(limiter->rt, limit, req, &cost)) {
    case SL_LUA_VALUE:
        return cost;
    case SL_LUA_ABSENT:
        return 1;
    case SL_LUA_ERROR:
        /* Still charge: a request that breaks the cost function must not
         * get through unlimited. */
        log_function_error(limiter, limit, "cost");
        return 1;
    }
    return 1;
}

static void
collect(struct check *c, const struct sl_request *req, bool want_shadow)
{
    struct sl_limiter *limiter = c->limiter;
    const struct sl_config *cfg = limiter->cfg;

    for (size_t k = 0; k < c->route->nlimits && c->n < limiter->max_limits; k++) {
        size_t limit = c->route->limits[k];
        const struct sl_limit_conf *conf = &cfg->limits[limit];
        char *key = c->keys + c->n * limiter->key_max;
        struct sl_store_bucket *b = &c->buckets[c->n];
        size_t key_len;

        if (conf->is_shadow != want_shadow)
            continue;
        key_len = build_key(limiter, limit, req, key);
        if (key_len == 0) {
            count_limit(limiter, limit, SL_METRICS_SKIPPED);
            continue;
        }
        b->key = key;
        b->key_len = key_len;
        b->rate = conf->rate;
        b->per_ms = conf->per_ms;
        b->burst = conf->burst;
        b->cost = limit_cost(limiter, limit, req);
        b->is_leased = conf->is_leased;
        c->limits[c->n] = limit;
        c->is_refused[c->n] = false;
        c->n++;
    }
}

/* ---- decisions ---------------------------------------------------------- */

static unsigned
ceil_seconds(uint64_t ms)
{
    uint64_t s = ms / 1000 + (ms % 1000 != 0);
    return s > 0xffffffffu ? 0xffffffffu : (unsigned)s;
}

/*
 * The wait the client is told about. A request costing more than the burst
 * can never pass (SL_STORE_RETRY_NEVER); it is told to wait until the bucket
 * is full again, the longest wait that means anything, rather than for ever.
 */
static uint64_t
retry_ms(const struct sl_store_result *res)
{
    return res->retry_ms == SL_STORE_RETRY_NEVER ? res->reset_ms : res->retry_ms;
}

/* r and t of one RateLimit item (see docs/rate-limiting.md). */
static void
service_limit(const struct sl_store_result *res, unsigned cap_s, uint64_t *r, uint64_t *t)
{
    double remaining = res->remaining > 0 ? floor(res->remaining + 1e-9) : 0;

    *r = remaining < 1e18 ? (uint64_t)remaining : (uint64_t)1e18;
    /* When another request of this cost cannot pass yet, t is the wait for
     * it; otherwise the time until the bucket is full again. */
    if (res->retry_ms > 0)
        *t = ceil_seconds(retry_ms(res)) > 1 ? ceil_seconds(retry_ms(res)) : 1;
    else
        *t = ceil_seconds(res->reset_ms);
    if (cap_s > 0 && *t > cap_s)
        *t = cap_s;
}

static void
ratelimit_fields(struct check *c, unsigned cap_s)
{
    struct sl_limiter *limiter = c->limiter;

    if (c->nenforced == 0)
        return;
    OUT_LIT(c, "RateLimit-Policy: ");
    for (size_t i = 0; i < c->nenforced; i++) {
        const struct limit_info *info = &limiter->info[c->limits[i]];
        if (i > 0)
            out_put(c, ", ", 2);
        out_put(c, info->policy, info->policy_len);
    }
    OUT_LIT(c, "\r\nRateLimit: ");
    for (size_t i = 0; i < c->nenforced; i++) {
        const struct limit_info *info = &limiter->info[c->limits[i]];
        uint64_t r, t;
        service_limit(&c->results[i], cap_s, &r, &t);
        if (i > 0)
            out_put(c, ", ", 2);
        out_put(c, info->sf_name, info->sf_name_len);
        OUT_LIT(c, ";r=");
        out_u64(c, r);
        OUT_LIT(c, ";t=");
        out_u64(c, t);
    }
    OUT_LIT(c, "\r\n");
}

static void
decide_admit(struct check *c)
{
    struct sl_limiter *limiter = c->limiter;

    for (size_t i = 0; i < c->nenforced; i++)
        count_limit(limiter, c->limits[i], SL_METRICS_ADMITTED);
    c->decision.verdict = SL_VERDICT_ALLOW;
    if (c->route->has_ratelimit_headers)
        ratelimit_fields(c, 0);
    c->decision.headers = c->out;
    c->decision.headers_len = c->out_len;
    finish(c, c->is_shadow_refused ? OUTCOME_SHADOW_LIMITED : OUTCOME_ADMITTED);
}

/*
 * A refusal that can wait instead (nginx's limit_req without nodelay,
 * Traefik's average delay): every refused limit has a `delay` that covers
 * the whole wait, counted from the request's first refusal, and the worker
 * has room for one more waiting request. Nothing was taken, so the fleet
 * bound is untouched: the request checks again when its tokens are due.
 */
static bool
decide_delay(struct check *c)
{
    struct sl_limiter *limiter = c->limiter;
    uint64_t wait_ms = 0;

    if (limiter->ndelayed >= limiter->cfg->max_delayed)
        return false;
    for (size_t i = 0; i < c->nenforced; i++) {
        uint64_t retry = c->results[i].retry_ms;
        if (retry == 0)
            continue;
        if (retry == SL_STORE_RETRY_NEVER
            || c->waited_ms + retry > limiter->cfg->limits[c->limits[i]].delay_ms)
            return false;
        if (retry > wait_ms)
            wait_ms = retry;
    }
    if (wait_ms == 0)
        return false;
    limiter->ndelayed++;
    for (size_t i = 0; i < c->nenforced && c->waited_ms == 0; i++) {
        count_limit(limiter, c->limits[i],
                    c->results[i].retry_ms > 0 ? SL_METRICS_DELAYED : SL_METRICS_ADMITTED);
    }
    c->decision.verdict = SL_VERDICT_DELAY;
    c->decision.wait_ms = wait_ms;
    finish(c, OUTCOME_DELAYED);
    return true;
}

static void
decide_deny(struct check *c)
{
    struct sl_limiter *limiter = c->limiter;
    unsigned retry_s = 1;
    size_t nrefused = 0;
    bool is_first = true;

    if (decide_delay(c))
        return;

    for (size_t i = 0; i < c->nenforced; i++) {
        if (c->results[i].retry_ms > 0) {
            unsigned s = ceil_seconds(retry_ms(&c->results[i]));
            c->is_refused[i] = true;
            nrefused++;
            if (s > retry_s)
                retry_s = s;
        }
    }
    /* A refusal without a bucket short of tokens is the store's bug; still
     * name every limit rather than none. */
    for (size_t i = 0; i < c->nenforced; i++) {
        if (nrefused == 0)
            c->is_refused[i] = true;
        count_limit(limiter, c->limits[i],
                    c->is_refused[i] ? SL_METRICS_LIMITED : SL_METRICS_ADMITTED);
    }
    c->decision.verdict = SL_VERDICT_DENY;
    c->decision.retry_after_s = retry_s;
    OUT_LIT(c, "Retry-After: ");
    out_u64(c, retry_s);
    OUT_LIT(c, "\r\n");
    /* draft-ietf-httpapi-ratelimit-headers-11 section 6: Retry-After should
     * not point before the end of any effective window, so t is capped. */
    ratelimit_fields(c, retry_s);
    c->decision.headers = c->out;
    c->decision.headers_len = c->out_len;

    c->decision.problem = c->out + c->out_len;
    OUT_LIT(c, "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
               "\"title\":\"Too Many Requests\",\"status\":429,");
    OUT_LIT(c, "\"detail\":\"rate limit exceeded; retry after ");
    out_u64(c, retry_s);
    if (retry_s == 1)
        OUT_LIT(c, " second\",");
    else
        OUT_LIT(c, " seconds\",");
    OUT_LIT(c, "\"violated-policies\":[");
    for (size_t i = 0; i < c->nenforced; i++) {
        const struct limit_info *info = &limiter->info[c->limits[i]];
        if (!c->is_refused[i])
            continue;
        if (!is_first)
            out_put(c, ",", 1);
        out_put(c, info->json_name, info->json_name_len);
        is_first = false;
    }
    OUT_LIT(c, "]}");
    c->decision.problem_len = (size_t)(c->out + c->out_len - c->decision.problem);
    finish(c, OUTCOME_LIMITED);
}

static void
decide_store_error(struct check *c)
{
    struct sl_limiter *limiter = c->limiter;

    for (size_t i = 0; i < c->n; i++)
        count_limit(limiter, c->limits[i], SL_METRICS_STORE_ERROR);
    if (limiter->cfg->store.on_error != SL_ON_ERROR_DENY) {
        /* allow, and local when even the embedded store failed */
        c->decision.verdict = SL_VERDICT_ALLOW;
        finish(c, OUTCOME_STORE_ERROR);
        return;
    }
    c->decision.verdict = SL_VERDICT_UNAVAILABLE;
    c->decision.retry_after_s = 1;
    OUT_LIT(c, "Retry-After: 1\r\n");
    c->decision.headers = c->out;
    c->decision.headers_len = c->out_len;
    c->decision.problem = c->out + c->out_len;
    OUT_LIT(c, "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
               "\"detail\":\"the rate-limit store is unavailable; retry after 1 second\"}");
    c->decision.problem_len = (size_t)(c->out + c->out_len - c->decision.problem);
    finish(c, OUTCOME_STORE_ERROR);
}

/* ---- store up/down ----------------------------------------------------------- */

static const char *
status_text(enum sl_store_status status)
{
    switch (status) {
    case SL_STORE_OK:
        return "ok";
    case SL_STORE_TIMEOUT:
        return "no reply within the timeout";
    case SL_STORE_CONNECTION:
        return "not connected";
    case SL_STORE_REPLY:
        return "error reply";
    }
    return "failed";
}

static const char *
policy_text(const struct sl_limiter *limiter)
{
    switch (limiter->cfg->store.on_error) {
    case SL_ON_ERROR_ALLOW:
        return "on_error=allow: admitting requests unchecked";
    case SL_ON_ERROR_DENY:
        return "on_error=deny: refusing requests with 503";
    case SL_ON_ERROR_LOCAL:
        return limiter->fallback != NULL
                   ? "on_error=local: checking against the embedded store, per process"
                   : "on_error=local without an embedded store: admitting requests unchecked";
    }
    return "";
}

/* Log lines mark the first worker to see the store fail and the last to see
 * it answer again, so an outage is two lines whatever the worker count. */
static void
store_failed(struct sl_limiter *limiter, enum sl_store_status status)
{
    limiter->last_failure_us = sl_clock_cached_us();
    if (limiter->is_down || limiter->is_freeing)
        return;
    limiter->is_down = true;
    if (limiter->metrics != NULL)
        sl_metrics_store_state(limiter->metrics, limiter->cfg->store.on_error == SL_ON_ERROR_LOCAL
                                                     ? SL_METRICS_STATE_LOCAL_FALLBACK
                                                     : SL_METRICS_STATE_FAILING);
    if (atomic_fetch_add(&limiter->shared->nworkers_down, 1) == 0)
        sl_log_warnx("store %s: %s; %s until it answers again", limiter->store->ops->name,
                     status_text(status), policy_text(limiter));
}

static void
store_answered(struct sl_limiter *limiter)
{
    if (!limiter->is_down || sl_clock_cached_us() - limiter->last_failure_us < RECOVERY_US)
        return;
    limiter->is_down = false;
    if (limiter->metrics != NULL)
        sl_metrics_store_state(limiter->metrics, SL_METRICS_STATE_REDIS);
    if (atomic_fetch_sub(&limiter->shared->nworkers_down, 1) == 1)
        sl_log_info("store %s: answering again, limits are checked through it again",
                    limiter->store->ops->name);
}

/* ---- the check ----------------------------------------------------------- */

static void on_enforced(void *arg, enum sl_store_status status, bool is_admitted,
                        const struct sl_store_result *results, size_t nresults);
static void deny_cache_put(struct sl_limiter *limiter, const struct check *c,
                           const struct sl_store_result *results);

static void
on_shadow(void *arg, enum sl_store_status status, bool is_admitted,
          const struct sl_store_result *results, size_t nresults)
{
    struct check *c = arg;
    struct sl_limiter *limiter = c->limiter;
    size_t nshadow = c->n - c->nenforced;

    count_store_call(limiter, c, status);
    if (status != SL_STORE_OK || nresults != nshadow) {
        if (!c->is_fallback)
            store_failed(limiter, status == SL_STORE_OK ? SL_STORE_REPLY : status);
        for (size_t i = c->nenforced; i < c->n; i++)
            count_limit(limiter, c->limits[i], SL_METRICS_STORE_ERROR);
    } else {
        if (!c->is_fallback)
            store_answered(limiter);
        for (size_t i = 0; i < nshadow; i++) {
            bool is_refused = !is_admitted && results[i].retry_ms > 0;
            count_limit(limiter, c->limits[c->nenforced + i],
                        is_refused ? SL_METRICS_SHADOW_LIMITED : SL_METRICS_ADMITTED);
            c->is_shadow_refused = c->is_shadow_refused || is_refused;
        }
    }
    decide_admit(c);
}

/* Shadow limits are checked after the enforced ones admitted, in a call of
 * their own: their refusal must not make the real check fail, and a request
 * the real limits refuse takes nothing from them, as if they were real. */
static void
check_shadow(struct check *c)
{
    if (c->n > c->nenforced && !c->limiter->is_freeing)
        store_call(c, c->buckets + c->nenforced, c->n - c->nenforced, on_shadow);
    else
        decide_admit(c);
}

static void
on_enforced(void *arg, enum sl_store_status status, bool is_admitted,
            const struct sl_store_result *results, size_t nresults)
{
    struct check *c = arg;
    struct sl_limiter *limiter = c->limiter;

    if (status == SL_STORE_OK && nresults != c->nenforced)
        status = SL_STORE_REPLY;
    count_store_call(limiter, c, status);
    if (status != SL_STORE_OK) {
        if (c->is_fallback) {
            decide_store_error(c);
            return;
        }
        store_failed(limiter, status);
        if (limiter->fallback != NULL && limiter->cfg->store.on_error == SL_ON_ERROR_LOCAL) {
            c->store = limiter->fallback;
            c->is_fallback = true;
            store_call(c, c->buckets, c->nenforced, on_enforced);
            return;
        }
        decide_store_error(c);
        return;
    }
    if (!c->is_fallback)
        store_answered(limiter);
    memcpy(c->results, results, nresults * sizeof(*results));
    if (!is_admitted) {
        deny_cache_put(limiter, c, results);
        decide_deny(c);
    } else {
        check_shadow(c);
    }
}

static uint64_t
check_hash(const struct check *c)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (size_t i = 0; i < c->nenforced; i++) {
        const unsigned char *k = (const unsigned char *)c->buckets[i].key;
        unsigned char cost[sizeof(double)];
        for (size_t j = 0; j < c->buckets[i].key_len; j++)
            h = (h ^ k[j]) * 0x100000001b3ULL;
        memcpy(cost, &c->buckets[i].cost, sizeof(cost));
        for (size_t j = 0; j < sizeof(cost); j++)
            h = (h ^ cost[j]) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL; /* bucket separator */
    }
    return h | 1; /* 0 marks an empty entry */
}

static void
deny_cache_put(struct sl_limiter *limiter, const struct check *c,
               const struct sl_store_result *results)
{
    struct deny_entry *e;
    uint64_t longest = 0;

    if (limiter->deny_cache == NULL || c->is_fallback || c->nenforced > DENY_CACHE_MAX_BUCKETS)
        return;
    for (size_t i = 0; i < c->nenforced; i++) {
        if (results[i].retry_ms == SL_STORE_RETRY_NEVER)
            return;
        if (results[i].retry_ms > longest)
            longest = results[i].retry_ms;
    }
    if (longest == 0)
        return;
    e = &limiter->deny_cache[c->hash & (DENY_CACHE_SIZE - 1)];
    e->hash = c->hash;
    e->base_us = c->start_us;
    e->until_us = c->start_us + longest * 1000;
    e->n = c->nenforced;
    memcpy(e->results, results, c->nenforced * sizeof(*results));
}

/* True when the check is known refused: c->results holds the answer, aged. */
static bool
deny_cache_get(struct sl_limiter *limiter, struct check *c)
{
    const struct deny_entry *e;
    uint64_t elapsed_ms;

    if (limiter->deny_cache == NULL || c->nenforced > DENY_CACHE_MAX_BUCKETS)
        return false;
    if (limiter->shared != NULL && atomic_load(&limiter->shared->resets) != limiter->seen_resets) {
        /* A bucket was made full again: refusals cached before may pass now.
         * Resets are rare support actions, so forgetting all is enough. */
        memset(limiter->deny_cache, 0, DENY_CACHE_SIZE * sizeof(*limiter->deny_cache));
        limiter->seen_resets = atomic_load(&limiter->shared->resets);
    }
    c->hash = check_hash(c);
    e = &limiter->deny_cache[c->hash & (DENY_CACHE_SIZE - 1)];
    if (e->hash != c->hash || e->n != c->nenforced || c->start_us >= e->until_us)
        return false;
    elapsed_ms = (c->start_us - e->base_us) / 1000;
    for (size_t i = 0; i < e->n; i++) {
        c->results[i] = e->results[i];
        c->results[i].retry_ms = e->results[i].retry_ms > elapsed_ms
                                     ? e->results[i].retry_ms - elapsed_ms : 0;
        c->results[i].reset_ms = e->results[i].reset_ms > elapsed_ms
                                     ? e->results[i].reset_ms - elapsed_ms : 0;
    }
    return true;
}

void
sl_limiter_check(struct sl_limiter *limiter, const struct sl_route_conf *route,
                 const struct sl_request *req, sl_limiter_cb *cb, void *arg)
{
    sl_limiter_recheck(limiter, route, req, 0, cb, arg);
}

void
sl_limiter_delay_end(struct sl_limiter *limiter)
{
    limiter->ndelayed--;
}

void
sl_limiter_recheck(struct sl_limiter *limiter, const struct sl_route_conf *route,
                   const struct sl_request *req, uint64_t waited_ms, sl_limiter_cb *cb,
                   void *arg)
{
    struct check *c = get_check(limiter);

    c->route = route;
    c->waited_ms = waited_ms;
    c->cb = cb;
    c->arg = arg;
    c->start_us = sl_clock_cached_us();
    collect(c, req, false);
    c->nenforced = c->n;
    collect(c, req, true);
    if (c->n == 0) {
        c->decision.verdict = SL_VERDICT_ALLOW;
        finish(c, OUTCOME_NONE);
        return;
    }

    if (deny_cache_get(limiter, c)) {
        decide_deny(c);
        return;
    }
    c->store = limiter->store;
    /* While the store is known to be down and not reconnected, do not wait
     * for it to fail again: go straight to the policy. */
    if (limiter->is_down && !limiter->store->ops->is_up(limiter->store)) {
        if (limiter->fallback != NULL && limiter->cfg->store.on_error == SL_ON_ERROR_LOCAL) {
            c->store = limiter->fallback;
            c->is_fallback = true;
        } else {
            decide_store_error(c);
            return;
        }
    }
    /* From here on c may be finished and reused before the store returns:
     * touch nothing after handing it over. */
    if (c->nenforced > 0)
        store_call(c, c->buckets, c->nenforced, on_enforced);
    else
        check_shadow(c);
}
