/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream health (see health.h for the contract). The registry is a list
 * of server states under one lock, taken only to find or make a state and
 * to free the unused ones; everything the request path reads or writes is
 * an atomic of one state. Each upstream of the conf has a checker on the
 * main loop; with a path, a timer sends one probe per address each
 * interval. A probe reads no more than the response head (bounded), then
 * closes: the body of a health endpoint is never read.
 */
#include "sluice/health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/netaddr.h"
#include "sluice/resolver.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/stream.h"
#include "util/timeval.h"

/* The response head of a check, at most; a longer one fails the check. */
#define PROBE_HEAD_MAX 8192u
#define PROBE_HEADERS_MAX 100u
/* The doubling of an ejection stops growing here (2^20 times fail_timeout
 * is past any cap anyway); keeps the shift defined. */
#define EJECTIONS_SHIFT_MAX 20u
/* States no pool and no check holds are freed at least this often. */
#define SWEEP_MS 10000u

struct sl_health_server {
    struct sl_health *h; /* NULL: a private state (h was NULL at ref) */
    struct sl_health_server *next;
    char *upstream;
    char address[sizeof(((struct sl_sockaddr *)0)->text)];
    atomic_uint refs;
    atomic_bool is_down;
    atomic_uint fails;      /* passive failures in a row */
    atomic_uint nejections; /* ejections in a row, for the back-off */
    _Atomic uint64_t ejected_until_us;
    _Atomic uint64_t ejections_total;
    /* main thread only */
    struct sl_health_verdict verdict;
    bool is_probing;
};

struct probe;

/* A host name of an upstream, as the checker resolves it. */
struct checked_name {
    struct sl_resolved *resolved;
    uint16_t port;
    char *text; /* "host:port" as written: the Host of its checks */
};

/* One upstream of the conf in use. */
struct checker {
    struct sl_health *h;
    struct checker *next;
    char *name;
    struct sl_health_conf hc; /* path copied */
    struct sl_sockaddr *servers;
    size_t nservers;
    struct checked_name *names;
    size_t nnames;
    struct event *timer;               /* with a path: every interval */
    struct sl_health_server **checked; /* referenced: the addresses of the last round */
    size_t nchecked;
    struct probe *probes; /* in flight */
};

struct probe {
    struct checker *ck;
    struct probe *next, *prev;
    struct sl_health_server *s; /* referenced */
    struct sl_stream stream;
    struct event *timer;
    struct sl_head head;
    char host[300];
    bool has_stream;
    bool is_connected;
};

struct sl_health {
    struct event_base *base;
    struct sl_resolver *resolver;
    struct event *sweep_timer;
    pthread_mutex_t lock; /* servers list */
    struct sl_health_server *servers;
    struct checker *checkers;
};

/* ---- the state machines ------------------------------------------------------ */

bool
sl_health_verdict_record(struct sl_health_verdict *v, const struct sl_health_conf *hc,
                         bool is_ok)
{
    if (is_ok) {
        v->nfails = 0;
        if (v->npasses < hc->passes)
            v->npasses++;
        if (v->is_down && v->npasses >= hc->passes) {
            v->is_down = false;
            return true;
        }
        return false;
    }
    v->npasses = 0;
    if (v->nfails < hc->fails)
        v->nfails++;
    if (!v->is_down && v->nfails >= hc->fails) {
        v->is_down = true;
        return true;
    }
    return false;
}

bool
sl_health_is_down(const struct sl_health_server *s)
{
    return atomic_load_explicit(&s->is_down, memory_order_relaxed);
}

bool
sl_health_is_ejected(const struct sl_health_server *s, uint64_t now_us)
{
    return atomic_load_explicit(&s->ejected_until_us, memory_order_relaxed) > now_us;
}

/*
 * Workers race here; each failure is one atomic add, and only the one that
 * completes a run of max_fails ejects, so concurrent failures never eject
 * twice for one run.
 */
