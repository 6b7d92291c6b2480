/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Limiter policy tests against the fake store and a fake clock, observed
 * through the decisions and the metrics module as a scrape would: keys for
 * every selector, escaping and hashing, costs, one store call per request,
 * shadow limits, Retry-After rounding, the exact header and body text, and
 * each on_error policy with its once-per-transition log lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/limiter.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/store.h"
#include "limiter_int.h"
#include "util/clock.h"

#include "fakes/fake_store.c"

#define MAX_LIMITS 8
#define RECOVERY_US 1000000u /* limiter.c: an outage ends after this long without a failure */

struct fixture {
    struct sl_config cfg;
    struct sl_limit_conf limits[MAX_LIMITS];
    struct sl_key_part parts[MAX_LIMITS][4];
    struct sl_route_conf route;
    size_t route_limits[MAX_LIMITS];
    uint64_t now_us;
    struct fake_store *store;
    struct fake_store *fallback;
    struct sl_limiter_shared *shared;
    struct sl_limiter *limiter;
    char log_path[64];

    struct sl_header headers[8];
    struct sl_request req;

    int ncalls; /* decisions received */
    enum sl_verdict verdict;
    unsigned retry_after_s;
    char out_headers[2048];
    char problem[2048];
    bool has_problem;
    char outcome[32];
    double limiter_ms;
    uint64_t wait_ms;

    /* what the limiter reports, observed as a scrape would */
    struct sl_metrics *metrics;
    unsigned limit_slots[MAX_LIMITS];
    int noutcomes[5]; /* decisions received, by outcome word (outcome_words) */
};

static const char *const outcome_words[5] = {
    "admitted", "limited", "shadow_limited", "store_error", "none",
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->now_us = 1000000000;
    sl_clock_set_fake(&f->now_us);
    f->cfg.path = "test.conf";
    f->cfg.limits = f->limits;
    f->cfg.routes = &f->route;
    f->cfg.nroutes = 1;
    f->cfg.store.prefix = "sluice";
    f->cfg.store.on_error = SL_ON_ERROR_ALLOW;
    f->route.path = "/";
    f->route.path_len = 1;
    f->route.limits = f->route_limits;
    f->route.has_ratelimit_headers = true;
    f->store = fake_store_new("fake");
    f->shared = sl_limiter_shared_new(1000);
    f->metrics = sl_metrics_new(1, NULL, 0, NULL, 0);
    assert_non_null(f->metrics);

    snprintf(f->log_path, sizeof(f->log_path), "/tmp/sl_test_limiter_%d.log", (int)getpid());
    unlink(f->log_path);
    sl_log_open(f->log_path);

    f->req.method = "GET";
    f->req.method_len = 3;
    f->req.path = "/v1/items";
    f->req.path_len = strlen(f->req.path);
    f->req.target = f->req.path;
    f->req.target_len = f->req.path_len;
    f->req.client_ip = "10.0.0.1";
    f->req.client_ip_len = 8;
    f->req.headers = f->headers;
    f->req.http_minor = 1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    sl_limiter_free(f->limiter);
    if (f->limiter == NULL) {
        if (f->store != NULL)
            f->store->base.ops->free(&f->store->base);
        if (f->fallback != NULL)
            f->fallback->base.ops->free(&f->fallback->base);
    }
    sl_limiter_shared_free(f->shared);
    sl_metrics_free(f->metrics);
    sl_log_close();
    unlink(f->log_path);
    sl_clock_set_fake(NULL);
    free(f);
    return 0;
}

/* Adds a limit of one or more parts ("ip", "header:X", ...), listed in the route. */
static size_t
add_limit(struct fixture *f, const char *name, const char *key, double rate, uint64_t per_ms,
          double burst)
{
    size_t i = f->cfg.nlimits++;
    struct sl_limit_conf *l = &f->limits[i];
    char buf[256];
    char *save = NULL;

    l->name = (char *)(uintptr_t)name;
    l->parts = f->parts[i];
    l->rate = rate;
    l->per_ms = per_ms;
    l->burst = burst;
    l->cost = 1;
    snprintf(buf, sizeof(buf), "%s", key);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        struct sl_key_part *p = &l->parts[l->nparts++];
        char *colon = strchr(tok, ':');
        size_t kind_len = colon != NULL ? (size_t)(colon - tok) : strlen(tok);
        if (colon != NULL) {
            /* header names are lower-cased by config.c; mimic that */
            p->name = strdup(colon + 1);
            p->name_len = strlen(p->name);
            if (strncmp(tok, "header", kind_len) == 0) {
                for (char *c = p->name; *c != '\0'; c++)
                    *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
            }
        }
        if (strncmp(tok, "ip", kind_len) == 0)
            p->kind = SL_KEY_IP;
        else if (strncmp(tok, "header", kind_len) == 0)
            p->kind = SL_KEY_HEADER;
        else if (strncmp(tok, "query", kind_len) == 0)
            p->kind = SL_KEY_QUERY;
        else if (strncmp(tok, "cookie", kind_len) == 0)
            p->kind = SL_KEY_COOKIE;
        else if (strncmp(tok, "path", kind_len) == 0)
            p->kind = SL_KEY_PATH;
        else if (strncmp(tok, "method", kind_len) == 0)
            p->kind = SL_KEY_METHOD;
        else if (strncmp(tok, "global", kind_len) == 0)
            p->kind = SL_KEY_GLOBAL;
        else if (strncmp(tok, "function", kind_len) == 0)
            p->kind = SL_KEY_FUNCTION;
        else
            fail_msg("bad key %s", tok);
    }
    f->route_limits[f->route.nlimits++] = i;
    return i;
}

static void
free_parts(struct fixture *f)
{
    for (size_t i = 0; i < f->cfg.nlimits; i++) {
        for (size_t j = 0; j < f->limits[i].nparts; j++)
            free(f->limits[i].parts[j].name);
    }
}

