/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Redis Sentinel for the redis store (a redis-sentinel:// url): where the
 * master is. One per store, so one per worker, like the store's link.
 *
 * Discovery. Before connecting, the store asks the sentinels in turn, each
 * over a short-lived link (AUTH when store.sentinel has a password, then
 * SENTINEL GET-MASTER-ADDR-BY-NAME), for the master's address; the first
 * answer wins. The store then connects to that address and, after AUTH and
 * SELECT, sends ROLE (store_redis_conn.c): a server that is not a master
 * (a sentinel's stale view) is dropped like a failed connection. Every
 * drop of the master connection (an error, a timeout, READONLY from a
 * demoted master, +switch-master) forgets the address, so the next
 * connection attempt asks again; attempts follow the store's backoff.
 *
 * Following a failover. One more link, kept open to one sentinel at a
 * time, is subscribed to +switch-master. A message for our master name
 * drops the master connection at once and connects to the new address
 * (still confirmed with ROLE). When that link fails it is opened again to
 * the next sentinel after SUB_RETRY_MS. A message missed while no
 * subscription was up is caught by asking that same sentinel for the
 * master once subscribed, and every VERIFY_MS while connected; a
 * different answer is followed like the message. (Only that sentinel: one
 * that has not seen a failover yet would send us back to the old master,
 * which may go on taking writes for seconds.) The rediscovery on errors
 * and READONLY covers the rest.
 *
 * While the master is unknown the store is down: checks fail at once and
 * on_error decides (nothing queues). Sentinel addresses are IP addresses
 * (the url parser refuses names): no lookup runs on the worker.
 *
 * Lifetime: every command sent on a sentinel link counts in the store's
 * nowned, like the master link's, so the store outlives the callbacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/resolver.h"
#include "store_redis_int.h"
#include "util/alloc.h"
#include "util/timeval.h"

#define QUERY_TIMEOUT_MIN_MS 500 /* a sentinel gets this long to answer, at least */
#define SUB_RETRY_MS 1000        /* the subscription opened again after a failure */
#define VERIFY_MS 10000          /* while connected, the sentinels are asked this often */
#define SENTINEL_OUT_MAX (64u << 10)
#define ENDPOINTS_MAX 64         /* sentinels asked, names' addresses included */

/* One sentinel to ask: an address of the url, or one of a name's. */
struct endpoint {
    char host[INET6_ADDRSTRLEN];
    int port;
};

struct sentinel {
    struct redis_store *rs;
    char *user, *password;      /* AUTH to the sentinels; password NULL: none */

    /* The sentinels as addresses: a name of the url (a headless Service
     * with a pod per sentinel, say) stands for every address the daemon's
     * resolver has for it. Rebuilt when a name's addresses change. */
    struct sl_resolved *dns[SL_REDIS_SENTINELS_MAX]; /* NULL: numeric, or no resolver */
    uint64_t dns_version[SL_REDIS_SENTINELS_MAX];
    struct endpoint eps[ENDPOINTS_MAX];
    unsigned neps;

    struct sl_redis_link *query; /* asking one sentinel; NULL: no discovery running */
    unsigned query_turn;         /* the sentinel the next query asks */
    unsigned query_tried;        /* sentinels asked in this round */
    struct event *query_timer;
    bool is_verifying;           /* connected already: the answer checks the master */
    struct event *verify_timer;  /* asks again every VERIFY_MS while connected */
    char last_why[160];          /* why the last sentinel asked gave no master */

    bool has_master;
    char master_host[INET6_ADDRSTRLEN];
    int master_port;
    char logged_host[INET6_ADDRSTRLEN]; /* the master last logged, to log changes only */
    int logged_port;

    struct sl_redis_link *sub;   /* subscribed to +switch-master; NULL while reopening */
    unsigned sub_turn;
    bool is_subscribed;          /* SUBSCRIBE confirmed on sub */
    struct event *sub_timer;
    bool is_sub_logged_down;
    bool is_stopped;
};

static void query_start(struct sentinel *s);
static void sub_open(struct sentinel *s);
static void switch_to(struct sentinel *s, const char *host, int port, const char *how);
static void sub_retry(struct sentinel *s, const char *why);

/* A name's current addresses as endpoints, at most `room`. */
static unsigned
name_endpoints(struct sentinel *s, size_t i, struct endpoint *out, unsigned room)
{
    struct sockaddr_storage ss[SL_RESOLVED_MAX];
    size_t n = sl_resolved_addresses(s->dns[i], ss, SL_RESOLVED_MAX, &s->dns_version[i]);
    unsigned k = 0;

    for (size_t j = 0; j < n && k < room; j++) {
        const void *a = ss[j].ss_family == AF_INET6
                            ? (const void *)&((const struct sockaddr_in6 *)&ss[j])->sin6_addr
                            : (const void *)&((const struct sockaddr_in *)&ss[j])->sin_addr;
        if (inet_ntop(ss[j].ss_family, a, out[k].host, sizeof(out[k].host)) == NULL)
            continue;
        out[k++].port = s->rs->url.sentinels[i].port;
    }
    return k;
}

/* The endpoints again when a name's addresses moved (or the first time). */
static void
endpoints_refresh(struct sentinel *s)
{
    const struct sl_redis_url *u = &s->rs->url;
    bool is_stale = s->neps == 0;

    for (size_t i = 0; i < u->nsentinels && !is_stale; i++)
        is_stale = s->dns[i] != NULL && sl_resolved_version(s->dns[i]) != s->dns_version[i];
    if (!is_stale)
        return;
    s->neps = 0;
    for (size_t i = 0; i < u->nsentinels && s->neps < ENDPOINTS_MAX; i++) {
        if (s->dns[i] != NULL) {
            s->neps += name_endpoints(s, i, s->eps + s->neps, ENDPOINTS_MAX - s->neps);
        } else {
            snprintf(s->eps[s->neps].host, sizeof(s->eps[s->neps].host), "%s",
                     u->sentinels[i].host);
            s->eps[s->neps++].port = u->sentinels[i].port;
        }
    }
}

/* Turns go round the endpoints; with none yet (names without an answer),
 * a placeholder that link_to refuses. */
static const struct endpoint *
addr_of(const struct sentinel *s, unsigned turn)
{
    static const struct endpoint none = { "(no address yet)", 0 };

    return s->neps > 0 ? &s->eps[turn % s->neps] : &none;
}

static void
send_cmd(struct sentinel *s, struct sl_redis_link *link, int argc, const char **argv,
         sl_redis_reply_cb *cb)
{
    size_t lens[4];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (sl_redis_link_send_argv(link, argc, argv, lens, cb, s->rs) == 0)
        s->rs->nowned++;
}

/* AUTH [user] password when store.sentinel has one; its reply goes to cb. */
static void
send_auth(struct sentinel *s, struct sl_redis_link *link, sl_redis_reply_cb *cb)
{
    const char *argv[3] = { "AUTH", s->user, s->password };

    if (s->password == NULL)
        return;
    if (s->user != NULL) {
        send_cmd(s, link, 3, argv, cb);
    } else {
        argv[1] = s->password;
        send_cmd(s, link, 2, argv, cb);
    }
}

static struct sl_redis_link *
link_to(struct sentinel *s, unsigned turn, sl_redis_down_cb *down, char *err, size_t err_size)
{
    const struct endpoint *a;
    struct sl_redis_target t;

    endpoints_refresh(s);
    if (s->neps == 0) {
        snprintf(err, err_size, "no address for the sentinels' names (yet)");
        return NULL;
    }
    a = addr_of(s, turn);
    t = (struct sl_redis_target){ .host = a->host, .port = a->port };

    return sl_redis_link_new(s->rs->evbase, &t, NULL, NULL, SENTINEL_OUT_MAX, down, s->rs, err,
                             err_size);
}

/* ---- discovery ------------------------------------------------------------------- */

static void
query_stop(struct sentinel *s)
{
    struct sl_redis_link *link = s->query;

    s->query = NULL;
    evtimer_del(s->query_timer);
    sl_redis_link_free(link); /* its callbacks come back NULL and see it is stale */
}

/* The sentinel asked gave no master: ask the next, or after a round with
 * no answer, wait the store's backoff and start again. */
static void
query_next(struct sentinel *s, const char *why)
{
    struct redis_store *rs = s->rs;
    const struct endpoint *a = addr_of(s, s->query_turn);

    snprintf(s->last_why, sizeof(s->last_why), "sentinel %s:%d: %s", a->host, a->port, why);
    sl_log_debug("redis %s: %s", rs->name, s->last_why);
    query_stop(s);
    s->query_turn++;
    if (++s->query_tried < s->neps) {
        query_start(s);
        return;
    }
    if (s->is_verifying) {
        /* the master keeps serving; the subscribed sentinel did not answer,
         * so it may be gone without a word: the subscription moves on */
        s->is_verifying = false;
        sub_retry(s, s->last_why);
        return;
    }
    if (!rs->is_logged_down) {
        sl_log_warnx("redis %s: no sentinel named the master (last: %s); retrying with backoff",
                     rs->name, s->last_why);
        rs->is_logged_down = true;
    }
    sl_redis_retry_later(rs);
}

/* An address as Sentinel gives it: an IP address and a port. */
static bool
master_addr_ok(const redisReply *r, char *host, size_t host_size, int *port)
{
    unsigned char bin[16];
    char *end;
    long p;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING
        || r->element[0]->len == 0 || r->element[0]->len >= host_size)
        return false;
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1)
        return false;
    p = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
        return false;
    *port = (int)p;
    return true;
}