void
sl_health_failed(struct sl_health_server *s, const struct sl_health_conf *hc, uint64_t now_us)
{
    unsigned n, k;
    uint64_t ms;

    /* tried while ejected (every server was): already paid for */
    if (hc->max_fails == 0 || sl_health_is_ejected(s, now_us))
        return;
    n = atomic_fetch_add(&s->fails, 1) + 1;
    if (n % hc->max_fails != 0)
        return;
    k = atomic_fetch_add(&s->nejections, 1);
    k = k < EJECTIONS_SHIFT_MAX ? k : EJECTIONS_SHIFT_MAX;
    ms = hc->fail_timeout_ms << k;
    if (ms > hc->max_fail_timeout_ms)
        ms = hc->max_fail_timeout_ms;
    atomic_store(&s->ejected_until_us, now_us + ms * 1000);
    atomic_fetch_add(&s->ejections_total, 1);
}

/* Loads before stores: a healthy server costs every request three loads
 * and no write to a cache line the other workers read. A server that works
 * while ejected (tried because every server was) is ejected no more. */
void
sl_health_succeeded(struct sl_health_server *s)
{
    if (atomic_load_explicit(&s->fails, memory_order_relaxed) != 0)
        atomic_store(&s->fails, 0);
    if (atomic_load_explicit(&s->nejections, memory_order_relaxed) != 0)
        atomic_store(&s->nejections, 0);
    if (atomic_load_explicit(&s->ejected_until_us, memory_order_relaxed) != 0)
        atomic_store(&s->ejected_until_us, 0);
}

/* ---- the registry ------------------------------------------------------------ */

static void sweep(struct sl_health *h);

/* Pools drop the states of addresses a host name no longer has without a
 * reload, and without active checks no round sweeps: this bounds them. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep(arg);
}

struct sl_health *
sl_health_new(struct event_base *base, struct sl_resolver *resolver)
{
    struct sl_health *h = sl_xcalloc(1, sizeof(*h));

    h->base = base;
    h->resolver = resolver;
    pthread_mutex_init(&h->lock, NULL);
    h->sweep_timer = event_new(base, -1, EV_PERSIST, sweep_cb, h);
    {
        struct timeval tv = sl_timeval_from_ms(SWEEP_MS);
        event_add(h->sweep_timer, &tv);
    }
    return h;
}

static struct sl_health_server *
server_new(struct sl_health *h, const char *upstream, const char *address)
{
    struct sl_health_server *s = sl_xcalloc(1, sizeof(*s));

    s->h = h;
    s->upstream = sl_xstrdup(upstream);
    snprintf(s->address, sizeof(s->address), "%s", address);
    atomic_init(&s->refs, 1);
    return s;
}

static void
server_free(struct sl_health_server *s)
{
    free(s->upstream);
    free(s);
}

struct sl_health_server *
sl_health_ref(struct sl_health *h, const char *upstream, const char *address)
{
    struct sl_health_server *s;

    if (h == NULL)
        return server_new(NULL, upstream, address);
    pthread_mutex_lock(&h->lock);
    for (s = h->servers; s != NULL; s = s->next) {
        if (strcmp(s->address, address) == 0 && strcmp(s->upstream, upstream) == 0) {
            atomic_fetch_add(&s->refs, 1);
            break;
        }
    }
    if (s == NULL) {
        s = server_new(h, upstream, address);
        s->next = h->servers;
        h->servers = s;
    }
    pthread_mutex_unlock(&h->lock);
    return s;
}

/* A shared state with no reference left is freed by the main thread's sweep,
 * never here: a worker may be taking a new reference under the lock. */
void
sl_health_unref(struct sl_health_server *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub(&s->refs, 1) == 1 && s->h == NULL)
        server_free(s);
}

static void
sweep(struct sl_health *h)
{
    struct sl_health_server **link = &h->servers;

    pthread_mutex_lock(&h->lock);
    while (*link != NULL) {
        struct sl_health_server *s = *link;
        if (atomic_load(&s->refs) == 0) {
            *link = s->next;
            server_free(s);
        } else {
            link = &s->next;
        }
    }
    pthread_mutex_unlock(&h->lock);
}

/* ---- probes ---------------------------------------------------------------- */

static void
verdict(struct checker *ck, struct sl_health_server *s, bool is_ok, const char *why)
{
    if (!sl_health_verdict_record(&s->verdict, &ck->hc, is_ok))
        return;
    atomic_store(&s->is_down, s->verdict.is_down);
    if (s->verdict.is_down)
        sl_log_warnx("upstream \"%s\": server %s is down: %u health checks failed in a row "
                     "(last: %s)", ck->name, s->address, ck->hc.fails, why);
    else
        sl_log_info("upstream \"%s\": server %s is up: %u health checks passed in a row",
                    ck->name, s->address, ck->hc.passes);
}