static void
start(struct fixture *f)
{
    char err[256] = "";

    f->limiter = sl_limiter_new_with_stores(&f->cfg, &f->store->base,
                                            f->fallback != NULL ? &f->fallback->base : NULL,
                                            f->shared, err, sizeof(err));
    if (f->limiter == NULL)
        fail_msg("sl_limiter_new_with_stores: %s", err);
    for (size_t i = 0; i < f->cfg.nlimits; i++)
        f->limit_slots[i] = sl_metrics_slot(f->metrics, SL_METRICS_LIMIT, f->limits[i].name);
    sl_limiter_set_metrics(f->limiter, sl_metrics_worker(f->metrics, 0), f->limit_slots);
}

static void
add_header(struct fixture *f, const char *name, const char *value)
{
    struct sl_header *h = &f->headers[f->req.nheaders++];

    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = strlen(value);
}

static void
on_decision(void *arg, const struct sl_decision *d)
{
    struct fixture *f = arg;

    f->ncalls++;
    f->verdict = d->verdict;
    f->retry_after_s = d->retry_after_s;
    assert_non_null(d->headers);
    assert_true(d->headers_len < sizeof(f->out_headers));
    memcpy(f->out_headers, d->headers, d->headers_len);
    f->out_headers[d->headers_len] = '\0';
    f->has_problem = d->problem != NULL;
    if (d->problem != NULL) {
        assert_true(d->problem_len < sizeof(f->problem));
        memcpy(f->problem, d->problem, d->problem_len);
        f->problem[d->problem_len] = '\0';
    } else {
        f->problem[0] = '\0';
    }
    snprintf(f->outcome, sizeof(f->outcome), "%s", d->outcome);
    f->limiter_ms = d->limiter_ms;
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(d->outcome, outcome_words[i]) == 0)
            f->noutcomes[i]++;
    }
}

static void
on_delay_decision(void *arg, const struct sl_decision *d)
{
    struct fixture *f = arg;

    f->wait_ms = d->wait_ms;
    on_decision(arg, d);
}

/* Decisions received with this outcome word. */
static int
decisions(struct fixture *f, const char *word)
{
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(word, outcome_words[i]) == 0)
            return f->noutcomes[i];
    }
    fail_msg("unknown outcome %s", word);
    return -1;
}

/* The value of one series of the exposition text ("name{labels}"); fails
 * when the scrape does not have it. */
static uint64_t
metric(struct fixture *f, const char *series)
{
    size_t len;
    char *text = sl_metrics_render(f->metrics, &len), *at = text;
    size_t n = strlen(series);
    uint64_t v = 0;
    bool found = false;

    while ((at = strstr(at, series)) != NULL) {
        if ((at == text || at[-1] == '\n') && at[n] == ' ') {
            v = strtoull(at + n + 1, NULL, 10);
            found = true;
            break;
        }
        at += n;
    }
    free(text);
    if (!found)
        fail_msg("no series %s in the scrape", series);
    return v;
}

/* sluice_ratelimit_decisions_total of one limit and result. */
static uint64_t
limit_metric(struct fixture *f, const char *limit, const char *result)
{
    char series[256];

    snprintf(series, sizeof(series),
             "sluice_ratelimit_decisions_total{limit=\"%s\",result=\"%s\"}", limit, result);
    return metric(f, series);
}

static void
check(struct fixture *f)
{
    int before = f->ncalls;

    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    assert_int_equal(f->ncalls, before + 1);
}

static const char *
last_key(struct fixture *f, size_t i)
{
    assert_true(f->store->ncalls > 0);
    return f->store->calls[f->store->ncalls - 1].keys[i];
}

static int
count_log_lines(struct fixture *f, const char *needle)
{
    FILE *fp = fopen(f->log_path, "r");
    char line[4096];
    int n = 0;

    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strstr(line, needle) != NULL)
            n++;
    }
    fclose(fp);
    return n;
}

/* ---- keys ---------------------------------------------------------------- */

static void
test_no_limits(void **state)
{
    struct fixture *f = *state;

    start(f);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->outcome, "none");
    assert_string_equal(f->out_headers, "");
    assert_false(f->has_problem);
    assert_int_equal(f->store->ncalls, 0);
}

static void
test_key_ip(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:10.0.0.1");
    f->req.client_ip = "2001:db8::1";
    f->req.client_ip_len = strlen(f->req.client_ip);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:2001%3Adb8%3A%3A1");
    f->req.client_ip = NULL;
    f->req.client_ip_len = 0;
    check(f);
    assert_string_equal(f->outcome, "none");
    assert_int_equal(f->store->ncalls, 2);
    free_parts(f);
}

/* ipv6_prefix: every address of one /64 is one bucket; IPv4 and other
 * networks are not touched. The bucket API names the same bucket. */
static void
test_key_ip_prefix(void **state)
{
    struct fixture *f = *state;
    char key[256];
    const char *values[2];
    size_t lens[2];

    add_limit(f, "per_ip", "ip,method", 100, 1000, 100);
    f->limits[0].ipv6_prefix = 64;
    start(f);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:10.0.0.1:GET");
    f->req.client_ip = "2001:db8:1:2:aaaa:bbbb:cccc:dddd";
    f->req.client_ip_len = strlen(f->req.client_ip);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:2001%3Adb8%3A1%3A2%3A%3A/64:GET");
    f->req.client_ip = "2001:db8:1:2::1";
    f->req.client_ip_len = strlen(f->req.client_ip);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:2001%3Adb8%3A1%3A2%3A%3A/64:GET");
    f->req.client_ip = "2001:db8:1:3::1";
    f->req.client_ip_len = strlen(f->req.client_ip);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:2001%3Adb8%3A1%3A3%3A%3A/64:GET");
    values[0] = "2001:db8:1:2::99";
    lens[0] = strlen(values[0]);
    values[1] = "GET";
    lens[1] = 3;
    key[sl_limiter_bucket_key(f->limiter, 0, values, lens, key)] = '\0';
    assert_string_equal(key, "sluice:per_ip:2001%3Adb8%3A1%3A2%3A%3A/64:GET");
    /* a prefix that is not a multiple of 8 */
    f->limits[0].ipv6_prefix = 60;
    f->req.client_ip = "2001:db8:1:2f::1";
    f->req.client_ip_len = strlen(f->req.client_ip);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_ip:2001%3Adb8%3A1%3A20%3A%3A/60:GET");
    free_parts(f);
}

