/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The resolver (see resolver.h for the contract). Each name has a refresh
 * timer on the main loop; when it fires, an A and an AAAA query go out
 * together and the name is done when both have answered. The answers are
 * merged, sorted and compared with the current set: only a different set
 * moves the version, so the workers' pools are rebuilt only on a real
 * change, and a DNS server that rotates its answers moves nothing.
 */
#include "sluice/resolver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "util/alloc.h"
#include "util/redis_url.h"
#include "util/timeval.h"

/* A TTL of 0 (dnsmasq's default for its hosts files) must not mean a lookup
 * every loop pass. */
#define MIN_REFRESH_MS 1000u
/* After a failure, try again this soon (or at valid, when shorter). */
#define RETRY_MS 5000u

struct sl_resolved {
    struct sl_resolver *r;
    struct sl_resolved *next;
    char *host;
    struct event *timer;
    atomic_uint refs;           /* workers' pools */
    _Atomic uint64_t version;
    bool is_named;              /* by the current conf */
    bool is_failing;            /* logged as failing; the next success says so */
    bool has_answered;          /* first lookup over */
    unsigned pending;           /* queries out: 0, 1 or 2 */
    int last_error;             /* of this lookup's queries, DNS_ERR_NONE if none */
    uint32_t ttl_s;             /* shortest TTL of this lookup's answers */
    size_t nfound;
    struct sockaddr_storage found[SL_RESOLVED_MAX];
    size_t naddrs;              /* the published set, under r->lock */
    struct sockaddr_storage addrs[SL_RESOLVED_MAX];
};

struct sl_resolver {
    struct event_base *base;
    struct evdns_base *dns;
    pthread_mutex_t lock;       /* the name list and every published set */
    struct sl_resolved *names;
    uint64_t valid_ms;
    struct event *wait_timer;
    sl_resolver_settled_cb *wait_cb;
    void *wait_arg;
};

static void lookup(struct sl_resolved *name);

