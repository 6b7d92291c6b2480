/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream pools. Everything here runs on one worker's event loop. A waiting
 * request's timer does three jobs in turn: the queue wait bound, the connect
 * timeout, and the deferred delivery that keeps callbacks from firing before
 * sl_upstream_acquire returns.
 */
#include "sluice/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/resolver.h"
#include "upstream_balance.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/stream.h"
#include "util/timeval.h"

#define FAILURE_LOG_INTERVAL_US (1000u * 1000u) /* per server and worker */

enum { PHASE_QUEUED = 1, PHASE_CONNECTING, PHASE_DELIVER };

/*
 * Servers come from the conf (numeric) and from the resolver (a host name's
 * addresses). When a name's addresses change, servers that left are taken
 * out of the choice at once and freed with their last connection.
 */
struct server {
    struct sl_sockaddr addr;
    struct sl_balance_peer bal; /* weight, requests in flight, round-robin state */
    struct sl_health_server *health; /* shared with every pool of the process */
    struct sl_log_gate failure_log; /* connect failures */
    struct sl_upconn *idle; /* keep-alive connections to this server, most recent first */
    unsigned nconns;        /* connecting, in use or idle */
    bool is_retired;        /* no longer an address of the pool */
};

/* A host name of the conf, as this pool last saw its addresses. */
struct pool_name {
    struct sl_resolved *resolved;
    uint16_t port;
    uint64_t version;
    unsigned weight; /* of each of its addresses */
};

struct sl_upconn {
    struct sl_upstream_pool *pool;
    struct sl_stream stream;
    struct event idle_timer;
    struct sl_upstream_wait *wait; /* while connecting */
    struct sl_upconn *next, *prev; /* idle list */
    struct server *server;
    bool is_reused;
    bool is_inflight; /* counted in its server's bal.inflight */
    bool is_broken; /* closed or talked while parked between idle and handover */
    bool is_retry_counted; /* carries a retry: counted in pool->retrying until released */
};

struct sl_upstream_pool {
    struct event_base *base;
    const struct sl_upstream_conf *conf;
    struct server **servers; /* those to choose from; retired ones are not in it */
    unsigned nservers, cap;
    struct sl_balance_peer *peers; /* scratch for a choice, cap of them */
    bool *ok;                      /* scratch: which servers a choice may take */
    struct sl_ring ring;           /* balance = "hash:...": over servers, rebuilt as they change */
    unsigned weight_gcd;           /* of the conf's weights, for the ring */
    uint64_t rng;                  /* random2's state */
    struct pool_name *names;
    unsigned nnames;
    struct event *names_timer; /* takes new addresses while no request comes */
    unsigned nidle;
    unsigned active, max_active;
    struct sl_upstream_wait *queue_head, *queue_tail;
    unsigned nqueued, max_queued;
    uint64_t connect_failures, connect_timeouts, shed;
    unsigned retrying; /* requests on a retry now, for the retry budget */
    struct sl_metrics_worker *metrics;
    unsigned slot;
    struct sl_health *health;
};

static void
gauge(struct sl_upstream_pool *pool, enum sl_metrics_upstream_gauge which, int delta)
{
    sl_metrics_upstream_gauge(pool->metrics, pool->slot, which, delta);
}

static void
active_add(struct sl_upstream_pool *pool, int delta)
{
    pool->active = (unsigned)((int)pool->active + delta);
    gauge(pool, SL_METRICS_UPSTREAM_ACTIVE, delta);
}

static void
count_shed(struct sl_upstream_pool *pool)
{
    pool->shed++;
    sl_metrics_shed(pool->metrics, pool->slot);
}

/* The request's retry is over (it failed, was withdrawn, or its
 * connection went back): it leaves the budget's count. */
static void
retry_uncount(struct sl_upstream_pool *pool, bool *is_counted)
{
    if (*is_counted) {
        *is_counted = false;
        pool->retrying--;
    }
}

static enum sl_metrics_retry_reason
retry_reason(unsigned bit)
{
    return bit == SL_RETRY_ON_CONNECT_FAILURE ? SL_METRICS_RETRY_CONNECT_FAILURE
           : bit == SL_RETRY_ON_502           ? SL_METRICS_RETRY_502
           : bit == SL_RETRY_ON_503           ? SL_METRICS_RETRY_503
                                              : SL_METRICS_RETRY_RESET;
}