static void
test_key_header(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_key", "header:X-API-Key", 10, 1000, 10);
    start(f);
    check(f); /* no header: the limit does not apply */
    assert_string_equal(f->outcome, "none");
    assert_int_equal(f->store->ncalls, 0);
    add_header(f, "x-api-KEY", "k123");
    add_header(f, "X-Api-Key", "second");
    check(f);
    assert_string_equal(f->outcome, "admitted");
    assert_string_equal(last_key(f, 0), "sluice:per_key:k123");
    assert_int_equal(limit_metric(f, "per_key", "skipped"), 1);
    assert_int_equal(limit_metric(f, "per_key", "admitted"), 1);
    assert_int_equal(decisions(f, "none"), 1);
    assert_int_equal(decisions(f, "admitted"), 1);
    free_parts(f);
}

static void
test_key_query(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_q", "query:key", 10, 1000, 10);
    start(f);
    check(f); /* no query at all */
    assert_int_equal(f->store->ncalls, 0);
    f->req.query = "a=1&keyx=2&key=ab%3Ac&key=zzz";
    f->req.query_len = strlen(f->req.query);
    check(f);
    /* raw, not decoded: the '%' of the client's escape is escaped again */
    assert_string_equal(last_key(f, 0), "sluice:per_q:ab%253Ac");
    f->req.query = "key";
    f->req.query_len = 3;
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_q:");
    f->req.query = "other=1";
    f->req.query_len = strlen(f->req.query);
    check(f);
    assert_int_equal(f->store->ncalls, 2);
    free_parts(f);
}

static void
test_key_cookie(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_session", "cookie:sid", 10, 1000, 10);
    start(f);
    add_header(f, "Cookie", "theme=dark; xsid=no");
    check(f);
    assert_int_equal(f->store->ncalls, 0);
    add_header(f, "cookie", "a=1;  sid = s-42 ;b=2");
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:per_session:s-42");
    free_parts(f);
}

static void
test_key_path_method_global(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "by_path", "path", 10, 1000, 10);
    add_limit(f, "by_method", "method", 10, 1000, 10);
    add_limit(f, "all", "global", 10, 1000, 10);
    start(f);
    check(f);
    assert_int_equal(f->store->ncalls, 1);
    assert_int_equal(f->store->calls[0].n, 3);
    assert_string_equal(last_key(f, 0), "sluice:by_path:/v1/items");
    assert_string_equal(last_key(f, 1), "sluice:by_method:GET");
    assert_string_equal(last_key(f, 2), "sluice:all:");
    free_parts(f);
}

static void
test_key_composite(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "user_ip", "ip,header:X-User,method", 10, 1000, 10);
    start(f);
    check(f); /* X-User absent: the whole limit does not apply */
    assert_int_equal(f->store->ncalls, 0);
    assert_string_equal(f->outcome, "none");
    add_header(f, "X-User", "bob:1");
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:user_ip:10.0.0.1:bob%3A1:GET");
    free_parts(f);
}

static void
test_key_escaping(void **state)
{
    struct fixture *f = *state;
    char k1[FAKE_KEY_MAX], k2[FAKE_KEY_MAX];

    /* limit "a" with value "b:c" against limit "a:b" with value "c" */
    add_limit(f, "a", "header:X-V", 10, 1000, 10);
    add_limit(f, "a:b", "header:X-W", 10, 1000, 10);
    start(f);
    add_header(f, "X-V", "b:c");
    add_header(f, "X-W", "c");
    check(f);
    snprintf(k1, sizeof(k1), "%s", last_key(f, 0));
    snprintf(k2, sizeof(k2), "%s", last_key(f, 1));
    assert_string_equal(k1, "sluice:a:b%3Ac");
    assert_string_equal(k2, "sluice:a%3Ab:c");
    assert_string_not_equal(k1, k2);

    f->headers[0].value = "x y\r\n%#{tag}\x01\xff";
    f->headers[0].value_len = strlen(f->headers[0].value);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:a:x%20y%0D%0A%25%23%7Btag%7D%01%FF");
    free_parts(f);
}

static void
test_key_hashing(void **state)
{
    struct fixture *f = *state;
    char value[256];

    add_limit(f, "k", "header:X-V", 10, 1000, 10);
    start(f);
    memset(value, 'a', 128);
    value[128] = '\0';
    add_header(f, "X-V", value);
    check(f);
    assert_int_equal(strlen(last_key(f, 0)), strlen("sluice:k:") + 128);

    memset(value, 'a', 200);
    value[200] = '\0';
    f->headers[0].value_len = 200;
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:k:#"
                        "c2a908d98f5df987ade41b5fce213067efbcc21ef2240212a41e54b5e7c28ae5");

    /* 129 bytes: the first one over the slot */
    value[129] = '\0';
    f->headers[0].value_len = 129;
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:k:#"
                        "c12cb024a2e5551cca0e08fce8f1c5e314555cc3fef6329ee994a3db752166ae");
    /* a plain value that looks like a digest cannot meet it: '#' is escaped */
    snprintf(value, sizeof(value), "#c12cb024");
    f->headers[0].value_len = strlen(value);
    check(f);
    assert_string_equal(last_key(f, 0), "sluice:k:%23c12cb024");
    free_parts(f);
}

static void
test_prefix(void **state)
{
    struct fixture *f = *state;

    f->cfg.store.prefix = "rl:prod";
    add_limit(f, "per_ip", "ip", 10, 1000, 10);
    start(f);
    check(f);
    assert_string_equal(last_key(f, 0), "rl:prod:per_ip:10.0.0.1");
    free_parts(f);
}

/* ---- one call, all or nothing ---------------------------------------------- */

