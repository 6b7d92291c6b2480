/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Per-worker counters and histograms, summed into Prometheus text on scrape.
 *
 * Each worker has a small array of scalars and, per kind (route, limit,
 * upstream), a table of chunk pointers; a chunk holds the counters of 16
 * slots. Chunks are allocated when a name is registered (at load or reload,
 * under the registry lock) and never move or go away, so the request path
 * only follows a pointer and bumps a word. Every word has a single writer,
 * the owning worker, which does a relaxed load and a relaxed store: no lock,
 * no locked instruction, and still no data race with the scraping thread.
 *
 * Histogram observations are whole microseconds; bounds are kept in µs too,
 * so "le" is exact and a value equal to a bound lands in that bucket. Bucket
 * counts are kept per bucket (not cumulative) and _count is derived from them
 * at render time, which keeps _count equal to the +Inf bucket even when the
 * scrape races a worker.
 */
#include "sluice/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cache.h"
#include "sluice/log.h"
#include "store_redis_nodes.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/text.h"
#include "util/topk.h"

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

#define CHUNK_SLOTS 16
#define NCHUNKS (SL_METRICS_MAX_NAMES / CHUNK_SLOTS)
#define NKINDS 3
#define CACHE_LINE 64
#define MAX_LABEL_BYTES 256

#define NMETHODS 8
#define NCLASSES 7 /* 1xx..5xx, other, none */
#define CLASS_OTHER 5
#define CLASS_NONE 6
#define NRESULTS 6
#define NSTORE_ERRORS 3
#define NSTATES 4
#define NUPSTREAM_ERRORS 4
#define NRETRY_REASONS 4
#define NBACKENDS 2

static const char *const method_names[NMETHODS] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
};
static const char *const class_names[NCLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other", "none",
};
static const char *const result_names[NRESULTS] = {
    "admitted", "limited", "shadow_limited", "skipped", "store_error", "delayed",
};
static const char *const store_error_names[NSTORE_ERRORS] = { "timeout", "connection", "reply" };
static const char *const state_names[NSTATES] = { "redis", "local", "local_fallback", "failing" };
static const char *const upstream_error_names[NUPSTREAM_ERRORS] = {
    "connect_error", "connect_timeout", "response_timeout", "broken",
};
static const char *const retry_reason_names[NRETRY_REASONS] = {
    "connect_failure", "reset", "502", "503",
};
static const char *const backend_names[NBACKENDS] = { "redis", "local" };
static const char *const kind_labels[NKINDS] = { "route", "limit", "upstream" };

/* 100 µs to 10 s: a proxy hop on loopback up to a slow upstream. */
static const double default_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,     10,
};

/* Word offsets inside one route slot; the two histograms follow R_HIST. */
enum { R_REQUESTS = 0, R_RX = NMETHODS * NCLASSES, R_TX, R_HIST };
/* ... one limit slot */
enum { L_RESULTS = 0, L_KEY_ERRORS = NRESULTS, L_WORDS };
/* ... one upstream slot; the ttfb histogram follows U_HIST */
enum {
    U_RESPONSES = 0,
    U_ERRORS = NCLASSES,
    U_GAUGES = U_ERRORS + NUPSTREAM_ERRORS, /* idle, active, queued */
    U_SHED = U_GAUGES + 3,
    U_RETRIES,
    U_RETRIES_REFUSED = U_RETRIES + NRETRY_REASONS,
    U_HIST,
};
/* ... the worker's scalars; the store histograms (one per backend) follow S_HIST */
enum {
    S_CONNECTIONS = 0,
    S_ACCEPTED,
    S_IN_FLIGHT,
    S_TUNNELS,
    S_STORE_ERRORS,
    S_RECONNECTS = S_STORE_ERRORS + NSTORE_ERRORS,
    S_NOSCRIPT,
    S_LOCAL_EVICTIONS,
    S_LEASE, /* SL_METRICS_LEASE_COUNT counters */
    S_STATE = S_LEASE + SL_METRICS_LEASE_COUNT, /* state + 1; 0: never set */
    S_HIST,
};

/*
 * Who calls a route that ends (sl_metrics_consumer): a Space-Saving table per
 * worker and route. Its strings change in place, which no single-word atomic
 * can carry, so it has a mutex; only its worker and a scrape take it, and
 * only routes with a deprecation or sunset pay for it.
 */
struct consumers {
    pthread_mutex_t lock;
    struct sl_topk topk;
};

struct sl_metrics_worker {
    struct sl_metrics *m;
    _Atomic uint64_t *scalars;
    _Atomic(_Atomic uint64_t *) chunks[NKINDS][NCHUNKS];
    _Atomic(struct consumers *) consumers[SL_METRICS_MAX_NAMES]; /* by route slot */
};

struct name_table {
    char *raw[SL_METRICS_MAX_NAMES];   /* as registered, for lookup */
    char *label[SL_METRICS_MAX_NAMES]; /* escaped, ready for output */
    size_t n;
};

struct sl_metrics {
    unsigned nworkers;
    struct sl_metrics_worker **workers;

    size_t nbuckets;
    uint64_t bounds_us[SL_METRICS_MAX_BUCKETS];
    char le[SL_METRICS_MAX_BUCKETS][32];
    size_t hist_words; /* nbuckets + 1 (+Inf) + 1 (sum in µs) */
    size_t words[NKINDS];
    size_t scalar_words;

    /* Guards the name tables and chunk allocation; render takes it too so a
     * scrape sees a consistent set of names. Never taken on the request path. */
    pthread_mutex_t lock;
    struct name_table names[NKINDS];
    unsigned consumer_top[SL_METRICS_MAX_NAMES]; /* by route slot; 0: not counted */

    _Atomic double start_time;
    _Atomic uint64_t reloads_ok;
    _Atomic uint64_t reloads_failed;
    _Atomic bool is_last_reload_ok;
    _Atomic double load_time;
    _Atomic uint64_t load_duration_us;
    _Atomic uint64_t idem[SL_METRICS_IDEM_N]; /* any worker: fetch_add */
};

/* ==== helpers ========================================================================= */

