/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The bucket API's pure parts and what it stands on: the query parser, the
 * JSON answers, the admin token (reading the file, the Bearer field, the
 * constant-time comparison), and the embedded store's side of a lookup (a
 * refused check of two buckets takes nothing; a reset makes a bucket full).
 * The HTTP side and Redis are a_bucket_api.py's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "sluice/admin_buckets.h"
#include "sluice/limiter.h"
#include "sluice/store.h"
#include "util/clock.h"
#include "util/token.h"

/* ---- the query ----------------------------------------------------------- */

static void
test_query_ok(void **state)
{
    struct sl_bucket_query q;
    char err[128];

    (void)state;
    assert_int_equal(sl_bucket_query_parse("limit=per_ip&key=10.0.0.1", &q, err, sizeof(err)),
                     0);
    assert_string_equal(q.limit, "per_ip");
    assert_int_equal(q.nvalues, 1);
    assert_int_equal(q.lens[0], 8);
    assert_memory_equal(q.values[0], "10.0.0.1", 8);
    sl_bucket_query_fini(&q);

    /* decoded; '+' stays a plus (base64 keys); several key= in order; empty pairs skipped */
    assert_int_equal(sl_bucket_query_parse("&key=a%3Ab+c%00d&limit=pair&&key=%C3%A9&", &q, err,
                                           sizeof(err)),
                     0);
    assert_string_equal(q.limit, "pair");
    assert_int_equal(q.nvalues, 2);
    assert_int_equal(q.lens[0], 7);
    assert_memory_equal(q.values[0], "a:b+c\0d", 7);
    assert_string_equal(q.values[1], "\xc3\xa9");
    sl_bucket_query_fini(&q);

    /* an empty key value is a value (a "global" key's) */
    assert_int_equal(sl_bucket_query_parse("limit=all&key=", &q, err, sizeof(err)), 0);
    assert_int_equal(q.nvalues, 1);
    assert_int_equal(q.lens[0], 0);
    sl_bucket_query_fini(&q);
    /* no key at all is the limiter's to judge */
    assert_int_equal(sl_bucket_query_parse("limit=all", &q, err, sizeof(err)), 0);
    assert_int_equal(q.nvalues, 0);
    sl_bucket_query_fini(&q);
}