static void
test_all_or_nothing(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "first", "ip", 100, 1000, 100);
    add_limit(f, "second", "global", 1, 1000, 1);
    start(f);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_int_equal(f->store->ncalls, 1);
    assert_int_equal(f->store->calls[0].n, 2);
    assert_true(fake_store_tokens(f->store, "sluice:first:10.0.0.1") == 99);

    check(f); /* the second limit is empty now */
    assert_int_equal(f->store->ncalls, 2);
    assert_int_equal(f->store->calls[1].n, 2);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_string_equal(f->outcome, "limited");
    /* the refusal took nothing from the first limit */
    assert_true(fake_store_tokens(f->store, "sluice:first:10.0.0.1") == 99);
    assert_non_null(strstr(f->problem, "\"violated-policies\":[\"second\"]"));

    assert_int_equal(limit_metric(f, "first", "admitted"), 2);
    assert_int_equal(limit_metric(f, "first", "limited"), 0);
    assert_int_equal(limit_metric(f, "second", "admitted"), 1);
    assert_int_equal(limit_metric(f, "second", "limited"), 1);
    assert_int_equal(decisions(f, "limited"), 1);
    free_parts(f);
}

static void
test_cost_static(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "heavy", "ip", 10, 1000, 10);
    f->limits[0].cost = 4;
    start(f);
    check(f);
    assert_true(f->store->calls[0].costs[0] == 4);
    check(f);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY); /* 10 - 4 - 4 = 2 < 4 */
    /* 2 tokens missing at 10/s: 200 ms, rounded up to 1 s */
    assert_int_equal(f->retry_after_s, 1);
    free_parts(f);
}

/* ---- headers and body -------------------------------------------------------- */

static void
test_deny_exact_text(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res[1] = { { .remaining = 0.4, .retry_ms = 6, .reset_ms = 1994 } };

    add_limit(f, "per_ip", "ip", 100, 1000, 200);
    start(f);
    fake_store_script(f->store, false, res, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(f->retry_after_s, 1);
    assert_string_equal(f->out_headers,
                        "Retry-After: 1\r\n"
                        "RateLimit-Policy: \"per_ip\";q=100;w=1\r\n"
                        "RateLimit: \"per_ip\";r=0;t=1\r\n");
    assert_string_equal(f->problem,
                        "{\"type\":\"https://iana.org/assignments/http-problem-types"
                        "#quota-exceeded\",\"title\":\"Too Many Requests\",\"status\":429,"
                        "\"detail\":\"rate limit exceeded; retry after 1 second\","
                        "\"violated-policies\":[\"per_ip\"]}");
    assert_string_equal(f->outcome, "limited");
    free_parts(f);
}

static void
test_deny_two_limits_text(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res[3] = {
        { .remaining = 57.9, .retry_ms = 0, .reset_ms = 42000 },
        { .remaining = 0, .retry_ms = 2500, .reset_ms = 60000 },
        { .remaining = 0, .retry_ms = 1200, .reset_ms = 5000 },
    };

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    add_limit(f, "per_key", "global", 6000, 60000, 6000);
    add_limit(f, "odd \"name\"", "method", 0.5, 1000, 1);
    start(f);
    fake_store_script(f->store, false, res, 3);
    check(f);
    assert_int_equal(f->retry_after_s, 3); /* the worst refusing bucket, 2.5 s */
    /* every t is capped at Retry-After (draft section 6) */
    assert_string_equal(f->out_headers,
                        "Retry-After: 3\r\n"
                        "RateLimit-Policy: \"per_ip\";q=100;w=1, \"per_key\";q=6000;w=60, "
                        "\"odd \\\"name\\\"\";q=1;w=2\r\n"
                        "RateLimit: \"per_ip\";r=57;t=3, \"per_key\";r=0;t=3, "
                        "\"odd \\\"name\\\"\";r=0;t=2\r\n");
    assert_non_null(strstr(f->problem, "\"detail\":\"rate limit exceeded; retry after 3 "
                                       "seconds\""));
    assert_non_null(strstr(f->problem,
                           "\"violated-policies\":[\"per_key\",\"odd \\\"name\\\"\"]}"));
    free_parts(f);
}

static void
test_retry_after_rounding(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint64_t retry_ms;
        unsigned want_s;
    } cases[] = { { 1, 1 }, { 999, 1 }, { 1000, 1 }, { 1001, 2 }, { 2000, 2 }, { 0, 1 } };

    add_limit(f, "l", "ip", 1, 1000, 1);
    start(f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sl_store_result res = { .remaining = 0, .retry_ms = cases[i].retry_ms };
        char want[32];
        fake_store_script(f->store, false, &res, 1);
        check(f);
        assert_int_equal(f->verdict, SL_VERDICT_DENY);
        assert_int_equal(f->retry_after_s, cases[i].want_s);
        snprintf(want, sizeof(want), "Retry-After: %u\r\n", cases[i].want_s);
        assert_memory_equal(f->out_headers, want, strlen(want));
    }
    free_parts(f);
}

static void
test_cost_above_burst(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res = { .remaining = 10, .retry_ms = SL_STORE_RETRY_NEVER,
                                   .reset_ms = 0 };

    add_limit(f, "l", "ip", 10, 1000, 10);
    start(f);
    fake_store_script(f->store, false, &res, 1);
    check(f);
    assert_int_equal(f->retry_after_s, 1); /* not "for ever" */
    assert_string_equal(f->out_headers, "Retry-After: 1\r\n"
                                        "RateLimit-Policy: \"l\";q=10;w=1\r\n"
                                        "RateLimit: \"l\";r=10;t=1\r\n");
    res.remaining = 2;
    res.reset_ms = 8000;
    fake_store_script(f->store, false, &res, 1);
    check(f);
    assert_int_equal(f->retry_after_s, 8);
    free_parts(f);
}

/* ---- delay instead of 429 --------------------------------------------------- */

static void
recheck(struct fixture *f, uint64_t waited_ms)
{
    int before = f->ncalls;

    sl_limiter_recheck(f->limiter, &f->route, &f->req, waited_ms, on_delay_decision, f);
    assert_int_equal(f->ncalls, before + 1);
}

