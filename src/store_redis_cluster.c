/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Redis Cluster for the redis store (a redis-cluster:// url): a store of
 * stores. One per worker, like every store; it holds one redis_store per
 * master (store_redis*.c: its own link, handshake, batching, timeouts and
 * reconnection) and routes each check to the master of its keys' slots.
 *
 * The slot map. CLUSTER SLOTS is asked of one node at a time over a
 * short-lived link: the seeds of the url first, then the nodes the map
 * named, in turn, so a dead seed only costs a turn. It is asked at start,
 * after a MOVED, when a node's connection goes down, and every
 * REFRESH_EVERY_MS, never more than once per REFRESH_MIN_MS. Until the
 * first map comes, checks fail at once (SL_STORE_CONNECTION: on_error
 * decides). A master that leaves the map is dropped with its pending
 * checks (SL_STORE_CONNECTION too: a failover).
 *
 * Batching. Redis runs a script call only when all its declared keys are
 * in one slot, so a master's calls declare none: the keys go in ARGV and
 * the script, loaded with the allow-cross-slot-keys flag, reads them
 * (lua/token_bucket.lua). One call to a master carries checks of all its
 * slots, batched as with a single Redis. A key the master does not serve
 * (its slot moved or is moving) fails that check alone, which takes nothing
 * and is sent again on its own with its keys declared: Redis then answers
 * MOVED (the slot moved for good: the checks go to the master named, and
 * the map is asked again) or ASK (the slot is moving: ASKING and the call
 * go to the master named, this once). A master turned replica answers
 * READONLY: its checks are sent again the same way. A check is sent again
 * at most NODE_REDIRECTS_MAX times (store_redis_int.h), then fails with
 * SL_STORE_REPLY.
 *
 * Checks over several slots. A check whose buckets share one slot is one
 * check on its master, all-or-nothing in one script call. One whose buckets
 * sit in different slots is split: one part per slot, each all-or-nothing
 * on its master, sent at once (the parts for one master ride in its next
 * call). One slot per part, because a part sent again with its keys
 * declared must name one slot only. The request is admitted only when
 * every part took its cost; when one part refuses (or fails), the parts
 * that took give it back (the script's refund) before the caller is
 * answered. A refund in flight can refuse a request or two more; it never
 * admits more: every part that admitted took its tokens before the
 * decision. A part that failed may have taken its cost unseen (a timeout);
 * that is lost, as it is for a single Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/resolver.h"
#include "store_redis_int.h"
#include "store_redis_slots.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/redis_slot.h"
#include "util/timeval.h"

#define NODES_MAX 64              /* masters and redirect targets per store */
#define REFRESH_MIN_MS 100
#define REFRESH_EVERY_MS 10000
#define ASK_TIMEOUT_MIN_MS 1000   /* a node gets this long to answer CLUSTER SLOTS, at least */
#define CTL_OUT_MAX (64u << 10)

struct cluster_node {
    struct redis_store *rs;
    char *host;
    int port;
    bool is_in_map;
};

struct redis_cluster {
    struct sl_store base;
    struct event_base *evbase;
    struct sl_redis_url url;           /* the seeds, the user and password, TLS or not */
    uint64_t timeout_ms;
    struct ssl_ctx_st *ssl_ctx;
    char *server_name;
    bool is_tls_verify;
    struct sl_resolved *seed_dns[SL_REDIS_SEEDS_MAX]; /* a seed's name, looked up by the daemon */
    unsigned dns_turn;

    struct cluster_node *nodes[NODES_MAX];
    size_t nnodes;
    struct cluster_node **slot_node;   /* SL_REDIS_SLOTS entries; NULL: no master known */
    bool has_map;
    size_t nmasters;                   /* in the last map, to log changes only */

    struct sl_redis_link *ask;         /* CLUSTER SLOTS in flight; NULL: none */
    char ask_host[NI_MAXHOST];
    int ask_port;
    unsigned ask_turn;
    uint64_t asked_us;
    struct event *soon_timer, *every_timer, *ask_timer;
    /* the node whose CLUSTER SLOTS failure was logged last, and when: each
     * refresh may start with the same dead seed, every 100 ms */
    char failed_ask_host[NI_MAXHOST];
    int failed_ask_port;
    uint64_t failed_ask_logged_us;

    unsigned depth;
    unsigned nowned;                   /* ask-link callbacks still owed */
    bool is_freeing;
    atomic_uint_fast64_t failed_fast;  /* checks failed here: no map, no master */
    atomic_uint_fast64_t splits, refunds;
};

/* One check split over slots; its parts are checks of one slot each. */
struct split_part {
    struct split *s;
    unsigned slot;
    size_t first, count;               /* its buckets: s->buckets[first .. first+count) */
    bool is_admitted;
};

struct split {
    struct redis_cluster *c;
    sl_store_cb *cb;
    void *arg;
    size_t n, nparts, nleft;
    bool is_refused;
    enum sl_store_status status;       /* the first failure of a part */
    struct sl_store_bucket *buckets;   /* by slot, their keys in keys */
    char *keys;
    size_t *origin;                    /* buckets[i] is the caller's origin[i] */
    struct sl_store_result *results;   /* in the caller's order */
    struct split_part parts[];
};

static void refresh_soon(struct redis_cluster *c);
static const struct sl_store_ops cluster_ops;

static void
enter(struct redis_cluster *c)
{
    c->depth++;
}

static void destroy(struct redis_cluster *c);

/* True when the store is gone: the caller must return at once. */
static bool
leave(struct redis_cluster *c)
{
    if (--c->depth == 0 && c->is_freeing && c->nowned == 0) {
        destroy(c);
        return true;
    }
    return false;
}

/* ---- nodes --------------------------------------------------------------------------- */

static struct cluster_node *
node_find(struct redis_cluster *c, const char *host, int port)
{
    for (size_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->port == port && strcmp(c->nodes[i]->host, host) == 0)
            return c->nodes[i];
    }
    return NULL;
}

/* The node at host:port, connecting to it when new; NULL past NODES_MAX. */
static struct cluster_node *
node_get(struct redis_cluster *c, const char *host, int port)
{
    struct cluster_node *node = node_find(c, host, port);
    struct redis_node_spec spec = {
        .url = &c->url, .host = host, .port = port, .timeout_ms = c->timeout_ms,
        .ssl_ctx = c->ssl_ctx, .server_name = c->server_name, .is_tls_verify = c->is_tls_verify,
    };

    if (node != NULL || c->nnodes == NODES_MAX || c->is_freeing)
        return node;
    node = sl_xcalloc(1, sizeof(*node));
    node->host = sl_xstrdup(host);
    node->port = port;
    c->nodes[c->nnodes++] = node;
    node->rs = sl_redis_node_new(c->evbase, &spec, c);
    return node;
}

/* Frees the node: its pending checks fail (SL_STORE_CONNECTION). */
static void
node_free(struct cluster_node *node)
{
    sl_store_free(&node->rs->base);
    free(node->host);
    free(node);
}

/* ---- the slot map -------------------------------------------------------------------- */

/* Drops the masters that left the map (after the map changed, so that the
 * callbacks of their checks see the new one). */
static void
drop_unmapped(struct redis_cluster *c)
{
    struct cluster_node *gone[NODES_MAX];
    size_t ngone = 0, kept = 0;

    for (size_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->is_in_map)
            c->nodes[kept++] = c->nodes[i];
        else
            gone[ngone++] = c->nodes[i];
    }
    c->nnodes = kept;
    for (size_t i = 0; i < ngone; i++)
        node_free(gone[i]);
}