static void
bump(_Atomic uint64_t *p, uint64_t n)
{
    /* Single writer: a plain load and store are enough; relaxed atomics make
     * the concurrent read by the scraper well-defined. */
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t
peek(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static void *
zalloc_lines(size_t size)
{
    void *p = NULL;

    /* Whole cache lines of their own, so two workers never share one. */
    size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    if (posix_memalign(&p, CACHE_LINE, size) != 0)
        sl_fatalx("out of memory allocating %zu bytes", size);
    memset(p, 0, size);
    return p;
}

static size_t
status_class(int status)
{
    if (status == 0)
        return CLASS_NONE;
    if (status >= 100 && status <= 599)
        return (size_t)(status / 100 - 1);
    return CLASS_OTHER;
}

/* A label value as the text format wants it: valid UTF-8, with backslash,
 * double quote and line feed escaped (exposition format 0.0.4), and cut to
 * MAX_LABEL_BYTES of the name so a scrape line stays short. */
static char *
escape_label(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name), o = 0;
    char *out;

    if (n > MAX_LABEL_BYTES) {
        /* cut before a character, not inside one */
        n = MAX_LABEL_BYTES;
        for (int k = 0; k < 3 && (s[n] & 0xC0) == 0x80; k++)
            n--;
    }
    out = sl_xmalloc(n * 3 + 1);
    for (size_t i = 0; i < n;) {
        size_t len = sl_utf8_len(s + i, n - i);

        if (len == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else if (s[i] == '\\' || s[i] == '"' || s[i] == '\n') {
            out[o++] = '\\';
            out[o++] = s[i] == '\n' ? 'n' : (char)s[i];
            i++;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return out;
}

/* µs as decimal seconds, exactly, without trailing zeros ("0.00025", "10"). */
static void
format_seconds(char *buf, size_t size, uint64_t us)
{
    size_t len;

    snprintf(buf, size, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
    len = strlen(buf);
    while (buf[len - 1] == '0')
        buf[--len] = '\0';
    if (buf[len - 1] == '.')
        buf[len - 1] = '\0';
}

/* ==== lifecycle ======================================================================== */

int
sl_metrics_check_buckets(const double *buckets_s, size_t nbuckets, char *err, size_t err_size)
{
    double prev_us = 0;

    if (buckets_s == NULL)
        return 0;
    if (nbuckets == 0 || nbuckets > SL_METRICS_MAX_BUCKETS) {
        snprintf(err, err_size, "histogram buckets: need 1 to %d bounds, got %zu",
                 SL_METRICS_MAX_BUCKETS, nbuckets);
        return -1;
    }
    for (size_t i = 0; i < nbuckets; i++) {
        double us = round(buckets_s[i] * 1e6);

        if (!isfinite(buckets_s[i]) || us < 1 || us > 86400e6) {
            snprintf(err, err_size, "histogram bucket %g: must be between 1us and 1 day",
                     buckets_s[i]);
            return -1;
        }
        if (us <= prev_us) {
            snprintf(err, err_size,
                     "histogram bucket %g: bounds must increase (by 1us at least)",
                     buckets_s[i]);
            return -1;
        }
        prev_us = us;
    }
    return 0;
}

static void
add_chunk(struct sl_metrics *m, enum sl_metrics_kind kind, size_t chunk)
{
    for (unsigned i = 0; i < m->nworkers; i++) {
        _Atomic uint64_t *words =
            zalloc_lines(m->words[kind] * CHUNK_SLOTS * sizeof(_Atomic uint64_t));

        /* release: a worker that sees the pointer sees zeroed memory */
        atomic_store_explicit(&m->workers[i]->chunks[kind][chunk], words, memory_order_release);
    }
}

static unsigned
register_name(struct sl_metrics *m, enum sl_metrics_kind kind, const char *name)
{
    struct name_table *t = &m->names[kind];
    size_t slot;

    for (slot = 0; slot < t->n; slot++)
        if (strcmp(t->raw[slot], name) == 0)
            return (unsigned)slot;
    if (t->n >= SL_METRICS_MAX_NAMES - 1 && strcmp(name, "(overflow)") != 0)
        return register_name(m, kind, "(overflow)");
    slot = t->n;
    if (slot % CHUNK_SLOTS == 0)
        add_chunk(m, kind, slot / CHUNK_SLOTS);
    t->raw[slot] = sl_xstrdup(name);
    t->label[slot] = escape_label(name);
    t->n++;
    if (t->n == SL_METRICS_MAX_NAMES)
        sl_log_warnx("metrics: more than %d %s names, new ones are reported as (overflow)",
                     SL_METRICS_MAX_NAMES - 1, kind_labels[kind]);
    return (unsigned)slot;
}

struct sl_metrics *
sl_metrics_new(unsigned nworkers, const double *buckets_s, size_t nbuckets, char *err,
               size_t err_size)
{
    struct sl_metrics *m;

    if (buckets_s == NULL) {
        buckets_s = default_buckets;
        nbuckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
    }
    if (sl_metrics_check_buckets(buckets_s, nbuckets, err, err_size) != 0)
        return NULL;
    if (nworkers == 0) {
        snprintf(err, err_size, "metrics: no workers");
        return NULL;
    }

    m = sl_xcalloc(1, sizeof(*m));
    m->nworkers = nworkers;
    m->nbuckets = nbuckets;
    for (size_t i = 0; i < nbuckets; i++) {
        m->bounds_us[i] = (uint64_t)round(buckets_s[i] * 1e6);
        format_seconds(m->le[i], sizeof(m->le[i]), m->bounds_us[i]);
    }
    m->hist_words = nbuckets + 2;
    m->words[SL_METRICS_ROUTE] = R_HIST + 2 * m->hist_words;
    m->words[SL_METRICS_LIMIT] = L_WORDS;
    m->words[SL_METRICS_UPSTREAM] = U_HIST + m->hist_words;
    m->scalar_words = S_HIST + NBACKENDS * m->hist_words;
    pthread_mutex_init(&m->lock, NULL);

    m->workers = sl_xcalloc(nworkers, sizeof(*m->workers));
    for (unsigned i = 0; i < nworkers; i++) {
        struct sl_metrics_worker *w = zalloc_lines(sizeof(*w));

        w->m = m;
        w->scalars = zalloc_lines(m->scalar_words * sizeof(_Atomic uint64_t));
        m->workers[i] = w;
    }
    atomic_store(&m->start_time, sl_clock_wall());
    register_name(m, SL_METRICS_ROUTE, "(none)");
    /* the per-node histograms too; kept by the node table if it has entries already */
    (void)sl_redis_nodes_set_bounds(m->bounds_us, m->nbuckets);
    return m;
}

void
sl_metrics_free(struct sl_metrics *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->nworkers; i++) {
        struct sl_metrics_worker *w = m->workers[i];

        for (size_t k = 0; k < NKINDS; k++)
            for (size_t c = 0; c < NCHUNKS; c++)
                free(atomic_load(&w->chunks[k][c]));
        for (size_t r = 0; r < SL_METRICS_MAX_NAMES; r++) {
            struct consumers *c = atomic_load(&w->consumers[r]);
            if (c != NULL) {
                sl_topk_fini(&c->topk);
                pthread_mutex_destroy(&c->lock);
                free(c);
            }
        }
        free(w->scalars);
        free(w);
    }
    for (size_t k = 0; k < NKINDS; k++) {
        for (size_t s = 0; s < m->names[k].n; s++) {
            free(m->names[k].raw[s]);
            free(m->names[k].label[s]);
        }
    }
    pthread_mutex_destroy(&m->lock);
    free(m->workers);
    free(m);
}

struct sl_metrics_worker *
sl_metrics_worker(struct sl_metrics *m, unsigned worker)
{
    return worker < m->nworkers ? m->workers[worker] : NULL;
}

unsigned
sl_metrics_slot(struct sl_metrics *m, enum sl_metrics_kind kind, const char *name)
{
    unsigned slot;

    if ((unsigned)kind >= NKINDS)
        return SL_METRICS_MAX_NAMES; /* ignored by every worker function */
    pthread_mutex_lock(&m->lock);
    slot = register_name(m, kind, name);
    pthread_mutex_unlock(&m->lock);
    return slot;
}

/* Counters per consumer: four per name shown, so that a caller in the top
 * N is rarely one the table forgot (Space-Saving's bound is total / cap). */
static size_t
consumer_cap(unsigned top)
{
    return (size_t)top * 4 < 32 ? 32 : (size_t)top * 4;
}

void
sl_metrics_route_consumers(struct sl_metrics *m, unsigned route, unsigned top)
{
    if (route >= SL_METRICS_MAX_NAMES || top == 0)
        return;
    pthread_mutex_lock(&m->lock);
    m->consumer_top[route] = top;
    for (unsigned i = 0; i < m->nworkers; i++) {
        struct consumers *c = atomic_load_explicit(&m->workers[i]->consumers[route],
                                                   memory_order_acquire);
        if (c == NULL) {
            c = sl_xcalloc(1, sizeof(*c));
            pthread_mutex_init(&c->lock, NULL);
            sl_topk_init(&c->topk, consumer_cap(top));
            atomic_store_explicit(&m->workers[i]->consumers[route], c, memory_order_release);
        } else {
            pthread_mutex_lock(&c->lock);
            sl_topk_grow(&c->topk, consumer_cap(top));
            pthread_mutex_unlock(&c->lock);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

enum sl_metrics_method
sl_metrics_method(const char *method, size_t len)
{
    for (size_t i = 0; i < SL_METRICS_OTHER; i++)
        if (strlen(method_names[i]) == len && memcmp(method, method_names[i], len) == 0)
            return (enum sl_metrics_method)i;
    return SL_METRICS_OTHER;
}

/* ==== the request path ================================================================== */

static _Atomic uint64_t *
slot_words(struct sl_metrics_worker *w, enum sl_metrics_kind kind, unsigned slot)
{
    _Atomic uint64_t *chunk;

    if (w == NULL || slot >= SL_METRICS_MAX_NAMES)
        return NULL;
    chunk = atomic_load_explicit(&w->chunks[kind][slot / CHUNK_SLOTS], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    return chunk + (size_t)(slot % CHUNK_SLOTS) * w->m->words[kind];
}

static void
observe(const struct sl_metrics *m, _Atomic uint64_t *hist, uint64_t us)
{
    size_t lo = 0, hi = m->nbuckets;

    /* first bound >= us: buckets are "less than or equal" */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (m->bounds_us[mid] < us)
            lo = mid + 1;
        else
            hi = mid;
    }
    bump(&hist[lo], 1);
    bump(&hist[m->nbuckets + 1], us);
}

void
sl_metrics_request_start(struct sl_metrics_worker *w)
{
    if (w != NULL)
        bump(&w->scalars[S_IN_FLIGHT], 1);
}

void
sl_metrics_request(struct sl_metrics_worker *w, unsigned route, enum sl_metrics_method method,
                   int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us)
{
    _Atomic uint64_t *s;

    if (w == NULL)
        return;
    bump(&w->scalars[S_IN_FLIGHT], (uint64_t)-1);
    s = slot_words(w, SL_METRICS_ROUTE, route);
    if (s == NULL)
        return;
    if ((unsigned)method >= NMETHODS)
        method = SL_METRICS_OTHER;
    bump(&s[R_REQUESTS + (size_t)method * NCLASSES + status_class(status)], 1);
    bump(&s[R_RX], bytes_in);
    bump(&s[R_TX], bytes_out);
    observe(w->m, &s[R_HIST], duration_us);
}

void
sl_metrics_consumer(struct sl_metrics_worker *w, unsigned route, const char *consumer,
                    size_t len)
{
    struct consumers *c;

    if (w == NULL || route >= SL_METRICS_MAX_NAMES)
        return;
    c = atomic_load_explicit(&w->consumers[route], memory_order_acquire);
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    sl_topk_add(&c->topk, consumer, len);
    pthread_mutex_unlock(&c->lock);
}

void
sl_metrics_limiter(struct sl_metrics_worker *w, unsigned route, uint64_t duration_us)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_ROUTE, route);

    if (s != NULL)
        observe(w->m, &s[R_HIST + w->m->hist_words], duration_us);
}

void
sl_metrics_limit(struct sl_metrics_worker *w, unsigned limit, enum sl_metrics_limit_result result)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_LIMIT, limit);

    if (s != NULL && (unsigned)result < NRESULTS)
        bump(&s[L_RESULTS + result], 1);
}

void
sl_metrics_limit_key_error(struct sl_metrics_worker *w, unsigned limit)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_LIMIT, limit);

    if (s != NULL)
        bump(&s[L_KEY_ERRORS], 1);
}

void
sl_metrics_store_call(struct sl_metrics_worker *w, enum sl_metrics_backend backend,
                      uint64_t duration_us)
{
    if (w != NULL && (unsigned)backend < NBACKENDS)
        observe(w->m, &w->scalars[S_HIST + (size_t)backend * w->m->hist_words], duration_us);
}

void
sl_metrics_store_error(struct sl_metrics_worker *w, enum sl_metrics_store_error kind)
{
    if (w != NULL && (unsigned)kind < NSTORE_ERRORS)
        bump(&w->scalars[S_STORE_ERRORS + kind], 1);
}

void
sl_metrics_store_reconnect(struct sl_metrics_worker *w)
{
    if (w != NULL)
        bump(&w->scalars[S_RECONNECTS], 1);
}

void
sl_metrics_store_noscript(struct sl_metrics_worker *w)
{
    if (w != NULL)
        bump(&w->scalars[S_NOSCRIPT], 1);
}

void
sl_metrics_lease(struct sl_metrics_worker *w, enum sl_metrics_lease what, uint64_t n)
{
    if (w != NULL)
        bump(&w->scalars[S_LEASE + what], n);
}

void
sl_metrics_local_store_evictions(struct sl_metrics_worker *w, uint64_t n)
{
    if (w != NULL)
        bump(&w->scalars[S_LOCAL_EVICTIONS], n);
}

void
sl_metrics_store_state(struct sl_metrics_worker *w, enum sl_metrics_store_state state)
{
    if (w != NULL && (unsigned)state < NSTATES)
        atomic_store_explicit(&w->scalars[S_STATE], (uint64_t)state + 1, memory_order_relaxed);
}

void
sl_metrics_upstream_response(struct sl_metrics_worker *w, unsigned upstream, int status,
                             uint64_t ttfb_us)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    if (s == NULL)
        return;
    bump(&s[U_RESPONSES + status_class(status)], 1);
    observe(w->m, &s[U_HIST], ttfb_us);
}

