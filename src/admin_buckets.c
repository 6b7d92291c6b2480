/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The bucket API (see admin_buckets.h): the HTTP side on the admin
 * listener's evhttp, the query parser and the JSON answers. The limiter
 * (limiter_bucket.c) builds the key and asks the store.
 *
 * Why a store of its own on the main loop rather than a worker's: a lookup
 * is an async call on the main thread's event_base, like everything else
 * there, so nothing crosses threads (no request handed to a worker and its
 * answer handed back), no worker's loop or batches see admin traffic, and a
 * Redis that does not answer costs the admin listener one pending request
 * until store.timeout, never a blocked loop. The cost is one more Redis
 * connection per process. The embedded store's table is shared by every
 * thread already, so there the handle just points at it.
 */
#include "sluice/admin_buckets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sluice/config.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/store.h"
#include "util/alloc.h"

#define PROBLEM_TYPE "application/problem+json"

struct sl_admin_buckets {
    struct event_base *base;
    struct sl_limiter_shared *shared;
    struct sl_limiter *limiter; /* NULL: no store (503) */
};

/* One request waiting for the store. */
struct pending {
    struct evhttp_request *req;
    struct sl_bucket_query query;
};

/* ---- the query ----------------------------------------------------------- */

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes p[0..len) into a new string; -1 on a bad escape. */
static int
decode(const char *p, size_t len, char **out, size_t *out_len)
{
    char *s = sl_xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (p[i] != '%') {
            s[n++] = p[i];
            continue;
        }
        if (i + 2 >= len || hex_value(p[i + 1]) < 0 || hex_value(p[i + 2]) < 0) {
            free(s);
            return -1;
        }
        s[n++] = (char)(hex_value(p[i + 1]) * 16 + hex_value(p[i + 2]));
        i += 2;
    }
    s[n] = '\0';
    *out = s;
    *out_len = n;
    return 0;
}

/* RFC 3629 well-formed UTF-8 (no overlongs, surrogates or values past
 * U+10FFFF): a value JSON can carry as it is. */
static bool
is_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3;
        else
            return false;
        if (len - i - 1 < n)
            return false;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        for (size_t k = 1; k <= n; k++) {
            if (s[i + k] < (k == 1 ? lo : 0x80) || s[i + k] > (k == 1 ? hi : 0xbf))
                return false;
        }
        i += n + 1;
    }
    return true;
}

static int
query_fail(struct sl_bucket_query *q, char *err, size_t err_size, const char *msg)
{
    snprintf(err, err_size, "%s", msg);
    sl_bucket_query_fini(q);
    return -1;
}

/* One "name=value" pair of the query into q. */
static int
query_pair(const char *p, size_t len, struct sl_bucket_query *q, char *err, size_t err_size)
{
    const char *eq = memchr(p, '=', len);
    size_t name_len = eq != NULL ? (size_t)(eq - p) : len;
    char *value;
    size_t value_len;
    bool is_limit = name_len == 5 && memcmp(p, "limit", 5) == 0;

    if (!is_limit && !(name_len == 3 && memcmp(p, "key", 3) == 0))
        return query_fail(q, err, err_size, "unknown parameter (use limit= and key=)");
    if (eq == NULL || decode(eq + 1, len - name_len - 1, &value, &value_len) == -1)
        return query_fail(q, err, err_size, "bad value: a parameter without '=' or with a bad "
                                            "percent escape");
    if (!is_utf8((const unsigned char *)value, value_len)) {
        free(value);
        return query_fail(q, err, err_size, "a value is not UTF-8");
    }
    if (is_limit && q->limit != NULL) {
        free(value);
        return query_fail(q, err, err_size, "limit= given twice");
    }
    if (is_limit) {
        q->limit = value;
        return 0;
    }
    if (q->nvalues == SL_BUCKET_KEYS_MAX) {
        free(value);
        return query_fail(q, err, err_size, "too many key= values");
    }
    q->values[q->nvalues] = value;
    q->lens[q->nvalues++] = value_len;
    return 0;
}

int
sl_bucket_query_parse(const char *query, struct sl_bucket_query *q, char *err, size_t err_size)
{
    const char *p = query != NULL ? query : "";
    size_t len = strlen(p);

    memset(q, 0, sizeof(*q));
    if (len > SL_BUCKET_QUERY_MAX)
        return query_fail(q, err, err_size, "query string too long");
    while (len > 0) {
        const char *amp = memchr(p, '&', len);
        size_t n = amp != NULL ? (size_t)(amp - p) : len;

        if (n > 0 && query_pair(p, n, q, err, err_size) == -1)
            return -1;
        p += n + (amp != NULL);
        len -= n + (amp != NULL);
    }
    if (q->limit == NULL || q->limit[0] == '\0')
        return query_fail(q, err, err_size, "missing parameter limit= (the limit's name)");
    return 0;
}

void
sl_bucket_query_fini(struct sl_bucket_query *q)
{
    free(q->limit);
    for (size_t i = 0; i < q->nvalues; i++)
        free(q->values[i]);
    memset(q, 0, sizeof(*q));
}

/* ---- JSON ---------------------------------------------------------------- */

static char *
print_json(cJSON *doc)
{
    char *text = cJSON_PrintUnformatted(doc);

    cJSON_Delete(doc);
    if (text == NULL)
        sl_fatalx("out of memory rendering JSON");
    return text;
}

/* Seconds, to the millisecond the stores count in. */
static double
seconds(uint64_t ms)
{
    return (double)ms / 1000.0;
}

