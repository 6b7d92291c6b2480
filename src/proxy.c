/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The proxy of one worker thread: its config generations (what it built from
 * each config: limiter, upstream pools, metrics slots), its listeners and the
 * list of its connections, drain and readiness. A connection's life is
 * proxy_conn.c's, heads as they leave proxy_head.c's, the upstream leg
 * proxy_upstream.c's; src/proxy_int.h is what they share.
 */
#include "sluice/proxy.h"

#include "proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/netaddr.h"
#include "sluice/phase.h"
#include "sluice/route.h"
#include "sluice/upstream.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/stream.h"
#include "util/text.h"
#include "util/timeval.h"

/* ---- config generations ------------------------------------------------ */

struct sl_shared_config *
sl_shared_config_new(struct sl_config *cfg)
{
    struct sl_shared_config *shared = sl_xcalloc(1, sizeof(*shared));

    atomic_init(&shared->refs, 1);
    shared->cfg = cfg;
    return shared;
}

void
sl_shared_config_ref(struct sl_shared_config *shared)
{
    atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
}

void
sl_shared_config_unref(struct sl_shared_config *shared)
{
    if (shared == NULL)
        return;
    if (atomic_fetch_sub_explicit(&shared->refs, 1, memory_order_acq_rel) == 1) {
        sl_config_free(shared->cfg);
        free(shared);
    }
}

/* What one worker built from one config: its limiter and upstream pools. */
struct wgen {
    unsigned refs; /* the proxy's current pointer + each request using it */
    struct sl_shared_config *shared;
    const struct sl_config *cfg;
    struct sl_limiter *limiter;
    struct sl_upstream_pool **pools;
    char **route_names;        /* metrics label and access-log name: [host]path */
    unsigned *route_slots;     /* metrics slots, by conf index */
    unsigned *limit_slots;
    unsigned *upstream_slots;
    struct sl_phase_table *phases; /* each route's phases */
};

static void
wgen_unref(struct wgen *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    for (size_t i = 0; i < gen->cfg->nroutes; i++)
        free(gen->route_names[i]);
    free(gen->route_names);
    free(gen->route_slots);
    free(gen->limit_slots);
    free(gen->upstream_slots);
    sl_limiter_free(gen->limiter);
    sl_phase_table_free(gen->phases); /* after the limiter: its last callbacks end runs */
    /* after the phases: their own upstream requests give connections back */
    for (size_t i = 0; i < gen->cfg->nupstreams; i++)
        sl_upstream_pool_free(gen->pools[i]);
    free(gen->pools);
    sl_shared_config_unref(gen->shared);
    free(gen);
}

/* ---- what requests use of a generation ----------------------------------- */

const struct sl_config *
proxy_gen_cfg(const struct wgen *gen)
{
    return gen->cfg;
}

struct wgen *
proxy_gen_hold(struct wgen *gen)
{
    gen->refs++;
    return gen;
}

void
proxy_gen_release(struct wgen *gen)
{
    wgen_unref(gen);
}

void
proxy_gen_route(const struct wgen *gen, const struct sl_route_conf *route,
                struct route_use *use)
{
    size_t i = (size_t)(route - gen->cfg->routes);

    use->name = gen->route_names[i];
    use->slot = gen->route_slots[i];
    use->upstream_slot = gen->upstream_slots[route->upstream];
    use->pool = gen->pools[route->upstream];
    use->phases = sl_phase_table_chain(gen->phases, i);
}

/* Each route's phases, from what the generation holds; see sluice/phase.h. */
static struct sl_phase_table *
build_phases(const struct sl_proxy *px, const struct wgen *gen)
{
    struct sl_phase_env env = {
        .cfg = gen->cfg,
        .base = px->base,
        .limiter = gen->limiter,
        .metrics = px->mw,
        .route_slots = gen->route_slots,
        .pools = gen->pools,
    };

    return sl_phase_table_new(&env);
}

/* ---- timers and connections ----------------------------------------------- */

/*
 * Connection timers take a few fixed durations, so they go through libevent's
 * common timeouts: a queue per duration instead of the heap, O(1) to re-arm.
 */