/* The master is at host:port: remembered for the next connect. */
static void
master_set(struct sentinel *s, const char *host, int port, const char *how)
{
    snprintf(s->master_host, sizeof(s->master_host), "%s", host);
    s->master_port = port;
    s->has_master = true;
    if (strcmp(s->logged_host, host) != 0 || s->logged_port != port) {
        sl_log_info("redis %s: master at %s:%d (%s)", s->rs->name, host, port, how);
        snprintf(s->logged_host, sizeof(s->logged_host), "%s", host);
        s->logged_port = port;
    }
}

static void
on_query_auth(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    struct sentinel *s = rs->sentinel;
    const redisReply *reply = r;
    char why[200];

    sl_redis_enter(rs);
    rs->nowned--;
    if (link == s->query && reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "AUTH: %.150s", reply->str);
        query_next(s, why);
    }
    sl_redis_leave(rs);
}

static void
on_query_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    struct sentinel *s = rs->sentinel;
    const redisReply *reply = r;
    char host[INET6_ADDRSTRLEN], why[200];
    const struct endpoint *a;
    int port;

    sl_redis_enter(rs);
    rs->nowned--;
    if (link != s->query || reply == NULL)
        goto out; /* stale, or failed through on_query_down */
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%.180s", reply->str);
        query_next(s, why);
    } else if (reply->type == REDIS_REPLY_NIL) {
        query_next(s, "does not know the master name");
    } else if (!master_addr_ok(reply, host, sizeof(host), &port)) {
        query_next(s, "unexpected reply to SENTINEL GET-MASTER-ADDR-BY-NAME");
    } else {
        a = addr_of(s, s->query_turn);
        snprintf(why, sizeof(why), "from sentinel %s:%d", a->host, a->port);
        query_stop(s);
        if (s->is_verifying) {
            s->is_verifying = false;
            switch_to(s, host, port, why);
        } else {
            master_set(s, host, port, why);
            sl_redis_connect_now(rs);
        }
    }