char *
sl_bucket_view_json(const struct sl_bucket_view *v, const struct sl_bucket_query *q)
{
    cJSON *doc = cJSON_CreateObject();
    char *store_key = sl_xstrndup(v->key, v->key_len);

    cJSON_AddStringToObject(doc, "limit", v->limit);
    if (q->nvalues == 1) {
        cJSON_AddStringToObject(doc, "key", q->values[0]);
    } else {
        cJSON *parts = cJSON_AddArrayToObject(doc, "key");
        for (size_t i = 0; i < q->nvalues; i++)
            cJSON_AddItemToArray(parts, cJSON_CreateString(q->values[i]));
    }
    cJSON_AddStringToObject(doc, "store", v->store);
    /* escaped values are ASCII: the key as redis-cli shows it */
    cJSON_AddStringToObject(doc, "store_key", store_key);
    free(store_key);
    cJSON_AddNumberToObject(doc, "tokens", v->tokens);
    cJSON_AddNumberToObject(doc, "burst", v->burst);
    cJSON_AddNumberToObject(doc, "rate", v->rate);
    cJSON_AddNumberToObject(doc, "per_seconds", seconds(v->per_ms));
    cJSON_AddNumberToObject(doc, "cost", v->cost);
    cJSON_AddNumberToObject(doc, "seconds_until_full", seconds(v->full_ms));
    /* what a 429 would say now, rounded up the same way; 0: a request of
     * `cost` passes now; null: it never can (cost above the burst) */
    if (v->retry_ms == SL_STORE_RETRY_NEVER)
        cJSON_AddNullToObject(doc, "retry_after");
    else
        cJSON_AddNumberToObject(doc, "retry_after", ceil(seconds(v->retry_ms)));
    return print_json(doc);
}

char *
sl_admin_problem_json(int status, const char *title, const char *detail)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "type", "about:blank");
    cJSON_AddStringToObject(doc, "title", title);
    cJSON_AddNumberToObject(doc, "status", status);
    cJSON_AddStringToObject(doc, "detail", detail);
    return print_json(doc);
}

/* ---- HTTP ---------------------------------------------------------------- */

static void
reply(struct evhttp_request *req, int status, const char *type, char *body)
{
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
    free(body);
}

static void
problem(struct evhttp_request *req, int status, const char *title, const char *detail)
{
    reply(req, status, PROBLEM_TYPE, sl_admin_problem_json(status, title, detail));
}

static const char *
store_failure(int status)
{
    switch (status) {
    case SL_STORE_TIMEOUT:
        return "the rate-limit store did not answer within store.timeout";
    case SL_STORE_CONNECTION:
        return "the rate-limit store is not connected";
    default:
        return "the rate-limit store answered with an error";
    }
}

static void
on_bucket(void *arg, int status, const struct sl_bucket_view *view)
{
    struct pending *p = arg;

    if (view != NULL)
        reply(p->req, 200, "application/json", sl_bucket_view_json(view, &p->query));
    else
        problem(p->req, 503, "Service Unavailable", store_failure(status));
    sl_bucket_query_fini(&p->query);
    free(p);
}

static void
start_lookup(struct sl_admin_buckets *b, struct evhttp_request *req, struct pending *p,
             bool is_reset)
{
    const char *const *values = (const char *const *)p->query.values;
    char detail[160];
    enum sl_bucket_status st;

    if (b->limiter == NULL) {
        problem(req, 503, "Service Unavailable", "no rate-limit store is set up");
        goto done;
    }
    st = sl_limiter_bucket(b->limiter, p->query.limit, values, p->query.lens, p->query.nvalues,
                           is_reset, on_bucket, p);
    if (st == SL_BUCKET_OK)
        return;
    if (st == SL_BUCKET_NO_LIMIT) {
        problem(req, 404, "Not Found", "no limit of that name in the running configuration");
    } else {
        snprintf(detail, sizeof(detail), "%s key= (one per part of the limit's key, in order)",
                 p->query.nvalues == 0 ? "missing parameter" : "wrong number of values of");
        problem(req, 400, "Bad Request", detail);
    }
done:
    sl_bucket_query_fini(&p->query);
    free(p);
}

void
sl_admin_buckets_handle(struct sl_admin_buckets *b, struct evhttp_request *req)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct pending *p;
    char err[128];

    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD && method != EVHTTP_REQ_DELETE) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD, DELETE");
        problem(req, 405, "Method Not Allowed", "use GET to look at a bucket, DELETE to reset it");
        return;
    }
    p = sl_xcalloc(1, sizeof(*p));
    p->req = req;
    if (sl_bucket_query_parse(uri != NULL ? evhttp_uri_get_query(uri) : NULL, &p->query, err,
                              sizeof(err))
        == -1) {
        free(p);
        problem(req, 400, "Bad Request", err);
        return;
    }
    start_lookup(b, req, p, method == EVHTTP_REQ_DELETE);
}

/* ---- lifetime ------------------------------------------------------------ */

struct sl_admin_buckets *
sl_admin_buckets_new(struct event_base *base, struct sl_limiter_shared *shared)
{
    struct sl_admin_buckets *b = sl_xcalloc(1, sizeof(*b));

    b->base = base;
    b->shared = shared;
    return b;
}

int
sl_admin_buckets_set_config(struct sl_admin_buckets *b, const struct sl_config *cfg, char *err,
                            size_t err_size)
{
    struct sl_limiter *limiter = sl_limiter_new_lookup(cfg, b->base, b->shared, err, err_size);

    /* lookups on the old store are answered (503) while its config lives;
     * the caller frees that config next, so it goes even on failure */
    sl_limiter_free(b->limiter);
    b->limiter = limiter;
    return limiter != NULL ? 0 : -1;
}

void
sl_admin_buckets_free(struct sl_admin_buckets *b)
{
    if (b == NULL)
        return;
    sl_limiter_free(b->limiter);
    free(b);
}