static void
test_delay_waits_then_admits(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result refused = { .remaining = 0, .retry_ms = 300, .reset_ms = 1000 };
    struct sl_store_result ok = { .remaining = 0, .retry_ms = 0, .reset_ms = 1000 };
    size_t l = add_limit(f, "l", "ip", 1, 1000, 1);

    f->limits[l].delay_ms = 500;
    f->cfg.max_delayed = 10;
    start(f);
    fake_store_script(f->store, false, &refused, 1);
    recheck(f, 0);
    assert_int_equal(f->verdict, SL_VERDICT_DELAY);
    assert_int_equal(f->wait_ms, 300);
    assert_string_equal(f->outcome, "delayed");
    assert_int_equal(limit_metric(f, "l", "delayed"), 1);
    assert_int_equal(limit_metric(f, "l", "limited"), 0);
    sl_limiter_delay_end(f->limiter);

    fake_store_script(f->store, true, &ok, 1);
    recheck(f, 300);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_int_equal(limit_metric(f, "l", "admitted"), 1);
    assert_int_equal(limit_metric(f, "l", "delayed"), 1);
    free_parts(f);
}

/* The delay bounds the whole wait, not each one: a second refusal that
 * would take the request past it is a 429. */
static void
test_delay_bounds_the_whole_wait(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result refused = { .remaining = 0, .retry_ms = 300, .reset_ms = 1000 };
    size_t l = add_limit(f, "l", "ip", 1, 1000, 1);

    f->limits[l].delay_ms = 500;
    f->cfg.max_delayed = 10;
    start(f);
    fake_store_script(f->store, false, &refused, 1);
    recheck(f, 200);
    assert_int_equal(f->verdict, SL_VERDICT_DELAY); /* 200 + 300 <= 500 */
    sl_limiter_delay_end(f->limiter);
    assert_int_equal(limit_metric(f, "l", "delayed"), 0); /* counted at the first wait only */
    fake_store_script(f->store, false, &refused, 1);
    recheck(f, 201);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(limit_metric(f, "l", "limited"), 1);
    free_parts(f);
}

/* A limit without a delay that refuses makes it a 429, whatever the others allow. */
static void
test_delay_needs_every_refused_limit(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result refused[2] = {
        { .remaining = 0, .retry_ms = 100, .reset_ms = 1000 },
        { .remaining = 0, .retry_ms = 100, .reset_ms = 1000 },
    };
    size_t a = add_limit(f, "a", "ip", 1, 1000, 1);

    add_limit(f, "b", "global", 1, 1000, 1);
    f->limits[a].delay_ms = 500;
    f->cfg.max_delayed = 10;
    start(f);
    fake_store_script(f->store, false, refused, 2);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    refused[1].retry_ms = 0; /* only the delayed limit refuses */
    fake_store_script(f->store, false, refused, 2);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DELAY);
    sl_limiter_delay_end(f->limiter);
    refused[0].retry_ms = SL_STORE_RETRY_NEVER; /* cost above burst: no wait helps */
    fake_store_script(f->store, false, refused, 2);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    free_parts(f);
}

/* max_delayed waiting requests per worker; past it, 429 at once. */
static void
test_delay_cap(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result refused = { .remaining = 0, .retry_ms = 100, .reset_ms = 1000 };
    size_t l = add_limit(f, "l", "ip", 1, 1000, 1);

    f->limits[l].delay_ms = 500;
    f->cfg.max_delayed = 1;
    start(f);
    fake_store_script(f->store, false, &refused, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DELAY);
    fake_store_script(f->store, false, &refused, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    sl_limiter_delay_end(f->limiter);
    fake_store_script(f->store, false, &refused, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DELAY);
    sl_limiter_delay_end(f->limiter);
    free_parts(f);
}

static void
test_allow_headers(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res = { .remaining = 41.7, .retry_ms = 0, .reset_ms = 1583 };

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    fake_store_script(f->store, true, &res, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->out_headers, "RateLimit-Policy: \"per_ip\";q=100;w=1\r\n"
                                        "RateLimit: \"per_ip\";r=41;t=2\r\n");
    assert_false(f->has_problem);

    f->route.has_ratelimit_headers = false;
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->out_headers, "");
    free_parts(f);
}

static void
test_policy_windows(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "fast", "ip", 10, 100, 10);       /* 10 per 100ms */
    add_limit(f, "hourly", "ip", 1, 3600000, 1);   /* 1 per hour */
    add_limit(f, "odd", "ip", 3, 1500, 3);         /* 3 per 1.5 s */
    start(f);
    check(f);
    assert_non_null(strstr(f->out_headers, "RateLimit-Policy: \"fast\";q=100;w=1, "
                                           "\"hourly\";q=1;w=3600, \"odd\";q=4;w=2\r\n"));
    free_parts(f);
}

/* ---- shadow ---------------------------------------------------------------- */

static void
test_shadow(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "trial", "ip", 1, 1000, 1);
    f->limits[0].is_shadow = true;
    add_limit(f, "real", "ip", 100, 1000, 100);
    start(f);
    check(f);
    /* two calls: the real limits first, then the shadow ones */
    assert_int_equal(f->store->ncalls, 2);
    assert_int_equal(f->store->calls[0].n, 1);
    assert_string_equal(f->store->calls[0].keys[0], "sluice:real:10.0.0.1");
    assert_string_equal(f->store->calls[1].keys[0], "sluice:trial:10.0.0.1");
    assert_string_equal(f->outcome, "admitted");

    check(f); /* the shadow bucket is empty: counted, but admitted */
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->outcome, "shadow_limited");
    /* shadow limits are not advertised */
    assert_null(strstr(f->out_headers, "trial"));
    assert_non_null(strstr(f->out_headers, "\"real\""));
    assert_true(fake_store_tokens(f->store, "sluice:real:10.0.0.1") == 98);

    assert_int_equal(limit_metric(f, "trial", "shadow_limited"), 1);
    assert_int_equal(limit_metric(f, "trial", "admitted"), 1);
    assert_int_equal(limit_metric(f, "trial", "limited"), 0);
    assert_int_equal(decisions(f, "shadow_limited"), 1);
    free_parts(f);
}