out:
    sl_redis_leave(rs);
}

static void
on_query_down(struct sl_redis_link *link, void *arg, const char *why)
{
    struct redis_store *rs = arg;

    if (link != rs->sentinel->query)
        return;
    sl_redis_enter(rs);
    query_next(rs->sentinel, why);
    sl_redis_leave(rs);
}

static void
on_query_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    query_next(rs->sentinel, "no answer in time");
    sl_redis_leave(rs);
}

static void
query_start(struct sentinel *s)
{
    struct redis_store *rs = s->rs;
    const char *argv[3] = { "SENTINEL", "GET-MASTER-ADDR-BY-NAME", rs->url.master_name };
    uint64_t ms = rs->timeout_ms > QUERY_TIMEOUT_MIN_MS ? rs->timeout_ms : QUERY_TIMEOUT_MIN_MS;
    struct timeval tv = sl_timeval_from_ms(ms);
    char err[200];

    s->query = link_to(s, s->query_turn, on_query_down, err, sizeof(err));
    if (s->query == NULL) {
        query_next(s, err);
        return;
    }
    send_auth(s, s->query, on_query_auth);
    send_cmd(s, s->query, 3, argv, on_query_reply);
    evtimer_add(s->query_timer, &tv);
}

/* ---- the subscription ------------------------------------------------------------ */