void
sl_metrics_upstream_error(struct sl_metrics_worker *w, unsigned upstream,
                          enum sl_metrics_upstream_error kind)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    if (s != NULL && (unsigned)kind < NUPSTREAM_ERRORS)
        bump(&s[U_ERRORS + kind], 1);
}

void
sl_metrics_upstream_gauge(struct sl_metrics_worker *w, unsigned upstream,
                          enum sl_metrics_upstream_gauge gauge, int delta)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    /* two's complement wrap-around: the sum over workers comes out right */
    if (s != NULL && (unsigned)gauge < 3)
        bump(&s[U_GAUGES + gauge], (uint64_t)(int64_t)delta);
}

void
sl_metrics_shed(struct sl_metrics_worker *w, unsigned upstream)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    if (s != NULL)
        bump(&s[U_SHED], 1);
}

void
sl_metrics_upstream_retry(struct sl_metrics_worker *w, unsigned upstream,
                          enum sl_metrics_retry_reason reason)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    if (s != NULL && (unsigned)reason < NRETRY_REASONS)
        bump(&s[U_RETRIES + reason], 1);
}

void
sl_metrics_upstream_retry_refused(struct sl_metrics_worker *w, unsigned upstream)
{
    _Atomic uint64_t *s = slot_words(w, SL_METRICS_UPSTREAM, upstream);

    if (s != NULL)
        bump(&s[U_RETRIES_REFUSED], 1);
}

