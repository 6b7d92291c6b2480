/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Process lifecycle: worker threads (one event loop each), signals, reload,
 * graceful drain, log reopening, the pidfile and the admin listener. The main
 * thread runs its own event loop for signals and the admin listener; it
 * reaches a worker only by posting a command and writing to that worker's
 * eventfd, so every proxy call runs on the proxy's own thread. No event_base
 * is ever touched from another thread, which lets libevent run without locks
 * (evthread is not enabled): the request path takes no mutex.
 *
 * A reload is all or nothing, in two phases. The main thread loads the conf,
 * then posts PREPARE to every worker; each builds its generation on its own
 * thread (sl_proxy_prepare) and answers through answer_fd. Once every worker
 * has answered, the main thread posts COMMIT if all of them succeeded, else
 * ABORT, and once every worker has done that it logs and counts the outcome.
 * Until then no worker has switched, so a failure anywhere leaves every
 * worker on the old generation.
 *
 * A reload also moves the error log and the pidfile when the conf moves them
 * (as nginx does): the new files are opened and written in phase 1, before
 * any worker hears of the reload, and are dropped if it is refused. `listen`,
 * `admin` and `workers` are bound at start and stay until a restart.
 *
 * Under systemd (Type=notify), the service manager hears READY=1 once every
 * listener is open, RELOADING=1 and READY=1 around each reload, STOPPING=1
 * when the drain starts and, with WatchdogSec=, WATCHDOG=1 from the main loop
 * only while every worker's loop still turns.
 */
#include "sluice/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "sluice/admin_buckets.h"
#include "sluice/admin_cache.h"
#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/notify.h"
#include "sluice/proxy.h"
#include "sluice/resolver.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"
#include "util/token.h"

enum {
    CMD_PREPARE = 1,
    CMD_COMMIT = 2,
    CMD_ABORT = 4,
    CMD_DRAIN = 8,
    CMD_REOPEN = 16,
    CMD_STOP = 32,
};

enum reload_phase {
    RELOAD_IDLE,
    RELOAD_RESOLVING, /* the new conf's host names being looked up, before PREPARE */
    RELOAD_PREPARING, /* PREPARE posted; waiting for every worker's answer */
    RELOAD_FINISHING, /* COMMIT or ABORT posted; waiting for every worker to have done it */
};

struct worker {
    struct daemon *d;
    unsigned index;
    pthread_t thread;
    struct event_base *base;
    struct event *notify;
    int notify_fd;             /* eventfd: the main thread's knock */
    struct sl_proxy *proxy;
    atomic_uint commands;
    _Atomic(struct sl_shared_config *) pending; /* config to prepare, owned reference */
    struct sl_proxy_gen *prepared; /* worker thread only (main thread once it is joined) */
    /* The answer to PREPARE: written by the worker before it bumps
     * d->nanswers, read by the main thread after it saw every answer. */
    bool is_prepare_ok;
    char prepare_err[256];
    atomic_bool is_ready;                      /* last answer for /readyz */
    _Atomic uint64_t last_turn_us;             /* the tick's stamp, for the watchdog */
    char not_ready_why[128];
    pthread_mutex_t why_lock;
};

/* What start bound, in effect until a restart whatever a reload says. */
struct restart_only {
    struct sl_listen_conf *listen;
    size_t nlisten;
    struct sl_sockaddr admin;
    bool has_admin;
    unsigned workers;
};

struct daemon {
    const char *conf_path;
    struct sl_shared_config *shared;
    struct restart_only bound;
    char *pidfile;       /* the pidfile written (and removed at exit); NULL: none */
    struct sl_limiter_shared *limiter_shared;
    struct sl_resolver *resolver; /* upstream host names, on the main loop */
    struct sl_health *health;     /* upstream server states and checks, on the main loop */
    struct event_base *base;
    struct event *signals[4];
    struct event *worker_done;
    int worker_done_fd;        /* eventfd: a worker finished draining */
    struct event *drain_timer;
    struct evhttp *admin;
    struct sl_admin_buckets *buckets; /* the bucket API, NULL without admin */
    struct sl_metrics *metrics;
    struct worker *workers;
    unsigned nworkers;
    atomic_uint nworkers_done;
    bool is_draining;

    /* reload in progress (main thread only, but nanswers) */
    struct event *answer;
    int answer_fd;        /* eventfd: a worker answered PREPARE, COMMIT or ABORT */
    atomic_uint nanswers; /* answers to the command of the current phase */
    enum reload_phase phase;
    struct sl_shared_config *next; /* the config being prepared */
    bool is_reload_queued;         /* SIGHUP during a reload: one more follows it */
    bool is_reload_ok;
    int next_log_fd;              /* the next conf's error log, opened; -1: same log */
    bool is_next_pidfile_written; /* the next conf's (other) pidfile, written */
    char reload_why[320];
    uint64_t reload_start_us;
    int fault_worker; /* SLUICE_FAULT_PREPARE_WORKER (a test hook), -1: none */

    uint64_t watchdog_us;       /* systemd's WatchdogSec, 0: none */
    uint64_t tick_us;           /* the workers' tick: 1 s, or faster for a short watchdog */
    struct event *watchdog;
    bool has_notify_failed;     /* logged once */
};

/* ---- worker thread ------------------------------------------------------- */

static void
knock(int fd)
{
    uint64_t one = 1;

    (void)!write(fd, &one, sizeof(one));
}