/*
 * Whether the request may make another attempt for `reason`: the upstream
 * retries on it, the request has retries left, and the budget has room (a
 * request already on a retry holds its place in the count). Counts the
 * retry, or the refusal when the budget alone said no.
 */
static bool
retry_allowed(struct sl_upstream_wait *wait, unsigned reason)
{
    struct sl_upstream_pool *pool = wait->pool;
    const struct sl_retry_conf *rc = &pool->conf->retry;
    unsigned others = pool->retrying - (wait->is_retry_counted ? 1 : 0);

    if (!(rc->on & reason) || wait->retries_used >= rc->retries)
        return false;
    if (!sl_upstream_retry_budget_ok(rc->budget_percent, rc->budget_min,
                                     pool->active + pool->nqueued, others)) {
        sl_metrics_upstream_retry_refused(pool->metrics, pool->slot);
        return false;
    }
    wait->retries_used++;
    if (!wait->is_retry_counted) {
        wait->is_retry_counted = true;
        pool->retrying++;
    }
    sl_metrics_upstream_retry(pool->metrics, pool->slot, retry_reason(reason));
    return true;
}

static bool
is_avoided(const struct sl_upstream_wait *wait, const struct server *srv)
{
    return wait->avoid[0] != '\0' && strcmp(wait->avoid, srv->addr.text) == 0;
}

static void start(struct sl_upstream_wait *wait);
static void connect_next(struct sl_upstream_wait *wait);
static void tries_reset(struct sl_upstream_wait *wait);
static void parked_cb(struct sl_stream *stream, int what, void *arg);
static void idle_drop(struct sl_upconn *conn);

static unsigned
share(unsigned total, unsigned nworkers)
{
    unsigned n = (total + nworkers - 1) / nworkers;
    return n > 0 ? n : 1;
}

static void
server_add(struct sl_upstream_pool *pool, const struct sl_sockaddr *addr, unsigned weight)
{
    struct server *srv = sl_xcalloc(1, sizeof(*srv));

    srv->addr = *addr;
    srv->bal.weight = weight > 0 ? weight : 1;
    srv->health = sl_health_ref(pool->health, pool->conf->name, addr->text);
    if (pool->nservers == pool->cap) {
        pool->cap = pool->cap ? 2 * pool->cap : 4;
        pool->servers = sl_xrealloc(pool->servers, pool->cap * sizeof(*pool->servers));
        pool->peers = sl_xrealloc(pool->peers, pool->cap * sizeof(*pool->peers));
        pool->ok = sl_xrealloc(pool->ok, pool->cap * sizeof(*pool->ok));
    }
    pool->servers[pool->nservers++] = srv;
}

static unsigned
gcd(unsigned a, unsigned b)
{
    while (b != 0) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The ring follows the servers; built when they change, never per request. */
static void
ring_update(struct sl_upstream_pool *pool)
{
    const char **ids;
    unsigned *weights;

    if (pool->conf->balance != SL_BALANCE_HASH)
        return;
    ids = sl_xcalloc(pool->nservers + 1, sizeof(*ids));
    weights = sl_xcalloc(pool->nservers + 1, sizeof(*weights));
    for (unsigned i = 0; i < pool->nservers; i++) {
        ids[i] = pool->servers[i]->addr.text;
        weights[i] = pool->servers[i]->bal.weight;
    }
    sl_ring_build(&pool->ring, ids, weights, pool->nservers, pool->weight_gcd);
    free(weights);
    free(ids);
}

static unsigned
conf_weight(const struct sl_upstream_conf *conf, size_t i)
{
    return conf->weights != NULL ? conf->weights[i] : 1;
}

static void
server_put(struct server *srv)
{
    if (srv->is_retired && srv->nconns == 0) {
        sl_health_unref(srv->health);
        free(srv);
    }
}

static void refresh_names(struct sl_upstream_pool *pool);

/* A worker's pool takes a name's addresses at its next request, and at
 * least once a second without one: /readyz and the per-server metrics read
 * the pool, and a readiness probe that gates the traffic must not wait for
 * the traffic (a Kubernetes Service name before the first request). */
#define NAMES_REFRESH_MS 1000

static void
on_names_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refresh_names(arg);
}

static void
names_timer_start(struct sl_upstream_pool *pool)
{
    struct timeval tv = sl_timeval_from_ms(NAMES_REFRESH_MS);

    if (pool->nnames == 0 || pool->base == NULL)
        return;
    pool->names_timer = event_new(pool->base, -1, EV_PERSIST, on_names_timer, pool);
    if (pool->names_timer == NULL)
        sl_fatalx("event_new failed");
    event_add(pool->names_timer, &tv);
}