void
sl_metrics_client_open(struct sl_metrics_worker *w)
{
    if (w == NULL)
        return;
    bump(&w->scalars[S_CONNECTIONS], 1);
    bump(&w->scalars[S_ACCEPTED], 1);
}

void
sl_metrics_client_close(struct sl_metrics_worker *w)
{
    if (w != NULL)
        bump(&w->scalars[S_CONNECTIONS], (uint64_t)-1);
}

void
sl_metrics_tunnel(struct sl_metrics_worker *w, int delta)
{
    if (w != NULL)
        bump(&w->scalars[S_TUNNELS], (uint64_t)(int64_t)delta);
}

/* ==== process-wide ========================================================================= */

void
sl_metrics_config_loaded(struct sl_metrics *m, bool is_reload, bool is_ok, uint64_t duration_us)
{
    if (is_reload) {
        atomic_fetch_add_explicit(is_ok ? &m->reloads_ok : &m->reloads_failed, 1,
                                  memory_order_relaxed);
        atomic_store(&m->is_last_reload_ok, is_ok);
    } else if (is_ok) {
        atomic_store(&m->is_last_reload_ok, true);
    }
    if (is_ok) {
        atomic_store(&m->load_time, sl_clock_wall());
        atomic_store(&m->load_duration_us, duration_us);
    }
}

void
sl_metrics_set_process_start(struct sl_metrics *m, double epoch_s)
{
    atomic_store(&m->start_time, epoch_s);
}

/* ==== rendering ============================================================================= */

/*
 * The scrape text, in a buffer bounded by RENDER_MAX. Names are capped at
 * SL_METRICS_MAX_NAMES per kind and a line stays under 1 KiB (labels under
 * 3 * MAX_LABEL_BYTES), which makes about 280 series lines per name and
 * under 300 MiB in the very worst case; real confs are kilobytes. Were a
 * scrape to pass it anyway, the series that do not fit are left out (every
 * line kept is whole) rather than the process growing without end.
 */
#define RENDER_MAX (512u << 20)

struct out {
    struct sl_buf buf;
};

static void
emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
emit(struct out *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sl_buf_vprintf(&o->buf, fmt, ap); /* past RENDER_MAX: the line is left out */
    va_end(ap);
}

static void
head(struct out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
sum_scalar(const struct sl_metrics *m, size_t word)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < m->nworkers; i++)
        v += peek(&m->workers[i]->scalars[word]);
    return v;
}

static uint64_t
sum_slot(const struct sl_metrics *m, enum sl_metrics_kind kind, size_t slot, size_t word)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < m->nworkers; i++) {
        _Atomic uint64_t *chunk = atomic_load_explicit(
            &m->workers[i]->chunks[kind][slot / CHUNK_SLOTS], memory_order_acquire);

        v += peek(&chunk[(slot % CHUNK_SLOTS) * m->words[kind] + word]);
    }
    return v;
}

/*
 * The lines of one histogram series: `counts` has nbuckets + 1 entries, per
 * bucket (not cumulative), +Inf last; `le` the nbuckets bounds as text.
 * `labels` is "" or `name="value",` (with the trailing comma) and goes
 * before le.
 */