static void
drain_knocks(int fd)
{
    uint64_t n;

    (void)!read(fd, &n, sizeof(n));
}

static void
worker_leases_returned(void *arg)
{
    struct worker *w = arg;

    event_base_loopexit(w->base, NULL);
    atomic_fetch_add(&w->d->nworkers_done, 1);
    knock(w->d->worker_done_fd);
}

/* Leased tokens go back to the store before the loop stops: other
 * instances can use them at once (bounded wait, see the limiter). */
static void
worker_drained(void *arg)
{
    struct worker *w = arg;

    sl_proxy_return_leases(w->proxy, worker_leases_returned, w);
}

static void
worker_refresh_ready(struct worker *w)
{
    char why[128];
    bool is_ready = sl_proxy_is_ready(w->proxy, why, sizeof(why));

    pthread_mutex_lock(&w->why_lock);
    snprintf(w->not_ready_why, sizeof(w->not_ready_why), "%s", is_ready ? "" : why);
    pthread_mutex_unlock(&w->why_lock);
    atomic_store(&w->is_ready, is_ready);
}

/* The counter is bumped after the answer is written (seq_cst: a release). */
static void
worker_answer(struct worker *w)
{
    atomic_fetch_add(&w->d->nanswers, 1);
    knock(w->d->answer_fd);
}

static void
worker_prepare(struct worker *w)
{
    struct sl_shared_config *shared = atomic_exchange(&w->pending, NULL);
    char err[sizeof(w->prepare_err)] = "no configuration to prepare";

    sl_proxy_abort(w->proxy, w->prepared);
    w->prepared = NULL;
    if (shared != NULL && (int)w->index == w->d->fault_worker)
        snprintf(err, sizeof(err), "fault injected (SLUICE_FAULT_PREPARE_WORKER=%u)", w->index);
    else if (shared != NULL)
        w->prepared = sl_proxy_prepare(w->proxy, shared, err, sizeof(err));
    sl_shared_config_unref(shared);
    w->is_prepare_ok = w->prepared != NULL;
    snprintf(w->prepare_err, sizeof(w->prepare_err), "%s", w->is_prepare_ok ? "" : err);
    worker_answer(w);
}

static void
worker_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    unsigned cmds;

    (void)what;
    drain_knocks(fd);
    cmds = atomic_exchange(&w->commands, 0);
    /* COMMIT or ABORT ends the previous reload: it goes before a PREPARE
     * that the next one may already have posted. */
    if (cmds & CMD_COMMIT) {
        if (w->prepared != NULL)
            sl_proxy_commit(w->proxy, w->prepared);
        w->prepared = NULL;
        worker_answer(w);
    }
    if (cmds & CMD_ABORT) {
        sl_proxy_abort(w->proxy, w->prepared);
        w->prepared = NULL;
        worker_answer(w);
    }
    if (cmds & CMD_PREPARE)
        worker_prepare(w);
    if (cmds & CMD_REOPEN)
        sl_proxy_reopen_logs(w->proxy);
    if (cmds & CMD_STOP) {
        sl_proxy_close_all(w->proxy);
        event_base_loopexit(w->base, NULL);
        return;
    }
    if (cmds & CMD_DRAIN)
        sl_proxy_drain(w->proxy, worker_drained, w);
}

static void
worker_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    atomic_store(&w->last_turn_us, sl_clock_now_us());
    worker_refresh_ready(w);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct timeval period = sl_timeval_from_ms(w->d->tick_us / 1000);
    struct event *tick = event_new(w->base, -1, EV_PERSIST, worker_tick, w);

    event_add(tick, &period);
    worker_tick(-1, 0, w);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    event_free(tick);
    return NULL;
}

/* A failed notification is never fatal; it is logged the first time. */
static void
notified(struct daemon *d, int rc, const char *what)
{
    if (rc < 0 && !d->has_notify_failed) {
        d->has_notify_failed = true;
        sl_log_warn("systemd notification (%s) on $NOTIFY_SOCKET", what);
    }
}

/* Pings only while every worker's tick is recent: a wedged worker stops
 * the pings and systemd restarts the service. A drain is bounded by its own
 * timer, and drained workers stop ticking, so it pings regardless. */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    uint64_t now = sl_clock_now_us();

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < d->nworkers && !d->is_draining; i++) {
        if (now - atomic_load(&d->workers[i].last_turn_us) > d->watchdog_us / 2)
            return;
    }
    notified(d, sl_notify_watchdog(), "WATCHDOG=1");
}

/* Reads WatchdogSec (from $WATCHDOG_USEC) and sets the workers' tick to
 * at most a quarter of it, so a live worker always looks fresh. */
static void
watchdog_init(struct daemon *d)
{
    d->watchdog_us = sl_notify_watchdog_interval_us();
    d->tick_us = 1000000;
    if (d->watchdog_us != 0 && d->watchdog_us / 4 < d->tick_us)
        d->tick_us = d->watchdog_us / 4 > 1000 ? d->watchdog_us / 4 : 1000;
}

static void
watchdog_start(struct daemon *d)
{
    struct timeval half;

    if (d->watchdog_us == 0)
        return;
    half = sl_timeval_from_ms(d->watchdog_us / 2000);
    d->watchdog = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
    event_add(d->watchdog, &half);
    watchdog_cb(-1, 0, d);
}

static void
post(struct worker *w, unsigned cmd)
{
    atomic_fetch_or(&w->commands, cmd);
    knock(w->notify_fd);
}