static void
apply_map(struct redis_cluster *c, const struct sl_redis_slot_map *map)
{
    size_t nmasters = 0, covered = 0;

    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->is_in_map = false;
    memset(c->slot_node, 0, SL_REDIS_SLOTS * sizeof(*c->slot_node));
    for (size_t i = 0; i < map->n; i++) {
        const struct sl_redis_slot_range *r = &map->ranges[i];
        struct cluster_node *node = node_get(c, r->host, r->port);

        if (node == NULL)
            continue;
        if (!node->is_in_map)
            nmasters++;
        node->is_in_map = true;
        for (unsigned s = r->first; s <= r->last; s++)
            c->slot_node[s] = node;
        covered += r->last - r->first + 1;
    }
    c->has_map = true;
    if (nmasters != c->nmasters || covered != SL_REDIS_SLOTS)
        sl_log_info("redis cluster: %zu masters, %zu of %d slots served", nmasters, covered,
                    SL_REDIS_SLOTS);
    c->nmasters = nmasters;
    drop_unmapped(c);
}

/* ---- asking for the map -------------------------------------------------------------- */

static void
ask_done(struct redis_cluster *c)
{
    struct timeval tv = sl_timeval_from_ms(REFRESH_EVERY_MS);

    sl_redis_link_free(c->ask);
    c->ask = NULL;
    evtimer_del(c->ask_timer);
    evtimer_add(c->every_timer, &tv);
}