static void
sub_retry(struct sentinel *s, const char *why)
{
    struct sl_redis_link *link = s->sub;
    const struct endpoint *a = addr_of(s, s->sub_turn);
    struct timeval tv = sl_timeval_from_ms(SUB_RETRY_MS);

    if (!s->is_sub_logged_down) {
        sl_log_warnx("redis %s: sentinel %s:%d: +switch-master subscription: %s; trying the "
                     "next sentinel", s->rs->name, a->host, a->port, why);
        s->is_sub_logged_down = true;
    }
    s->sub = NULL;
    s->is_subscribed = false;
    sl_redis_link_free(link);
    s->sub_turn++;
    if (!s->is_stopped)
        evtimer_add(s->sub_timer, &tv);
}

/* The master is at host:port now: when connected elsewhere, the old
 * master's checks fail (on_error) and the new one takes the next. Nothing
 * changes when it is the master already (another sentinel telling of a
 * switch followed already, a check that confirms). */
static void
switch_to(struct sentinel *s, const char *host, int port, const char *how)
{
    struct redis_store *rs = s->rs;
    struct timeval now = { 0, 0 };
    char why[200];

    if (s->has_master && rs->link != NULL && strcmp(s->master_host, host) == 0
        && s->master_port == port)
        return;
    snprintf(why, sizeof(why), "the master moved (%s)", how);
    sl_redis_conn_down(rs, SL_STORE_CONNECTION, why);
    if (s->query != NULL)
        query_stop(s);
    s->is_verifying = false;
    master_set(s, host, port, how);
    evtimer_del(rs->reconnect_timer);
    rs->backoff_ms = BACKOFF_MIN_MS;
    evtimer_add(rs->reconnect_timer, &now);
}

/* Connected: asks the sentinel we are subscribed to whether the master is
 * still where we are, in case a +switch-master was missed (the subscription
 * down or just made). Only that one: its messages are the ones followed, and
 * another that has not seen a failover yet would send us back. */
static void
verify(struct sentinel *s)
{
    if (s->is_stopped || !s->is_subscribed || s->query != NULL || !s->has_master
        || s->rs->link == NULL)
        return;
    s->is_verifying = true;
    s->query_turn = s->sub_turn;
    s->query_tried = s->neps > 0 ? s->neps - 1 : 0; /* this one alone */
    query_start(s);
}

static void
on_verify_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;
    struct timeval tv = sl_timeval_from_ms(VERIFY_MS);

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    if (!rs->sentinel->is_stopped) {
        evtimer_add(rs->sentinel->verify_timer, &tv);
        verify(rs->sentinel);
    }
    sl_redis_leave(rs);
}

/* "+switch-master" payload: "<name> <old ip> <old port> <new ip> <new port>". */
static void
on_switch(struct sentinel *s, const char *payload)
{
    struct redis_store *rs = s->rs;
    char name[SL_REDIS_MASTER_NAME_MAX + 1], oldh[64], newh[64];
    int oldp, newp;
    unsigned char bin[16];

    if (sscanf(payload, "%128s %63s %d %63s %d", name, oldh, &oldp, newh, &newp) != 5
        || strcmp(name, rs->url.master_name) != 0 || newp < 1 || newp > 65535
        || (inet_pton(AF_INET, newh, bin) != 1 && inet_pton(AF_INET6, newh, bin) != 1))
        return;
    switch_to(s, newh, newp, "+switch-master");
}

/* A message on the subscribed link: ["message", channel, payload]. */
static void
on_sub_push(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    struct sentinel *s = rs->sentinel;
    const redisReply *reply = r;

    if (link != s->sub || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || strcmp(reply->element[0]->str, "message") != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    sl_redis_enter(rs);
    on_switch(s, reply->element[2]->str);
    sl_redis_leave(rs);
}

/* The replies to AUTH and SUBSCRIBE: an error ends this subscription. */
static void
on_sub_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_store *rs = privdata;
    struct sentinel *s = rs->sentinel;
    const redisReply *reply = r;
    char why[200];

    sl_redis_enter(rs);
    rs->nowned--;
    if (link != s->sub || reply == NULL)
        goto out;
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%.180s", reply->str);
        sub_retry(s, why);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        /* subscribed: a switch made while it was not is caught by asking */
        s->is_sub_logged_down = false;
        s->is_subscribed = true;
        verify(s);
    }