/* ---- admin listener ------------------------------------------------------ */

static void
admin_reply(struct evhttp_request *req, int status, const char *type, const char *body)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
}

/* Every endpoint but the bucket API is read-only. evhttp itself would
 * answer other methods 501; 405 with Allow says what is wrong. */
static bool
admin_is_read(struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD)
        return true;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    admin_reply(req, 405, "application/problem+json",
                "{\"type\":\"about:blank\",\"title\":\"Method Not Allowed\",\"status\":405,"
                "\"detail\":\"this endpoint answers GET and HEAD\"}");
    return false;
}

/*
 * With admin.token_file, everything but the probes asks for the token (RFC
 * 6750): 401 with a Bearer challenge, marked invalid_token when one was
 * sent but is not the one. The token of the running config applies, so a
 * reload that changes the file changes it.
 */
static bool
admin_is_authorized(struct daemon *d, struct evhttp_request *req)
{
    const struct sl_config *cfg = d->shared->cfg;
    const char *field, *token;
    size_t len;
    bool is_sent;

    if (cfg->admin_token_file == NULL)
        return true;
    field = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    is_sent = sl_token_from_bearer(field, &token, &len);
    if (is_sent && sl_token_matches(token, len, cfg->admin_token_sha256))
        return true;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      is_sent ? "Bearer realm=\"sluice admin\", error=\"invalid_token\""
                              : "Bearer realm=\"sluice admin\"");
    admin_reply(req, 401, "application/problem+json",
                "{\"type\":\"about:blank\",\"title\":\"Unauthorized\",\"status\":401,"
                "\"detail\":\"send Authorization: Bearer and the admin token\"}");
    return false;
}

static void
admin_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (admin_is_read(req))
        admin_reply(req, 200, "text/plain", "ok\n");
}

static void
admin_readyz(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;
    char body[512];

    if (!admin_is_read(req))
        return;
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        if (!atomic_load(&w->is_ready)) {
            char why[128];
            pthread_mutex_lock(&w->why_lock);
            memcpy(why, w->not_ready_why, sizeof(why));
            pthread_mutex_unlock(&w->why_lock);
            snprintf(body, sizeof(body), "{\"ready\":false,\"missing\":\"%s\"}\n", why);
            admin_reply(req, 503, "application/json", body);
            return;
        }
    }
    admin_reply(req, 200, "application/json", "{\"ready\":true}\n");
}

static void
free_rendered(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)(uintptr_t)data);
}

static void
admin_metrics(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;
    size_t len;
    char *text;
    struct evbuffer *out;

    if (!admin_is_authorized(d, req) || !admin_is_read(req))
        return;
    text = sl_metrics_render(d->metrics, &len);
    out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      SL_METRICS_CONTENT_TYPE);
    evbuffer_add_reference(out, text, len, free_rendered, NULL);
    sl_health_render(d->health, out);
    evhttp_send_reply(req, 200, NULL, out);
    evbuffer_free(out);
}

static void
admin_buckets(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;

    if (admin_is_authorized(d, req))
        sl_admin_buckets_handle(d->buckets, req);
}

static void
admin_cache_purge(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;

    if (admin_is_authorized(d, req))
        sl_admin_cache_purge(req);
}

static void
admin_other(struct evhttp_request *req, void *arg)
{
    struct daemon *d = arg;

    /* nothing, not even which paths exist, before the token */
    if (!admin_is_authorized(d, req))
        return;
    admin_reply(req, 404, "application/problem+json",
                "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,"
                "\"detail\":\"the admin listener serves /healthz, /readyz, /metrics and "
                SL_ADMIN_BUCKETS_PATH "\"}");
}

/* limits of the admin listener's connections, see admin_start */
#define ADMIN_MAX_HEAD_SIZE 8192
#define ADMIN_TIMEOUT_S 15

/*
 * The admin listener out of descriptors: like the proxy's (src/proxy.c) it
 * pauses instead of retrying at once, which would spin the main thread and
 * flood the log while a scraper waits. evhttp owns the listener and its
 * user data, so this state is the process's: there is one admin listener.
 */
static struct sl_log_gate admin_accept_gate;

static void
admin_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void
admin_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = sl_timeval_from_ms(1000);
    uint64_t held;

    (void)arg;
    evconnlistener_disable(l);
    /* still pending at exit: the loop has stopped, event_base_free frees it unrun */
    event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, admin_accept_resume, l, &tv);
    if (sl_log_gate_pass(&admin_accept_gate, sl_clock_now_us(), 10 * 1000000u, &held))
        sl_log_warnx("admin listener: accept: %s; not accepting for 1000 ms (%llu failed "
                     "accepts since the last line)",
                     evutil_socket_error_to_string(err), (unsigned long long)held + 1);
}