#define ASK_FAILED_RELOG_US (60u * 1000u * 1000u)

static void
ask_failed(struct redis_cluster *c, const char *why)
{
    uint64_t now = sl_clock_now_us();

    if (c->ask_port != c->failed_ask_port || strcmp(c->ask_host, c->failed_ask_host) != 0
        || now - c->failed_ask_logged_us >= ASK_FAILED_RELOG_US) {
        sl_log_warnx(strchr(c->ask_host, ':') != NULL
                         ? "redis cluster: CLUSTER SLOTS from [%s]:%d: %s; asking the next node"
                         : "redis cluster: CLUSTER SLOTS from %s:%d: %s; asking the next node",
                     c->ask_host, c->ask_port, why);
        memcpy(c->failed_ask_host, c->ask_host, sizeof(c->failed_ask_host));
        c->failed_ask_port = c->ask_port;
        c->failed_ask_logged_us = now;
    }
    ask_done(c);
    refresh_soon(c);
}

static void
on_slots(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_cluster *c = privdata;
    const redisReply *reply = r;
    struct sl_redis_slot_map map = { 0 };
    char err[200];

    enter(c);
    c->nowned--;
    if (link != c->ask || reply == NULL)
        goto out; /* the link failed: on_ask_down said so */
    if (reply->type == REDIS_REPLY_ERROR) {
        ask_failed(c, reply->str);
    } else if (sl_redis_slot_map_parse(reply, c->ask_host, &map, err, sizeof(err)) == -1) {
        ask_failed(c, err);
    } else if (map.n == 0) {
        ask_failed(c, "no slot is served");
    } else {
        ask_done(c);
        apply_map(c, &map);
    }
    sl_redis_slot_map_fini(&map);
out:
    leave(c);
}

/* AUTH's answer matters only when it is an error. */
static void
on_ask_auth(struct sl_redis_link *link, void *r, void *privdata)
{
    struct redis_cluster *c = privdata;
    const redisReply *reply = r;

    enter(c);
    c->nowned--;
    if (link == c->ask && reply != NULL && reply->type == REDIS_REPLY_ERROR)
        ask_failed(c, reply->str);
    leave(c);
}

static void
on_ask_down(struct sl_redis_link *link, void *arg, const char *why)
{
    struct redis_cluster *c = arg;

    if (link != c->ask)
        return;
    enter(c);
    ask_failed(c, why);
    leave(c);
}

static void
on_ask_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cluster *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    if (c->ask != NULL)
        ask_failed(c, "no answer in time");
    leave(c);
}

/* The address of turn `turn`: the seeds (a name's addresses from the
 * daemon's resolver, in turn), then the nodes of the map. */