static void
probe_free(struct probe *p)
{
    struct checker *ck = p->ck;

    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        ck->probes = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->s->is_probing = false;
    sl_health_unref(p->s);
    event_free(p->timer);
    if (p->has_stream)
        sl_stream_fini(&p->stream);
    sl_head_fini(&p->head);
    free(p);
}

static void
probe_end(struct probe *p, bool is_ok, const char *why)
{
    verdict(p->ck, p->s, is_ok, why);
    probe_free(p);
}

static void
probe_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;

    (void)fd;
    (void)what;
    probe_end(p, false, p->is_connected ? "no response in time" : "connect timed out");
}

static void
probe_send(struct probe *p)
{
    p->is_connected = true;
    evbuffer_add_printf(p->stream.out,
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health\r\n"
                        "Accept: */*\r\nConnection: close\r\n\r\n",
                        p->ck->hc.path, p->host);
    sl_stream_flush(&p->stream);
    sl_stream_set_reading(&p->stream, true);
}

/* Only the status matters: the head is parsed (strictly, by http-parser) to
 * be sure it is one, and nothing after it is read. Returns true when the
 * probe ended (and is freed), false while it waits for more. */
static bool
probe_read(struct probe *p)
{
    struct evbuffer *in = p->stream.in;
    unsigned status;
    char why[64];

    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < PROBE_HEAD_MAX ? len : PROBE_HEAD_MAX;
        const char *data;
        int r;

        if (n == 0)
            return false;
        data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        r = sl_head_feed(&p->head, data, n);
        if (r == SL_HEAD_MORE && n < PROBE_HEAD_MAX)
            return false;
        if (r != SL_HEAD_DONE) {
            probe_end(p, false, r == SL_HEAD_MORE ? "response head too large"
                                                  : "malformed response");
            return true;
        }
        status = p->head.parser.status_code;
        if (status / 100 != 1)
            break;
        /* an interim response: the final one follows */
        evbuffer_drain(in, p->head.head_len);
        sl_head_reset(&p->head, HTTP_RESPONSE);
    }
    snprintf(why, sizeof(why), "status %u", status);
    probe_end(p, status >= 200 && status < 400, why);
    return true;
}

static void
probe_cb(struct sl_stream *stream, int what, void *arg)
{
    struct probe *p = arg;
    char why[96];

    if (what & SL_STREAM_CONNECTED)
        probe_send(p);
    if ((what & SL_STREAM_READ) && probe_read(p))
        return;
    if (what & SL_STREAM_ERROR) {
        snprintf(why, sizeof(why), "%s %s", p->is_connected ? "read:" : "connect:",
                 strerror(stream->error));
        probe_end(p, false, why);
    } else if (what & SL_STREAM_EOF) {
        probe_end(p, false, "closed without a complete response head");
    }
}

static void
probe_start(struct checker *ck, struct sl_health_server *s, const struct sl_sockaddr *addr,
            const char *host)
{
    struct probe *p = sl_xcalloc(1, sizeof(*p));
    struct timeval tv = sl_timeval_from_ms(ck->hc.timeout_ms);
    char why[96];

    p->ck = ck;
    p->s = s;
    atomic_fetch_add(&s->refs, 1);
    s->is_probing = true;
    snprintf(p->host, sizeof(p->host), "%s", host);
    sl_head_init(&p->head, HTTP_RESPONSE, PROBE_HEAD_MAX, PROBE_HEADERS_MAX);
    p->timer = evtimer_new(ck->h->base, probe_timeout_cb, p);
    p->next = ck->probes;
    if (ck->probes != NULL)
        ck->probes->prev = p;
    ck->probes = p;
    if (sl_stream_connect(&p->stream, ck->h->base, (const struct sockaddr *)&addr->ss, addr->len,
                          probe_cb, p)
        != 0) {
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        probe_end(p, false, why);
        return;
    }
    p->has_stream = true;
    p->stream.in_max = PROBE_HEAD_MAX + 1;
    evtimer_add(p->timer, &tv);
}

/* ---- checkers ---------------------------------------------------------------- */

/* The Host of a numeric server's checks: its address, as for requests
 * without a Host of their own (unix sockets: "localhost"). */