static int
admin_start(struct daemon *d, const struct sl_config *cfg)
{
    struct evhttp_bound_socket *bound;
    char host[64];
    const char *colon;
    size_t host_len;
    uint16_t port;
    char err[256];

    d->buckets = sl_admin_buckets_new(d->base, d->limiter_shared);
    if (sl_admin_buckets_set_config(d->buckets, cfg, err, sizeof(err)) != 0) {
        sl_log_error("admin listener: bucket API: %s", err);
        return -1;
    }
    d->admin = evhttp_new(d->base);
    evhttp_set_allowed_methods(d->admin, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST
                                             | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE
                                             | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    /* no admin endpoint takes a body */
    evhttp_set_max_body_size(d->admin, 4096);
    /*
     * libevent buffers a request head without limit by default. 8 KiB holds
     * the largest head we expect (a 4096-byte admin token and a scraper's few
     * headers); past it libevent answers 400 and closes. An idle connection,
     * or one that stops sending or reading mid-request, is closed after the
     * timeout: it bounds each wait for the peer, not a whole request, and is
     * longer than the longest admin answer (store.timeout, at most 10 s).
     * libevent 2.1 has no connection cap (evhttp_set_max_connections is 2.2).
     */
    evhttp_set_max_headers_size(d->admin, ADMIN_MAX_HEAD_SIZE);
    evhttp_set_timeout(d->admin, ADMIN_TIMEOUT_S);
    evhttp_set_cb(d->admin, "/healthz", admin_healthz, d);
    evhttp_set_cb(d->admin, "/readyz", admin_readyz, d);
    evhttp_set_cb(d->admin, "/metrics", admin_metrics, d);
    evhttp_set_cb(d->admin, SL_ADMIN_BUCKETS_PATH, admin_buckets, d);
    evhttp_set_cb(d->admin, SL_ADMIN_CACHE_PURGE_PATH, admin_cache_purge, d);
    evhttp_set_gencb(d->admin, admin_other, d);
    colon = strrchr(cfg->admin.text, ':');
    host_len = (size_t)(colon - cfg->admin.text);
    if (cfg->admin.text[0] == '[') {
        memcpy(host, cfg->admin.text + 1, host_len - 2);
        host[host_len - 2] = '\0';
    } else {
        memcpy(host, cfg->admin.text, host_len);
        host[host_len] = '\0';
    }
    port = (uint16_t)strtoul(colon + 1, NULL, 10);
    bound = evhttp_bind_socket_with_handle(d->admin, host, port);
    if (bound == NULL) {
        sl_log_error("admin listener %s: %s", cfg->admin.text, strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), admin_accept_error);
    return 0;
}

static void
admin_stop(struct daemon *d)
{
    /* pending lookups are answered before their connections go */
    sl_admin_buckets_free(d->buckets);
    d->buckets = NULL;
    if (d->admin != NULL) {
        evhttp_free(d->admin);
        d->admin = NULL;
    }
}

/* ---- what a reload changes, and what waits for a restart ------------------ */

static int
write_pidfile(const char *path)
{
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int n;

    if (fd < 0)
        return -1;
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return close(fd);
}

static void
restart_only_init(struct restart_only *r, const struct sl_config *cfg)
{
    r->listen = sl_xcalloc(cfg->nlisten + 1, sizeof(*r->listen));
    memcpy(r->listen, cfg->listen, cfg->nlisten * sizeof(*r->listen));
    r->nlisten = cfg->nlisten;
    r->admin = cfg->admin;
    r->has_admin = cfg->has_admin;
    r->workers = cfg->workers;
}

/* Against what start bound, not the last conf loaded: a change warns at
 * every reload until a restart applies it, and a conf that goes back to
 * what runs does not warn. */
static void
warn_restart_only(const struct restart_only *bound, const struct sl_config *cfg)
{
    bool is_listen_changed = cfg->nlisten != bound->nlisten;
    bool is_admin_changed = cfg->has_admin != bound->has_admin
        || (cfg->has_admin && strcmp(cfg->admin.text, bound->admin.text) != 0);
    bool is_workers_changed = cfg->workers != bound->workers;

    for (size_t i = 0; !is_listen_changed && i < cfg->nlisten; i++)
        is_listen_changed = strcmp(cfg->listen[i].text, bound->listen[i].text) != 0;
    if (is_listen_changed || is_admin_changed || is_workers_changed)
        sl_log_warnx("reload: listen, admin and workers changes take effect at the next restart "
                     "(the conf's differ from those in effect:%s%s%s)",
                     is_listen_changed ? " listen" : "", is_admin_changed ? " admin" : "",
                     is_workers_changed ? " workers" : "");
}

static bool
is_stderr_path(const char *path)
{
    return path == NULL || strcmp(path, "stderr") == 0;
}

static bool
is_same_log(const char *a, const char *b)
{
    if (is_stderr_path(a) || is_stderr_path(b))
        return is_stderr_path(a) == is_stderr_path(b);
    return strcmp(a, b) == 0;
}

/* A refused or abandoned reload: the files it opened or wrote go. */
static void
reload_files_drop(struct daemon *d, const struct sl_config *cfg)
{
    if (d->next_log_fd >= 0 && d->next_log_fd != STDERR_FILENO)
        close(d->next_log_fd);
    d->next_log_fd = -1;
    if (d->is_next_pidfile_written)
        unlink(cfg->pidfile);
    d->is_next_pidfile_written = false;
}

/*
 * Phase 1 of a reload: the error log the conf names is opened and its
 * pidfile written, when they differ from the running ones, before any
 * worker hears of the reload. A file that cannot be opened or written
 * refuses the reload (-1, why in err), as an access log does: it is all or
 * nothing, and the running log then says why.
 */
static int
reload_files_open(struct daemon *d, const struct sl_config *cfg, char *err, size_t errlen)
{
    d->next_log_fd = -1;
    d->is_next_pidfile_written = false;
    if (!is_same_log(cfg->error_log, d->shared->cfg->error_log)) {
        d->next_log_fd = sl_log_open_fd(cfg->error_log);
        if (d->next_log_fd < 0) {
            snprintf(err, errlen, "error log %s: %s", cfg->error_log, strerror(errno));
            return -1;
        }
    }
    if (cfg->pidfile != NULL && (d->pidfile == NULL || strcmp(cfg->pidfile, d->pidfile) != 0)) {
        if (write_pidfile(cfg->pidfile) != 0) {
            snprintf(err, errlen, "pidfile %s: %s", cfg->pidfile, strerror(errno));
            reload_files_drop(d, cfg);
            return -1;
        }
        d->is_next_pidfile_written = true;
    }
    return 0;
}

/* A committed reload: its files replace the running ones. */
static void
reload_files_keep(struct daemon *d, const struct sl_config *cfg)
{
    if (d->next_log_fd >= 0) {
        /* the last line of the old file says where the next ones are */
        sl_log_info("error log: continued in %s", cfg->error_log);
        sl_log_use(cfg->error_log, d->next_log_fd);
    }
    d->next_log_fd = -1;
    if (d->is_next_pidfile_written || cfg->pidfile == NULL) {
        if (d->pidfile != NULL)
            unlink(d->pidfile);
        free(d->pidfile);
        d->pidfile = cfg->pidfile != NULL ? sl_xstrdup(cfg->pidfile) : NULL;
    }
    d->is_next_pidfile_written = false;
}

/* ---- reload and signals -------------------------------------------------- */

static void
log_errors(const char *errors)
{
    const char *line = errors;

    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        sl_log_error("%.*s", len, line);
        line = nl ? nl + 1 : NULL;
    }
}