static void
ask_target(struct redis_cluster *c, unsigned turn, struct sl_redis_target *t)
{
    size_t nseeds = c->url.nseeds, i = turn % (nseeds + c->nnodes);
    struct sockaddr_storage ss[SL_RESOLVED_MAX];
    uint64_t version;
    size_t n;

    if (i >= nseeds) {
        t->host = c->nodes[i - nseeds]->host;
        t->port = c->nodes[i - nseeds]->port;
        return;
    }
    t->host = c->url.seeds[i].host;
    t->port = c->url.seeds[i].port;
    if (c->seed_dns[i] == NULL
        || (n = sl_resolved_addresses(c->seed_dns[i], ss, SL_RESOLVED_MAX, &version)) == 0)
        return; /* numeric, or no answer yet: the link looks it up */
    n = c->dns_turn++ % n;
    if (getnameinfo((const struct sockaddr *)&ss[n],
                    ss[n].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in),
                    c->ask_host, sizeof(c->ask_host), NULL, 0, NI_NUMERICHOST)
        == 0) {
        if (t->server_name == NULL)
            t->server_name = c->url.seeds[i].host;
        t->host = c->ask_host;
    }
}

static void
ask_send(struct redis_cluster *c, int argc, const char **argv, sl_redis_reply_cb *cb)
{
    size_t lens[3];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (sl_redis_link_send_argv(c->ask, argc, argv, lens, cb, c) == 0)
        c->nowned++;
}

static void
ask_start(struct redis_cluster *c)
{
    struct sl_redis_target t = { .ssl_ctx = c->ssl_ctx, .server_name = c->server_name,
                                 .is_verify = c->is_tls_verify };
    struct timeval tv;
    char err[256];

    if (c->ask != NULL || c->is_freeing)
        return;
    c->asked_us = sl_clock_now_us();
    ask_target(c, c->ask_turn++, &t);
    if (t.host != c->ask_host)
        snprintf(c->ask_host, sizeof(c->ask_host), "%s", t.host);
    c->ask_port = t.port;
    c->ask = sl_redis_link_new(c->evbase, &t, NULL, NULL, CTL_OUT_MAX, on_ask_down, c, err,
                               sizeof(err));
    if (c->ask == NULL) {
        ask_failed(c, err);
        return;
    }
    if (c->url.password != NULL) {
        const char *argv[3] = { "AUTH", c->url.user, c->url.password };

        if (c->url.user == NULL)
            argv[1] = argv[2];
        ask_send(c, c->url.user != NULL ? 3 : 2, argv, on_ask_auth);
    }
    ask_send(c, 2, (const char *[]){ "CLUSTER", "SLOTS" }, on_slots);
    tv = sl_timeval_from_ms(c->timeout_ms > ASK_TIMEOUT_MIN_MS ? c->timeout_ms
                                                               : ASK_TIMEOUT_MIN_MS);
    evtimer_add(c->ask_timer, &tv);
}

static void
on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cluster *c = arg;

    (void)fd;
    (void)what;
    enter(c);
    ask_start(c);
    leave(c);
}

/* The map asked again soon: at once, or REFRESH_MIN_MS after the last time. */
static void
refresh_soon(struct redis_cluster *c)
{
    uint64_t since_ms = (sl_clock_now_us() - c->asked_us) / 1000;
    struct timeval tv = sl_timeval_from_ms(since_ms >= REFRESH_MIN_MS ? 0
                                                                      : REFRESH_MIN_MS - since_ms);

    if (c->ask == NULL && !c->is_freeing && !evtimer_pending(c->soon_timer, NULL))
        evtimer_add(c->soon_timer, &tv);
}

void
sl_redis_cluster_node_down(struct redis_cluster *c)
{
    refresh_soon(c);
}

/* "MOVED <slot> <host>:<port>" or "ASK ...": Redis writes an IPv6 address
 * bare, so the port is after the last colon. */