static const char *
numeric_host(const struct sl_sockaddr *a)
{
    return a->ss.ss_family == AF_UNIX ? "localhost" : a->text;
}

/* One round of checks; in-flight ones (a probe outlives its round only when
 * the loop ran late) are not doubled. */
static void
check_round(struct checker *ck, struct sl_health_server **now, size_t *n,
            const struct sl_sockaddr *addr, const char *host)
{
    struct sl_health_server *s;

    for (size_t i = 0; i < *n; i++) {
        if (strcmp(now[i]->address, addr->text) == 0)
            return; /* a name resolving to a numeric server's address */
    }
    s = sl_health_ref(ck->h, ck->name, addr->text);
    now[(*n)++] = s;
    if (!s->is_probing)
        probe_start(ck, s, addr, host);
}

/*
 * Every interval: the addresses are taken again (a host name's may have
 * moved), and the checker's references follow them, so states of addresses
 * gone are swept once no pool holds them either.
 */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct checker *ck = arg;
    size_t max = ck->nservers + ck->nnames * SL_RESOLVED_MAX, n = 0;
    struct sl_health_server **now = sl_xcalloc(max ? max : 1, sizeof(*now));
    struct sockaddr_storage found[SL_RESOLVED_MAX];

    (void)fd;
    (void)what;
    for (size_t i = 0; i < ck->nservers; i++)
        check_round(ck, now, &n, &ck->servers[i], numeric_host(&ck->servers[i]));
    for (size_t i = 0; i < ck->nnames; i++) {
        uint64_t version;
        size_t got;
        if (ck->names[i].resolved == NULL)
            continue;
        got = sl_resolved_addresses(ck->names[i].resolved, found, SL_RESOLVED_MAX, &version);
        for (size_t j = 0; j < got; j++) {
            struct sl_sockaddr a;
            sl_sockaddr_from(&found[j], ck->names[i].port, &a);
            check_round(ck, now, &n, &a, ck->names[i].text);
        }
    }
    for (size_t i = 0; i < ck->nchecked; i++)
        sl_health_unref(ck->checked[i]);
    free(ck->checked);
    ck->checked = now;
    ck->nchecked = n;
    sweep(ck->h);
}

static struct checker *
checker_new(struct sl_health *h, const struct sl_upstream_conf *u)
{
    struct checker *ck = sl_xcalloc(1, sizeof(*ck));

    ck->h = h;
    ck->name = sl_xstrdup(u->name);
    ck->hc = u->health;
    ck->hc.path = u->health.path != NULL ? sl_xstrdup(u->health.path) : NULL;
    if (ck->hc.path == NULL)
        return ck;
    ck->servers = sl_xcalloc(u->nservers ? u->nservers : 1, sizeof(*ck->servers));
    memcpy(ck->servers, u->servers, u->nservers * sizeof(*ck->servers));
    ck->nservers = u->nservers;
    ck->names = sl_xcalloc(u->nnames ? u->nnames : 1, sizeof(*ck->names));
    for (size_t i = 0; i < u->nnames; i++) {
        ck->names[i].resolved =
            h->resolver != NULL ? sl_resolver_ref(h->resolver, u->names[i].host) : NULL;
        ck->names[i].port = u->names[i].port;
        ck->names[i].text = sl_xstrdup(u->names[i].text);
    }
    ck->nnames = u->nnames;
    ck->timer = event_new(h->base, -1, EV_PERSIST, tick_cb, ck);
    {
        struct timeval tv = sl_timeval_from_ms(ck->hc.interval_ms);
        event_add(ck->timer, &tv);
    }
    /* the first round now: a server down at start is found within fails
     * rounds, and the states are held before an old checker lets go */
    tick_cb(-1, EV_TIMEOUT, ck);
    return ck;
}

static void
checker_free(struct checker *ck)
{
    while (ck->probes != NULL)
        probe_free(ck->probes);
    if (ck->timer != NULL)
        event_free(ck->timer);
    for (size_t i = 0; i < ck->nchecked; i++)
        sl_health_unref(ck->checked[i]);
    free(ck->checked);
    for (size_t i = 0; i < ck->nnames; i++) {
        sl_resolved_unref(ck->names[i].resolved);
        free(ck->names[i].text);
    }
    free(ck->names);
    free(ck->servers);
    free(ck->hc.path);
    free(ck->name);
    free(ck);
}