static void
apply_log_level(const struct sl_config *cfg)
{
    enum sl_log_level level;

    sl_log_set_level(SL_LOG_INFO);
    if (cfg->log_level != NULL && sl_log_parse_level(cfg->log_level, &level) == 0)
        sl_log_set_level(level);
}

static void
post_all(struct daemon *d, unsigned cmd)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        post(&d->workers[i], cmd);
}

/*
 * Phase 1 (main thread): load the conf, then ask every worker to build its
 * generation. A SIGHUP while a reload is in progress is coalesced: however
 * many arrive, one more reload follows the current one and reads the file
 * as it is then.
 */
/* Long enough for every attempt of a lookup (resolver.c asks twice). */
static uint64_t
resolver_wait_ms(const struct sl_config *cfg)
{
    return 2 * cfg->resolver.timeout_ms + 100;
}

/* The running conf's names and name servers again, after a refused reload. */
static void
resolver_restore(struct daemon *d)
{
    char err[256];

    if (sl_resolver_configure(d->resolver, d->shared->cfg, err, sizeof(err)) < 0)
        sl_log_error("resolver: %s", err);
}

static void reload_resolved(void *arg);

/* A reload refused before any worker heard of it: said, counted, and the
 * old conf serves on (still ready). */
static void
reload_refuse(struct daemon *d, const char *what, const char *why)
{
    sl_log_error("reload of %s refused, the running configuration stays: %s%s", d->conf_path,
                 what, why);
    sl_metrics_config_loaded(d->metrics, true, false, sl_clock_now_us() - d->reload_start_us);
    sl_notify_status("reload of %s refused: %s%s", d->conf_path, what, why);
    notified(d, sl_notify_ready(), "READY=1");
}

static void
reload_begin(struct daemon *d)
{
    char *errors = NULL, err[256];
    struct sl_config *cfg;

    if (d->phase != RELOAD_IDLE) {
        if (!d->is_reload_queued)
            sl_log_info("reload of %s requested during a reload: it follows that one",
                        d->conf_path);
        d->is_reload_queued = true;
        return;
    }
    d->reload_start_us = sl_clock_now_us();
    notified(d, sl_notify_reloading(), "RELOADING=1");
    cfg = sl_config_load(d->conf_path, &errors);
    if (cfg == NULL) {
        sl_metrics_config_loaded(d->metrics, true, false, sl_clock_now_us() - d->reload_start_us);
        sl_log_error("reload of %s refused, the running configuration stays:", d->conf_path);
        log_errors(errors);
        free(errors);
        /* the old conf keeps serving: still ready */
        sl_notify_status("reload of %s refused: conf errors, see the error log", d->conf_path);
        notified(d, sl_notify_ready(), "READY=1");
        return;
    }
    if (reload_files_open(d, cfg, err, sizeof(err)) != 0) {
        sl_config_free(cfg);
        reload_refuse(d, "", err);
        return;
    }
    d->next = sl_shared_config_new(cfg);
    d->phase = RELOAD_RESOLVING;
    if (sl_resolver_configure(d->resolver, cfg, err, sizeof(err)) < 0) {
        reload_files_drop(d, cfg);
        resolver_restore(d);
        sl_shared_config_unref(d->next);
        d->next = NULL;
        d->phase = RELOAD_IDLE;
        reload_refuse(d, "resolver: ", err);
        return;
    }
    /* new names get their first answer before the workers build on them */
    sl_resolver_wait(d->resolver, resolver_wait_ms(cfg), reload_resolved, d);
}

/* Phase 1, continued: the new names answered (or the wait ran out). */
static void
reload_resolved(void *arg)
{
    struct daemon *d = arg;

    if (d->is_draining) {
        reload_files_drop(d, d->next->cfg);
        sl_shared_config_unref(d->next);
        d->next = NULL;
        d->phase = RELOAD_IDLE;
        return;
    }
    d->phase = RELOAD_PREPARING;
    atomic_store(&d->nanswers, 0);
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        sl_shared_config_ref(d->next);
        sl_shared_config_unref(atomic_exchange(&w->pending, d->next));
        post(w, CMD_PREPARE);
    }
}

