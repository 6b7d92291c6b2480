/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The cache phase (docs/caching.md): a route with `cache = { ... }` answers
 * GET and HEAD from the route's store (src/cache.c) when it holds a fresh
 * response, and stores what the upstream sends when RFC 9111 allows a
 * shared cache to. It runs after the limits phase, so hits are limited too.
 *
 * A miss claims its key: concurrent misses for the same key wait (polling
 * the store every COLLAPSE_POLL_MS, up to lock_timeout) for the first one's
 * response instead of all going upstream. The claim goes as soon as nothing
 * will be stored (an unstorable head, a body past max_object, an upstream
 * error), not when the exchange ends: a stream, a long download or a slow
 * client would otherwise hold every waiter for lock_timeout. A WebSocket
 * handshake never claims (its 101 can never be stored). A stale entry within
 * stale-while-revalidate is served at once, and the request that claims
 * it starts a background refresh (src/cache_fetch.c); past that window it
 * is revalidated by the request that claims it (If-None-Match /
 * If-Modified-Since added to its upstream request; a 304 refreshes the
 * entry and the client gets the stored response). Within stale-if-error, an upstream
 * that fails, times out or answers 500-504 is replaced by the stale copy.
 * Every response of the route carries Cache-Status (RFC 9211).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cache_fetch.h"
#include "cache_http.h"
#include "sluice/cache.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/phase.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/timeval.h"

#define COLLAPSE_POLL_MS 5u

struct cache_state;

struct cache_conf {
    struct sl_cache *store;
    const struct sl_cache_conf *cc;
    struct event_base *base;
    struct cache_state *waiting; /* collapsed requests of this route, for teardown */
    struct sl_upstream_pool *pool; /* for background refreshes; NULL: none (tests) */
    uint64_t timeout_ms;         /* the upstream's timeout */
    struct sl_cache_fetch *fetches; /* background refreshes under way */
};

/* Why the request went upstream (RFC 9211 section 2.2, fwd). */
enum fwd { FWD_NONE, FWD_URI_MISS, FWD_VARY_MISS, FWD_STALE, FWD_REQUEST, FWD_BYPASS };

static const char *const fwd_names[] = { "", "uri-miss", "vary-miss", "stale", "request",
                                         "bypass" };

struct cache_state {
    struct sl_phase_run *run;
    struct cache_conf *conf;
    char *key;                    /* the primary key; NULL: not a cacheable request */
    size_t key_len;
    char *store_key;              /* where the response goes: the key or a variant */
    size_t store_key_len;
    struct sl_cache_obj *stale;   /* a stale entry: revalidated, or served on error */
    struct sl_cache_obj *building; /* the response being stored */
    struct sl_cache_obj *marker;  /* a Vary marker to store at the key with it */
    struct event *timer;          /* collapsed: polling the store */
    struct cache_state *next, *prev;
    uint64_t wait_start_us;
    enum fwd fwd;
    bool is_head, has_auth, has_client_cond;
    bool is_claimed, is_revalidating;
};

/* ---- setup ------------------------------------------------------------------ */

struct sl_cache *
sl_phase_cache_store(const struct sl_route_conf *route)
{
    char name[512];

    if (route->cache == NULL)
        return NULL;
    /* the route's [host]path, its metrics label too: a reload keeps the store */
    snprintf(name, sizeof(name), "%s%s", route->host ? route->host : "", route->path);
    return sl_cache_get(name, route->cache->max_memory);
}

static bool
cache_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    struct cache_conf *cf;

    if (route->cache == NULL)
        return false;
    cf = sl_xcalloc(1, sizeof(*cf));
    cf->store = sl_phase_cache_store(route);
    cf->cc = route->cache;
    cf->base = env->base;
    cf->pool = env->pools != NULL ? env->pools[route->upstream] : NULL;
    cf->timeout_ms = env->cfg->upstreams[route->upstream].timeout_ms;
    *conf = cf;
    return true;
}

static void
waiting_unlink(struct cache_state *st)
{
    struct cache_conf *cf = st->conf;

    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        cf->waiting = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    st->next = st->prev = NULL;
    event_free(st->timer);
    st->timer = NULL;
}