static void
histogram_lines(struct out *o, const char *name, const char *labels, size_t nbuckets,
                const char (*le)[32], const uint64_t *counts, uint64_t sum_us)
{
    uint64_t cumulative = 0;
    char sum[32];
    size_t len = strlen(labels);

    for (size_t b = 0; b <= nbuckets; b++) {
        cumulative += counts[b];
        emit(o, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels,
             b < nbuckets ? le[b] : "+Inf", cumulative);
    }
    format_seconds(sum, sizeof(sum), sum_us);
    /* labels without the trailing comma, or no braces at all */
    if (len > 0)
        emit(o, "%s_sum{%.*s} %s\n%s_count{%.*s} %" PRIu64 "\n", name, (int)len - 1, labels,
             sum, name, (int)len - 1, labels, cumulative);
    else
        emit(o, "%s_sum %s\n%s_count %" PRIu64 "\n", name, sum, name, cumulative);
}

/*
 * One histogram series of the workers' words. `base` is the word offset of
 * its first bucket, in a slot of `kind`, or in the scalars when kind < 0.
 */
static void
histogram(struct out *o, const struct sl_metrics *m, const char *name, const char *labels,
          int kind, size_t slot, size_t base)
{
    uint64_t words[SL_METRICS_MAX_BUCKETS + 2];

    for (size_t b = 0; b <= m->nbuckets + 1; b++) {
        if (kind < 0)
            words[b] = sum_scalar(m, base + b);
        else
            words[b] = sum_slot(m, (enum sl_metrics_kind)kind, slot, base + b);
    }
    histogram_lines(o, name, labels, m->nbuckets, m->le, words, words[m->nbuckets + 1]);
}

static void
render_process(struct out *o, struct sl_metrics *m)
{
    char seconds[32];

    head(o, "sluice_build_info", "gauge", "Always 1; the version label says which sluice runs.");
    emit(o, "sluice_build_info{version=\"%s\"} 1\n", SL_VERSION);
    head(o, "sluice_process_start_time_seconds", "gauge",
         "When the process started, in seconds since the epoch.");
    emit(o, "sluice_process_start_time_seconds %.3f\n", atomic_load(&m->start_time));
    head(o, "sluice_config_reloads_total", "counter", "Conf reloads (SIGHUP), by result.");
    emit(o, "sluice_config_reloads_total{result=\"success\"} %" PRIu64 "\n",
         atomic_load(&m->reloads_ok));
    emit(o, "sluice_config_reloads_total{result=\"failure\"} %" PRIu64 "\n",
         atomic_load(&m->reloads_failed));
    head(o, "sluice_config_last_reload_successful", "gauge",
         "1 when the last load or reload of the conf succeeded, 0 when it failed.");
    emit(o, "sluice_config_last_reload_successful %d\n",
         atomic_load(&m->is_last_reload_ok) ? 1 : 0);
    head(o, "sluice_config_load_timestamp_seconds", "gauge",
         "When the conf in use was loaded, in seconds since the epoch.");
    emit(o, "sluice_config_load_timestamp_seconds %.3f\n", atomic_load(&m->load_time));
    head(o, "sluice_config_load_duration_seconds", "gauge",
         "How long loading and validating the conf in use took.");
    format_seconds(seconds, sizeof(seconds), atomic_load(&m->load_duration_us));
    emit(o, "sluice_config_load_duration_seconds %s\n", seconds);
}

static void
render_http(struct out *o, struct sl_metrics *m)
{
    const struct name_table *routes = &m->names[SL_METRICS_ROUTE];
    char labels[64 + 3 * MAX_LABEL_BYTES];

    head(o, "sluice_client_connections", "gauge", "Client connections open now.");
    emit(o, "sluice_client_connections %" PRId64 "\n", (int64_t)sum_scalar(m, S_CONNECTIONS));
    head(o, "sluice_client_connections_accepted_total", "counter", "Client connections accepted.");
    emit(o, "sluice_client_connections_accepted_total %" PRIu64 "\n", sum_scalar(m, S_ACCEPTED));
    head(o, "sluice_requests_in_flight", "gauge", "Requests read and not yet finished.");
    emit(o, "sluice_requests_in_flight %" PRId64 "\n", (int64_t)sum_scalar(m, S_IN_FLIGHT));
    head(o, "sluice_tunnels", "gauge",
         "Upgraded connections (WebSocket) relaying bytes both ways now.");
    emit(o, "sluice_tunnels %" PRId64 "\n", (int64_t)sum_scalar(m, S_TUNNELS));

    head(o, "sluice_http_requests_total", "counter",
         "Requests finished, by route, method and status class of the response.");
    for (size_t r = 0; r < routes->n; r++) {
        for (size_t me = 0; me < NMETHODS; me++) {
            for (size_t c = 0; c < NCLASSES; c++) {
                uint64_t v = sum_slot(m, SL_METRICS_ROUTE, r, R_REQUESTS + me * NCLASSES + c);

                /* 56 series per route would be mostly zeros: show those seen */
                if (v != 0)
                    emit(o,
                         "sluice_http_requests_total{route=\"%s\",method=\"%s\","
                         "status_class=\"%s\"} %" PRIu64 "\n",
                         routes->label[r], method_names[me], class_names[c], v);
            }
        }
    }
    head(o, "sluice_http_received_bytes_total", "counter",
         "Request bytes read from clients, head and body, by route.");
    for (size_t r = 0; r < routes->n; r++)
        emit(o, "sluice_http_received_bytes_total{route=\"%s\"} %" PRIu64 "\n", routes->label[r],
             sum_slot(m, SL_METRICS_ROUTE, r, R_RX));
    head(o, "sluice_http_sent_bytes_total", "counter",
         "Response bytes written to clients, head and body, by route.");
    for (size_t r = 0; r < routes->n; r++)
        emit(o, "sluice_http_sent_bytes_total{route=\"%s\"} %" PRIu64 "\n", routes->label[r],
             sum_slot(m, SL_METRICS_ROUTE, r, R_TX));

    head(o, "sluice_http_request_duration_seconds", "histogram",
         "Time from the first byte of a request to the last byte of its response, by route.");
    for (size_t r = 0; r < routes->n; r++) {
        snprintf(labels, sizeof(labels), "route=\"%s\",", routes->label[r]);
        histogram(o, m, "sluice_http_request_duration_seconds", labels, SL_METRICS_ROUTE, r,
                  R_HIST);
    }
    head(o, "sluice_limiter_duration_seconds", "histogram",
         "Time the limiter took to decide on a request (key functions and store call), by "
         "route.");
    for (size_t r = 0; r < routes->n; r++) {
        snprintf(labels, sizeof(labels), "route=\"%s\",", routes->label[r]);
        histogram(o, m, "sluice_limiter_duration_seconds", labels, SL_METRICS_ROUTE, r,
                  R_HIST + m->hist_words);
    }
}