struct redis_store *
sl_redis_cluster_redirect(struct redis_cluster *c, const char *text, bool *is_ask)
{
    char host[NI_MAXHOST];
    const char *p, *colon;
    unsigned long slot;
    long port;
    char *end;
    struct cluster_node *node;

    if (strncmp(text, "MOVED ", 6) == 0)
        *is_ask = false;
    else if (strncmp(text, "ASK ", 4) == 0)
        *is_ask = true;
    else
        return NULL;
    p = text + (*is_ask ? 4 : 6);
    slot = strtoul(p, &end, 10);
    if (end == p || *end != ' ' || slot >= SL_REDIS_SLOTS)
        return NULL;
    p = end + 1;
    colon = strrchr(p, ':');
    if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof(host))
        return NULL;
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return NULL;
    if (*p == '[' && colon[-1] == ']')
        snprintf(host, sizeof(host), "%.*s", (int)(colon - p - 2), p + 1);
    else
        snprintf(host, sizeof(host), "%.*s", (int)(colon - p), p);
    if (host[0] == '\0' || strpbrk(host, " \t[]") != NULL)
        return NULL;
    node = node_get(c, host, (int)port);
    if (node == NULL)
        return NULL;
    if (!*is_ask) {
        /* what the map will say; checks of the slot go there meanwhile */
        node->is_in_map = true;
        c->slot_node[slot] = node;
        refresh_soon(c);
    }
    return node->rs;
}

/* ---- checks over several slots ------------------------------------------------------- */

static void
on_refunded(void *arg, enum sl_store_status status, int64_t moved_milli,
            const struct sl_store_result *result)
{
    (void)arg;
    (void)status;
    (void)moved_milli;
    (void)result;
}

/* The parts that took their cost give it back, to the master of their
 * slot now: the request is refused. */
static void
refund_parts(struct redis_cluster *c, const struct split *s)
{
    for (size_t i = 0; i < s->nparts; i++) {
        const struct split_part *part = &s->parts[i];
        struct cluster_node *node = c->slot_node[part->slot];

        if (!part->is_admitted || node == NULL)
            continue;
        for (size_t j = part->first; j < part->first + part->count; j++) {
            sl_redis_bump(&c->refunds, 1);
            sl_redis_node_refund(node->rs, &s->buckets[j], on_refunded, NULL);
        }
    }
}

static void
split_free(struct split *s)
{
    free(s->keys);
    free(s->buckets);
    free(s->origin);
    free(s->results);
    free(s);
}

/* Every part answered. A refusal wins over a failure: with on_error =
 * allow, a failed part must not admit what another part refused. */
static void
split_done(struct split *s)
{
    struct redis_cluster *c = s->c;
    sl_store_cb *cb = s->cb;
    void *arg = s->arg;
    bool is_admitted = !s->is_refused && s->status == SL_STORE_OK;

    if (!is_admitted && !c->is_freeing)
        refund_parts(c, s);
    if (s->is_refused || is_admitted)
        cb(arg, SL_STORE_OK, is_admitted, s->results, s->n);
    else
        cb(arg, s->status, false, NULL, 0);
    split_free(s);
}

static void
on_part(void *arg, enum sl_store_status status, bool is_admitted,
        const struct sl_store_result *results, size_t nresults)
{
    struct split_part *part = arg;
    struct split *s = part->s;
    struct redis_cluster *c = s->c;

    enter(c);
    if (status != SL_STORE_OK) {
        if (s->status == SL_STORE_OK)
            s->status = status;
    } else {
        part->is_admitted = is_admitted;
        s->is_refused |= !is_admitted;
        for (size_t j = 0; j < nresults && j < part->count; j++)
            s->results[s->origin[part->first + j]] = results[j];
    }
    if (--s->nleft == 0)
        split_done(s);
    leave(c);
}