struct sl_upstream_pool *
sl_upstream_pool_new(struct event_base *base, const struct sl_upstream_conf *conf,
                     unsigned nworkers, struct sl_metrics_worker *metrics, unsigned slot,
                     struct sl_resolver *resolver, struct sl_health *health)
{
    struct sl_upstream_pool *pool = sl_xcalloc(1, sizeof(*pool));

    pool->health = health;
    pool->metrics = metrics;
    pool->slot = slot;
    pool->base = base;
    pool->conf = conf;
    for (size_t i = 0; i < conf->nservers; i++) {
        server_add(pool, &conf->servers[i], conf_weight(conf, i));
        pool->weight_gcd = gcd(conf_weight(conf, i), pool->weight_gcd);
    }
    for (size_t i = 0; i < conf->nnames; i++)
        pool->weight_gcd = gcd(conf->names[i].weight, pool->weight_gcd);
    pool->rng = sl_balance_seed(sl_clock_now_us() ^ (uint64_t)(uintptr_t)pool);
    pool->names = sl_xcalloc(conf->nnames ? conf->nnames : 1, sizeof(*pool->names));
    for (size_t i = 0; resolver != NULL && i < conf->nnames; i++) {
        struct sl_resolved *res = sl_resolver_ref(resolver, conf->names[i].host);
        if (res != NULL)
            pool->names[pool->nnames++] =
                (struct pool_name){ res, conf->names[i].port, 0, conf->names[i].weight };
    }
    pool->max_active = share(conf->max_inflight, nworkers ? nworkers : 1);
    pool->max_queued = conf->queue ? share(conf->queue, nworkers ? nworkers : 1) : 0;
    ring_update(pool);
    refresh_names(pool); /* the start-up lookups are done by now */
    names_timer_start(pool);
    return pool;
}

/* The connection stops counting as a request in flight to its server. */
static void
inflight_end(struct sl_upconn *conn)
{
    if (conn->is_inflight) {
        conn->is_inflight = false;
        conn->server->bal.inflight--;
    }
}

static void
upconn_free(struct sl_upconn *conn)
{
    inflight_end(conn);
    event_del(&conn->idle_timer);
    sl_stream_fini(&conn->stream);
    conn->server->nconns--;
    server_put(conn->server);
    free(conn);
}

static void
idle_unlink(struct sl_upconn *conn)
{
    struct sl_upstream_pool *pool = conn->pool;

    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        conn->server->idle = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    conn->next = conn->prev = NULL;
    pool->nidle--;
    gauge(pool, SL_METRICS_UPSTREAM_IDLE, -1);
}

void
sl_upstream_pool_free(struct sl_upstream_pool *pool)
{
    if (pool == NULL)
        return;
    if (pool->names_timer != NULL)
        event_free(pool->names_timer);
    for (unsigned i = 0; i < pool->nservers; i++) {
        struct server *srv = pool->servers[i];
        while (srv->idle != NULL) {
            struct sl_upconn *conn = srv->idle;
            idle_unlink(conn);
            upconn_free(conn);
        }
        /* connections still in use (none at a generation's end) free it */
        srv->is_retired = true;
        server_put(srv);
    }
    for (unsigned i = 0; i < pool->nnames; i++)
        sl_resolved_unref(pool->names[i].resolved);
    free(pool->names);
    free(pool->servers);
    free(pool->peers);
    free(pool->ok);
    sl_ring_fini(&pool->ring);
    free(pool);
}

static void
deliver_later(struct sl_upstream_wait *wait, struct sl_upconn *conn, int status)
{
    wait->connecting = conn;
    wait->last_status = status;
    wait->phase = PHASE_DELIVER;
    evtimer_del(&wait->timer);
    event_active(&wait->timer, EV_TIMEOUT, 1);
}

static void
queue_remove(struct sl_upstream_wait *wait)
{
    struct sl_upstream_pool *pool = wait->pool;

    if (wait->prev != NULL)
        wait->prev->next = wait->next;
    else
        pool->queue_head = wait->next;
    if (wait->next != NULL)
        wait->next->prev = wait->prev;
    else
        pool->queue_tail = wait->prev;
    wait->next = wait->prev = NULL;
    wait->is_queued = false;
    pool->nqueued--;
    gauge(pool, SL_METRICS_UPSTREAM_QUEUED, -1);
}