static const struct checker *
checker_find(const struct sl_health *h, const char *name)
{
    for (const struct checker *ck = h->checkers; ck != NULL; ck = ck->next) {
        if (strcmp(ck->name, name) == 0)
            return ck;
    }
    return NULL;
}

/*
 * The new checkers are made before the old ones go, so a server both check
 * keeps its state (the old checker's reference holds it through). Probes
 * in flight are dropped with their checker: a round is not worth keeping a
 * copy of the old conf for.
 */
void
sl_health_configure(struct sl_health *h, const struct sl_config *cfg)
{
    struct checker *old = h->checkers, **tail = &h->checkers;

    h->checkers = NULL;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        *tail = checker_new(h, &cfg->upstreams[i]);
        tail = &(*tail)->next;
    }
    while (old != NULL) {
        struct checker *next = old->next;
        checker_free(old);
        old = next;
    }
    /* a verdict without a check would stay forever: servers of upstreams
     * that check no more are up (pools without checks ignore it anyway) */
    pthread_mutex_lock(&h->lock);
    for (struct sl_health_server *s = h->servers; s != NULL; s = s->next) {
        const struct checker *ck = checker_find(h, s->upstream);
        if (ck == NULL || ck->hc.path == NULL) {
            memset(&s->verdict, 0, sizeof(s->verdict));
            atomic_store(&s->is_down, false);
        }
    }
    pthread_mutex_unlock(&h->lock);
    sweep(h);
}

void
sl_health_free(struct sl_health *h)
{
    if (h == NULL)
        return;
    while (h->checkers != NULL) {
        struct checker *next = h->checkers->next;
        checker_free(h->checkers);
        h->checkers = next;
    }
    event_free(h->sweep_timer);
    while (h->servers != NULL) {
        struct sl_health_server *s = h->servers;
        h->servers = s->next;
        server_free(s);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ---- metrics ----------------------------------------------------------------- */

/* Label values (Prometheus text format 0.0.4): backslash, quote and newline
 * escaped. Addresses may be unix paths, which may hold any of them. */
static void
put_label(struct evbuffer *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

static void
put_series(struct evbuffer *out, const char *metric, const struct sl_health_server *s,
           uint64_t value)
{
    evbuffer_add_printf(out, "%s{upstream=\"", metric);
    put_label(out, s->upstream);
    evbuffer_add(out, "\",server=\"", 10);
    put_label(out, s->address);
    evbuffer_add_printf(out, "\"} %" PRIu64 "\n", value);
}

/* Only servers of upstreams in the conf in use, that a pool or a check
 * holds: the series stay as bounded as the servers are. */
static void
render_metric(struct sl_health *h, struct evbuffer *out, bool is_up_metric, uint64_t now_us)
{
    for (const struct checker *ck = h->checkers; ck != NULL; ck = ck->next) {
        for (const struct sl_health_server *s = h->servers; s != NULL; s = s->next) {
            bool is_up;
            if (atomic_load(&s->refs) == 0 || strcmp(s->upstream, ck->name) != 0)
                continue;
            if (!is_up_metric) {
                put_series(out, "sluice_upstream_server_ejections_total", s,
                           atomic_load(&s->ejections_total));
                continue;
            }
            is_up = !(ck->hc.path != NULL && sl_health_is_down(s))
                    && !sl_health_is_ejected(s, now_us);
            put_series(out, "sluice_upstream_server_up", s, is_up ? 1 : 0);
        }
    }
}

void
sl_health_render(struct sl_health *h, struct evbuffer *out)
{
    uint64_t now = sl_clock_now_us();

    pthread_mutex_lock(&h->lock);
    evbuffer_add_printf(out, "# HELP sluice_upstream_server_up 1 when the server takes "
                             "requests: not down by its active health check and not "
                             "ejected after failures.\n"
                             "# TYPE sluice_upstream_server_up gauge\n");
    render_metric(h, out, true, now);
    evbuffer_add_printf(out, "# HELP sluice_upstream_server_ejections_total Times the server "
                             "was ejected after max_fails failures in a row.\n"
                             "# TYPE sluice_upstream_server_ejections_total counter\n");
    render_metric(h, out, false, now);
    pthread_mutex_unlock(&h->lock);
}