static void
test_shadow_skipped_when_denied(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "real", "ip", 1, 1000, 1);
    add_limit(f, "trial", "ip", 1, 1000, 5);
    f->limits[1].is_shadow = true;
    start(f);
    check(f);
    assert_int_equal(f->store->ncalls, 2);
    check(f); /* refused by the real one: the shadow bucket is not touched */
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(f->store->ncalls, 3);
    assert_true(fake_store_tokens(f->store, "sluice:trial:10.0.0.1") == 4);
    free_parts(f);
}

static void
test_shadow_only(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "trial", "ip", 1, 1000, 1);
    f->limits[0].is_shadow = true;
    start(f);
    check(f);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->outcome, "shadow_limited");
    assert_string_equal(f->out_headers, "");
    free_parts(f);
}

/* ---- store failures ------------------------------------------------------------- */

static void
test_on_error_allow(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 1, 1000, 1);
    start(f);
    f->store->fail = SL_STORE_TIMEOUT;
    for (int i = 0; i < 5; i++) {
        check(f);
        assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
        assert_string_equal(f->outcome, "store_error");
        assert_string_equal(f->out_headers, "");
    }
    /* still "up" by its own account: every request tried it */
    assert_int_equal(f->store->ncalls, 5);
    assert_int_equal(count_log_lines(f, "store fake: no reply within the timeout; "
                                        "on_error=allow"), 1);
    assert_true(sl_limiter_is_ready(f->limiter));
    /* one outage: the worker counts as failing, once */
    assert_int_equal(metric(f, "sluice_store_state{state=\"failing\"}"), 1);

    f->store->fail = SL_STORE_OK;
    check(f);
    assert_int_equal(count_log_lines(f, "answering again"), 0); /* within RECOVERY_US */
    f->now_us += RECOVERY_US;
    check(f);
    assert_int_equal(count_log_lines(f, "store fake: answering again"), 1);
    check(f);
    assert_string_equal(f->outcome, "limited");
    assert_int_equal(metric(f, "sluice_store_errors_total{kind=\"timeout\"}"), 5);
    assert_int_equal(metric(f, "sluice_store_state{state=\"failing\"}"), 0);
    assert_int_equal(decisions(f, "store_error"), 5);
    assert_int_equal(limit_metric(f, "per_ip", "store_error"), 5);
    free_parts(f);
}

static void
test_on_error_deny(void **state)
{
    struct fixture *f = *state;

    f->cfg.store.on_error = SL_ON_ERROR_DENY;
    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    f->store->fail = SL_STORE_CONNECTION;
    f->store->is_up = false;
    for (int i = 0; i < 3; i++) {
        check(f);
        assert_int_equal(f->verdict, SL_VERDICT_UNAVAILABLE);
        assert_int_equal(f->retry_after_s, 1);
        assert_string_equal(f->outcome, "store_error");
        assert_string_equal(f->out_headers, "Retry-After: 1\r\n");
        assert_string_equal(f->problem, "{\"type\":\"about:blank\",\"title\":\"Service "
                                        "Unavailable\",\"status\":503,\"detail\":\"the "
                                        "rate-limit store is unavailable; retry after 1 "
                                        "second\"}");
    }
    /* known down and not reconnected: not asked again */
    assert_int_equal(f->store->ncalls, 1);
    assert_false(sl_limiter_is_ready(f->limiter));
    assert_int_equal(count_log_lines(f, "store fake: not connected; on_error=deny"), 1);

    f->store->is_up = true;
    f->store->fail = SL_STORE_OK;
    f->now_us += RECOVERY_US;
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_true(sl_limiter_is_ready(f->limiter));
    assert_int_equal(count_log_lines(f, "answering again"), 1);
    free_parts(f);
}

static void
test_on_error_local(void **state)
{
    struct fixture *f = *state;

    f->cfg.store.on_error = SL_ON_ERROR_LOCAL;
    f->fallback = fake_store_new("local");
    add_limit(f, "per_ip", "ip", 2, 1000, 2);
    add_limit(f, "g", "global", 100, 1000, 100);
    start(f);
    f->store->fail = SL_STORE_REPLY;
    check(f);
    /* the same buckets went to the embedded store */
    assert_int_equal(f->fallback->ncalls, 1);
    assert_int_equal(f->fallback->calls[0].n, 2);
    assert_string_equal(f->fallback->calls[0].keys[0], "sluice:per_ip:10.0.0.1");
    assert_string_equal(f->fallback->calls[0].keys[1], "sluice:g:");
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    assert_string_equal(f->outcome, "admitted");
    assert_non_null(strstr(f->out_headers, "\"per_ip\";r=1;"));

    f->store->is_up = false;
    check(f);
    check(f); /* the local bucket runs out: a real 429 during the outage */
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(f->store->ncalls, 1); /* down: went straight to the fallback */
    assert_int_equal(f->fallback->ncalls, 3);
    assert_int_equal(count_log_lines(f, "store fake: error reply; on_error=local: checking "
                                        "against the embedded store"), 1);
    assert_int_equal(metric(f, "sluice_store_state{state=\"local_fallback\"}"), 1);

    f->store->is_up = true;
    f->store->fail = SL_STORE_OK;
    f->now_us += RECOVERY_US;
    check(f);
    assert_int_equal(f->store->ncalls, 2);
    assert_int_equal(f->fallback->ncalls, 3);
    assert_int_equal(count_log_lines(f, "answering again"), 1);
    assert_int_equal(metric(f, "sluice_store_state{state=\"local_fallback\"}"), 0);
    assert_int_equal(metric(f, "sluice_store_errors_total{kind=\"reply\"}"), 1);
    free_parts(f);
}

/* Buckets the embedded store evicts to stay within max_keys reach the
 * worker's metrics through the limiter, as the checks that caused them end. */