/* A slot freed up: hand it to the longest-waiting request. */
static void
pump_queue(struct sl_upstream_pool *pool)
{
    while (pool->active < pool->max_active && pool->queue_head != NULL) {
        struct sl_upstream_wait *wait = pool->queue_head;
        queue_remove(wait);
        evtimer_del(&wait->timer);
        active_add(pool, 1);
        start(wait);
    }
}

/*
 * At most one line per server, worker and second: a dead upstream under load
 * fails every request, and a line each would flood the log (the failures are
 * all counted in sluice_upstream_errors_total).
 */
static void
log_connect_failure(struct sl_upstream_pool *pool, struct server *srv, const char *why)
{
    uint64_t now = sl_clock_cached_us(), since = srv->failure_log.last_us, held;

    if (!sl_log_gate_pass(&srv->failure_log, now, FAILURE_LOG_INTERVAL_US, &held))
        return;
    if (held > 0)
        sl_log_warnx("upstream \"%s\": connect %s: %s (and %llu more failures in the last "
                     "%.1f s, not logged)", pool->conf->name, srv->addr.text, why,
                     (unsigned long long)held, (double)(now - since) / 1e6);
    else
        sl_log_warnx("upstream \"%s\": connect %s: %s", pool->conf->name, srv->addr.text, why);
}

static void
wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_upstream_wait *wait = arg;
    struct sl_upstream_pool *pool = wait->pool;
    struct sl_upconn *conn;
    int status;

    (void)fd;
    (void)what;
    switch (wait->phase) {
    case PHASE_QUEUED:
        queue_remove(wait);
        count_shed(pool);
        retry_uncount(pool, &wait->is_retry_counted);
        wait->is_active = false;
        wait->cb(wait->arg, NULL, 503);
        return;
    case PHASE_CONNECTING:
        conn = wait->connecting;
        wait->connecting = NULL;
        pool->connect_timeouts++;
        sl_metrics_upstream_error(pool->metrics, pool->slot, SL_METRICS_UPSTREAM_CONNECT_TIMEOUT);
        log_connect_failure(pool, conn->server, "timed out");
        sl_health_failed(conn->server->health, &pool->conf->health, sl_clock_now_us());
        upconn_free(conn);
        wait->last_status = 504;
        connect_next(wait);
        return;
    case PHASE_DELIVER:
        conn = wait->connecting;
        status = wait->last_status;
        wait->connecting = NULL;
        if (conn != NULL && conn->is_broken) {
            /* The kept-alive connection died while parked; nothing was sent
             * on it, so a fresh one is no second attempt at the request. */
            upconn_free(conn);
            tries_reset(wait);
            wait->last_status = 502;
            connect_next(wait);
            return;
        }
        wait->is_active = false;
        if (conn == NULL) {
            retry_uncount(pool, &wait->is_retry_counted);
            active_add(pool, -1);
            pump_queue(pool);
        } else {
            conn->is_retry_counted = wait->is_retry_counted;
            wait->is_retry_counted = false;
        }
        wait->cb(wait->arg, conn, status);
        return;
    default:
        return;
    }
}

/* A slot, a place in the queue, or 503. */
static void
enter(struct sl_upstream_pool *pool, struct sl_upstream_wait *wait)
{
    if (pool->active < pool->max_active) {
        active_add(pool, 1);
        start(wait);
        return;
    }
    if (pool->nqueued < pool->max_queued) {
        struct timeval tv = sl_timeval_from_ms(pool->conf->timeout_ms);
        wait->phase = PHASE_QUEUED;
        wait->is_queued = true;
        wait->prev = pool->queue_tail;
        if (pool->queue_tail != NULL)
            pool->queue_tail->next = wait;
        else
            pool->queue_head = wait;
        pool->queue_tail = wait;
        pool->nqueued++;
        gauge(pool, SL_METRICS_UPSTREAM_QUEUED, 1);
        evtimer_add(&wait->timer, &tv);
        return;
    }
    count_shed(pool);
    /* Counted as active until delivery gives the slot back. */
    active_add(pool, 1);
    deliver_later(wait, NULL, 503);
}