static void
test_query_errors(void **state)
{
    static const struct {
        const char *query;
        const char *err;
    } cases[] = {
        { NULL, "missing parameter limit=" },
        { "", "missing parameter limit=" },
        { "key=1", "missing parameter limit=" },
        { "limit=&key=1", "missing parameter limit=" },
        { "limit=a&limit=b&key=1", "limit= given twice" },
        { "limit=a&key=1&keys=2", "unknown parameter" },
        { "LIMIT=a&key=1", "unknown parameter" },
        { "limit=a&key", "bad value" },
        { "limit=a&key=%4", "bad value" },
        { "limit=a&key=%g0", "bad value" },
        { "limit=a&key=%", "bad value" },
        { "limit=a&key=%ff", "not UTF-8" },
        { "limit=a&key=%C0%80", "not UTF-8" },      /* overlong */
        { "limit=a&key=%ED%A0%80", "not UTF-8" },   /* a surrogate */
        { "limit=a&key=%E2%82", "not UTF-8" },      /* cut short */
        { "limit=a&key=%F4%90%80%80", "not UTF-8" }, /* past U+10FFFF */
    };
    struct sl_bucket_query q;
    char err[128], many[512] = "limit=a";
    char *big;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sl_bucket_query_parse(cases[i].query, &q, err, sizeof(err)), -1);
        if (strstr(err, cases[i].err) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].query, err, cases[i].err);
        assert_null(q.limit);
        assert_int_equal(q.nvalues, 0);
        sl_bucket_query_fini(&q);
    }
    for (int i = 0; i <= SL_BUCKET_KEYS_MAX; i++)
        strcat(many, "&key=x");
    assert_int_equal(sl_bucket_query_parse(many, &q, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many"));
    big = malloc(SL_BUCKET_QUERY_MAX + 16);
    memset(big, 'a', SL_BUCKET_QUERY_MAX + 15);
    memcpy(big, "limit=", 6);
    big[SL_BUCKET_QUERY_MAX + 15] = '\0';
    assert_int_equal(sl_bucket_query_parse(big, &q, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
    free(big);
}

/* ---- JSON ---------------------------------------------------------------- */

static cJSON *
field(cJSON *doc, const char *name)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(doc, name);

    if (f == NULL)
        fail_msg("no field %s", name);
    return f;
}

static void
test_view_json(void **state)
{
    struct sl_bucket_query q;
    char err[128];
    struct sl_bucket_view v = {
        .limit = "per_ip", .store = "redis", .key = "sluice:per_ip:1.2.3.4\"x", .key_len = 21,
        .tokens = 0.25, .burst = 5, .rate = 2, .per_ms = 1500, .cost = 1, .full_ms = 7001,
        .retry_ms = 1001,
    };
    cJSON *doc;
    char *text;

    (void)state;
    assert_int_equal(sl_bucket_query_parse("limit=per_ip&key=1.2.3.4%22", &q, err, sizeof(err)),
                     0);
    text = sl_bucket_view_json(&v, &q);
    doc = cJSON_Parse(text);
    assert_non_null(doc);
    assert_string_equal(field(doc, "limit")->valuestring, "per_ip");
    assert_string_equal(field(doc, "key")->valuestring, "1.2.3.4\"");
    assert_string_equal(field(doc, "store")->valuestring, "redis");
    /* key_len bytes only */
    assert_string_equal(field(doc, "store_key")->valuestring, "sluice:per_ip:1.2.3.4");
    assert_true(field(doc, "tokens")->valuedouble == 0.25);
    assert_true(field(doc, "burst")->valuedouble == 5);
    assert_true(field(doc, "rate")->valuedouble == 2);
    assert_true(field(doc, "per_seconds")->valuedouble == 1.5);
    assert_true(field(doc, "cost")->valuedouble == 1);
    assert_true(field(doc, "seconds_until_full")->valuedouble == 7.001);
    /* rounded up, as Retry-After is */
    assert_true(field(doc, "retry_after")->valuedouble == 2);
    cJSON_Delete(doc);
    free(text);
    sl_bucket_query_fini(&q);

    /* a composite key is a list; a request above the burst never passes: null */
    assert_int_equal(sl_bucket_query_parse("limit=x&key=a&key=b", &q, err, sizeof(err)), 0);
    v.retry_ms = SL_STORE_RETRY_NEVER;
    text = sl_bucket_view_json(&v, &q);
    doc = cJSON_Parse(text);
    assert_true(cJSON_IsArray(field(doc, "key")));
    assert_int_equal(cJSON_GetArraySize(field(doc, "key")), 2);
    assert_string_equal(cJSON_GetArrayItem(field(doc, "key"), 1)->valuestring, "b");
    assert_true(cJSON_IsNull(field(doc, "retry_after")));
    cJSON_Delete(doc);
    free(text);
    sl_bucket_query_fini(&q);

    v.retry_ms = 0;
    assert_int_equal(sl_bucket_query_parse("limit=x&key=a", &q, err, sizeof(err)), 0);
    text = sl_bucket_view_json(&v, &q);
    doc = cJSON_Parse(text);
    assert_true(field(doc, "retry_after")->valuedouble == 0);
    cJSON_Delete(doc);
    free(text);
    sl_bucket_query_fini(&q);
}

static void
test_problem_json(void **state)
{
    char *text = sl_admin_problem_json(404, "Not Found", "no \"x\"\n");
    cJSON *doc = cJSON_Parse(text);

    (void)state;
    assert_non_null(doc);
    assert_string_equal(field(doc, "type")->valuestring, "about:blank");
    assert_string_equal(field(doc, "title")->valuestring, "Not Found");
    assert_int_equal(field(doc, "status")->valueint, 404);
    assert_string_equal(field(doc, "detail")->valuestring, "no \"x\"\n");
    cJSON_Delete(doc);
    free(text);
}

/* ---- the token ----------------------------------------------------------- */

static char tmp_path[64];

static const char *
write_tmp(const char *data, size_t len)
{
    int fd;

    snprintf(tmp_path, sizeof(tmp_path), "/tmp/sl-token-XXXXXX");
    fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

static int
read_tmp(const char *data, size_t len, uint8_t digest[SL_SHA256_LEN], char *err, size_t size)
{
    int rc = sl_token_read(write_tmp(data, len), digest, err, size);

    unlink(tmp_path);
    return rc;
}

static void
test_token_read(void **state)
{
    uint8_t digest[SL_SHA256_LEN], want[SL_SHA256_LEN];
    char err[160], *big;

    (void)state;
    sl_sha256("s3cret-Token_1", 14, want);
    assert_int_equal(read_tmp("s3cret-Token_1\n", 15, digest, err, sizeof(err)), 0);
    assert_memory_equal(digest, want, SL_SHA256_LEN);
    assert_int_equal(read_tmp(" \ts3cret-Token_1\r\n\n", 19, digest, err, sizeof(err)), 0);
    assert_memory_equal(digest, want, SL_SHA256_LEN);

    assert_int_equal(read_tmp("", 0, digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no token"));
    assert_int_equal(read_tmp(" \n\n", 3, digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no token"));
    assert_int_equal(read_tmp("two words\n", 10, digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "0x20"));
    assert_int_equal(read_tmp("a\nb\n", 4, digest, err, sizeof(err)), -1);
    assert_int_equal(read_tmp("caf\xc3\xa9", 5, digest, err, sizeof(err)), -1);
    assert_int_equal(read_tmp("x\0y", 3, digest, err, sizeof(err)), -1);

    big = malloc(SL_TOKEN_MAX + 2);
    memset(big, 'k', SL_TOKEN_MAX + 1);
    assert_int_equal(read_tmp(big, SL_TOKEN_MAX, digest, err, sizeof(err)), 0);
    assert_int_equal(read_tmp(big, SL_TOKEN_MAX + 1, digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than"));
    free(big);

    assert_int_equal(sl_token_read("/nonexistent/sl.token", digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(sl_token_read("/tmp", digest, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read"));
}

static void
test_token_compare(void **state)
{
    uint8_t digest[SL_SHA256_LEN];
    uint8_t a[4] = { 1, 2, 3, 4 }, b[4] = { 1, 2, 3, 4 };

    (void)state;
    assert_true(sl_token_equal(a, b, 4));
    assert_true(sl_token_equal(a, b, 0));
    for (int i = 0; i < 4; i++) {
        b[i] ^= 0x80;
        assert_false(sl_token_equal(a, b, 4));
        b[i] ^= 0x80;
    }
    sl_sha256("abc", 3, digest);
    assert_true(sl_token_matches("abc", 3, digest));
    assert_false(sl_token_matches("abd", 3, digest));
    assert_false(sl_token_matches("ab", 2, digest));
    assert_false(sl_token_matches("abcd", 4, digest));
    assert_false(sl_token_matches("", 0, digest));
}

static void
test_token_bearer(void **state)
{
    const char *token;
    size_t len;

    (void)state;
    assert_true(sl_token_from_bearer("Bearer abc", &token, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(token, "abc", 3);
    assert_true(sl_token_from_bearer("bEARER   abc \t", &token, &len));
    assert_int_equal(len, 3);
    assert_false(sl_token_from_bearer(NULL, &token, &len));
    assert_false(sl_token_from_bearer("", &token, &len));
    assert_false(sl_token_from_bearer("Bearer", &token, &len));
    assert_false(sl_token_from_bearer("Bearer ", &token, &len));
    assert_false(sl_token_from_bearer("Bearerabc", &token, &len));
    assert_false(sl_token_from_bearer("Basic abc", &token, &len));
    assert_false(sl_token_from_bearer("abc", &token, &len));
}

/* ---- the embedded store's side of a lookup -------------------------------- */

static uint64_t now_us;

struct outcome {
    int ncalls;
    enum sl_store_status status;
    bool is_admitted;
    size_t n;
    struct sl_store_result res[2];
};

static void
on_result(void *arg, enum sl_store_status status, bool is_admitted,
          const struct sl_store_result *results, size_t nresults)
{
    struct outcome *o = arg;

    o->ncalls++;
    o->status = status;
    o->is_admitted = is_admitted;
    o->n = nresults;
    if (status == SL_STORE_OK && nresults > 0 && nresults <= 2)
        memcpy(o->res, results, nresults * sizeof(*results));
}

/* What limiter_bucket.c sends: the same key, first at a cost above the
 * burst (refused at once), then at one request's cost. */
static struct outcome
look(struct sl_store *s, const char *key)
{
    struct sl_store_bucket b = { .key = key, .key_len = strlen(key), .rate = 1,
                                 .per_ms = 60000, .burst = 3 };
    struct sl_store_bucket two[2] = { b, b };
    struct outcome o = { 0 };

    two[0].cost = 4;
    two[1].cost = 1;
    sl_store_check(s, two, 2, on_result, &o);
    assert_int_equal(o.ncalls, 1);
    assert_int_equal(o.status, SL_STORE_OK);
    assert_false(o.is_admitted);
    assert_int_equal(o.n, 2);
    return o;
}

static bool
take(struct sl_store *s, const char *key)
{
    struct sl_store_bucket b = { .key = key, .key_len = strlen(key), .rate = 1,
                                 .per_ms = 60000, .burst = 3, .cost = 1 };
    struct outcome o = { 0 };

    sl_store_check(s, &b, 1, on_result, &o);
    assert_int_equal(o.status, SL_STORE_OK);
    return o.is_admitted;
}

static void
test_local_look_and_reset(void **state)
{
    struct sl_store_local_table *t = sl_store_local_table_new(100);
    struct sl_store *s = sl_store_local_new(t);
    struct outcome o;

    (void)state;
    now_us = 7000000000ull;
    sl_clock_set_fake(&now_us);
    o = look(s, "k");
    assert_true(o.res[1].remaining == 3); /* never used: full */
    assert_int_equal(o.res[1].retry_ms, 0);
    assert_int_equal(o.res[1].reset_ms, 0);
    assert_int_equal(o.res[0].retry_ms, SL_STORE_RETRY_NEVER);
    assert_true(take(s, "k") && take(s, "k") && take(s, "k"));
    for (int i = 0; i < 5; i++) {
        o = look(s, "k");
        assert_true(o.res[1].remaining == 0); /* looking took nothing */
        assert_int_equal(o.res[1].retry_ms, 60000);
        assert_int_equal(o.res[1].reset_ms, 180000);
    }
    assert_false(take(s, "k"));

    o.ncalls = 0;
    sl_store_reset(s, "k", 1, on_result, &o);
    assert_int_equal(o.ncalls, 1);
    assert_int_equal(o.status, SL_STORE_OK);
    assert_true(o.is_admitted);
    o = look(s, "k");
    assert_true(o.res[1].remaining == 3);
    assert_true(take(s, "k"));
    /* a reset of a key never used is fine too */
    o.ncalls = 0;
    sl_store_reset(s, "other", 5, on_result, &o);
    assert_int_equal(o.ncalls, 1);
    assert_int_equal(o.status, SL_STORE_OK);
    sl_clock_set_fake(NULL);
    sl_store_free(s);
    sl_store_local_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_ok),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_view_json),
        cmocka_unit_test(test_problem_json),
        cmocka_unit_test(test_token_read),
        cmocka_unit_test(test_token_compare),
        cmocka_unit_test(test_token_bearer),
        cmocka_unit_test(test_local_look_and_reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