static const struct timeval *
common_timeout(struct sl_proxy *px, uint64_t ms)
{
    for (size_t i = 0; i < px->ncommon; i++) {
        if (px->common[i].ms == ms)
            return px->common[i].tv;
    }
    if (px->ncommon < sizeof(px->common) / sizeof(px->common[0])) {
        struct timeval tv = sl_timeval_from_ms(ms);
        const struct timeval *common = event_base_init_common_timeout(px->base, &tv);
        if (common != NULL) {
            px->common[px->ncommon].ms = ms;
            px->common[px->ncommon].tv = common;
            px->ncommon++;
            return common;
        }
    }
    return NULL;
}

void
proxy_timer_add(struct sl_proxy *px, struct event *ev, uint64_t ms)
{
    const struct timeval *common = common_timeout(px, ms);
    struct timeval tv;

    if (common == NULL) {
        tv = sl_timeval_from_ms(ms);
        common = &tv;
    }
    evtimer_add(ev, common);
}

/* ---- accepting ----------------------------------------------------------- */

#define ACCEPT_BACKOFF_MIN_MS 100u
#define ACCEPT_BACKOFF_MAX_MS 1000u
#define ACCEPT_LOG_INTERVAL_US (10u * 1000000u)

/* The listeners accept unless the worker drains, holds its share of
 * max_connections, or backs off after accept() ran out of resources. */
static void
accept_update(struct sl_proxy *px)
{
    bool is_wanted = !px->is_draining && !px->is_accept_backoff && px->nconns < px->max_conns;

    if (is_wanted == !px->is_accept_paused)
        return;
    for (size_t i = 0; i < px->nlisteners; i++) {
        if (is_wanted)
            evconnlistener_enable(px->listeners[i]);
        else
            evconnlistener_disable(px->listeners[i]);
    }
    px->is_accept_paused = !is_wanted;
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_proxy *px = arg;

    (void)fd;
    (void)what;
    px->is_accept_backoff = false;
    accept_update(px);
}

/* Connections waiting in l's accept queue: Linux reports its length as
 * tcpi_unacked on a listening socket. 0 when it cannot tell. */
static unsigned
accept_queue_length(struct evconnlistener *l)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);

    memset(&info, 0, sizeof(info));
    if (getsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return 0;
    return info.tcpi_unacked;
}

/* Errors of one pending connection, which accept(2) reports and which
 * should be treated like EAGAIN; the next connection may be fine. */
static bool
is_connection_error(int err)
{
    return err == ENETDOWN || err == EPROTO || err == ENOPROTOOPT || err == EHOSTDOWN
        || err == ENONET || err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH
        || err == EPERM;
}

/*
 * accept() failed. Out of descriptors (EMFILE, ENFILE) or kernel memory
 * (ENOBUFS, ENOMEM), the pending connection stays in the queue and the
 * listener would be ready again at once: libevent's default is to log and
 * retry, which spins a core and floods the log. Instead the listeners pause,
 * 100 ms first and up to 1 s while failures go on, and one line per 10 s
 * says how many accepts failed meanwhile.
 */
static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct sl_proxy *px = arg;
    int err = EVUTIL_SOCKET_ERROR();
    uint64_t now = sl_clock_now_us();
    const char *name;
    uint64_t held;
    size_t i;

    if (!is_connection_error(err) && !px->is_draining) {
        bool is_episode = px->accept_fail_us != 0
            && now - px->accept_fail_us < 2 * ACCEPT_BACKOFF_MAX_MS * 1000u;
        uint64_t ms = is_episode ? px->accept_backoff_ms * 2 : ACCEPT_BACKOFF_MIN_MS;
        struct timeval tv;

        px->accept_backoff_ms = ms < ACCEPT_BACKOFF_MAX_MS ? ms : ACCEPT_BACKOFF_MAX_MS;
        px->accept_fail_us = now;
        px->is_accept_backoff = true;
        accept_update(px);
        tv = sl_timeval_from_ms(px->accept_backoff_ms);
        evtimer_add(px->accept_retry, &tv);
    }
    if (!sl_log_gate_pass(&px->accept_gate, now, ACCEPT_LOG_INTERVAL_US, &held))
        return;
    for (i = 0; i < px->nlisteners && px->listeners[i] != l; i++)
        ;
    name = i < px->nlisteners ? px->listen_confs[i].text : "?";
    if (px->is_accept_backoff)
        sl_log_warnx("worker %u: listener %s: accept: %s; not accepting for %llu ms "
                     "(%llu failed accepts since the last line, %u connections waiting)",
                     px->index, name, evutil_socket_error_to_string(err),
                     (unsigned long long)px->accept_backoff_ms, (unsigned long long)held + 1,
                     accept_queue_length(l));
    else
        sl_log_warnx("worker %u: listener %s: accept: %s (%llu failed accepts since the "
                     "last line)",
                     px->index, name, evutil_socket_error_to_string(err),
                     (unsigned long long)held + 1);
}