static void
cache_teardown(void *conf)
{
    struct cache_conf *cf = conf;

    /* only requests that ended can still wait: their continuation goes nowhere */
    while (cf->waiting != NULL) {
        struct cache_state *st = cf->waiting;
        waiting_unlink(st);
        sl_phase_pass(st->run);
    }
    sl_cache_fetch_abort_all(&cf->fetches);
    sl_cache_put(cf->store);
    free(cf);
}

/* ---- lookups ------------------------------------------------------------------ */

static bool
has_header(const struct sl_request *req, const char *name, size_t len)
{
    return sl_request_header(req, name, len) != NULL;
}

/*
 * The entry for req, with a reference, following a Vary marker to the
 * variant req selects; NULL with *fwd saying why not. *marker gets the
 * marker when there was one (with a reference).
 */
static struct sl_cache_obj *
find(struct sl_cache *store, const char *key, size_t key_len, const struct sl_request *req,
     bool is_counted, enum fwd *fwd, char **vkey_out, size_t *vlen_out)
{
    struct sl_cache_obj *obj = sl_cache_lookup(store, key, key_len, is_counted);
    struct sl_cache_obj *variant;
    size_t vlen;
    char *vkey;

    *fwd = FWD_URI_MISS;
    if (obj == NULL || !obj->is_vary)
        return obj;
    vkey = sl_cache_variant_key(key, key_len, obj->vary, obj->vary_len, req, &vlen);
    variant = sl_cache_lookup(store, vkey, vlen, is_counted);
    if (vkey_out != NULL && variant != NULL) {
        free(*vkey_out);
        *vkey_out = vkey;
        *vlen_out = vlen;
    } else {
        free(vkey);
    }
    sl_cache_obj_unref(obj);
    if (variant == NULL)
        *fwd = FWD_VARY_MISS;
    return variant;
}

static uint64_t
age_ms(const struct sl_cache_obj *obj, uint64_t now_us)
{
    return now_us > obj->stored_us ? (now_us - obj->stored_us) / 1000u : 0;
}

static bool
is_fresh(const struct sl_cache_obj *obj, uint64_t now_us)
{
    return !obj->must_revalidate && age_ms(obj, now_us) < obj->fresh_ms;
}

/* RFC 5861: may it be served this far past its freshness? must-revalidate
 * (and no-cache) forbid serving stale at all (RFC 9111 section 5.2.2.2). */
static bool
is_within(const struct sl_cache_obj *obj, uint64_t now_us, uint64_t grace_ms)
{
    return !obj->must_revalidate && age_ms(obj, now_us) < obj->fresh_ms + grace_ms;
}

/*
 * A WebSocket handshake (RFC 6455 section 4.1) passes the cache untouched:
 * its 101 cannot be stored, so claiming its key would only hold concurrent
 * requests for the URL until the tunnel closed; and a stored 200 for the
 * URL is no answer to it. Decided on the request's headers alone, so a
 * handshake the proxy will not treat as one (it has a body) bypasses too.
 */
static bool
is_upgrade(const struct sl_request *req)
{
    return sl_http_is_websocket_upgrade(req, false);
}

bool
sl_phase_cache_is_hit(struct sl_cache *store, const struct sl_request *req)
{
    bool is_get = sl_http_token_eq(req->method, req->method_len, SL_LIT("GET"));
    bool is_head = sl_http_token_eq(req->method, req->method_len, SL_LIT("HEAD"));
    struct sl_cache_obj *obj;
    enum fwd fwd;
    size_t key_len;
    char *key;
    bool is_hit;

    if (store == NULL || (!is_get && !is_head) || is_upgrade(req))
        return false;
    key = sl_cache_key(req, &key_len);
    obj = find(store, key, key_len, req, false, &fwd, NULL, NULL);
    free(key);
    is_hit = obj != NULL && is_fresh(obj, sl_clock_now_us())
        && (obj->is_public || !has_header(req, SL_LIT("authorization")));
    sl_cache_obj_unref(obj);
    return is_hit;
}

/* ---- answers from the store ---------------------------------------------------- */

static void
release_obj(void *arg)
{
    sl_cache_obj_unref(arg);
}