struct sl_resolver *
sl_resolver_new(struct event_base *base)
{
    struct sl_resolver *r = sl_xcalloc(1, sizeof(*r));

    r->base = base;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void
name_free(struct sl_resolved *name)
{
    if (name->timer != NULL)
        event_free(name->timer);
    free(name->host);
    free(name);
}

void
sl_resolver_free(struct sl_resolver *r)
{
    if (r == NULL)
        return;
    /* with fail_requests = 0 no callback runs, so the names may go after */
    if (r->dns != NULL)
        evdns_base_free(r->dns, 0);
    while (r->names != NULL) {
        struct sl_resolved *name = r->names;
        r->names = name->next;
        name_free(name);
    }
    if (r->wait_timer != NULL)
        event_free(r->wait_timer);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---- name servers -------------------------------------------------------- */

static int
set_name_servers(struct sl_resolver *r, const struct sl_resolver_conf *rc, char *err,
                 size_t err_size)
{
    char seconds[32];

    if (r->dns == NULL)
        r->dns = evdns_base_new(r->base, 0);
    else
        evdns_base_clear_nameservers_and_suspend(r->dns);
    if (rc->nservers == 0) {
        int rc_parse = evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
        /* 6: no nameserver line; evdns then asks 127.0.0.1, as the C library does */
        if (rc_parse != 0 && rc_parse != 6)
            sl_log_warnx("resolver: /etc/resolv.conf unreadable (evdns error %d); asking "
                         "127.0.0.1:53", rc_parse);
        if (rc_parse != 0)
            evdns_base_nameserver_ip_add(r->dns, "127.0.0.1:53");
    }
    for (size_t i = 0; i < rc->nservers; i++) {
        if (evdns_base_nameserver_ip_add(r->dns, rc->servers[i].text) != 0) {
            snprintf(err, err_size, "resolver: name server %s refused by evdns",
                     rc->servers[i].text);
            evdns_base_resume(r->dns);
            return -1;
        }
    }
    snprintf(seconds, sizeof(seconds), "%.3f", (double)rc->timeout_ms / 1000.0);
    evdns_base_set_option(r->dns, "timeout", seconds);
    evdns_base_set_option(r->dns, "attempts", "2");
    evdns_base_resume(r->dns);
    return 0;
}

/* ---- names --------------------------------------------------------------- */

static struct sl_resolved *
find(struct sl_resolver *r, const char *host)
{
    for (struct sl_resolved *name = r->names; name != NULL; name = name->next) {
        if (strcmp(name->host, host) == 0)
            return name;
    }
    return NULL;
}

static void
refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lookup(arg);
}

/* Main thread; returns true when the name is new. */
static bool
name_add(struct sl_resolver *r, const char *host)
{
    struct sl_resolved *name = find(r, host);

    if (name != NULL) {
        name->is_named = true;
        return false;
    }
    name = sl_xcalloc(1, sizeof(*name));
    name->r = r;
    name->host = sl_xstrdup(host);
    name->is_named = true;
    name->timer = evtimer_new(r->base, refresh_cb, name);
    pthread_mutex_lock(&r->lock);
    name->next = r->names;
    r->names = name;
    pthread_mutex_unlock(&r->lock);
    lookup(name);
    return true;
}

bool
sl_resolver_is_name(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1
           && strcasecmp(host, "localhost") != 0;
}

/* The redis store's host and sentinels that are names, as a parsed url
 * (its owner frees it); false when there are none. */
static bool
store_names(const struct sl_config *cfg, struct sl_redis_url *url)
{
    bool has_name;

    if (cfg->store.kind != SL_STORE_REDIS || cfg->store.url == NULL
        || sl_redis_url_parse(cfg->store.url, url, NULL, 0) != 0)
        return false;
    has_name = url->host != NULL && sl_resolver_is_name(url->host);
    for (size_t i = 0; i < url->nsentinels; i++)
        has_name = has_name || sl_resolver_is_name(url->sentinels[i].host);
    for (size_t i = 0; i < url->nseeds; i++)
        has_name = has_name || sl_resolver_is_name(url->seeds[i].host);
    if (!has_name)
        sl_redis_url_fini(url);
    return has_name;
}

static int
store_names_add(struct sl_resolver *r, const struct sl_redis_url *url)
{
    int nnew = 0;

    if (url->host != NULL && sl_resolver_is_name(url->host))
        nnew += name_add(r, url->host);
    for (size_t i = 0; i < url->nsentinels; i++) {
        if (sl_resolver_is_name(url->sentinels[i].host))
            nnew += name_add(r, url->sentinels[i].host);
    }
    for (size_t i = 0; i < url->nseeds; i++) {
        if (sl_resolver_is_name(url->seeds[i].host))
            nnew += name_add(r, url->seeds[i].host);
    }
    return nnew;
}

int
sl_resolver_configure(struct sl_resolver *r, const struct sl_config *cfg, char *err,
                      size_t err_size)
{
    int nnew = 0;
    struct sl_redis_url url;
    bool has_redis_name = store_names(cfg, &url);
    bool has_names = has_redis_name;

    for (size_t u = 0; u < cfg->nupstreams; u++)
        has_names = has_names || cfg->upstreams[u].nnames > 0;
    /* a conf of numeric servers reads no /etc/resolv.conf and opens no socket */
    if ((has_names || r->dns != NULL) && set_name_servers(r, &cfg->resolver, err, err_size) != 0) {
        if (has_redis_name)
            sl_redis_url_fini(&url);
        return -1;
    }
    r->valid_ms = cfg->resolver.valid_ms;
    for (struct sl_resolved *name = r->names; name != NULL; name = name->next)
        name->is_named = false;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        for (size_t i = 0; i < cfg->upstreams[u].nnames; i++)
            nnew += name_add(r, cfg->upstreams[u].names[i].host);
    }
    if (has_redis_name) {
        nnew += store_names_add(r, &url);
        sl_redis_url_fini(&url);
    }
    /* names only an old conf had stop refreshing (the sweep frees them once
     * the old pools let go); one named again, idle since, is looked up now */
    for (struct sl_resolved *name = r->names; name != NULL; name = name->next) {
        if (!name->is_named)
            evtimer_del(name->timer);
        else if (name->pending == 0 && !evtimer_pending(name->timer, NULL))
            lookup(name);
    }
    return nnew;
}