static void
test_local_evictions_metric(void **state)
{
    struct fixture *f = *state;
    struct sl_store_local_table *table = sl_store_local_table_new(2);
    struct sl_limiter *limiter;
    char err[128], ip[16];

    add_limit(f, "per_ip", "ip", 1, 3600000, 1); /* full again only after an hour */
    limiter = sl_limiter_new_with_stores(&f->cfg, sl_store_local_new(table), NULL, f->shared,
                                         err, sizeof(err));
    assert_non_null(limiter);
    f->limit_slots[0] = sl_metrics_slot(f->metrics, SL_METRICS_LIMIT, "per_ip");
    sl_limiter_set_metrics(limiter, sl_metrics_worker(f->metrics, 0), f->limit_slots);
    for (int i = 0; i < 5; i++) {
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        f->req.client_ip = ip;
        f->req.client_ip_len = strlen(ip);
        sl_limiter_check(limiter, &f->route, &f->req, on_decision, f);
        assert_string_equal(f->outcome, "admitted");
    }
    /* five keys into a table of two */
    assert_int_equal(metric(f, "sluice_local_store_evictions_total"), 3);
    sl_limiter_free(limiter);
    sl_store_local_table_free(table);
    free_parts(f);
}

static void
test_transitions_logged_once_across_workers(void **state)
{
    struct fixture *f = *state;
    struct fake_store *other = fake_store_new("fake");
    struct sl_limiter *second;
    char err[128];

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    second = sl_limiter_new_with_stores(&f->cfg, &other->base, NULL, f->shared, err,
                                        sizeof(err));
    assert_non_null(second);
    f->store->fail = SL_STORE_TIMEOUT;
    other->fail = SL_STORE_TIMEOUT;
    check(f);
    sl_limiter_check(second, &f->route, &f->req, on_decision, f);
    check(f);
    assert_int_equal(count_log_lines(f, "no reply within the timeout"), 1);
    f->store->fail = SL_STORE_OK;
    f->now_us += RECOVERY_US;
    check(f);
    assert_int_equal(count_log_lines(f, "answering again"), 0); /* the other is still down */
    other->fail = SL_STORE_OK;
    sl_limiter_check(second, &f->route, &f->req, on_decision, f);
    assert_int_equal(count_log_lines(f, "answering again"), 1);
    sl_limiter_free(second);
    free_parts(f);
}

/* A store failing every other call (slow, not down) is one outage: one line
 * when it starts, one when it has answered for RECOVERY_US without failing. */
static void
test_flapping_store_is_one_outage(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    for (int i = 0; i < 20; i++) {
        f->store->fail = i % 2 == 0 ? SL_STORE_TIMEOUT : SL_STORE_OK;
        check(f);
        f->now_us += 20000;
    }
    assert_int_equal(count_log_lines(f, "no reply within the timeout"), 1);
    assert_int_equal(count_log_lines(f, "answering again"), 0);
    assert_int_equal(metric(f, "sluice_store_errors_total{kind=\"timeout\"}"), 10);
    assert_int_equal(metric(f, "sluice_store_state{state=\"failing\"}"), 1);

    f->store->fail = SL_STORE_OK;
    f->now_us += RECOVERY_US;
    check(f);
    assert_int_equal(count_log_lines(f, "answering again"), 1);
    free_parts(f);
}

/* The request holding the last reference to an old generation frees the
 * limiter from inside its own decision (proxy: request_done -> wgen_unref):
 * the free waits until the callback returns. ASan sees any use after free. */
static void
free_in_decision(void *arg, const struct sl_decision *d)
{
    struct fixture *f = arg;

    on_decision(f, d);
    sl_limiter_free(f->limiter);
    /* the decision's strings stay valid until the callback returns */
    assert_non_null(d->outcome);
    f->limiter = NULL;
}

static void
test_free_inside_decision(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 1, 1000, 1);
    start(f);
    check(f);
    sl_limiter_check(f->limiter, &f->route, &f->req, free_in_decision, f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_null(f->limiter);
    /* the stores went with the limiter: teardown must not free them again */
    f->store = NULL;
    f->fallback = NULL;
    free_parts(f);
}

/* ---- async stores and lifetime ------------------------------------------------- */

static void
test_async_callback_once(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    add_limit(f, "trial", "global", 100, 1000, 100);
    f->limits[1].is_shadow = true;
    start(f);
    f->store->is_async = true;
    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    assert_int_equal(f->ncalls, 0);
    f->now_us += 2500;
    fake_store_flush(f->store); /* enforced answers; shadow calls go out */
    assert_int_equal(f->ncalls, 0);
    assert_int_equal(f->store->npending, 2);
    fake_store_flush(f->store);
    assert_int_equal(f->ncalls, 2);
    assert_true(f->limiter_ms > 2.49 && f->limiter_ms < 2.51);
    fake_store_flush(f->store);
    assert_int_equal(f->ncalls, 2);
    free_parts(f);
}

static void
test_free_completes_pending(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    f->store->is_async = true;
    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    assert_int_equal(f->ncalls, 0);
    sl_limiter_free(f->limiter);
    f->limiter = NULL;
    f->store = NULL;
    assert_int_equal(f->ncalls, 2);
    assert_string_equal(f->outcome, "store_error");
    assert_int_equal(f->verdict, SL_VERDICT_ALLOW);
    /* shutting down is not an outage */
    assert_int_equal(count_log_lines(f, "store fake"), 0);
    free_parts(f);
}

/* A callback that starts the next check, as a pipelining connection would. */
static void
on_decision_chain(void *arg, const struct sl_decision *d)
{
    struct fixture *f = arg;
    const char *headers_before = d->headers;
    char copy[512];

    snprintf(copy, sizeof(copy), "%.*s", (int)d->headers_len, d->headers);
    on_decision(f, d);
    if (f->ncalls == 1)
        sl_limiter_check(f->limiter, &f->route, &f->req, on_decision, f);
    /* the outer decision is untouched by the inner check */
    assert_ptr_equal(d->headers, headers_before);
    assert_memory_equal(d->headers, copy, strlen(copy));
}

static void
test_reentrant_check(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "per_ip", "ip", 100, 1000, 100);
    start(f);
    sl_limiter_check(f->limiter, &f->route, &f->req, on_decision_chain, f);
    assert_int_equal(f->ncalls, 2);
    free_parts(f);
}

/* ---- Lua key and cost functions --------------------------------------------- */