/* The hash key is the caller's, set before acquire (see upstream.h). */
static void
wait_init(struct sl_upstream_pool *pool, struct sl_upstream_wait *wait, sl_upstream_cb *cb,
          void *arg)
{
    uint64_t hash = wait->hash;
    bool has_hash = wait->has_hash;

    memset(wait, 0, sizeof(*wait));
    wait->hash = hash;
    wait->has_hash = has_hash;
    wait->pool = pool;
    wait->cb = cb;
    wait->arg = arg;
    wait->is_active = true;
    evtimer_assign(&wait->timer, pool->base, wait_timer_cb, wait);
}

void
sl_upstream_acquire(struct sl_upstream_pool *pool, struct sl_upstream_wait *wait,
                    sl_upstream_cb *cb, void *arg)
{
    wait_init(pool, wait, cb, arg);
    enter(pool, wait);
}

bool
sl_upstream_retry(struct sl_upconn *conn, struct sl_upstream_wait *wait, unsigned reason,
                  sl_upstream_cb *cb, void *arg)
{
    struct sl_upstream_pool *pool = conn->pool;
    unsigned used;
    bool is_counted;

    /* Weighed while the failed attempt still holds its slot, so the request
     * counts as in flight; a place it held in the retry count passes on to
     * this retry rather than being held against it. */
    wait->pool = pool;
    wait->is_retry_counted = conn->is_retry_counted;
    conn->is_retry_counted = false;
    if (!retry_allowed(wait, reason)) {
        conn->is_retry_counted = wait->is_retry_counted;
        wait->is_retry_counted = false;
        return false;
    }
    used = wait->retries_used;
    is_counted = wait->is_retry_counted;
    wait_init(pool, wait, cb, arg);
    wait->retries_used = used;
    wait->is_retry_counted = is_counted;
    snprintf(wait->avoid, sizeof(wait->avoid), "%s", conn->server->addr.text);
    sl_upstream_release(conn, false);
    enter(pool, wait);
    return true;
}

void
sl_upstream_cancel(struct sl_upstream_wait *wait)
{
    struct sl_upstream_pool *pool = wait->pool;

    if (!wait->is_active)
        return;
    wait->is_active = false;
    evtimer_del(&wait->timer);
    retry_uncount(pool, &wait->is_retry_counted);
    if (wait->is_queued) {
        queue_remove(wait);
        return;
    }
    if (wait->connecting != NULL) {
        if (wait->phase == PHASE_DELIVER) {
            /* Connected but not yet handed over: keep it if we can. */
            sl_upstream_release(wait->connecting, true);
            wait->connecting = NULL;
            return;
        }
        upconn_free(wait->connecting);
        wait->connecting = NULL;
    }
    active_add(pool, -1);
    pump_queue(pool);
}

/* ---- host names ---------------------------------------------------------- */

/* The pool's addresses as the conf and the names now give them (at most
 * nconf + nnames * SL_RESOLVED_MAX), with their weights (a name's go to
 * each of its addresses); how many. */
static size_t
wanted_addresses(struct sl_upstream_pool *pool, struct sl_sockaddr *out, unsigned *weights)
{
    struct sockaddr_storage found[SL_RESOLVED_MAX];
    size_t n = 0;

    for (size_t i = 0; i < pool->conf->nservers; i++) {
        weights[n] = conf_weight(pool->conf, i);
        out[n++] = pool->conf->servers[i];
    }
    for (unsigned i = 0; i < pool->nnames; i++) {
        struct pool_name *pn = &pool->names[i];
        size_t got = sl_resolved_addresses(pn->resolved, found, SL_RESOLVED_MAX, &pn->version);
        for (size_t j = 0; j < got; j++) {
            struct sl_sockaddr a;
            bool is_dup = false;
            sl_sockaddr_from(&found[j], pn->port, &a);
            for (size_t k = 0; k < n && !is_dup; k++)
                is_dup = strcmp(out[k].text, a.text) == 0;
            if (!is_dup) {
                weights[n] = pn->weight;
                out[n++] = a;
            }
        }
    }
    return n;
}

/*
 * A name's addresses moved: servers still wanted keep their state and their
 * kept-alive connections; the others leave the round-robin, their idle
 * connections are closed and those in use finish where they are.
 */