static void
render_limits(struct out *o, struct sl_metrics *m)
{
    const struct name_table *limits = &m->names[SL_METRICS_LIMIT];

    head(o, "sluice_ratelimit_decisions_total", "counter",
         "Outcomes of rate-limit checks, by limit and result.");
    for (size_t l = 0; l < limits->n; l++)
        for (size_t r = 0; r < NRESULTS; r++)
            emit(o, "sluice_ratelimit_decisions_total{limit=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                 limits->label[l], result_names[r],
                 sum_slot(m, SL_METRICS_LIMIT, l, L_RESULTS + r));
    head(o, "sluice_ratelimit_key_errors_total", "counter",
         "Key or cost functions that raised an error (the limit was skipped), by limit.");
    for (size_t l = 0; l < limits->n; l++)
        emit(o, "sluice_ratelimit_key_errors_total{limit=\"%s\"} %" PRIu64 "\n", limits->label[l],
             sum_slot(m, SL_METRICS_LIMIT, l, L_KEY_ERRORS));
}

static void
render_store(struct out *o, struct sl_metrics *m)
{
    uint64_t in_state[NSTATES] = { 0 };
    char labels[64];

    head(o, "sluice_store_call_duration_seconds", "histogram",
         "Latency of rate-limit store calls, errors and timeouts included, by backend.");
    for (size_t b = 0; b < NBACKENDS; b++) {
        snprintf(labels, sizeof(labels), "backend=\"%s\",", backend_names[b]);
        histogram(o, m, "sluice_store_call_duration_seconds", labels, -1, 0,
                  S_HIST + b * m->hist_words);
    }
    head(o, "sluice_store_errors_total", "counter", "Failed store calls, by kind.");
    for (size_t k = 0; k < NSTORE_ERRORS; k++)
        emit(o, "sluice_store_errors_total{kind=\"%s\"} %" PRIu64 "\n", store_error_names[k],
             sum_scalar(m, S_STORE_ERRORS + k));
    head(o, "sluice_store_reconnects_total", "counter", "Successful reconnections to redis.");
    emit(o, "sluice_store_reconnects_total %" PRIu64 "\n", sum_scalar(m, S_RECONNECTS));
    head(o, "sluice_store_noscript_reloads_total", "counter",
         "Times redis answered NOSCRIPT and the script was loaded again.");
    emit(o, "sluice_store_noscript_reloads_total %" PRIu64 "\n", sum_scalar(m, S_NOSCRIPT));
    head(o, "sluice_local_store_evictions_total", "counter",
         "Live buckets the embedded store dropped before they were full, to stay within "
         "max_keys.");
    emit(o, "sluice_local_store_evictions_total %" PRIu64 "\n",
         sum_scalar(m, S_LOCAL_EVICTIONS));
    head(o, "sluice_lease_takes_total", "counter",
         "Lease blocks asked of the store (limits with lease = true).");
    emit(o, "sluice_lease_takes_total %" PRIu64 "\n",
         sum_scalar(m, S_LEASE + SL_METRICS_LEASE_TAKES));
    head(o, "sluice_lease_tokens_taken_total", "counter",
         "Tokens the store handed out in lease blocks.");
    emit(o, "sluice_lease_tokens_taken_total %.3f\n",
         (double)sum_scalar(m, S_LEASE + SL_METRICS_LEASE_TAKEN_MILLI) / 1000.0);
    head(o, "sluice_lease_tokens_returned_total", "counter",
         "Unused leased tokens given back to the store (lease expiry, reload, shutdown).");
    emit(o, "sluice_lease_tokens_returned_total %.3f\n",
         (double)sum_scalar(m, S_LEASE + SL_METRICS_LEASE_RETURNED_MILLI) / 1000.0);
    head(o, "sluice_lease_admitted_total", "counter",
         "Requests admitted from a leased block without a store call.");
    emit(o, "sluice_lease_admitted_total %" PRIu64 "\n",
         sum_scalar(m, S_LEASE + SL_METRICS_LEASE_ADMITTED));

    for (unsigned i = 0; i < m->nworkers; i++) {
        uint64_t s = peek(&m->workers[i]->scalars[S_STATE]);

        if (s >= 1 && s <= NSTATES)
            in_state[s - 1]++;
    }
    head(o, "sluice_store_state", "gauge",
         "Workers whose limiter is in each store state (redis, local, local_fallback, failing).");
    for (size_t s = 0; s < NSTATES; s++)
        emit(o, "sluice_store_state{state=\"%s\"} %" PRIu64 "\n", state_names[s], in_state[s]);
}

/* ---- redis nodes: counted by every worker's stores (src/store_redis_nodes.c) ---- */

static void
render_node_histograms(struct out *o, const struct sl_redis_node_stats *st, char **labels,
                       size_t n)
{
    const char *name = "sluice_redis_node_call_duration_seconds";
    char le[SL_METRICS_MAX_BUCKETS][32], series[64 + MAX_LABEL_BYTES * 3];

    /* the node table's bounds: those of sl_metrics_new, unless it had entries already */
    for (size_t b = 0; b < st[0].nbounds; b++)
        format_seconds(le[b], sizeof(le[b]), st[0].bounds_us[b]);
    head(o, name, "histogram",
         "Latency of calls answered by each redis node, error replies included, summed over "
         "the workers.");
    for (size_t i = 0; i < n; i++) {
        snprintf(series, sizeof(series), "node=\"%s\",", labels[i]);
        histogram_lines(o, name, series, st[i].nbounds, le, st[i].buckets, st[i].sum_us);
    }
}

_Static_assert(SL_REDIS_NODE_NERRORS == NSTORE_ERRORS, "store_error_names serve both");