/* Orders (slot, position) pairs. */
static int
by_slot(const void *a, const void *b)
{
    const size_t *x = a, *y = b;

    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* The split of n buckets: sorted by slot (then by position), one part per
 * slot, keys copied (the caller's need only last until check returns). */
static struct split *
split_new(struct redis_cluster *c, const struct sl_store_bucket *buckets, size_t n,
          const unsigned *slots)
{
    size_t (*pairs)[2] = sl_xmalloc(n * sizeof(*pairs));
    size_t nparts = 0, key_bytes = 0;
    struct split *s;
    char *key;

    for (size_t i = 0; i < n; i++) {
        pairs[i][0] = slots[i];
        pairs[i][1] = i;
        key_bytes += buckets[i].key_len;
    }
    qsort(pairs, n, sizeof(*pairs), by_slot);
    for (size_t i = 0; i < n; i++)
        nparts += i == 0 || pairs[i][0] != pairs[i - 1][0];
    s = sl_xcalloc(1, sizeof(*s) + nparts * sizeof(s->parts[0]));
    *s = (struct split){ .c = c, .n = n, .nparts = nparts, .nleft = nparts };
    s->buckets = sl_xmalloc(n * sizeof(*s->buckets));
    s->origin = sl_xmalloc(n * sizeof(*s->origin));
    s->results = sl_xcalloc(n, sizeof(*s->results));
    s->keys = key = sl_xmalloc(key_bytes + 1);
    nparts = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sl_store_bucket *b = &buckets[pairs[i][1]];

        memcpy(key, b->key, b->key_len);
        s->buckets[i] = *b;
        s->buckets[i].key = key;
        key += b->key_len;
        s->origin[i] = pairs[i][1];
        if (i == 0 || pairs[i][0] != pairs[i - 1][0])
            s->parts[nparts++] = (struct split_part){ .s = s, .slot = (unsigned)pairs[i][0],
                                                      .first = i };
        s->parts[nparts - 1].count++;
    }
    free(pairs);
    return s;
}

static void
split_check(struct redis_cluster *c, const struct sl_store_bucket *buckets, size_t n,
            const unsigned *slots, sl_store_cb *cb, void *arg)
{
    struct split *s = split_new(c, buckets, n, slots);
    size_t nparts = s->nparts;

    s->cb = cb;
    s->arg = arg;
    sl_redis_bump(&c->splits, 1);
    /* every part answers (later, or now when its master fails fast); the
     * last answer frees s, so nothing of it is touched after the last send */
    for (size_t i = 0; i < nparts; i++) {
        struct split_part *part = &s->parts[i];
        struct cluster_node *node = c->slot_node[part->slot]; /* checked by cluster_check */

        sl_redis_node_check(node->rs, &s->buckets[part->first], part->count, on_part, part);
    }
}

/* ---- the store interface ------------------------------------------------------------- */

/* The master of `slot`, or NULL (the map is asked again). */
static struct cluster_node *
master_of(struct redis_cluster *c, unsigned slot)
{
    struct cluster_node *node = c->slot_node[slot];

    if (node == NULL) {
        sl_redis_bump(&c->failed_fast, 1);
        refresh_soon(c);
    }
    return node;
}

/* A check whose buckets share one slot is one check on its master, atomic
 * as with a single Redis; the others are split, one part per slot (a part
 * that a master no longer serves must be sent again with its keys declared,
 * which Redis allows for one slot only). */
static void
cluster_check(struct sl_store *store, const struct sl_store_bucket *buckets, size_t n,
              sl_store_cb *cb, void *arg)
{
    struct redis_cluster *c = (struct redis_cluster *)store;
    unsigned one[8], *slots = n <= 8 ? one : sl_xmalloc(n * sizeof(*slots));
    bool is_one_slot = true, is_known = !c->is_freeing;

    enter(c);
    for (size_t i = 0; i < n && is_known; i++) {
        slots[i] = sl_redis_key_slot(buckets[i].key, buckets[i].key_len);
        is_known = master_of(c, slots[i]) != NULL;
        is_one_slot = is_one_slot && slots[i] == slots[0];
    }
    if (!is_known)
        cb(arg, SL_STORE_CONNECTION, false, NULL, 0);
    else if (n == 0)
        cb(arg, SL_STORE_OK, true, NULL, 0);
    else if (is_one_slot)
        sl_redis_node_check(c->slot_node[slots[0]]->rs, buckets, n, cb, arg);
    else
        split_check(c, buckets, n, slots, cb, arg);
    if (slots != one)
        free(slots);
    leave(c);
}

static void
cluster_lease(struct sl_store *store, const struct sl_store_bucket *bucket, enum sl_lease_op op,
              int64_t milli, int64_t held_milli, uint64_t ttl2_ms, const char *holder,
              sl_store_lease_cb *cb, void *arg)
{
    struct redis_cluster *c = (struct redis_cluster *)store;
    unsigned slot = sl_redis_key_slot(bucket->key, bucket->key_len);
    struct cluster_node *node;

    enter(c);
    if (c->is_freeing || (node = master_of(c, slot)) == NULL)
        cb(arg, SL_STORE_CONNECTION, 0, NULL);
    else
        sl_redis_node_lease(node->rs, bucket, op, milli, held_milli, ttl2_ms, holder, cb, arg);
    leave(c);
}

static void
cluster_reset(struct sl_store *store, const char *key, size_t key_len, sl_store_cb *cb,
              void *arg)
{
    struct redis_cluster *c = (struct redis_cluster *)store;
    unsigned slot = sl_redis_key_slot(key, key_len);
    struct cluster_node *node;

    enter(c);
    if (c->is_freeing || (node = master_of(c, slot)) == NULL)
        cb(arg, SL_STORE_CONNECTION, false, NULL, 0);
    else
        sl_redis_node_reset(node->rs, key, key_len, cb, arg);
    leave(c);
}

bool
sl_redis_cluster_is(const struct sl_store *store)
{
    return store->ops == &cluster_ops;
}

struct redis_store *
sl_redis_cluster_node_for(struct sl_store *store, const char *key, size_t key_len)
{
    struct redis_cluster *c = (struct redis_cluster *)store;
    struct cluster_node *node;

    if (store->ops != &cluster_ops)
        return NULL;
    if (c->is_freeing || (node = master_of(c, sl_redis_key_slot(key, key_len))) == NULL)
        return NULL;
    return node->rs;
}

/* Up while some master of the map is connected: a master down fails only
 * its own slots' checks (at once, in its node store), and the limiter sends
 * every check of a store that is not up straight to on_error. */
static bool
cluster_is_up(const struct sl_store *store)
{
    const struct redis_cluster *c = (const struct redis_cluster *)store;

    if (!c->has_map || c->nmasters == 0)
        return false;
    for (size_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->is_in_map && sl_redis_get_state(c->nodes[i]->rs) == CONN_UP)
            return true;
    }
    return false;
}