static void
servers_update(struct sl_upstream_pool *pool)
{
    size_t max = pool->conf->nservers + (size_t)pool->nnames * SL_RESOLVED_MAX;
    struct sl_sockaddr *want = sl_xcalloc(max ? max : 1, sizeof(*want));
    unsigned *weights = sl_xcalloc(max ? max : 1, sizeof(*weights));
    size_t nwant = wanted_addresses(pool, want, weights);
    bool *is_kept = sl_xcalloc(nwant ? nwant : 1, sizeof(*is_kept));
    unsigned n = 0;

    for (unsigned i = 0; i < pool->nservers; i++) {
        struct server *srv = pool->servers[i];
        bool is_wanted = false;
        for (size_t k = 0; k < nwant && !is_wanted; k++) {
            is_wanted = !is_kept[k] && strcmp(want[k].text, srv->addr.text) == 0;
            if (is_wanted)
                is_kept[k] = true;
        }
        if (is_wanted) {
            pool->servers[n++] = srv;
            continue;
        }
        srv->is_retired = true;
        srv->nconns++; /* held while its idle connections go */
        while (srv->idle != NULL)
            idle_drop(srv->idle);
        srv->nconns--;
        server_put(srv);
    }
    pool->nservers = n;
    for (size_t k = 0; k < nwant; k++) {
        if (!is_kept[k])
            server_add(pool, &want[k], weights[k]);
    }
    free(is_kept);
    free(weights);
    free(want);
    ring_update(pool);
}

/* Cheap for every request: one atomic load per host name. */
static void
refresh_names(struct sl_upstream_pool *pool)
{
    for (unsigned i = 0; i < pool->nnames; i++) {
        if (sl_resolved_version(pool->names[i].resolved) != pool->names[i].version) {
            servers_update(pool);
            return;
        }
    }
}

static void
tries_reset(struct sl_upstream_wait *wait)
{
    wait->attempts = 0;
    wait->nconnects = 0;
    memset(wait->tried, 0, sizeof(wait->tried));
}

/* ---- health ------------------------------------------------------------------ */

/* Marked down by the active check; only pools that have one believe it. */
static bool
is_down(const struct sl_upstream_pool *pool, const struct server *srv)
{
    return pool->conf->health.path != NULL && sl_health_is_down(srv->health);
}

static bool
is_usable(const struct sl_upstream_pool *pool, const struct server *srv, uint64_t now_us)
{
    return !is_down(pool, srv) && !sl_health_is_ejected(srv->health, now_us);
}

/* With active checks, every server down means no connect is worth trying. */
static bool
is_all_down(const struct sl_upstream_pool *pool)
{
    if (pool->conf->health.path == NULL)
        return false;
    for (unsigned i = 0; i < pool->nservers; i++) {
        if (!sl_health_is_down(pool->servers[i]->health))
            return false;
    }
    return true;
}

void
sl_upstream_report(struct sl_upconn *conn, int status)
{
    const struct sl_health_conf *hc = &conn->pool->conf->health;

    if (!hc->is_passive_5xx)
        return;
    if (status >= 500)
        sl_health_failed(conn->server->health, hc, sl_clock_now_us());
    else
        sl_health_succeeded(conn->server->health);
}

static void
start(struct sl_upstream_wait *wait)
{
    struct sl_upstream_pool *pool = wait->pool;

    refresh_names(pool);
    if (pool->nservers == 0) {
        /* a host name with no address yet, or none any more */
        deliver_later(wait, NULL, 502);
        return;
    }
    tries_reset(wait);
    if (is_all_down(pool)) {
        wait->is_all_down = true;
        deliver_later(wait, NULL, 503);
        return;
    }
    wait->last_status = 502;
    connect_next(wait);
}

static void
parked_cb(struct sl_stream *stream, int what, void *arg)
{
    struct sl_upconn *conn = arg;

    (void)stream;
    if (what & (SL_STREAM_READ | SL_STREAM_EOF | SL_STREAM_ERROR))
        conn->is_broken = true;
}

static void
connect_event_cb(struct sl_stream *stream, int what, void *arg)
{
    struct sl_upconn *conn = arg;
    struct sl_upstream_wait *wait = conn->wait;
    struct sl_upstream_pool *pool = conn->pool;

    if (what & SL_STREAM_CONNECTED) {
        int one = 1;
        if (conn->server->addr.ss.ss_family != AF_UNIX)
            setsockopt(stream->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn->wait = NULL;
        if (!pool->conf->health.is_passive_5xx)
            sl_health_succeeded(conn->server->health);
        sl_stream_setcb(stream, parked_cb, conn);
        deliver_later(wait, conn, 0);
        return;
    }
    pool->connect_failures++;
    sl_metrics_upstream_error(pool->metrics, pool->slot, SL_METRICS_UPSTREAM_CONNECT_ERROR);
    log_connect_failure(pool, conn->server, strerror(stream->error));
    sl_health_failed(conn->server->health, &pool->conf->health, sl_clock_now_us());
    evtimer_del(&wait->timer);
    wait->connecting = NULL;
    upconn_free(conn);
    connect_next(wait);
}

static void
idle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    idle_drop(arg);
}

