/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The idempotency phase (draft-ietf-httpapi-idempotency-key-header-06,
 * docs/idempotency.md). On a route's listed methods, a request's
 * Idempotency-Key claims a record in the store (the embedded table, or
 * Redis through one script, src/idem_redis.c); the request then goes up,
 * its body hashed as it streams, and its response is kept with the key when
 * it completes. The same key again gets that response replayed (same
 * method, target and body) or 422 (another request); while the first is in
 * flight, 409. A response that is not kept (5xx, larger than max_response,
 * the upstream or the client broke off) releases the claim, so the client
 * may retry.
 *
 * Neither the key nor the scope value (an Authorization field!) reaches the
 * store: records are named by a SHA-256 of the route, the scope and the key.
 * A store that cannot claim means 503: a request is never forwarded
 * unprotected.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "limiter_int.h"
#include "reqfield.h"
#include "sluice/accesslog.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/idem.h"
#include "sluice/limiter.h"
#include "sluice/metrics.h"
#include "sluice/phase.h"
#include "sluice/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/sha256.h"

/* A record's name: the prefix (bounded by the config) and 70 bytes */
#define NAME_MAX_LEN 512

struct idem_conf {
    const struct sl_idempotency_conf *ic;
    struct sl_metrics_worker *metrics;
    struct sl_idem_table *table; /* embedded store; NULL with redis */
    struct sl_store *redis;      /* the generation's redis store; NULL: embedded */
    const char *prefix;          /* store.prefix */
    uint8_t route_id[SL_SHA256_LEN];
};

enum stage {
    ST_NONE,    /* not a request this phase handles */
    ST_CLAIMED, /* this request holds the key: record its response */
    ST_DONE,    /* a record exists: compare the fingerprint (reading the body) */
    ST_SETTLED, /* the claim became a record or went */
};

/* The response being kept. With a Content-Length it is complete at its last
 * byte, and the record is written then, as those bytes go to the client: a
 * client that retries at once, on any instance, finds the record rather than
 * a claim in flight. Other framings complete when the request ends. */
struct kept {
    struct sl_buf buf;
    uint64_t left;   /* body bytes still due */
    bool has_length; /* left means something */
};

/* Every built-in phase's state must fit SL_PHASE_STATE_MAX together: this
 * one is kept to 192 bytes (test_phase.c). */
struct idem_state {
    struct sl_phase_run *run;
    struct idem_conf *conf;
    struct sl_sha256 sha; /* method, target, then the body */
    uint8_t key[SL_SHA256_LEN];
    uint8_t token[SL_IDEM_TOKEN_LEN];
    union {
        const struct sl_idem_record *record; /* ST_DONE: the kept one */
        struct kept *resp;                   /* ST_CLAIMED: the response being kept */
    };
    uint8_t stage;   /* enum stage */
    uint16_t status; /* what it answered with, for the access log; 0: it did not */
    bool is_unkept; /* the response will not be kept: release the claim */
    bool is_body_done; /* ST_CLAIMED: the fingerprint holds the whole body */
    bool is_stored;    /* ST_SETTLED: kept (sent to Redis), not released */
};

/* ---- setup ------------------------------------------------------------------- */

/* The process's table, made by the first route that needs it. */
static struct sl_idem_table *
embedded_table(const struct sl_phase_env *env)
{
    struct sl_idem_table *_Atomic *slot;
    struct sl_idem_table *t, *mine;

    slot = env->limiter != NULL ? sl_limiter_idem_slot(env->limiter) : NULL;
    if (slot == NULL)
        return NULL;
    t = atomic_load(slot);
    if (t != NULL)
        return t;
    mine = sl_idem_table_new(env->cfg->store.idempotency_memory);
    if (atomic_compare_exchange_strong(slot, &t, mine))
        return mine;
    sl_idem_table_free(mine); /* another worker was first */
    return t;
}

/* What tells this route's keys from another's: a key sent to two routes is
 * two keys. The route's match rules, which stay the same across reloads
 * and instances that share a conf. */
static void
route_identity(const struct sl_route_conf *route, uint8_t out[SL_SHA256_LEN])
{
    struct sl_sha256 s;

    sl_sha256_init(&s);
    if (route->host != NULL)
        sl_sha256_update(&s, route->host, strlen(route->host) + 1);
    sl_sha256_update(&s, "\n", 1);
    if (route->path != NULL)
        sl_sha256_update(&s, route->path, strlen(route->path) + 1);
    for (size_t i = 0; i < route->nheaders; i++) {
        sl_sha256_update(&s, route->headers[i].name, route->headers[i].name_len);
        sl_sha256_update(&s, ":", 1);
        sl_sha256_update(&s, route->headers[i].value, route->headers[i].value_len + 1);
    }
    sl_sha256_final(&s, out);
}