out:
    sl_redis_leave(rs);
}

static void
on_sub_down(struct sl_redis_link *link, void *arg, const char *why)
{
    struct redis_store *rs = arg;

    if (link != rs->sentinel->sub)
        return;
    sl_redis_enter(rs);
    sub_retry(rs->sentinel, why);
    sl_redis_leave(rs);
}

static void
sub_open(struct sentinel *s)
{
    const char *argv[2] = { "SUBSCRIBE", "+switch-master" };
    char err[200];

    if (s->is_stopped)
        return;
    s->sub = link_to(s, s->sub_turn, on_sub_down, err, sizeof(err));
    if (s->sub == NULL) {
        sub_retry(s, err);
        return;
    }
    sl_redis_link_on_push(s->sub, on_sub_push, s->rs);
    send_auth(s, s->sub, on_sub_reply);
    send_cmd(s, s->sub, 2, argv, on_sub_reply);
}

static void
on_sub_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_store *rs = arg;

    (void)fd;
    (void)what;
    sl_redis_enter(rs);
    sub_open(rs->sentinel);
    sl_redis_leave(rs);
}

/* ---- the store's side ------------------------------------------------------------ */

void
sl_redis_sentinel_init(struct redis_store *rs, const struct sl_store_conf *conf)
{
    struct sentinel *s = sl_xcalloc(1, sizeof(*s));
    struct timeval tv = sl_timeval_from_ms(VERIFY_MS);

    s->rs = rs;
    for (size_t i = 0; i < rs->url.nsentinels; i++) {
        const char *host = rs->url.sentinels[i].host;
        /* NULL when the conf naming it is gone already: then as written */
        if (rs->resolver != NULL && sl_resolver_is_name(host))
            s->dns[i] = sl_resolver_ref(rs->resolver, host);
    }
    s->user = conf->sentinel.user != NULL ? sl_xstrdup(conf->sentinel.user) : NULL;
    s->password = conf->sentinel.password != NULL ? sl_xstrdup(conf->sentinel.password) : NULL;
    s->query_timer = evtimer_new(rs->evbase, on_query_timeout, rs);
    s->sub_timer = evtimer_new(rs->evbase, on_sub_timer, rs);
    s->verify_timer = evtimer_new(rs->evbase, on_verify_timer, rs);
    if (s->query_timer == NULL || s->sub_timer == NULL || s->verify_timer == NULL)
        sl_fatalx("redis store: cannot create timers");
    rs->sentinel = s;
    evtimer_add(s->verify_timer, &tv);
    sub_open(s);
}

void
sl_redis_sentinel_stop(struct redis_store *rs)
{
    struct sentinel *s = rs->sentinel;
    struct sl_redis_link *sub;

    if (s == NULL)
        return;
    s->is_stopped = true;
    evtimer_del(s->sub_timer);
    evtimer_del(s->verify_timer);
    if (s->query != NULL)
        query_stop(s);
    sub = s->sub;
    s->sub = NULL;
    s->is_subscribed = false;
    sl_redis_link_free(sub);
}

void
sl_redis_sentinel_fini(struct redis_store *rs)
{
    struct sentinel *s = rs->sentinel;

    if (s == NULL)
        return;
    event_free(s->query_timer);
    event_free(s->sub_timer);
    event_free(s->verify_timer);
    for (size_t i = 0; i < SL_REDIS_SENTINELS_MAX; i++) {
        if (s->dns[i] != NULL)
            sl_resolved_unref(s->dns[i]);
    }
    free(s->user);
    if (s->password != NULL)
        explicit_bzero(s->password, strlen(s->password));
    free(s->password);
    free(s);
    rs->sentinel = NULL;
}

bool
sl_redis_sentinel_target(struct redis_store *rs, struct sl_redis_target *t)
{
    struct sentinel *s = rs->sentinel;

    if (s->is_stopped)
        return false;
    if (!s->has_master) {
        /* a verification under way becomes the discovery */
        s->is_verifying = false;
        if (s->query == NULL) {
            s->query_tried = 0;
            query_start(s);
        }
        return false;
    }
    t->host = s->master_host;
    t->port = s->master_port;
    return true;
}

void
sl_redis_sentinel_forget(struct redis_store *rs)
{
    if (rs->sentinel != NULL)
        rs->sentinel->has_master = false;
}