void
sl_resolver_sweep(struct sl_resolver *r)
{
    struct sl_resolved **link = &r->names;

    pthread_mutex_lock(&r->lock);
    while (*link != NULL) {
        struct sl_resolved *name = *link;
        if (!name->is_named && name->pending == 0 && atomic_load(&name->refs) == 0) {
            *link = name->next;
            name_free(name);
        } else {
            link = &name->next;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

struct sl_resolved *
sl_resolver_ref(struct sl_resolver *r, const char *host)
{
    struct sl_resolved *name;

    pthread_mutex_lock(&r->lock);
    name = find(r, host);
    if (name != NULL)
        atomic_fetch_add(&name->refs, 1);
    pthread_mutex_unlock(&r->lock);
    return name;
}

void
sl_resolved_unref(struct sl_resolved *name)
{
    if (name != NULL)
        atomic_fetch_sub(&name->refs, 1);
}

uint64_t
sl_resolved_version(const struct sl_resolved *name)
{
    return atomic_load_explicit(&name->version, memory_order_acquire);
}

size_t
sl_resolved_addresses(struct sl_resolved *name, struct sockaddr_storage *out, size_t max,
                      uint64_t *version)
{
    size_t n;

    pthread_mutex_lock(&name->r->lock);
    n = name->naddrs < max ? name->naddrs : max;
    memcpy(out, name->addrs, n * sizeof(*out));
    *version = atomic_load(&name->version);
    pthread_mutex_unlock(&name->r->lock);
    return n;
}

/* ---- waiting for first answers ------------------------------------------ */

int
sl_resolver_is_settled(const struct sl_resolver *r)
{
    for (const struct sl_resolved *name = r->names; name != NULL; name = name->next) {
        if (name->is_named && !name->has_answered)
            return 0;
    }
    return 1;
}

static void
wait_end(struct sl_resolver *r)
{
    sl_resolver_settled_cb *cb = r->wait_cb;

    if (cb == NULL)
        return;
    r->wait_cb = NULL;
    evtimer_del(r->wait_timer);
    cb(r->wait_arg);
}

static void
wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wait_end(arg);
}

void
sl_resolver_wait(struct sl_resolver *r, uint64_t timeout_ms, sl_resolver_settled_cb *cb,
                 void *arg)
{
    struct timeval tv = sl_timeval_from_ms(timeout_ms);

    if (sl_resolver_is_settled(r)) {
        cb(arg);
        return;
    }
    if (r->wait_timer == NULL)
        r->wait_timer = evtimer_new(r->base, wait_timeout_cb, r);
    r->wait_cb = cb;
    r->wait_arg = arg;
    evtimer_add(r->wait_timer, &tv);
}

/* ---- lookups ------------------------------------------------------------- */

static int
cmp_addr(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sockaddr_storage));
}

static void
found_add(struct sl_resolved *name, int family, const void *bytes)
{
    struct sockaddr_storage *ss;

    if (name->nfound == SL_RESOLVED_MAX)
        return;
    ss = &name->found[name->nfound++];
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, bytes, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, bytes, 16);
    }
}