/* The nodes' counts summed, on the worker (the limiter reads them after
 * each call). A node dropped from the map takes its counts with it: the
 * limiter only ever adds what grew. */
static void
cluster_stats(const struct sl_store *store, struct sl_store_stats *st)
{
    const struct redis_cluster *c = (const struct redis_cluster *)store;
    uint64_t failed = atomic_load_explicit(&c->failed_fast, memory_order_relaxed);

    st->checks += failed;
    st->errors_connection += failed;
    for (size_t i = 0; i < c->nnodes && i < NODES_MAX; i++) {
        struct sl_store_stats ns = { 0 };

        c->nodes[i]->rs->base.ops->stats(&c->nodes[i]->rs->base, &ns);
        st->checks += ns.checks;
        st->calls += ns.calls;
        st->errors_timeout += ns.errors_timeout;
        st->errors_connection += ns.errors_connection;
        st->errors_reply += ns.errors_reply;
        st->connects += ns.connects;
        st->reconnects += ns.reconnects;
        st->noscript_reloads += ns.noscript_reloads;
    }
}

static void
destroy(struct redis_cluster *c)
{
    event_free(c->soon_timer);
    event_free(c->every_timer);
    event_free(c->ask_timer);
    for (size_t i = 0; i < SL_REDIS_SEEDS_MAX; i++) {
        if (c->seed_dns[i] != NULL)
            sl_resolved_unref(c->seed_dns[i]);
    }
    free(c->slot_node);
    SSL_CTX_free(c->ssl_ctx);
    free(c->server_name);
    sl_redis_url_fini(&c->url);
    free(c);
}