#define TRIED_BITS (8 * sizeof(((struct sl_upstream_wait *)0)->tried))

static bool
is_tried(const struct sl_upstream_wait *wait, unsigned idx)
{
    return idx < TRIED_BITS && (wait->tried[idx / 64] & ((uint64_t)1 << (idx % 64)));
}

/* Not marked down by a recent failure. */
/*
 * The balance algorithm's choice among the servers this request has not
 * tried, only those usable unless is_down_ok, and then never one the active
 * check marked down; -1 when there is none. The ring of
 * "hash:..." is followed past servers not to be taken, so a key whose server
 * is down goes to the next one on the ring (and comes back with it).
 */
static int
choose(struct sl_upstream_wait *wait, bool is_down_ok)
{
    struct sl_upstream_pool *pool = wait->pool;
    uint64_t now = sl_clock_cached_us();
    unsigned n = pool->nservers;
    bool is_any = false;
    int idx;

    for (unsigned i = 0; i < n; i++) {
        struct server *srv = pool->servers[i];
        /* the server a retry avoids counts as down: it is taken last */
        pool->ok[i] = !is_tried(wait, i)
                      && (is_down_ok ? !is_down(pool, srv)
                                     : is_usable(pool, srv, now) && !is_avoided(wait, srv));
        pool->peers[i] = pool->servers[i]->bal;
        is_any = is_any || pool->ok[i];
    }
    if (!is_any)
        return -1;
    switch (pool->conf->balance) {
    case SL_BALANCE_LEAST_CONN:
        idx = sl_balance_least(pool->peers, n, pool->ok);
        break;
    case SL_BALANCE_RANDOM2:
        idx = sl_balance_p2c(pool->peers, n, pool->ok, &pool->rng);
        break;
    case SL_BALANCE_HASH:
        /* a request without the key is spread like any other (HAProxy's
         * balance hdr() does the same) */
        if (wait->has_hash) {
            idx = sl_ring_pick(&pool->ring, wait->hash, pool->ok);
            break;
        }
        /* fall through */
    case SL_BALANCE_ROUND_ROBIN:
    default:
        idx = sl_balance_swrr(pool->peers, n, pool->ok);
        break;
    }
    for (unsigned i = 0; i < n; i++)
        pool->servers[i]->bal.current = pool->peers[i].current;
    return idx;
}

/*
 * The next server for this request: first among those usable, then among
 * those ejected (passive health), never one the active check marked down.
 * Each server is tried at most once per request (a failure ejects it, which
 * must not earn it a second attempt in the second pass); past the first TRIED_BITS servers of a pool that holds more,
 * the bound on attempts is what ends the search.
 */
static int
next_server(struct sl_upstream_wait *wait)
{
    int idx;

    if (wait->attempts >= wait->pool->nservers)
        return -1;
    idx = choose(wait, false);
    if (idx < 0)
        idx = choose(wait, true);
    if (idx < 0)
        return -1;
    wait->attempts++;
    if ((unsigned)idx < TRIED_BITS)
        wait->tried[idx / 64] |= (uint64_t)1 << (idx % 64);
    return idx;
}

/* Hands the request a kept-alive connection to srv, if it has one. */
static bool
reuse_idle(struct sl_upstream_wait *wait, struct server *srv)
{
    struct sl_upconn *conn = srv->idle;

    if (conn == NULL || !is_usable(wait->pool, srv, sl_clock_cached_us()))
        return false;
    idle_unlink(conn);
    event_del(&conn->idle_timer);
    sl_stream_setcb(&conn->stream, parked_cb, conn);
    conn->is_reused = true;
    conn->is_inflight = true;
    srv->bal.inflight++;
    deliver_later(wait, conn, 0);
    return true;
}