static void
render_redis_nodes(struct out *o)
{
    static const char *const redirect_names[2] = { "moved", "ask" };
    size_t n = sl_redis_nodes_count();
    struct sl_redis_node_stats *st;
    char **labels;

    if (n == 0)
        return; /* no redis store has been set up: no family at all */
    st = sl_xcalloc(n, sizeof(*st));
    labels = sl_xcalloc(n, sizeof(*labels));
    for (size_t i = 0; i < n; i++) {
        sl_redis_nodes_stats(i, &st[i]);
        labels[i] = escape_label(st[i].name);
    }
    head(o, "sluice_redis_node_up", "gauge",
         "Connections to each redis node that are up now, summed over the workers.");
    for (size_t i = 0; i < n; i++)
        emit(o, "sluice_redis_node_up{node=\"%s\"} %" PRId64 "\n", labels[i], st[i].conns_up);
    head(o, "sluice_redis_node_calls_total", "counter",
         "Calls answered by each redis node, error replies included.");
    for (size_t i = 0; i < n; i++)
        emit(o, "sluice_redis_node_calls_total{node=\"%s\"} %" PRIu64 "\n", labels[i],
             st[i].calls);
    head(o, "sluice_redis_node_errors_total", "counter",
         "Failed calls to each redis node, by kind.");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < SL_REDIS_NODE_NERRORS; k++)
            emit(o, "sluice_redis_node_errors_total{node=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                 labels[i], store_error_names[k], st[i].errors[k]);
    head(o, "sluice_redis_node_redirects_total", "counter",
         "MOVED and ASK redirections answered by each redis cluster node, by kind.");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < 2; k++)
            emit(o, "sluice_redis_node_redirects_total{node=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                 labels[i], redirect_names[k], st[i].redirects[k]);
    render_node_histograms(o, st, labels, n);
    for (size_t i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
    free(st);
}

static void
render_upstreams(struct out *o, struct sl_metrics *m)
{
    static const char *const gauge_states[2] = { "idle", "active" };
    const struct name_table *ups = &m->names[SL_METRICS_UPSTREAM];
    char labels[64 + 3 * MAX_LABEL_BYTES];

    head(o, "sluice_upstream_ttfb_seconds", "histogram",
         "Time from sending a request upstream to the first byte of its response, by upstream.");
    for (size_t u = 0; u < ups->n; u++) {
        snprintf(labels, sizeof(labels), "upstream=\"%s\",", ups->label[u]);
        histogram(o, m, "sluice_upstream_ttfb_seconds", labels, SL_METRICS_UPSTREAM, u, U_HIST);
    }
    head(o, "sluice_upstream_responses_total", "counter",
         "Response heads received from upstreams, by upstream and status class.");
    for (size_t u = 0; u < ups->n; u++) {
        for (size_t c = 0; c < NCLASSES; c++) {
            uint64_t v = sum_slot(m, SL_METRICS_UPSTREAM, u, U_RESPONSES + c);

            if (v != 0)
                emit(o,
                     "sluice_upstream_responses_total{upstream=\"%s\",status_class=\"%s\"} "
                     "%" PRIu64 "\n",
                     ups->label[u], class_names[c], v);
        }
    }
    head(o, "sluice_upstream_errors_total", "counter",
         "Upstream connect failures, timeouts and broken responses, by upstream and kind.");
    for (size_t u = 0; u < ups->n; u++)
        for (size_t k = 0; k < NUPSTREAM_ERRORS; k++)
            emit(o, "sluice_upstream_errors_total{upstream=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
                 ups->label[u], upstream_error_names[k],
                 sum_slot(m, SL_METRICS_UPSTREAM, u, U_ERRORS + k));
    head(o, "sluice_upstream_connections", "gauge",
         "Upstream connections now, by upstream and state: idle (kept alive in the pool) or "
         "active.");
    for (size_t u = 0; u < ups->n; u++)
        for (size_t g = 0; g < 2; g++)
            emit(o, "sluice_upstream_connections{upstream=\"%s\",state=\"%s\"} %" PRId64 "\n",
                 ups->label[u], gauge_states[g],
                 (int64_t)sum_slot(m, SL_METRICS_UPSTREAM, u, U_GAUGES + g));
    head(o, "sluice_upstream_queued_requests", "gauge",
         "Requests waiting for a free upstream connection slot, by upstream.");
    for (size_t u = 0; u < ups->n; u++)
        emit(o, "sluice_upstream_queued_requests{upstream=\"%s\"} %" PRId64 "\n", ups->label[u],
             (int64_t)sum_slot(m, SL_METRICS_UPSTREAM, u, U_GAUGES + SL_METRICS_UPSTREAM_QUEUED));
    head(o, "sluice_requests_shed_total", "counter",
         "Requests refused with 503 because the upstream's in-flight cap and queue were full.");
    for (size_t u = 0; u < ups->n; u++)
        emit(o, "sluice_requests_shed_total{upstream=\"%s\"} %" PRIu64 "\n", ups->label[u],
             sum_slot(m, SL_METRICS_UPSTREAM, u, U_SHED));
    head(o, "sluice_upstream_retries_total", "counter",
         "Requests sent again after a failed attempt, by upstream and reason.");
    for (size_t u = 0; u < ups->n; u++)
        for (size_t r = 0; r < NRETRY_REASONS; r++)
            emit(o, "sluice_upstream_retries_total{upstream=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                 ups->label[u], retry_reason_names[r],
                 sum_slot(m, SL_METRICS_UPSTREAM, u, U_RETRIES + r));
    head(o, "sluice_upstream_retries_refused_total", "counter",
         "Retries not made because the upstream's retry budget was spent, by upstream.");
    for (size_t u = 0; u < ups->n; u++)
        emit(o, "sluice_upstream_retries_refused_total{upstream=\"%s\"} %" PRIu64 "\n",
             ups->label[u], sum_slot(m, SL_METRICS_UPSTREAM, u, U_RETRIES_REFUSED));
}

/* One route's consumers: every worker's table locked at once (the scrape is
 * the only thread that takes more than one), merged, the top N by name. */
static void
render_route_consumers(struct out *o, struct sl_metrics *m, size_t route)
{
    const struct sl_topk **tables = sl_xcalloc(m->nworkers, sizeof(*tables));
    struct sl_topk_entry *top = sl_xcalloc(m->consumer_top[route], sizeof(*top));
    const char *route_label = m->names[SL_METRICS_ROUTE].label[route];
    size_t n = 0, ntop;
    uint64_t other;

    for (unsigned i = 0; i < m->nworkers; i++) {
        struct consumers *c = atomic_load_explicit(&m->workers[i]->consumers[route],
                                                   memory_order_acquire);
        pthread_mutex_lock(&c->lock);
        tables[n++] = &c->topk;
    }
    ntop = sl_topk_merge(tables, n, m->consumer_top[route], top, &other);
    for (unsigned i = 0; i < m->nworkers; i++)
        pthread_mutex_unlock(&atomic_load(&m->workers[i]->consumers[route])->lock);
    for (size_t i = 0; i < ntop; i++) {
        char key[SL_TOPK_KEY_MAX + 1];
        char *label;

        memcpy(key, top[i].key, top[i].len);
        key[top[i].len] = '\0';
        label = escape_label(key);
        emit(o, "sluice_route_consumer_requests{route=\"%s\",consumer=\"%s\"} %" PRIu64 "\n",
             route_label, label, top[i].count);
        free(label);
    }
    emit(o, "sluice_route_consumer_requests{route=\"%s\",consumer=\"other\"} %" PRIu64 "\n",
         route_label, other);
    free(top);
    free(tables);
}

static void
render_consumers(struct out *o, struct sl_metrics *m)
{
    size_t r = 0;

    while (r < m->names[SL_METRICS_ROUTE].n && m->consumer_top[r] == 0)
        r++;
    if (r == m->names[SL_METRICS_ROUTE].n)
        return; /* no route ends: no family at all, as before */
    head(o, "sluice_route_consumer_requests", "gauge",
         "Requests to a route with a deprecation or sunset since start, by consumer: the top N "
         "callers (approximate counts), everyone else under consumer=\"other\".");
    for (; r < m->names[SL_METRICS_ROUTE].n; r++) {
        if (m->consumer_top[r] > 0)
            render_route_consumers(o, m, r);
    }
}

/* ---- the response cache: its stores count for themselves (src/cache.c) ---- */

struct cache_row {
    char *label;
    struct sl_cache_stats st;
};

struct cache_rows {
    struct cache_row *rows;
    size_t n;
};

static void
collect_cache(void *arg, const char *name, struct sl_cache *cache)
{
    struct cache_rows *r = arg;

    r->rows = sl_xrealloc(r->rows, (r->n + 1) * sizeof(*r->rows));
    r->rows[r->n].label = escape_label(name);
    sl_cache_stats(cache, &r->rows[r->n].st);
    r->n++;
}

static void
cache_counter(struct out *o, const struct cache_rows *r, const char *name, const char *type,
              const char *help, size_t off)
{
    head(o, name, type, help);
    for (size_t i = 0; i < r->n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&r->rows[i].st + off, sizeof(v));
        emit(o, "%s{route=\"%s\"} %" PRIu64 "\n", name, r->rows[i].label, v);
    }
}