static void
cluster_free(struct sl_store *store)
{
    struct redis_cluster *c = (struct redis_cluster *)store;
    struct sl_redis_link *ask = c->ask;

    enter(c);
    c->is_freeing = true;
    c->ask = NULL;
    evtimer_del(c->soon_timer);
    evtimer_del(c->every_timer);
    evtimer_del(c->ask_timer);
    sl_redis_link_free(ask); /* its callbacks come back NULL */
    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->is_in_map = false;
    memset(c->slot_node, 0, SL_REDIS_SLOTS * sizeof(*c->slot_node));
    drop_unmapped(c);
    leave(c);
}

static const struct sl_store_ops cluster_ops = {
    .name = "redis",
    .check = cluster_check,
    .is_up = cluster_is_up,
    .free = cluster_free,
    .stats = cluster_stats,
    .reset = cluster_reset,
    .lease = cluster_lease,
};

struct sl_store *
sl_redis_cluster_new(const struct sl_store_conf *conf, struct event_base *base,
                     struct sl_resolver *resolver, char *err, size_t err_size)
{
    struct redis_cluster *c = sl_xcalloc(1, sizeof(*c));
    char why[200];

    if (sl_redis_url_parse_flags(conf->url, SL_REDIS_URL_PASSWORD_LATER, &c->url, why,
                                 sizeof(why))
        == -1) {
        snprintf(err, err_size, "redis url: %s", why);
        free(c);
        return NULL;
    }
    if (conf->password != NULL) {
        free(c->url.password);
        c->url.password = sl_xstrdup(conf->password);
    }
    if (c->url.is_tls) {
        if (conf->tls.ssl_ctx == NULL) {
            snprintf(err, err_size, "redis url: rediss-cluster:// without a TLS context");
            sl_redis_url_fini(&c->url);
            free(c);
            return NULL;
        }
        SSL_CTX_up_ref(conf->tls.ssl_ctx);
        c->ssl_ctx = conf->tls.ssl_ctx;
        c->server_name = conf->tls.server_name != NULL ? sl_xstrdup(conf->tls.server_name) : NULL;
        c->is_tls_verify = conf->tls.is_verify;
    }
    c->base.ops = &cluster_ops;
    c->evbase = base;
    c->timeout_ms = conf->timeout_ms;
    c->slot_node = sl_xcalloc(SL_REDIS_SLOTS, sizeof(*c->slot_node));
    for (size_t i = 0; i < c->url.nseeds && resolver != NULL; i++) {
        if (sl_resolver_is_name(c->url.seeds[i].host))
            c->seed_dns[i] = sl_resolver_ref(resolver, c->url.seeds[i].host);
    }
    c->soon_timer = evtimer_new(base, on_refresh_timer, c);
    c->every_timer = evtimer_new(base, on_refresh_timer, c);
    c->ask_timer = evtimer_new(base, on_ask_timeout, c);
    if (c->soon_timer == NULL || c->every_timer == NULL || c->ask_timer == NULL)
        sl_fatalx("redis cluster store: cannot create timers");
    enter(c);
    ask_start(c);
    leave(c);
    return &c->base;
}