/* Phase 2 (main thread, every worker has answered PREPARE): all or nothing. */
static void
reload_decide(struct daemon *d)
{
    unsigned nfailed = 0;

    d->reload_why[0] = '\0';
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        if (!w->is_prepare_ok && nfailed++ == 0)
            snprintf(d->reload_why, sizeof(d->reload_why), "worker %u: %s", i, w->prepare_err);
    }
    if (nfailed > 1) {
        size_t len = strlen(d->reload_why);
        snprintf(d->reload_why + len, sizeof(d->reload_why) - len, " (%u of %u workers failed)",
                 nfailed, d->nworkers);
    }
    d->is_reload_ok = nfailed == 0 && !d->is_draining;
    d->phase = RELOAD_FINISHING;
    atomic_store(&d->nanswers, 0);
    if (d->is_reload_ok) {
        char err[256];

        reload_files_keep(d, d->next->cfg);
        warn_restart_only(&d->bound, d->next->cfg);
        apply_log_level(d->next->cfg);
        sl_proxy_fit_nofile(d->next->cfg, d->nworkers);
        /* before the old config goes: its lookups are answered with it */
        if (d->buckets != NULL
            && sl_admin_buckets_set_config(d->buckets, d->next->cfg, err, sizeof(err)) != 0)
            sl_log_error("reload: bucket API: %s; it answers 503 until the next reload", err);
        sl_health_configure(d->health, d->next->cfg);
        sl_shared_config_unref(d->shared);
        d->shared = d->next;
    } else {
        reload_files_drop(d, d->next->cfg);
        sl_shared_config_unref(d->next);
        resolver_restore(d);
    }
    d->next = NULL;
    post_all(d, d->is_reload_ok ? CMD_COMMIT : CMD_ABORT);
}

/* Phase 3 (main thread, every worker has committed or aborted): report. */
static void
reload_end(struct daemon *d)
{
    uint64_t us = sl_clock_now_us() - d->reload_start_us;

    d->phase = RELOAD_IDLE;
    sl_resolver_sweep(d->resolver);
    if (d->is_reload_ok) {
        sl_metrics_config_loaded(d->metrics, true, true, us);
        sl_log_info("configuration %s reloaded", d->conf_path);
        sl_notify_status("serving: %s reloaded", d->conf_path);
    } else if (d->reload_why[0] == '\0') {
        /* abandoned for the drain: start_drain said so */
        return;
    } else {
        sl_metrics_config_loaded(d->metrics, true, false, us);
        sl_log_error("reload of %s refused, the running configuration stays: %s", d->conf_path,
                     d->reload_why);
        sl_notify_status("reload of %s refused: %s", d->conf_path, d->reload_why);
    }
    notified(d, sl_notify_ready(), "READY=1");
    if (d->is_reload_queued && !d->is_draining) {
        d->is_reload_queued = false;
        reload_begin(d);
    }
}

static void
answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;

    (void)what;
    drain_knocks(fd);
    if (atomic_load(&d->nanswers) < d->nworkers)
        return;
    if (d->phase == RELOAD_PREPARING)
        reload_decide(d);
    else if (d->phase == RELOAD_FINISHING)
        reload_end(d);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;

    (void)fd;
    (void)what;
    sl_log_warnx("shutdown: drain timed out, closing remaining connections");
    for (unsigned i = 0; i < d->nworkers; i++)
        post(&d->workers[i], CMD_STOP);
}

static void
start_drain(struct daemon *d)
{
    struct timeval tv = sl_timeval_from_ms(d->shared->cfg->shutdown_timeout_ms);
    uint64_t ms = d->shared->cfg->shutdown_timeout_ms;

    if (d->is_draining)
        return;
    d->is_draining = true;
    notified(d, sl_notify_stopping(), "STOPPING=1");
    sl_log_info("shutting down: draining connections (up to %llu ms)", (unsigned long long)ms);
    /* Every worker answers PREPARE before it drains (commands are handled in
     * order); reload_decide then aborts. Workers gone by then free their
     * prepared generation in workers_free. */
    if (d->phase == RELOAD_PREPARING)
        sl_log_info("reload of %s abandoned: shutting down", d->conf_path);
    admin_stop(d);
    d->drain_timer = evtimer_new(d->base, drain_timeout_cb, d);
    evtimer_add(d->drain_timer, &tv);
    for (unsigned i = 0; i < d->nworkers; i++)
        post(&d->workers[i], CMD_DRAIN);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;

    (void)what;
    switch (sig) {
    case SIGHUP:
        if (d->is_draining)
            sl_log_info("reload of %s ignored: shutting down", d->conf_path);
        else
            reload_begin(d);
        break;
    case SIGUSR1:
        if (sl_log_reopen() != 0)
            sl_log_warn("error log: reopen");
        for (unsigned i = 0; i < d->nworkers; i++)
            post(&d->workers[i], CMD_REOPEN);
        break;
    default:
        start_drain(d);
        break;
    }
}

static void
worker_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;

    (void)what;
    drain_knocks(fd);
    /* Workers that stopped without draining (drain timeout) are joined too. */
    if (atomic_load(&d->nworkers_done) >= d->nworkers)
        event_base_loopexit(d->base, NULL);
}