static bool
idem_setup(const struct sl_phase_env *env, const struct sl_route_conf *route, void **conf)
{
    struct idem_conf *c;

    if (route->idempotency == NULL)
        return false;
    c = sl_xcalloc(1, sizeof(*c));
    c->ic = route->idempotency;
    c->metrics = env->metrics;
    c->prefix = env->cfg->store.prefix != NULL ? env->cfg->store.prefix : "sluice";
    if (env->limiter != NULL
        && sl_store_is_redis(sl_lease_store_inner(sl_limiter_store(env->limiter))))
        c->redis = sl_lease_store_inner(sl_limiter_store(env->limiter));
    else
        c->table = embedded_table(env);
    route_identity(route, c->route_id);
    *conf = c;
    return true;
}

static void
idem_teardown(void *conf)
{
    free(conf);
}

/* ---- answers ------------------------------------------------------------------ */

#define DETAIL "This operation is idempotent and it requires correct usage of Idempotency Key."

static void
answer(struct idem_state *st, int status)
{
    static const char missing[] =
        "{\"type\":\"about:blank\",\"title\":\"Idempotency-Key is missing\",\"status\":400,"
        "\"detail\":\"" DETAIL "\"}";
    static const char reused[] =
        "{\"type\":\"about:blank\",\"title\":\"Idempotency-Key is already used\",\"status\":422,"
        "\"detail\":\"" DETAIL " Idempotency Key MUST not be reused across different payloads "
        "of this operation.\"}";
    static const char outstanding[] =
        "{\"type\":\"about:blank\",\"title\":\"A request is outstanding for this "
        "Idempotency-Key\",\"status\":409,\"detail\":\"A request with the same Idempotency-Key "
        "for the same operation is being processed or is outstanding.\"}";
    static const char unavailable[] =
        "{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,"
        "\"detail\":\"the idempotency store is unavailable\"}";
    struct sl_metrics_worker *mw = st->conf->metrics;

    st->status = (uint16_t)status;
    switch (status) {
    case 400:
        sl_metrics_idem(mw, SL_METRICS_IDEM_MISSING);
        sl_phase_answer(st->run, status, missing, sizeof(missing) - 1);
        break;
    case 409:
        sl_metrics_idem(mw, SL_METRICS_IDEM_CONFLICT);
        sl_phase_answer(st->run, status, outstanding, sizeof(outstanding) - 1);
        break;
    case 422:
        sl_metrics_idem(mw, SL_METRICS_IDEM_MISMATCH);
        sl_phase_answer(st->run, status, reused, sizeof(reused) - 1);
        break;
    default:
        sl_metrics_idem(mw, SL_METRICS_IDEM_UNAVAILABLE);
        sl_phase_attach(st->run, "Retry-After: 1\r\n", 16);
        sl_phase_answer(st->run, 503, unavailable, sizeof(unavailable) - 1);
        break;
    }
}

/* Why it answered, for the access log (docs/metrics.md). */
static const char *
answer_reason(int status)
{
    switch (status) {
    case 400:
        return "idempotency key missing";
    case 409:
        return "idempotency key in flight";
    case 422:
        return "idempotency key reused";
    default:
        return "idempotency store unavailable";
    }
}

static void
release_record(void *arg)
{
    sl_idem_record_put(arg);
}

/* The record's fingerprint against this request's: replay or 422. */
static void
decide(struct idem_state *st)
{
    const struct sl_idem_record *rec = st->record;
    struct sl_idem_response parts;
    struct sl_phase_response resp;
    uint8_t fp[SL_SHA256_LEN];

    sl_sha256_final(&st->sha, fp);
    if (memcmp(fp, rec->fingerprint, sizeof(fp)) != 0) {
        answer(st, 422);
        return;
    }
    if (!sl_idem_response_parse(rec->response, rec->len, &parts)) {
        answer(st, 503); /* not ours: never sent as if it were */
        return;
    }
    sl_phase_attach(st->run, "Idempotent-Replayed: true\r\n", 27);
    sl_metrics_idem(st->conf->metrics, SL_METRICS_IDEM_REPLAYED);
    st->record = NULL; /* the response's release puts it */
    resp = (struct sl_phase_response){
        .status = parts.status,
        .headers = parts.headers,
        .headers_len = parts.headers_len,
        .body = parts.body,
        .body_len = parts.body_len,
        .release = release_record,
        .release_arg = (void *)(uintptr_t)rec,
    };
    sl_phase_respond(st->run, &resp);
}