static void
render_cache(struct out *o)
{
    static const char *const results[] = { "hit", "miss", "stale", "collapsed", "revalidated" };
    struct cache_rows r = { NULL, 0 };

    sl_cache_each(collect_cache, &r);
    head(o, "sluice_cache_requests_total", "counter",
         "Requests on cached routes, by route and result: hit (fresh), miss (went upstream), "
         "stale (served stale), collapsed (served by another request's fetch), revalidated "
         "(a stale entry the upstream confirmed with 304).");
    for (size_t i = 0; i < r.n; i++)
        for (size_t e = 0; e < sizeof(results) / sizeof(results[0]); e++)
            emit(o, "sluice_cache_requests_total{route=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                 r.rows[i].label, results[e], r.rows[i].st.events[e]);
    cache_counter(o, &r, "sluice_cache_not_modified_total", "counter",
                  "304 answers the cache gave to conditional requests, by route.",
                  offsetof(struct sl_cache_stats, events[SL_CACHE_EV_NOT_MODIFIED]));
    cache_counter(o, &r, "sluice_cache_stored_bytes", "gauge",
                  "Bytes the cache's entries count against max_memory, by route.",
                  offsetof(struct sl_cache_stats, bytes));
    cache_counter(o, &r, "sluice_cache_max_bytes", "gauge", "The cache's max_memory, by route.",
                  offsetof(struct sl_cache_stats, max_memory));
    cache_counter(o, &r, "sluice_cache_entries", "gauge",
                  "Entries in the cache (Vary markers included), by route.",
                  offsetof(struct sl_cache_stats, entries));
    cache_counter(o, &r, "sluice_cache_evictions_total", "counter",
                  "Entries pushed out of the cache to make room, by route.",
                  offsetof(struct sl_cache_stats, evictions));
    cache_counter(o, &r, "sluice_cache_admissions_refused_total", "counter",
                  "Responses the admission filter kept out: asked for less often than what "
                  "they would have pushed out, by route.",
                  offsetof(struct sl_cache_stats, refused));
    for (size_t i = 0; i < r.n; i++)
        free(r.rows[i].label);
    free(r.rows);
}

/* ---- idempotency keys (src/phase_idem.c) ---- */

void
sl_metrics_idem(struct sl_metrics_worker *w, enum sl_metrics_idem ev)
{
    if (w != NULL)
        atomic_fetch_add_explicit(&w->m->idem[ev], 1, memory_order_relaxed);
}

static void
render_idem(struct out *o, struct sl_metrics *m)
{
    static const char *const names[SL_METRICS_IDEM_N] = {
        [SL_METRICS_IDEM_STORED] = "stored",       [SL_METRICS_IDEM_REPLAYED] = "replayed",
        [SL_METRICS_IDEM_CONFLICT] = "conflict",   [SL_METRICS_IDEM_MISMATCH] = "mismatch",
        [SL_METRICS_IDEM_RELEASED] = "released",   [SL_METRICS_IDEM_MISSING] = "missing",
        [SL_METRICS_IDEM_UNAVAILABLE] = "unavailable",
    };

    head(o, "sluice_idempotency_total", "counter",
         "Idempotency-Key outcomes: responses stored, replayed, 409 conflict, 422 mismatch, "
         "claims released, 400 missing or invalid key, 503 store unavailable.");
    for (size_t i = 0; i < SL_METRICS_IDEM_N; i++)
        emit(o, "sluice_idempotency_total{result=\"%s\"} %" PRIu64 "\n", names[i],
             atomic_load_explicit(&m->idem[i], memory_order_relaxed));
}

char *
sl_metrics_render(struct sl_metrics *m, size_t *len)
{
    struct out o;

    sl_buf_init(&o.buf, RENDER_MAX);
    pthread_mutex_lock(&m->lock);
    render_process(&o, m);
    render_http(&o, m);
    render_limits(&o, m);
    render_store(&o, m);
    render_redis_nodes(&o);
    render_upstreams(&o, m);
    render_consumers(&o, m);
    render_cache(&o);
    render_idem(&o, m);
    pthread_mutex_unlock(&m->lock);
    return sl_buf_take(&o.buf, len);
}