/* ---- run ----------------------------------------------------------------- */

static int
workers_start(struct daemon *d)
{
    const struct sl_config *cfg = d->shared->cfg;
    char err[256];

    d->nworkers = cfg->workers ? cfg->workers : 1;
    sl_proxy_fit_nofile(cfg, d->nworkers);
    d->workers = sl_xcalloc(d->nworkers, sizeof(*d->workers));
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        w->d = d;
        w->index = i;
        pthread_mutex_init(&w->why_lock, NULL);
        w->base = event_base_new();
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->notify_fd < 0)
            sl_fatal("eventfd");
        w->notify = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_notify_cb, w);
        event_add(w->notify, NULL);
        w->proxy = sl_proxy_new(w->base, i, d->nworkers, d->limiter_shared, d->metrics);
        sl_proxy_set_resolver(w->proxy, d->resolver);
        sl_proxy_set_health(w->proxy, d->health);
        if (sl_proxy_set_config(w->proxy, d->shared, err, sizeof(err)) != 0
            || sl_proxy_listen(w->proxy, cfg, err, sizeof(err)) != 0) {
            sl_log_error("worker %u: %s", i, err);
            return -1;
        }
    }
    for (unsigned i = 0; i < d->nworkers; i++) {
        if (pthread_create(&d->workers[i].thread, NULL, worker_main, &d->workers[i]) != 0)
            sl_fatal("pthread_create");
    }
    return 0;
}

static void
workers_free(struct daemon *d, bool are_running)
{
    for (unsigned i = 0; i < d->nworkers; i++) {
        struct worker *w = &d->workers[i];
        if (are_running)
            pthread_join(w->thread, NULL);
        sl_proxy_abort(w->proxy, w->prepared);
        sl_proxy_free(w->proxy);
        sl_shared_config_unref(atomic_load(&w->pending));
        if (w->notify != NULL) {
            event_free(w->notify);
            close(w->notify_fd);
        }
        if (w->base != NULL)
            event_base_free(w->base);
        pthread_mutex_destroy(&w->why_lock);
    }
    free(d->workers);
}

/* An eventfd the workers knock on, watched by the main loop; cb gets d. */
static struct event *
knock_event_new(struct daemon *d, int *fd, event_callback_fn cb)
{
    struct event *ev;

    *fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (*fd < 0)
        sl_fatal("eventfd");
    ev = event_new(d->base, *fd, EV_READ | EV_PERSIST, cb, d);
    event_add(ev, NULL);
    return ev;
}

/*
 * Test hook: SLUICE_FAULT_PREPARE_WORKER=<index> makes that worker's every
 * reload prepare fail, to show that one worker failing refuses the reload
 * for all. Read once here; the request path never looks at it.
 */
static int
fault_worker_from_env(void)
{
    const char *v = getenv("SLUICE_FAULT_PREPARE_WORKER");
    char *end;
    unsigned long n;

    if (v == NULL || *v == '\0')
        return -1;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || n > 4096) {
        sl_log_warnx("SLUICE_FAULT_PREPARE_WORKER \"%s\": not a worker index, ignored", v);
        return -1;
    }
    sl_log_warnx("test hook: reloads fail in worker %lu (SLUICE_FAULT_PREPARE_WORKER)", n);
    return (int)n;
}

/* What sl_daemon_run made, once the workers are joined (or never started). */
static void
resolver_settled(void *arg)
{
    event_base_loopbreak(arg);
}

/*
 * The conf's host names are looked up before the workers start, so that the
 * first requests have servers; the wait is bounded (a name without an answer
 * has no server, 502, until one comes). The handled signals are still
 * blocked (sl_daemon_block_signals): one sent now waits for the main loop.
 */
static int
resolver_start(struct daemon *d, const struct sl_config *cfg)
{
    char err[256];

    d->resolver = sl_resolver_new(d->base);
    if (sl_resolver_configure(d->resolver, cfg, err, sizeof(err)) < 0) {
        sl_log_error("resolver: %s", err);
        return -1;
    }
    if (!sl_resolver_is_settled(d->resolver)) {
        sl_resolver_wait(d->resolver, resolver_wait_ms(cfg), resolver_settled, d->base);
        event_base_dispatch(d->base);
    }
    return 0;
}

static void
daemon_fini(struct daemon *d)
{
    /* a reload the loop did not see to its end */
    if (d->next != NULL)
        reload_files_drop(d, d->next->cfg);
    if (d->pidfile != NULL)
        unlink(d->pidfile);
    free(d->pidfile);
    free(d->bound.listen);
    admin_stop(d);
    for (size_t i = 0; i < 4; i++) {
        if (d->signals[i] != NULL)
            event_free(d->signals[i]);
    }
    if (d->drain_timer != NULL)
        event_free(d->drain_timer);
    if (d->watchdog != NULL)
        event_free(d->watchdog);
    event_free(d->worker_done);
    close(d->worker_done_fd);
    event_free(d->answer);
    close(d->answer_fd);
    sl_shared_config_unref(d->next);
    /* its checks hold names of the resolver */
    sl_health_free(d->health);
    if (d->resolver != NULL)
        sl_resolver_free(d->resolver);
    event_base_free(d->base);
    sl_limiter_shared_free(d->limiter_shared);
    sl_shared_config_unref(d->shared);
    sl_metrics_free(d->metrics);
    libevent_global_shutdown();
}