/* ---- the store ------------------------------------------------------------------ */

/* The record's name: prefix ":idem:" hex(key digest). */
static size_t
record_name(const struct idem_state *st, char *out, size_t size)
{
    int n = snprintf(out, size, "%s:idem:", st->conf->prefix);
    size_t len;

    if (n < 0 || (size_t)n + 2 * SL_SHA256_LEN >= size)
        return 0;
    len = (size_t)n;
    for (size_t i = 0; i < SL_SHA256_LEN; i++)
        len += (size_t)snprintf(out + len, size - len, "%02x", st->key[i]);
    return len;
}

/* A claim's outcome, from either store. */
static void
claimed(struct idem_state *st, enum sl_idem_result r)
{
    switch (r) {
    case SL_IDEM_CLAIMED:
        st->stage = ST_CLAIMED;
        sl_phase_pass(st->run);
        return;
    case SL_IDEM_IN_FLIGHT:
        answer(st, 409);
        return;
    case SL_IDEM_DONE:
        st->stage = ST_DONE;
        /* the fingerprint needs the body: read here, never forwarded; the
         * reader says false when there is none */
        if (!sl_phase_read_body(st->run))
            decide(st);
        return;
    default:
        answer(st, 503);
        return;
    }
}

static void
redis_claimed(void *arg, const struct redisReply *reply)
{
    struct idem_state *st = arg;
    enum sl_idem_result r = sl_idem_redis_claim_result(reply, &st->record);

    if (sl_phase_is_abandoned(st->run)) {
        char name[NAME_MAX_LEN];
        size_t len = record_name(st, name, sizeof(name));
        if (r == SL_IDEM_CLAIMED) /* the client is gone: give the key back */
            sl_idem_redis_release(st->conf->redis, name, len, st->token);
        sl_idem_record_put(st->record);
        st->record = NULL;
        sl_phase_pass(st->run);
        return;
    }
    claimed(st, r);
}

static void
claim(struct idem_state *st)
{
    const struct idem_conf *c = st->conf;
    const struct sl_idempotency_conf *ic = c->ic;

    if (getrandom(st->token, sizeof(st->token), 0) != (ssize_t)sizeof(st->token)) {
        answer(st, 503);
        return;
    }
    if (c->redis != NULL) {
        char name[NAME_MAX_LEN];
        size_t len = record_name(st, name, sizeof(name));
        if (len == 0
            || sl_idem_redis_claim(c->redis, name, len, st->token, ic->lock_ms, redis_claimed, st)
                   != 0)
            answer(st, 503);
        return;
    }
    if (c->table == NULL) {
        answer(st, 503);
        return;
    }
    claimed(st, sl_idem_table_claim(c->table, (const char *)st->key, sizeof(st->key), st->token,
                                    ic->lock_ms, &st->record));
}

/* ---- requests -------------------------------------------------------------------- */

static bool
method_listed(const struct sl_idempotency_conf *ic, const struct sl_request *req)
{
    for (size_t i = 0; i < ic->nmethods; i++) {
        if (strlen(ic->methods[i]) == req->method_len
            && memcmp(ic->methods[i], req->method, req->method_len) == 0)
            return true;
    }
    return false;
}

/* Whose key it is. A request without the scope's value (no Authorization
 * field) is scoped to its client address instead: never to a namespace all
 * such requests would share. */
static void
hash_scope(struct sl_sha256 *s, const struct sl_key_part *part, const struct sl_request *req)
{
    const char *v = NULL;
    size_t len = 0;

    if (sl_reqfield_selector(req, part, &v, &len)) {
        sl_sha256_update(s, "s", 1);
        sl_sha256_update(s, v, len);
    } else {
        sl_sha256_update(s, "a", 1);
        if (req->client_ip != NULL)
            sl_sha256_update(s, req->client_ip, req->client_ip_len);
    }
    sl_sha256_update(s, "\n", 1);
}

/* The key's field: exactly one, valid. NULL (and 0) when absent; false
 * when there are several or the one is invalid. */