static unsigned
listen_port(const struct sl_listen_conf *l)
{
    if (l->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&l->ss)->sin_port);
    if (l->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&l->ss)->sin6_port);
    return 0;
}

/*
 * Whether connections on listener i open with a PROXY header: as the conf
 * in use says when its listen list is the one the listeners were opened
 * with (a reload may switch it), else as when they were opened.
 */
static bool
is_proxy_protocol(const struct sl_proxy *px, size_t i)
{
    const struct sl_config *cfg = proxy_gen_cfg(px->gen);

    if (i < cfg->nlisten && strcmp(cfg->listen[i].text, px->listen_confs[i].text) == 0)
        return cfg->listen[i].is_proxy_protocol;
    return px->listen_confs[i].is_proxy_protocol;
}

/* A PROXY header is believed from trusted_proxies only: anyone else could
 * name any client address. Refused before a byte is read. */
static bool
is_refused_peer(struct sl_proxy *px, size_t i, const struct sockaddr *sa)
{
    const struct sl_config *cfg = proxy_gen_cfg(px->gen);
    char host[64];
    uint64_t held;

    if (sl_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies, sa))
        return false;
    if (sl_log_gate_pass(&px->refuse_gate, sl_clock_now_us(), ACCEPT_LOG_INTERVAL_US, &held)) {
        if (sl_sockaddr_host(sa, host, sizeof(host)) == 0)
            snprintf(host, sizeof(host), "?");
        sl_log_warnx("worker %u: listener %s: connection from %s closed: PROXY protocol "
                     "listener, and the peer is not in trusted_proxies (%llu more since the "
                     "last line)",
                     px->index, px->listen_confs[i].text, host, (unsigned long long)held);
    }
    return true;
}

static void
accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa, int socklen,
          void *arg)
{
    struct sl_proxy *px = arg;
    struct conn *c;
    size_t i;

    for (i = 0; i < px->nlisteners && px->listeners[i] != listener; i++)
        ;
    if (i < px->nlisteners && is_proxy_protocol(px, i) && is_refused_peer(px, i, sa)) {
        evutil_closesocket(fd);
        return;
    }
    c = proxy_conn_new(px, fd, sa, socklen);
    if (i < px->nlisteners) {
        /* the port as configured: X-Forwarded-Port without a system call */
        c->local_port = listen_port(&px->listen_confs[i]);
        if (is_proxy_protocol(px, i))
            proxy_conn_expect_proxy_header(c);
    }
    c->next = px->conns;
    if (px->conns != NULL)
        px->conns->prev = c;
    px->conns = c;
    sl_metrics_client_open(px->mw);
    px->nconns++;
    accept_update(px);
}

void
proxy_conn_unlink(struct sl_proxy *px, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        px->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    px->nconns--;
    sl_metrics_client_close(px->mw);
    accept_update(px);
}

/* ---- the worker's proxy -------------------------------------------------- */

/* Closes the listeners; a unix socket's file goes with the last worker's. */
static void
listeners_close(struct sl_proxy *px)
{
    for (size_t i = 0; i < px->nlisteners; i++) {
        const struct sl_listen_conf *l = &px->listen_confs[i];
        evconnlistener_free(px->listeners[i]);
        if (l->is_unix)
            proxy_unix_release(((const struct sockaddr_un *)(const void *)&l->ss)->sun_path);
    }
    px->nlisteners = 0;
}