/* Cache-Status (RFC 9211) and Age (RFC 9111 section 5.1) of a hit. */
static void
attach_hit_lines(struct sl_phase_run *run, const struct sl_cache_obj *obj, uint64_t now_us,
                 const char *extra)
{
    char lines[160];
    int64_t ttl_s = ((int64_t)obj->fresh_ms - (int64_t)age_ms(obj, now_us)) / 1000;
    int n = snprintf(lines, sizeof(lines), "Age: %" PRIu64 "\r\nCache-Status: sluice; hit; "
                     "ttl=%" PRId64 "%s\r\n", sl_cache_obj_age_s(obj, now_us), ttl_s, extra);

    sl_phase_attach(run, lines, (size_t)n);
}

/* RFC 9110 section 13.2.2: If-None-Match first; If-Modified-Since only
 * without it. True when the client's copy is current: a 304 is due. */
static bool
is_not_modified(const struct sl_request *req, const struct sl_cache_obj *obj)
{
    const struct sl_header *inm = sl_request_header(req, SL_LIT("if-none-match"));
    const struct sl_header *ims;
    int64_t since;

    if (inm != NULL)
        return sl_cache_etag_match(inm->value, inm->value_len, obj->etag, obj->etag_len);
    ims = sl_request_header(req, SL_LIT("if-modified-since"));
    if (ims == NULL || obj->last_modified_s < 0)
        return false;
    since = sl_http_date_parse(ims->value, ims->value_len);
    return since >= 0 && obj->last_modified_s <= since;
}

/* The fields a 304 carries (RFC 9110 section 15.4.5), from a stored head. */
static size_t
not_modified_head(const struct sl_cache_obj *obj, char *out)
{
    static const char *const keep[] = { "etag:", "cache-control:", "expires:", "vary:",
                                        "date:", "last-modified:", "content-location:" };
    size_t at = 0, p = 0;

    while (p < obj->head_len) {
        const char *line = obj->head + p;
        const char *end = memchr(line, '\n', obj->head_len - p);
        size_t len = end != NULL ? (size_t)(end - line) + 1 : obj->head_len - p;

        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            size_t kl = strlen(keep[i]);
            if (len > kl && strncasecmp(line, keep[i], kl) == 0) {
                memcpy(out + at, line, len);
                at += len;
                break;
            }
        }
        p += len;
    }
    return at;
}

/* A 304's head, made from obj's, lives as long as the answer: a replaced
 * response is written after serve returns. */
struct not_modified {
    struct sl_cache_obj *obj;
    char head[];
};

static void
release_not_modified(void *arg)
{
    struct not_modified *nm = arg;

    sl_cache_obj_unref(nm->obj);
    free(nm);
}

/* Answers with obj (a reference the answer takes over), or replaces the
 * upstream's response with it (is_replace). */
static void
serve(struct cache_state *st, struct sl_cache_obj *obj, bool is_replace)
{
    const struct sl_request *req = sl_phase_request(st->run);
    struct sl_phase_response resp = {
        .status = obj->status,
        .headers = obj->head,
        .headers_len = obj->head_len,
        .body = obj->body,
        .body_len = obj->body_len,
        .release = release_obj,
        .release_arg = obj,
    };

    if (obj->status == 200 && is_not_modified(req, obj)) {
        struct not_modified *nm = sl_xmalloc(sizeof(*nm) + obj->head_len + 1);
        nm->obj = obj;
        resp.status = 304;
        resp.headers = nm->head;
        resp.headers_len = not_modified_head(obj, nm->head);
        resp.body_len = 0;
        resp.release = release_not_modified;
        resp.release_arg = nm;
        sl_cache_count(st->conf->store, SL_CACHE_EV_NOT_MODIFIED);
    }
    if (is_replace)
        sl_phase_replace(st->run, &resp);
    else
        sl_phase_respond(st->run, &resp);
}

/* ---- going upstream --------------------------------------------------------------- */

static void
attach_fwd(struct cache_state *st, enum fwd fwd)
{
    st->fwd = fwd;
}

/*
 * The request that fills or refreshes the entry goes up without the
 * client's conditionals (as nginx's proxy_cache does): a 304 for one
 * client's copy could not be stored. The client may get a 200 where the
 * upstream would have said 304, which RFC 9110 section 13.2.1 allows; the
 * cache answers its conditionals from then on.
 */
static void
hide_client_conditionals(struct cache_state *st)
{
    if (!st->has_client_cond)
        return;
    sl_phase_hide_upstream(st->run, SL_LIT("if-none-match"));
    sl_phase_hide_upstream(st->run, SL_LIT("if-modified-since"));
}