static void
log_set(const struct sl_resolved *name)
{
    char list[256] = "";
    size_t len = 0;

    for (size_t i = 0; i < name->naddrs && len < sizeof(list) - 48; i++) {
        char host[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &name->addrs[i];
        const void *bytes = ss->ss_family == AF_INET
                                ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                                : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        inet_ntop(ss->ss_family, bytes, host, sizeof(host));
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", host);
    }
    sl_log_info("resolver: %s is %s%s", name->host, list,
                len >= sizeof(list) - 48 ? ", ..." : "");
}

/* Both queries are in: publish a changed set, log transitions, schedule. */
static void
lookup_done(struct sl_resolved *name)
{
    struct sl_resolver *r = name->r;
    uint64_t next_ms = r->valid_ms;
    struct timeval tv;

    name->has_answered = true;
    if (name->nfound == 0) {
        if (!name->is_failing)
            sl_log_warnx("resolver: %s: %s; %s", name->host,
                         name->last_error != DNS_ERR_NONE ? evdns_err_to_string(name->last_error)
                                                          : "no address",
                         name->naddrs ? "keeping the last addresses" : "no address yet");
        name->is_failing = true;
        next_ms = next_ms < RETRY_MS ? next_ms : RETRY_MS;
    } else {
        bool is_changed;
        qsort(name->found, name->nfound, sizeof(name->found[0]), cmp_addr);
        is_changed = name->nfound != name->naddrs
                     || memcmp(name->found, name->addrs, name->nfound * sizeof(name->found[0]));
        if (name->is_failing && !is_changed)
            sl_log_info("resolver: %s resolves again", name->host);
        name->is_failing = false;
        if (is_changed) {
            pthread_mutex_lock(&r->lock);
            memcpy(name->addrs, name->found, name->nfound * sizeof(name->found[0]));
            name->naddrs = name->nfound;
            atomic_fetch_add_explicit(&name->version, 1, memory_order_release);
            pthread_mutex_unlock(&r->lock);
            log_set(name);
        }
        if ((uint64_t)name->ttl_s * 1000 < next_ms)
            next_ms = (uint64_t)name->ttl_s * 1000;
    }
    if (next_ms < MIN_REFRESH_MS)
        next_ms = MIN_REFRESH_MS;
    if (name->is_named) {
        tv = sl_timeval_from_ms(next_ms);
        evtimer_add(name->timer, &tv);
    }
    if (r->wait_cb != NULL && sl_resolver_is_settled(r))
        wait_end(r);
}

static void
answer_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    struct sl_resolved *name = arg;

    if (result == DNS_ERR_NONE) {
        for (int i = 0; i < count; i++) {
            if (type == DNS_IPv4_A)
                found_add(name, AF_INET, (const char *)addresses + 4 * i);
            else if (type == DNS_IPv6_AAAA)
                found_add(name, AF_INET6, (const char *)addresses + 16 * i);
        }
        if (count > 0 && (uint32_t)ttl < name->ttl_s)
            name->ttl_s = ttl > 0 ? (uint32_t)ttl : 0;
    } else if (result != DNS_ERR_NODATA || name->last_error == DNS_ERR_NONE) {
        /* a name with only A records answers NODATA for AAAA: said only
         * when nothing worse was */
        name->last_error = result;
    }
    if (--name->pending == 0)
        lookup_done(name);
}

static void
lookup(struct sl_resolved *name)
{
    struct evdns_base *dns = name->r->dns;

    if (name->pending != 0)
        return;
    name->nfound = 0;
    name->last_error = DNS_ERR_NONE;
    name->ttl_s = UINT32_MAX;
    name->pending = 2;
    if (evdns_base_resolve_ipv4(dns, name->host, 0, answer_cb, name) == NULL) {
        name->pending--;
        name->last_error = DNS_ERR_UNKNOWN;
    }
    if (evdns_base_resolve_ipv6(dns, name->host, 0, answer_cb, name) == NULL) {
        name->pending--;
        name->last_error = DNS_ERR_UNKNOWN;
    }
    if (name->pending == 0)
        lookup_done(name);
}