struct sl_proxy *
sl_proxy_new(struct event_base *base, unsigned index, unsigned nworkers,
             struct sl_limiter_shared *limiter_shared, struct sl_metrics *metrics)
{
    struct sl_proxy *px = sl_xcalloc(1, sizeof(*px));

    px->metrics = metrics;
    px->mw = metrics ? sl_metrics_worker(metrics, index) : NULL;
    px->base = base;
    px->index = index;
    px->nworkers = nworkers ? nworkers : 1;
    px->limiter_shared = limiter_shared;
    if (getrandom(px->rng, sizeof(px->rng), 0) != (ssize_t)sizeof(px->rng)) {
        px->rng[0] = sl_clock_now_us() ^ ((uint64_t)getpid() << 32);
        px->rng[1] = (uint64_t)index * 0x9e3779b97f4a7c15ULL + 1;
    }
    px->rng[0] |= 1;
    px->accept_retry = evtimer_new(base, accept_retry_cb, px);
    return px;
}

void
sl_proxy_close_all(struct sl_proxy *px)
{
    while (px->conns != NULL)
        proxy_conn_close(px->conns, "shutdown");
}

void
sl_proxy_set_resolver(struct sl_proxy *px, struct sl_resolver *resolver)
{
    px->resolver = resolver;
}

void
sl_proxy_set_health(struct sl_proxy *px, struct sl_health *health)
{
    px->health = health;
}

void
sl_proxy_free(struct sl_proxy *px)
{
    if (px == NULL)
        return;
    px->drained_cb = NULL;
    sl_proxy_close_all(px);
    listeners_close(px);
    free(px->listeners);
    free(px->listen_confs);
    event_free(px->accept_retry);
    wgen_unref(px->gen);
    sl_accesslog_free(px->accesslog);
    free(px->accesslog_path);
    free(px);
}

/* A listener on a dup of the one socket bound to a unix path. */
static struct evconnlistener *
listen_unix(struct sl_proxy *px, const struct sl_listen_conf *addr, char *err, size_t err_size)
{
    char why[192];
    int fd = proxy_unix_open(addr, why, sizeof(why));
    struct evconnlistener *l;

    if (fd < 0) {
        snprintf(err, err_size, "listen %s: %s", addr->text, why);
        return NULL;
    }
    /* backlog 0: the socket already listens */
    l = evconnlistener_new(px->base, accept_cb, px, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                           0, fd);
    if (l == NULL) {
        snprintf(err, err_size, "listen %s: %s", addr->text, strerror(errno));
        close(fd);
        proxy_unix_release(((const struct sockaddr_un *)(const void *)&addr->ss)->sun_path);
    }
    return l;
}

int
sl_proxy_listen(struct sl_proxy *px, const struct sl_config *cfg, char *err, size_t err_size)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE
        | LEV_OPT_REUSEABLE_PORT;

    px->listeners = sl_xcalloc(cfg->nlisten, sizeof(*px->listeners));
    px->listen_confs = sl_xcalloc(cfg->nlisten, sizeof(*px->listen_confs));
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct sl_listen_conf *addr = &cfg->listen[i];
        struct evconnlistener *l;

        if (addr->is_unix) {
            l = listen_unix(px, addr, err, err_size);
        } else {
            l = evconnlistener_new_bind(px->base, accept_cb, px, flags, 511,
                                        (const struct sockaddr *)&addr->ss, (int)addr->len);
            if (l == NULL)
                snprintf(err, err_size, "listen %s: %s", addr->text, strerror(errno));
        }
        if (l == NULL)
            return -1;
        evconnlistener_set_error_cb(l, accept_error_cb);
        px->listen_confs[px->nlisteners] = *addr;
        px->listeners[px->nlisteners++] = l;
    }
    return 0;
}