/* Stale and claimed: ask the upstream whether the entry still holds. */
static void
attach_validators(struct cache_state *st)
{
    const struct sl_cache_obj *obj = st->stale;
    char line[512];
    int n;

    if (obj->etag != NULL && obj->etag_len < 400) {
        n = snprintf(line, sizeof(line), "If-None-Match: %.*s\r\n", (int)obj->etag_len,
                     obj->etag);
        sl_phase_attach_upstream(st->run, line, (size_t)n);
        st->is_revalidating = true;
    }
    if (obj->last_modified != NULL && obj->last_modified_len < 400) {
        n = snprintf(line, sizeof(line), "If-Modified-Since: %.*s\r\n",
                     (int)obj->last_modified_len, obj->last_modified);
        sl_phase_attach_upstream(st->run, line, (size_t)n);
        st->is_revalidating = true;
    }
}

static bool
is_left_out(const struct sl_request *req, const struct sl_header *h)
{
    static const char *const names[] = { "content-length", "transfer-encoding", "expect",
                                         "if-none-match", "if-modified-since", "if-match",
                                         "if-unmodified-since", "if-range", "range" };

    if (sl_http_is_hop_by_hop(req->headers, req->nheaders, h))
        return true;
    if (req->authority != NULL && sl_http_name_is(h, SL_LIT("host")))
        return true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (sl_http_name_is(h, names[i], strlen(names[i])))
            return true;
    }
    return false;
}

static void
put(char *buf, size_t *at, const char *s, size_t len)
{
    memcpy(buf + *at, s, len);
    *at += len;
}

/*
 * The head of a background refresh: a GET of the path (normalised) and
 * query, with the triggering request's end-to-end fields (so that its
 * variant and its credentials are asked for again) less conditionals and
 * framing, and the entry's validators.
 */
static char *
refresh_head(const struct sl_request *req, const struct sl_cache_obj *stale, size_t *len)
{
    size_t cap = req->path_len + req->query_len + req->authority_len + stale->etag_len
        + stale->last_modified_len + 96;
    size_t at = 0;
    char *buf;

    for (size_t i = 0; i < req->nheaders; i++)
        cap += req->headers[i].name_len + req->headers[i].value_len + 4;
    buf = sl_xmalloc(cap);
    put(buf, &at, SL_LIT("GET "));
    put(buf, &at, req->path, req->path_len);
    if (req->query != NULL) {
        put(buf, &at, SL_LIT("?"));
        put(buf, &at, req->query, req->query_len);
    }
    put(buf, &at, SL_LIT(" HTTP/1.1\r\n"));
    if (req->authority != NULL) {
        put(buf, &at, SL_LIT("Host: "));
        put(buf, &at, req->authority, req->authority_len);
        put(buf, &at, SL_LIT("\r\n"));
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *h = &req->headers[i];
        if (is_left_out(req, h))
            continue;
        put(buf, &at, h->name, h->name_len);
        put(buf, &at, SL_LIT(": "));
        put(buf, &at, h->value, h->value_len);
        put(buf, &at, SL_LIT("\r\n"));
    }
    if (stale->etag != NULL) {
        put(buf, &at, SL_LIT("If-None-Match: "));
        put(buf, &at, stale->etag, stale->etag_len);
        put(buf, &at, SL_LIT("\r\n"));
    }
    if (stale->last_modified != NULL) {
        put(buf, &at, SL_LIT("If-Modified-Since: "));
        put(buf, &at, stale->last_modified, stale->last_modified_len);
        put(buf, &at, SL_LIT("\r\n"));
    }
    put(buf, &at, SL_LIT("\r\n"));
    *len = at;
    return buf;
}

static char *
dup_key(const char *key, size_t len)
{
    char *out = sl_xmalloc(len ? len : 1);

    memcpy(out, key, len);
    return out;
}

/* RFC 5861 section 3: the claimed, stale entry is refreshed by a request of
 * the cache's own, which takes the claim over; this request is served stale. */