static void
connect_next(struct sl_upstream_wait *wait)
{
    struct sl_upstream_pool *pool = wait->pool;
    int idx;

    while ((idx = next_server(wait)) >= 0) {
        struct server *srv = pool->servers[idx];
        struct sl_upconn *conn;
        struct timeval tv = sl_timeval_from_ms(pool->conf->connect_timeout_ms);

        /* The server is chosen first and only then a kept-alive connection
         * to it looked for (as nginx's keepalive module does), so keep-alive
         * never pins all traffic to the server that answered first. */
        if (reuse_idle(wait, srv))
            return;
        /* a connect after a failed one is a retry like any other */
        if (wait->nconnects > 0 && !retry_allowed(wait, SL_RETRY_ON_CONNECT_FAILURE))
            break;
        wait->nconnects++;
        conn = sl_xcalloc(1, sizeof(*conn));
        conn->pool = pool;
        conn->wait = wait;
        evtimer_assign(&conn->idle_timer, pool->base, idle_timer_cb, conn);
        if (sl_stream_connect(&conn->stream, pool->base, (const struct sockaddr *)&srv->addr.ss,
                              srv->addr.len, connect_event_cb, conn)
            != 0) {
            log_connect_failure(pool, srv, strerror(errno));
            event_del(&conn->idle_timer);
            free(conn);
            pool->connect_failures++;
            sl_metrics_upstream_error(pool->metrics, pool->slot,
                                      SL_METRICS_UPSTREAM_CONNECT_ERROR);
            sl_health_failed(srv->health, &pool->conf->health, sl_clock_now_us());
            continue;
        }
        conn->server = srv;
        srv->nconns++;
        conn->is_inflight = true;
        srv->bal.inflight++;
        wait->connecting = conn;
        wait->phase = PHASE_CONNECTING;
        evtimer_add(&wait->timer, &tv);
        return;
    }
    deliver_later(wait, NULL, wait->last_status);
}

static void
idle_drop(struct sl_upconn *conn)
{
    idle_unlink(conn);
    upconn_free(conn);
}

static void
idle_event_cb(struct sl_stream *stream, int what, void *arg)
{
    (void)stream;
    /* Closed by the server or errored while idle; bytes from an idle
     * connection mean it is unusable too. */
    if (what & (SL_STREAM_READ | SL_STREAM_EOF | SL_STREAM_ERROR))
        idle_drop(arg);
}

void
sl_upstream_release(struct sl_upconn *conn, bool is_reusable)
{
    struct sl_upstream_pool *pool = conn->pool;

    active_add(pool, -1);
    inflight_end(conn);
    retry_uncount(pool, &conn->is_retry_counted);
    if (is_reusable && !conn->server->is_retired && pool->nidle < pool->conf->keepalive
        && evbuffer_get_length(conn->stream.in) == 0 && evbuffer_get_length(conn->stream.out) == 0
        && !conn->stream.is_eof) {
        struct timeval tv = sl_timeval_from_ms(pool->conf->idle_timeout_ms);
        struct server *srv = conn->server;
        conn->next = srv->idle;
        conn->prev = NULL;
        if (srv->idle != NULL)
            srv->idle->prev = conn;
        srv->idle = conn;
        pool->nidle++;
        gauge(pool, SL_METRICS_UPSTREAM_IDLE, 1);
        sl_stream_setcb(&conn->stream, idle_event_cb, conn);
        sl_stream_set_reading(&conn->stream, true);
        evtimer_add(&conn->idle_timer, &tv);
    } else {
        upconn_free(conn);
    }
    pump_queue(pool);
}

const struct sl_upstream_conf *
sl_upstream_pool_conf(const struct sl_upstream_pool *pool)
{
    return pool->conf;
}

struct sl_stream *
sl_upconn_stream(struct sl_upconn *conn)
{
    return &conn->stream;
}

const char *
sl_upconn_address(const struct sl_upconn *conn)
{
    return conn->server->addr.text;
}

bool
sl_upconn_is_reused(const struct sl_upconn *conn)
{
    return conn->is_reused;
}

void
sl_upstream_pool_stats(const struct sl_upstream_pool *pool, struct sl_upstream_stats *out)
{
    uint64_t now = sl_clock_now_us();

    out->idle = pool->nidle;
    out->active = pool->active;
    out->queued = pool->nqueued;
    out->connect_failures = pool->connect_failures;
    out->connect_timeouts = pool->connect_timeouts;
    out->shed = pool->shed;
    out->retrying = pool->retrying;
    out->has_reachable_server = false;
    for (unsigned i = 0; i < pool->nservers; i++) {
        if (is_usable(pool, pool->servers[i], now))
            out->has_reachable_server = true;
    }
}