static const char lua_conf[] =
    "limits = {\n"
    "  tenant = { key = function(r) return r.header['x-tenant'] end, rate = 10, per = '1s' },\n"
    "  broken = { key = function(r) return r.nope.field end, rate = 10, per = '1s' },\n"
    "  weighted = { key = 'ip', rate = 100, per = '1s',\n"
    "               cost = function(r) if r.path == '/big' then return 5 end\n"
    "                                  if r.path == '/bad' then error('no') end end },\n"
    "  mixed = { key = { 'ip', function(r) return #r.path end }, rate = 10, per = '1s' },\n"
    "}\n";

static void
setup_lua(struct fixture *f)
{
    size_t i;

    f->cfg.source = (char *)(uintptr_t)lua_conf;
    f->cfg.source_len = strlen(lua_conf);
    add_limit(f, "tenant", "function", 10, 1000, 10);
    add_limit(f, "broken", "function", 10, 1000, 10);
    i = add_limit(f, "weighted", "ip", 100, 1000, 100);
    f->limits[i].is_cost_function = true;
    add_limit(f, "mixed", "ip,function", 10, 1000, 10);
    start(f);
}

static void
test_lua_keys_and_costs(void **state)
{
    struct fixture *f = *state;

    setup_lua(f);
    check(f); /* no tenant header; broken errors; weighted and mixed apply */
    assert_int_equal(f->store->calls[0].n, 2);
    assert_string_equal(last_key(f, 0), "sluice:weighted:10.0.0.1");
    assert_true(f->store->calls[0].costs[0] == 1); /* nil cost: 1 */
    assert_string_equal(last_key(f, 1), "sluice:mixed:10.0.0.1:9");

    add_header(f, "X-Tenant", "acme:eu");
    f->req.path = "/big";
    f->req.path_len = 4;
    check(f);
    assert_int_equal(f->store->calls[1].n, 3);
    assert_string_equal(last_key(f, 0), "sluice:tenant:acme%3Aeu");
    assert_true(f->store->calls[1].costs[1] == 5);

    f->req.path = "/bad";
    check(f); /* an erroring cost function still charges 1 */
    assert_true(f->store->calls[2].costs[1] == 1);

    assert_int_equal(metric(f, "sluice_ratelimit_key_errors_total{limit=\"broken\"}"), 3);
    assert_int_equal(limit_metric(f, "broken", "skipped"), 3);
    assert_int_equal(metric(f, "sluice_ratelimit_key_errors_total{limit=\"weighted\"}"), 1);
    assert_int_equal(limit_metric(f, "tenant", "skipped"), 1);
    /* errors are logged, but not once per request */
    assert_int_equal(count_log_lines(f, "limit \"broken\": key function: test.conf:3:"), 1);
    f->now_us += 11 * 1000000ull;
    check(f);
    assert_int_equal(count_log_lines(f, "limit \"broken\": key function"), 2);
    free_parts(f);
}

static void
test_lua_missing_function(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";

    f->cfg.source = (char *)(uintptr_t)"limits = { tenant = { key = 'ip' } }";
    f->cfg.source_len = strlen(f->cfg.source);
    add_limit(f, "tenant", "function", 10, 1000, 10);
    f->limiter = sl_limiter_new_with_stores(&f->cfg, &f->store->base, NULL, f->shared, err,
                                            sizeof(err));
    assert_null(f->limiter);
    f->store = NULL; /* owned, and freed, by the failed constructor */
    assert_non_null(strstr(err, "limit \"tenant\""));
    free_parts(f);
}

/* ---- deny cache (redis store) -------------------------------------------------- */

static void
test_deny_cache(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res[1] = { { .remaining = 0, .retry_ms = 2500, .reset_ms = 9000 } };
    size_t calls;

    f->cfg.store.kind = SL_STORE_REDIS;
    add_limit(f, "per_ip", "ip", 1, 1000, 1);
    start(f);
    fake_store_script(f->store, false, res, 1);
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(f->retry_after_s, 3);
    calls = f->store->ncalls;

    /* the same client again, 1 s later: refused without asking the store */
    f->now_us += 1000000;
    check(f);
    assert_int_equal(f->verdict, SL_VERDICT_DENY);
    assert_int_equal(f->retry_after_s, 2);
    assert_int_equal(f->store->ncalls, calls);
    assert_non_null(strstr(f->out_headers, "RateLimit: \"per_ip\";r=0;t=2\r\n"));
    assert_non_null(strstr(f->problem, "\"violated-policies\":[\"per_ip\"]"));

    /* another client is not affected */
    f->req.client_ip = "10.0.0.2";
    f->req.client_ip_len = 8;
    check(f);
    assert_int_equal(f->store->ncalls, calls + 1);
    f->req.client_ip = "10.0.0.1";

    /* the cache is per key and cost: a request of another cost asks the store */
    f->limits[0].cost = 2;
    check(f);
    assert_int_equal(f->store->ncalls, calls + 2);
    f->limits[0].cost = 1;

    /* once the wait is over the store decides again */
    f->now_us += 1600000;
    check(f);
    assert_int_equal(f->store->ncalls, calls + 3);
    free_parts(f);
}

static void
test_deny_cache_off_for_local(void **state)
{
    struct fixture *f = *state;
    struct sl_store_result res[1] = { { .remaining = 0, .retry_ms = 2500, .reset_ms = 9000 } };

    add_limit(f, "per_ip", "ip", 1, 1000, 1);
    start(f);
    fake_store_script(f->store, false, res, 1);
    check(f);
    check(f);
    assert_int_equal(f->store->ncalls, 2);
    free_parts(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_ip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_ip_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_cookie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_path_method_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_composite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_hashing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost_static, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_exact_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_two_limits_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_rounding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost_above_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_waits_then_admits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_bounds_the_whole_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_needs_every_refused_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shadow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shadow_skipped_when_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shadow_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_error_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_error_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_error_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transitions_logged_once_across_workers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_local_evictions_metric, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flapping_store_is_one_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_decision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_callback_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_completes_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_keys_and_costs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lua_missing_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_cache_off_for_local, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