static void
refresh_in_background(struct cache_state *st)
{
    struct cache_conf *cf = st->conf;
    struct sl_cache_fetch_args a = {
        .store = cf->store,
        .cc = cf->cc,
        .base = cf->base,
        .pool = cf->pool,
        .timeout_ms = cf->timeout_ms,
        .claim_key = dup_key(st->key, st->key_len),
        .claim_key_len = st->key_len,
        .stale = sl_cache_obj_ref(st->stale),
    };

    if (st->store_key != NULL) {
        a.store_key = dup_key(st->store_key, st->store_key_len);
        a.store_key_len = st->store_key_len;
    }
    a.head = refresh_head(sl_phase_request(st->run), st->stale, &a.head_len);
    st->is_claimed = false;
    sl_cache_fetch_start(&cf->fetches, &a);
}

static void decide(struct cache_state *st, bool is_poll);

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct cache_state *st = arg;

    (void)fd;
    (void)what;
    waiting_unlink(st);
    if (sl_phase_is_abandoned(st->run)) {
        sl_phase_pass(st->run);
        return;
    }
    decide(st, true);
}

static void
wait_for_fetch(struct cache_state *st)
{
    struct cache_conf *cf = st->conf;
    struct timeval tv = sl_timeval_from_ms(COLLAPSE_POLL_MS);

    if (st->wait_start_us == 0)
        st->wait_start_us = sl_clock_now_us();
    st->timer = evtimer_new(cf->base, on_poll, st);
    st->next = cf->waiting;
    st->prev = NULL;
    if (cf->waiting != NULL)
        cf->waiting->prev = st;
    cf->waiting = st;
    evtimer_add(st->timer, &tv);
}

/*
 * A miss, or a stale entry (st->stale): fetch it, as the one request that
 * claims the key, or wait for the one that did (collapsing) up to
 * lock_timeout. Within stale-while-revalidate a stale entry is served at
 * once instead of waiting.
 */
static void
miss(struct cache_state *st, enum fwd fwd, bool is_poll)
{
    struct cache_conf *cf = st->conf;
    uint64_t now = sl_clock_now_us();
    uint64_t hold_us = cf->cc->lock_timeout_ms * 1000u;
    bool is_waited_out = is_poll && now - st->wait_start_us >= hold_us;

    if (st->is_head || is_waited_out || hold_us == 0) {
        attach_fwd(st, fwd); /* HEAD has no body to store; a wait over goes alone */
        sl_cache_count(cf->store, SL_CACHE_EV_MISS);
        sl_phase_pass(st->run);
        return;
    }
    if (sl_cache_claim(cf->store, st->key, st->key_len, now, hold_us)) {
        st->is_claimed = true;
        if (st->stale != NULL && cf->pool != NULL && is_within(st->stale, now, st->stale->swr_ms)) {
            struct sl_cache_obj *obj = st->stale;
            refresh_in_background(st);
            st->stale = NULL;
            attach_hit_lines(st->run, obj, now, "; detail=stale-while-revalidate");
            sl_cache_count(cf->store, SL_CACHE_EV_STALE);
            serve(st, obj, false);
            return;
        }
        attach_fwd(st, fwd);
        hide_client_conditionals(st);
        if (st->stale != NULL)
            attach_validators(st);
        sl_cache_count(cf->store, SL_CACHE_EV_MISS);
        sl_phase_pass(st->run);
        return;
    }
    if (st->stale != NULL && is_within(st->stale, now, st->stale->swr_ms)) {
        struct sl_cache_obj *obj = st->stale;
        st->stale = NULL;
        attach_hit_lines(st->run, obj, now, "; detail=stale-while-revalidate");
        sl_cache_count(cf->store, SL_CACHE_EV_STALE);
        serve(st, obj, false);
        return;
    }
    wait_for_fetch(st);
}