static bool
find_key(const struct sl_request *req, const char **key, size_t *len)
{
    const struct sl_header *found = NULL;

    *key = NULL;
    *len = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!sl_http_name_is(&req->headers[i], SL_LIT("idempotency-key")))
            continue;
        if (found != NULL)
            return false;
        found = &req->headers[i];
    }
    if (found == NULL)
        return true;
    *len = sl_idem_parse_key(found->value, found->value_len, key);
    return *len != 0;
}

static void
idem_request(struct sl_phase_run *run, void *conf, void *state)
{
    struct idem_state *st = state;
    struct idem_conf *c = conf;
    const struct sl_request *req = sl_phase_request(run);
    struct sl_sha256 s;
    const char *key;
    size_t key_len;
    enum sl_framing framing;
    uint64_t left;

    st->run = run;
    st->conf = c;
    if (!method_listed(c->ic, req)) {
        sl_phase_pass(run);
        return;
    }
    if (!find_key(req, &key, &key_len)) {
        answer(st, 400);
        return;
    }
    if (key == NULL) {
        if (c->ic->is_required)
            answer(st, 400);
        else
            sl_phase_pass(run);
        return;
    }
    sl_sha256_init(&s);
    sl_sha256_update(&s, c->route_id, sizeof(c->route_id));
    hash_scope(&s, &c->ic->scope, req);
    sl_sha256_update(&s, key, key_len);
    sl_sha256_final(&s, st->key);
    /* the fingerprint: method and target now, the body as it comes */
    sl_sha256_init(&st->sha);
    sl_sha256_update(&st->sha, req->method, req->method_len);
    sl_sha256_update(&st->sha, " ", 1);
    sl_sha256_update(&st->sha, req->target, req->target_len);
    sl_sha256_update(&st->sha, "\n", 1);
    st->is_body_done = sl_http_request_framing(req, &framing, &left) == 0
                       && framing == SL_FRAMING_NONE;
    claim(st);
}

static void
idem_request_body(struct sl_phase_run *run, void *conf, void *state, const char *at, size_t len)
{
    struct idem_state *st = state;

    (void)run;
    (void)conf;
    if (st->stage != ST_NONE)
        sl_sha256_update(&st->sha, at, len);
}

static void
idem_request_body_end(struct sl_phase_run *run, void *conf, void *state, bool is_complete)
{
    struct idem_state *st = state;

    (void)conf;
    if (st->stage != ST_DONE) {
        st->is_body_done = true; /* forwarded whole: no continuation owed */
        return;
    }
    if (!is_complete) {
        sl_phase_pass(run); /* goes nowhere: the proxy answers or closes */
        return;
    }
    decide(st);
}

/* ---- responses ------------------------------------------------------------------ */

static void
drop_resp(struct idem_state *st)
{
    if (st->resp == NULL)
        return;
    sl_buf_fini(&st->resp->buf);
    free(st->resp);
    st->resp = NULL;
}

static void settle(struct idem_state *st, const char *reason);

static bool
is_head(const struct sl_request *req)
{
    return req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
}