/* The signals the main loop handles; the default action of each ends the
 * process. */
static const int handled_signals[4] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1 };

static void
handled_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < 4; i++)
        sigaddset(set, handled_signals[i]);
}

void
sl_daemon_block_signals(void)
{
    sigset_t set;

    handled_set(&set);
    (void)sigprocmask(SIG_BLOCK, &set, NULL);
}

/*
 * From here on libevent's handler takes the handled signals and the main
 * loop runs signal_cb. One that came while they were blocked is delivered
 * now and handled once the loop runs: a SIGHUP during start-up is a reload
 * right after it, a SIGTERM a drain. Only the main thread exists yet; the
 * workers it starts next inherit the unblocked mask, and libevent's handler
 * (a write to its socketpair) works on whichever thread the kernel picks.
 */
static void
signals_start(struct daemon *d)
{
    sigset_t set;

    for (size_t i = 0; i < 4; i++) {
        d->signals[i] = evsignal_new(d->base, handled_signals[i], signal_cb, d);
        event_add(d->signals[i], NULL);
    }
    handled_set(&set);
    (void)pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/*
 * libevent's own messages (evdns's "Nameserver 10.0.0.2:53 has failed:
 * request timed out.", an epoll warning), which it would print raw on
 * stderr, go to the error log with a "libevent: " prefix. A nameserver or
 * all of them failing is a warn; the other messages (one back up) are
 * info; debug lines come only if libevent's debug logging is on, which
 * sluice never turns on. Any thread may call it: sl_log writes each line
 * with one write(2) and calls nothing of libevent's, as
 * event_set_log_callback requires.
 */
static void
libevent_log_cb(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        sl_log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        if (strstr(msg, " failed") != NULL)
            sl_log_warnx("libevent: %s", msg);
        else
            sl_log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        sl_log_warnx("libevent: %s", msg);
        break;
    default:
        sl_log_error("libevent: %s", msg);
        break;
    }
}

/* The error log (also to stderr until the daemon serves), the metrics;
 * -1 when one cannot be had, cfg then freed. */
static int
daemon_init(struct daemon *d, const char *conf_path, struct sl_config *cfg, uint64_t load_us)
{
    char err[256];
    enum sl_log_level level;
    unsigned nworkers = cfg->workers ? cfg->workers : 1;

    memset(d, 0, sizeof(*d));
    d->conf_path = conf_path;
    d->next_log_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(libevent_log_cb); /* before any event base or evdns base */
    if (sl_log_open(cfg->error_log) != 0) {
        fprintf(stderr, "sluice: error log %s: %s\n", cfg->error_log, strerror(errno));
        sl_config_free(cfg);
        return -1;
    }
    sl_log_set_stderr_copy(true);
    if (cfg->log_level != NULL && sl_log_parse_level(cfg->log_level, &level) == 0)
        sl_log_set_level(level);
    d->metrics = sl_metrics_new(nworkers, cfg->metrics_buckets, cfg->nmetrics_buckets, err,
                                sizeof(err));
    if (d->metrics == NULL) {
        sl_log_error("metrics: %s", err);
        sl_config_free(cfg);
        return -1;
    }
    sl_metrics_config_loaded(d->metrics, false, true, load_us);
    restart_only_init(&d->bound, cfg);
    return 0;
}

int
sl_daemon_run(const char *conf_path, struct sl_config *cfg, uint64_t load_us)
{
    struct daemon d;
    int status = 1;

    if (daemon_init(&d, conf_path, cfg, load_us) != 0)
        return 1;
    d.shared = sl_shared_config_new(cfg);
    d.limiter_shared = sl_limiter_shared_new(cfg->store.max_keys);
    d.base = event_base_new();
    d.worker_done = knock_event_new(&d, &d.worker_done_fd, worker_done_cb);
    d.answer = knock_event_new(&d, &d.answer_fd, answer_cb);
    d.fault_worker = fault_worker_from_env();
    if (resolver_start(&d, cfg) != 0)
        goto fail;
    sl_limiter_shared_set_resolver(d.limiter_shared, d.resolver);
    d.health = sl_health_new(d.base, d.resolver);
    sl_health_configure(d.health, cfg);
    watchdog_init(&d);
    signals_start(&d);
    if (cfg->has_admin && admin_start(&d, cfg) != 0)
        goto fail;
    if (workers_start(&d) != 0) {
        workers_free(&d, false);
        d.workers = NULL;
        d.nworkers = 0;
        goto fail;
    }
    if (cfg->pidfile != NULL && write_pidfile(cfg->pidfile) != 0)
        sl_log_warn("pidfile %s", cfg->pidfile);
    else if (cfg->pidfile != NULL)
        d.pidfile = sl_xstrdup(cfg->pidfile);
    sl_log_info("sluice %s started: %u workers, listening on %s", SL_VERSION, d.nworkers,
                cfg->listen[0].text);
    sl_log_set_stderr_copy(false);
    sl_notify_status("serving: %u worker%s, listening on %s", d.nworkers,
                     d.nworkers == 1 ? "" : "s", cfg->listen[0].text);
    notified(&d, sl_notify_ready(), "READY=1");
    watchdog_start(&d);
    event_base_loop(d.base, EVLOOP_NO_EXIT_ON_EMPTY);
    workers_free(&d, true);
    sl_log_info("sluice stopped");
    status = 0;
fail:
    daemon_fini(&d);
    return status;
}