/* Looks the request up and answers, passes or waits. */
static void
decide(struct cache_state *st, bool is_poll)
{
    struct cache_conf *cf = st->conf;
    const struct sl_request *req = sl_phase_request(st->run);
    uint64_t now = sl_clock_now_us();
    enum fwd fwd;
    struct sl_cache_obj *obj = find(cf->store, st->key, st->key_len, req, !is_poll, &fwd,
                                    &st->store_key, &st->store_key_len);

    if (obj != NULL && st->has_auth && !obj->is_public) {
        /* RFC 9111 section 3.5: not for a request with credentials */
        sl_cache_obj_unref(obj);
        attach_fwd(st, FWD_BYPASS);
        sl_cache_count(cf->store, SL_CACHE_EV_MISS);
        sl_phase_pass(st->run);
        return;
    }
    if (obj != NULL && is_fresh(obj, now)) {
        attach_hit_lines(st->run, obj, now, "");
        sl_cache_count(cf->store, is_poll ? SL_CACHE_EV_COLLAPSED : SL_CACHE_EV_HIT);
        serve(st, obj, false);
        return;
    }
    if (is_poll && obj == NULL && st->stale == NULL
        && !sl_cache_is_claimed(cf->store, st->key, st->key_len, now,
                                cf->cc->lock_timeout_ms * 1000u)) {
        /* the fetch we waited for stored nothing: everyone goes on their own */
        attach_fwd(st, fwd);
        sl_cache_count(cf->store, SL_CACHE_EV_MISS);
        sl_phase_pass(st->run);
        return;
    }
    if (obj != NULL) {
        sl_cache_obj_unref(st->stale);
        st->stale = obj;
        fwd = FWD_STALE;
    } else if (st->stale != NULL) {
        fwd = FWD_STALE;
    }
    miss(st, fwd, is_poll);
}

static void
cache_request(struct sl_phase_run *run, void *conf, void *state)
{
    struct cache_state *st = state;
    const struct sl_request *req = sl_phase_request(run);
    bool is_get = sl_http_token_eq(req->method, req->method_len, SL_LIT("GET"));

    st->run = run;
    st->conf = conf;
    st->is_head = sl_http_token_eq(req->method, req->method_len, SL_LIT("HEAD"));
    if (!is_get && !st->is_head) {
        sl_phase_attach(run, SL_LIT("Cache-Status: sluice; fwd=method\r\n"));
        sl_phase_pass(run);
        return;
    }
    if (is_upgrade(req)) {
        sl_phase_attach(run, SL_LIT("Cache-Status: sluice; fwd=bypass\r\n"));
        sl_phase_pass(run);
        return;
    }
    st->key = sl_cache_key(req, &st->key_len);
    st->has_auth = has_header(req, SL_LIT("authorization"));
    st->has_client_cond = has_header(req, SL_LIT("if-none-match"))
        || has_header(req, SL_LIT("if-modified-since"));
    decide(st, false);
}

/* ---- the upstream's response ------------------------------------------------------ */

/*
 * Nothing this request fetched will be stored: let the requests waiting on
 * its claim go. They find no fresh entry and the key unclaimed, and go
 * upstream on their own at once (decide), as with Varnish's hit-for-miss or
 * nginx's proxy_cache_lock; not at the end of the exchange, which for a
 * stream, a large download or a slow client can be after lock_timeout.
 * Once only: a later request may claim the key as soon as it is free.
 */
static void
unclaim(struct cache_state *st)
{
    if (!st->is_claimed)
        return;
    st->is_claimed = false;
    sl_cache_release(st->conf->store, st->key, st->key_len);
}

/* A Vary marker for the key, and the variant key of this request. */
static bool
set_variant(struct cache_state *st, const struct sl_header *h, size_t n)
{
    bool is_star;
    size_t names_len;
    char *names = sl_cache_vary_names(h, n, &names_len, &is_star);

    if (is_star) {
        free(names); /* RFC 9111 section 4.1: always fails to match */
        return false;
    }
    free(st->store_key);
    st->store_key = NULL;
    if (names == NULL)
        return true;
    st->marker = sl_cache_obj_new();
    st->marker->is_vary = true;
    st->marker->vary = names;
    st->marker->vary_len = names_len;
    st->store_key = sl_cache_variant_key(st->key, st->key_len, names, names_len,
                                         sl_phase_request(st->run), &st->store_key_len);
    return true;
}

/* The response as an object to store, or NULL (see sl_cache_obj_build). */
static struct sl_cache_obj *
storable(struct cache_state *st, int status, const struct sl_header *h, size_t n)
{
    if (st->is_head)
        return NULL; /* no body to store */
    if (!sl_cache_is_storable(st->conf->cc, status, h, n, st->has_auth))
        return NULL;
    if (!set_variant(st, h, n))
        return NULL;
    return sl_cache_obj_build(st->conf->cc, status, h, n, (int64_t)time(NULL),
                              sl_clock_now_us());
}