/* The body's length, when the head gives one the proxy will hold it to. */
static bool
content_length(const struct sl_header *headers, size_t n, uint64_t *len)
{
    const struct sl_header *found = NULL;
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        if (sl_http_name_is(&headers[i], SL_LIT("transfer-encoding")))
            return false;
        if (!sl_http_name_is(&headers[i], SL_LIT("content-length")))
            continue;
        if (found != NULL)
            return false;
        found = &headers[i];
    }
    if (found == NULL || found->value_len == 0 || found->value_len > 18)
        return false;
    for (size_t i = 0; i < found->value_len; i++) {
        if (found->value[i] < '0' || found->value[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(found->value[i] - '0');
    }
    *len = v;
    return true;
}

static void
idem_response_head(struct sl_phase_run *run, void *conf, void *state, int status,
                   const struct sl_header *headers, size_t nheaders)
{
    struct idem_state *st = state;
    struct idem_conf *c = conf;

    if (st->stage != ST_CLAIMED || st->is_unkept)
        return;
    /* a 5xx is the server's failure, not the operation's outcome: retryable,
     * and released now, before the client can retry */
    if (status >= 500) {
        st->is_unkept = true;
        settle(st, "5xx");
        return;
    }
    st->resp = sl_xcalloc(1, sizeof(*st->resp));
    sl_buf_init(&st->resp->buf, c->ic->max_response);
    if (sl_idem_response_begin(&st->resp->buf, status, headers, nheaders) != 0) {
        st->is_unkept = true;
        settle(st, "too large");
        return;
    }
    /* HEAD, 204 and 304 have no body whatever the length says */
    if (status != 204 && status != 304 && !is_head(sl_phase_request(run)))
        st->resp->has_length = content_length(headers, nheaders, &st->resp->left);
    if (st->resp->has_length && st->resp->left == 0)
        settle(st, NULL);
}

static void
idem_response_body(struct sl_phase_run *run, void *conf, void *state, const char *at, size_t len)
{
    struct idem_state *st = state;

    (void)run;
    (void)conf;
    if (st->stage != ST_CLAIMED || st->resp == NULL)
        return;
    if (sl_buf_append(&st->resp->buf, at, len) != 0) {
        st->is_unkept = true; /* over max_response */
        settle(st, "too large");
        return;
    }
    if (!st->resp->has_length)
        return;
    st->resp->left -= len < st->resp->left ? len : st->resp->left;
    if (st->resp->left == 0)
        settle(st, NULL);
}

static void
idem_upstream_error(struct sl_phase_run *run, void *conf, void *state, int status)
{
    struct idem_state *st = state;

    (void)run;
    (void)conf;
    (void)status;
    if (st->stage != ST_CLAIMED)
        return;
    st->is_unkept = true;
    settle(st, "upstream error");
}

/* The claim becomes a record, or goes. */
static void
settle(struct idem_state *st, const char *reason)
{
    const struct idem_conf *c = st->conf;
    char name[NAME_MAX_LEN];
    size_t name_len = 0;
    uint8_t fp[SL_SHA256_LEN];
    /* an upstream that answered before the body was all up: the fingerprint
     * would be of part of it */
    bool is_kept = reason == NULL && !st->is_unkept && st->resp != NULL && st->is_body_done;

    st->stage = ST_SETTLED;
    if (c->redis != NULL)
        name_len = record_name(st, name, sizeof(name));
    if (is_kept) {
        sl_sha256_final(&st->sha, fp);
        st->is_stored = true;
        if (c->redis != NULL) {
            sl_idem_redis_complete(c->redis, name, name_len, st->token, fp, st->resp->buf.data,
                                   st->resp->buf.len, c->ic->ttl_ms, c->metrics);
            drop_resp(st);
            return;
        }
        if (sl_idem_table_complete(c->table, (const char *)st->key, sizeof(st->key), st->token,
                                   fp, st->resp->buf.data, st->resp->buf.len, c->ic->ttl_ms)) {
            sl_metrics_idem(c->metrics, SL_METRICS_IDEM_STORED);
            drop_resp(st);
            return;
        }
        st->is_stored = false;
    }
    drop_resp(st);
    sl_metrics_idem(c->metrics, SL_METRICS_IDEM_RELEASED);
    if (c->redis != NULL)
        sl_idem_redis_release(c->redis, name, name_len, st->token);
    else
        sl_idem_table_release(c->table, (const char *)st->key, sizeof(st->key), st->token);
}

/* The access log's idempotency field; NULL: no key was looked at. */
static const char *
log_word(const struct idem_state *st, const char *reason)
{
    switch (st->status) {
    case 400:
        return "missing";
    case 409:
        return "conflict";
    case 422:
        return "mismatch";
    case 0:
        break;
    default:
        return "unavailable";
    }
    if (st->stage == ST_SETTLED)
        return st->is_stored ? "stored" : "released";
    if (st->stage == ST_DONE && reason == NULL)
        return "replayed";
    return NULL;
}

static void
idem_end(struct sl_phase_run *run, void *conf, void *state, const char *reason,
         struct sl_access_entry *log)
{
    struct idem_state *st = state;

    (void)run;
    (void)conf;
    if (st->stage == ST_CLAIMED)
        settle(st, reason);
    else if (st->stage == ST_DONE)
        sl_idem_record_put(st->record);
    st->record = NULL;
    if (log == NULL)
        return;
    if (st->status != 0 && reason == NULL)
        log->reason = answer_reason(st->status);
    log->idempotency = log_word(st, reason);
}

const struct sl_phase sl_phase_idem = {
    .name = "idem",
    .state_size = sizeof(struct idem_state),
    .setup = idem_setup,
    .teardown = idem_teardown,
    .on_request = idem_request,
    .on_response_head = idem_response_head,
    .on_response_body = idem_response_body,
    .on_upstream_error = idem_upstream_error,
    .on_end = idem_end,
    .on_request_body = idem_request_body,
    .on_request_body_end = idem_request_body_end,
};