static bool
same_path(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Label values come from the conf only: route names (sl_route_name), limit and
 * upstream names. */
static void
register_names(struct sl_proxy *px, struct wgen *gen)
{
    const struct sl_config *cfg = gen->cfg;

    gen->route_names = sl_xcalloc(cfg->nroutes + 1, sizeof(*gen->route_names));
    gen->route_slots = sl_xcalloc(cfg->nroutes + 1, sizeof(*gen->route_slots));
    gen->limit_slots = sl_xcalloc(cfg->nlimits + 1, sizeof(*gen->limit_slots));
    gen->upstream_slots = sl_xcalloc(cfg->nupstreams + 1, sizeof(*gen->upstream_slots));
    for (size_t i = 0; i < cfg->nroutes; i++) {
        char *name = sl_route_name(&cfg->routes[i]);
        gen->route_names[i] = name;
        if (px->metrics != NULL)
            gen->route_slots[i] = sl_metrics_slot(px->metrics, SL_METRICS_ROUTE, name);
        if (px->metrics != NULL && sl_route_has_lifecycle(&cfg->routes[i]))
            sl_metrics_route_consumers(px->metrics, gen->route_slots[i],
                                       cfg->routes[i].lifecycle.consumer_top);
    }
    for (size_t i = 0; px->metrics != NULL && i < cfg->nlimits; i++)
        gen->limit_slots[i] = sl_metrics_slot(px->metrics, SL_METRICS_LIMIT, cfg->limits[i].name);
    for (size_t i = 0; px->metrics != NULL && i < cfg->nupstreams; i++)
        gen->upstream_slots[i] =
            sl_metrics_slot(px->metrics, SL_METRICS_UPSTREAM, cfg->upstreams[i].name);
}

/* What sl_proxy_prepare built and sl_proxy_commit installs. */
struct sl_proxy_gen {
    struct wgen *gen;
    struct sl_accesslog *accesslog; /* the new writer when the path changed, else NULL */
    bool is_new_accesslog;
};

/* Opens the access log of `cfg` unless the proxy already writes to that path. */
static int
prepare_accesslog(struct sl_proxy *px, const struct sl_config *cfg, struct sl_proxy_gen *pg,
                  char *err, size_t err_size)
{
    const char *path = cfg->access_log ? cfg->access_log : "stderr";

    if (px->accesslog != NULL && same_path(px->accesslog_path, cfg->access_log))
        return 0;
    pg->accesslog = sl_accesslog_new(path, px->base);
    if (pg->accesslog == NULL) {
        snprintf(err, err_size, "access log \"%s\": %s", path, strerror(errno));
        return -1;
    }
    pg->is_new_accesslog = true;
    return 0;
}

struct sl_proxy_gen *
sl_proxy_prepare(struct sl_proxy *px, struct sl_shared_config *shared, char *err, size_t err_size)
{
    const struct sl_config *cfg = shared->cfg;
    struct sl_proxy_gen *pg;
    struct sl_limiter *limiter;
    struct wgen *gen;

    limiter = sl_limiter_new(cfg, px->base, px->limiter_shared, err, err_size);
    if (limiter == NULL)
        return NULL;
    gen = sl_xcalloc(1, sizeof(*gen));
    gen->refs = 1;
    sl_shared_config_ref(shared);
    gen->shared = shared;
    gen->cfg = cfg;
    gen->limiter = limiter;
    register_names(px, gen);
    sl_limiter_set_metrics(limiter, px->mw, gen->limit_slots);
    gen->pools = sl_xcalloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*gen->pools));
    for (size_t i = 0; i < cfg->nupstreams; i++)
        gen->pools[i] = sl_upstream_pool_new(px->base, &cfg->upstreams[i], px->nworkers, px->mw,
                                             gen->upstream_slots[i], px->resolver,
                                             px->health);
    gen->phases = build_phases(px, gen);
    pg = sl_xcalloc(1, sizeof(*pg));
    pg->gen = gen;
    if (prepare_accesslog(px, cfg, pg, err, err_size) != 0) {
        sl_proxy_abort(px, pg);
        return NULL;
    }
    return pg;
}

void
sl_proxy_commit(struct sl_proxy *px, struct sl_proxy_gen *pg)
{
    const struct sl_config *cfg = pg->gen->cfg;

    /* Requests in flight hold their own reference: they finish on the old one. */
    wgen_unref(px->gen);
    px->gen = pg->gen;
    px->max_conns = (cfg->client.max_connections + px->nworkers - 1) / px->nworkers;
    if (px->max_conns == 0)
        px->max_conns = 1;
    if (pg->is_new_accesslog) {
        sl_accesslog_free(px->accesslog);
        free(px->accesslog_path);
        px->accesslog = pg->accesslog;
        px->accesslog_path = cfg->access_log ? sl_xstrdup(cfg->access_log) : NULL;
    }
    free(pg);
    accept_update(px);
}