static void
revalidated(struct cache_state *st, const struct sl_header *h, size_t n)
{
    struct cache_conf *cf = st->conf;
    struct sl_cache_obj *obj = sl_cache_obj_refreshed(st->stale, cf->cc, h, n, (int64_t)time(NULL),
                                                      sl_clock_now_us());
    char lines[96];
    int len;

    sl_cache_insert(cf->store, st->store_key ? st->store_key : st->key,
                    st->store_key ? st->store_key_len : st->key_len, obj);
    sl_cache_count(cf->store, SL_CACHE_EV_REVALIDATED);
    len = snprintf(lines, sizeof(lines), "Age: 0\r\nCache-Status: sluice; fwd=stale; "
                   "fwd-status=304; stored\r\n");
    sl_phase_attach(st->run, lines, (size_t)len);
    serve(st, obj, true);
}

static void stale_on_error(struct cache_state *st, int status);

static void
response_head(struct cache_state *st, int status, const struct sl_header *h, size_t n)
{
    char line[96];
    int len;

    if (st->is_revalidating && status == 304 && st->stale != NULL) {
        revalidated(st, h, n);
        return;
    }
    if (st->stale != NULL && status >= 500 && status <= 504
        && is_within(st->stale, sl_clock_now_us(), st->stale->sie_ms)) {
        stale_on_error(st, status);
        return;
    }
    len = snprintf(line, sizeof(line), "Cache-Status: sluice; fwd=%s; fwd-status=%d\r\n",
                   fwd_names[st->fwd], status);
    sl_phase_attach(st->run, line, (size_t)len);
    st->building = storable(st, status, h, n);
}

static void
cache_response_head(struct sl_phase_run *run, void *conf, void *state, int status,
                    const struct sl_header *headers, size_t nheaders)
{
    struct cache_state *st = state;

    (void)run;
    (void)conf;
    if (st->key == NULL)
        return;
    response_head(st, status, headers, nheaders);
    if (st->building == NULL)
        unclaim(st); /* unstorable, stale instead of an error, or already stored (304) */
}

/* RFC 5861 section 4: the stale entry instead of an upstream error. */
static void
stale_on_error(struct cache_state *st, int status)
{
    char extra[64];
    uint64_t now = sl_clock_now_us();

    snprintf(extra, sizeof(extra), "; fwd=stale; fwd-status=%d", status);
    attach_hit_lines(st->run, st->stale, now, extra);
    sl_cache_count(st->conf->store, SL_CACHE_EV_STALE);
    serve(st, sl_cache_obj_ref(st->stale), true);
}

static void
cache_upstream_error(struct sl_phase_run *run, void *conf, void *state, int status)
{
    struct cache_state *st = state;

    (void)run;
    (void)conf;
    if (st->key == NULL)
        return;
    if (st->stale != NULL && is_within(st->stale, sl_clock_now_us(), st->stale->sie_ms))
        stale_on_error(st, status);
    unclaim(st);
}

static void
cache_response_body(struct sl_phase_run *run, void *conf, void *state, const char *at,
                    size_t len)
{
    struct cache_state *st = state;

    (void)run;
    (void)conf;
    if (st->building == NULL)
        return;
    /* past max_object: streamed on to the client, not stored */
    if (!sl_cache_obj_append(st->building, at, len, st->conf->cc->max_object)) {
        sl_cache_obj_unref(st->building);
        st->building = NULL;
        unclaim(st);
    }
}

static void
cache_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
          struct sl_access_entry *log)
{
    struct cache_state *st = state;
    struct cache_conf *cf = conf;

    (void)run;
    (void)log;
    if (st->building != NULL && reason == NULL) {
        if (st->marker != NULL)
            sl_cache_insert(cf->store, st->key, st->key_len, st->marker);
        sl_cache_insert(cf->store, st->store_key ? st->store_key : st->key,
                        st->store_key ? st->store_key_len : st->key_len, st->building);
    }
    unclaim(st);
    sl_cache_obj_unref(st->building);
    sl_cache_obj_unref(st->marker);
    sl_cache_obj_unref(st->stale);
    free(st->key);
    free(st->store_key);
}

const struct sl_phase sl_phase_cache = {
    .name = "cache",
    .state_size = sizeof(struct cache_state),
    .setup = cache_setup,
    .teardown = cache_teardown,
    .on_request = cache_request,
    .on_response_head = cache_response_head,
    .on_response_body = cache_response_body,
    .on_upstream_error = cache_upstream_error,
    .on_end = cache_end,
};