void
sl_proxy_abort(struct sl_proxy *px, struct sl_proxy_gen *pg)
{
    (void)px;
    if (pg == NULL)
        return;
    sl_accesslog_free(pg->accesslog);
    wgen_unref(pg->gen);
    free(pg);
}

int
sl_proxy_set_config(struct sl_proxy *px, struct sl_shared_config *shared, char *err,
                    size_t err_size)
{
    struct sl_proxy_gen *pg = sl_proxy_prepare(px, shared, err, err_size);

    if (pg == NULL)
        return -1;
    sl_proxy_commit(px, pg);
    return 0;
}

void
sl_proxy_drain(struct sl_proxy *px, sl_proxy_drained_cb *cb, void *arg)
{
    struct conn *c, *next;

    px->is_draining = true;
    px->drained_cb = cb;
    px->drained_arg = arg;
    listeners_close(px);
    evtimer_del(px->accept_retry);
    px->is_accept_backoff = false;
    for (c = px->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == C_IDLE)
            proxy_conn_close(c, NULL);
    }
    if (px->nconns == 0 && px->drained_cb != NULL) {
        px->drained_cb = NULL;
        cb(arg);
    }
}

void
sl_proxy_return_leases(struct sl_proxy *px, sl_proxy_drained_cb *cb, void *arg)
{
    sl_limiter_return_leases(px->gen != NULL ? px->gen->limiter : NULL, cb, arg);
}

void
sl_proxy_reopen_logs(struct sl_proxy *px)
{
    if (px->accesslog != NULL && sl_accesslog_reopen(px->accesslog) != 0)
        sl_log_warn("access log \"%s\": reopen", px->accesslog_path ? px->accesslog_path : "");
}

bool
sl_proxy_is_ready(struct sl_proxy *px, char *why, size_t why_size)
{
    const struct sl_config *cfg = px->gen->cfg;

    if (!sl_limiter_is_ready(px->gen->limiter)) {
        snprintf(why, why_size, "store");
        return false;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct sl_upstream_stats st;
        size_t u = cfg->routes[i].upstream;
        sl_upstream_pool_stats(px->gen->pools[u], &st);
        if (!st.has_reachable_server) {
            snprintf(why, why_size, "upstream %s", cfg->upstreams[u].name);
            return false;
        }
    }
    return true;
}

/* ---- descriptors ------------------------------------------------------------ */

/* For the event loop, eventfds, the store connection and the like. */
#define NOFILE_PER_WORKER 8u
/* For stdio, the logs, the admin listener and its clients, libraries. */
#define NOFILE_MARGIN 64u

uint64_t
sl_proxy_nofile_needed(const struct sl_config *cfg, unsigned nworkers)
{
    uint64_t need = cfg->client.max_connections + NOFILE_MARGIN;

    for (size_t i = 0; i < cfg->nupstreams; i++)
        need += cfg->upstreams[i].max_inflight
            + (uint64_t)cfg->upstreams[i].keepalive * nworkers;
    return need + (uint64_t)nworkers * (cfg->nlisten + NOFILE_PER_WORKER);
}

void
sl_proxy_fit_nofile(const struct sl_config *cfg, unsigned nworkers)
{
    uint64_t need = sl_proxy_nofile_needed(cfg, nworkers);
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        sl_log_warn("getrlimit(RLIMIT_NOFILE)");
        return;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
    if (rl.rlim_cur > was && setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= need) {
        sl_log_info("open files limit raised from %llu to %llu for client.max_connections (%u) "
                    "and upstream connections",
                    (unsigned long long)was, (unsigned long long)rl.rlim_cur,
                    cfg->client.max_connections);
        return;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = rl.rlim_max = was;
    sl_log_warnx("open files limit is %llu (hard limit %llu), below the %llu that "
                 "client.max_connections (%u) and upstream connections need: when descriptors "
                 "run out, accepting pauses (raise LimitNOFILE or ulimit -n, or lower "
                 "max_connections)",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                 (unsigned long long)need, cfg->client.max_connections);
}
