/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The cache's HTTP rules (src/cache_http.c): Cache-Control directives,
 * HTTP dates, freshness and age on arrival, storable statuses, the cache
 * key, Vary names and variant keys, If-None-Match; and the purge body of
 * the admin endpoint (src/admin_cache.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache_http.h"
#include "sluice/admin_cache.h"
#include "sluice/http.h"

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static void
test_cache_control(void **state)
{
    struct sl_header h[] = {
        H("Cache-Control", "public, max-age=60, s-maxage=\"120\""),
        H("cache-control", "stale-while-revalidate=10,stale-if-error=300 , no-cache=\"a, b\""),
        H("X-Other", "no-store"),
    };
    struct sl_cc cc;

    (void)state;
    sl_cc_parse(h, 3, &cc);
    assert_true(cc.is_public);
    assert_int_equal(cc.max_age_s, 60);
    assert_int_equal(cc.s_maxage_s, 120);
    assert_int_equal(cc.swr_s, 10);
    assert_int_equal(cc.sie_s, 300);
    assert_true(cc.no_cache);
    assert_false(cc.no_store);
    assert_false(cc.is_private);

    struct sl_header p[] = { H("Cache-Control", "private=\"set-cookie\", NO-STORE, max-age=x") };
    sl_cc_parse(p, 1, &cc);
    assert_true(cc.is_private);
    assert_true(cc.no_store);
    assert_int_equal(cc.max_age_s, -1); /* not a number: as if absent */

    struct sl_header big[] = { H("Cache-Control", "max-age=99999999999999999999") };
    sl_cc_parse(big, 1, &cc);
    assert_int_equal(cc.max_age_s, 2147483648LL);
}

static void
test_dates(void **state)
{
    (void)state;
    assert_int_equal(sl_http_date_parse(SL_LIT("Sun, 06 Nov 1994 08:49:37 GMT")), 784111777);
    assert_int_equal(sl_http_date_parse(SL_LIT("Sunday, 06-Nov-94 08:49:37 GMT")), 784111777);
    assert_int_equal(sl_http_date_parse(SL_LIT("Sun Nov  6 08:49:37 1994")), 784111777);
    assert_int_equal(sl_http_date_parse(SL_LIT("0")), -1);
    assert_int_equal(sl_http_date_parse(SL_LIT("Sun, 06 Nov 1994 08:49:37 GMT junk")), -1);
    assert_int_equal(sl_http_date_parse(SL_LIT("Sun, 06 Foo 1994 08:49:37 GMT")), -1);
    assert_int_equal(sl_http_date_parse(SL_LIT("")), -1);
}

static void
test_freshness(void **state)
{
    struct sl_cc cc;
    uint64_t age;

    (void)state;
    {
        struct sl_header h[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                                 H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT"), H("Age", "5") };
        sl_cc_parse(h, 3, &cc);
        /* Expires - Date; age: the larger of Age and now - Date */
        assert_int_equal(sl_cache_freshness_ms(200, h, 3, &cc, 784111777 + 2, 9000, &age),
                         60000);
        assert_int_equal(age, 5);
        assert_int_equal(sl_cache_freshness_ms(200, h, 3, &cc, 784111777 + 30, 9000, &age),
                         60000);
        assert_int_equal(age, 30);
    }
    {
        struct sl_header h[] = { H("Cache-Control", "max-age=10, s-maxage=20"),
                                 H("Expires", "0") };
        sl_cc_parse(h, 2, &cc);
        assert_int_equal(sl_cache_freshness_ms(200, h, 2, &cc, 1000, 9000, &age), 20000);
    }
    {
        struct sl_header h[] = { H("Expires", "0") }; /* invalid: already expired */
        sl_cc_parse(h, 1, &cc);
        assert_int_equal(sl_cache_freshness_ms(200, h, 1, &cc, 1000, 9000, &age), 0);
    }
    {
        struct sl_header h[] = { H("Content-Type", "text/plain") };
        sl_cc_parse(h, 1, &cc);
        assert_int_equal(sl_cache_freshness_ms(200, h, 1, &cc, 1000, 9000, &age), 9000);
        assert_int_equal(sl_cache_freshness_ms(404, h, 1, &cc, 1000, 9000, &age), 9000);
        assert_int_equal(sl_cache_freshness_ms(302, h, 1, &cc, 1000, 9000, &age), 0);
    }
}

static void
test_statuses(void **state)
{
    (void)state;
    assert_true(sl_cache_status_storable(200, false));
    assert_true(sl_cache_status_storable(404, false));
    assert_true(sl_cache_status_storable(501, false));
    assert_false(sl_cache_status_storable(302, false));
    assert_true(sl_cache_status_storable(302, true));
    assert_false(sl_cache_status_storable(500, true));
    assert_false(sl_cache_status_storable(503, false));
    assert_false(sl_cache_status_storable(206, true));
    assert_false(sl_cache_status_storable(304, true));
    assert_false(sl_cache_status_storable(100, true));
}

static void
test_keys(void **state)
{
    struct sl_header rh[] = { H("Accept-Language", "en"), H("X-A", "1"), H("x-a", "2") };
    struct sl_request req;
    size_t len, vlen;
    char *key, *vkey;

    (void)state;
    memset(&req, 0, sizeof(req));
    req.host = "API.Example.com";
    req.host_len = strlen(req.host);
    req.path = "/v1/items";
    req.path_len = strlen(req.path);
    req.query = "b=2&a=1";
    req.query_len = strlen(req.query);
    req.headers = rh;
    req.nheaders = 3;
    key = sl_cache_key(&req, &len);
    assert_string_equal(key, "api.example.com/v1/items?b=2&a=1");
    assert_int_equal(len, strlen(key));

    vkey = sl_cache_variant_key(key, len, SL_LIT("accept-language\nx-a\nx-none"), &req, &vlen);
    assert_int_equal(vlen, len + 1 + strlen("accept-language:en\nx-a:1,2\nx-none:\n"));
    assert_int_equal(vkey[len], '\0');
    assert_memory_equal(vkey + len + 1, "accept-language:en\nx-a:1,2\nx-none:\n", vlen - len - 1);
    free(vkey);
    free(key);

    req.host = NULL;
    req.query = NULL;
    key = sl_cache_key(&req, &len);
    assert_string_equal(key, "/v1/items");
    free(key);
}

static void
test_vary_names(void **state)
{
    struct sl_header h[] = { H("Vary", "Accept-Encoding, Accept-Language"), H("vary", "X-Tenant") };
    struct sl_header star[] = { H("Vary", "Accept, *") };
    bool is_star;
    size_t len;
    char *names;

    (void)state;
    names = sl_cache_vary_names(h, 2, &len, &is_star);
    assert_string_equal(names, "accept-encoding\naccept-language\nx-tenant");
    assert_false(is_star);
    free(names);
    names = sl_cache_vary_names(star, 1, &len, &is_star);
    assert_true(is_star);
    free(names);
    names = sl_cache_vary_names(h, 0, &len, &is_star);
    assert_null(names);
}

static void
test_etags(void **state)
{
    (void)state;
    assert_true(sl_cache_etag_match(SL_LIT("\"a\""), SL_LIT("\"a\"")));
    assert_true(sl_cache_etag_match(SL_LIT("W/\"a\""), SL_LIT("\"a\"")));
    assert_true(sl_cache_etag_match(SL_LIT("\"b\", W/\"a\""), SL_LIT("W/\"a\"")));
    assert_true(sl_cache_etag_match(SL_LIT("*"), SL_LIT("\"z\"")));
    assert_false(sl_cache_etag_match(SL_LIT("\"b\""), SL_LIT("\"a\"")));
    assert_false(sl_cache_etag_match(SL_LIT("\"a,b\""), SL_LIT("\"a\"")));
    assert_false(sl_cache_etag_match(SL_LIT("\"a\""), NULL, 0));
    assert_false(sl_cache_etag_match(SL_LIT(""), SL_LIT("\"a\"")));
}

static void
test_purge_body(void **state)
{
    char err[160];
    char *v;
    size_t len;
    int is_prefix;

    (void)state;
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"key\": \"h/a?x=1\"}"), &v, &len,
                                          &is_prefix, err, sizeof(err)), 0);
    assert_string_equal(v, "h/a?x=1");
    assert_int_equal(len, 7);
    assert_false(is_prefix);
    free(v);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"prefix\": \"h/\"}"), &v, &len, &is_prefix,
                                          err, sizeof(err)), 0);
    assert_true(is_prefix);
    free(v);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"key\": \"a\", \"prefix\": \"b\"}"), &v,
                                          &len, &is_prefix, err, sizeof(err)), -1);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"key\": \"\"}"), &v, &len, &is_prefix, err,
                                          sizeof(err)), -1);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"key\": 5}"), &v, &len, &is_prefix, err,
                                          sizeof(err)), -1);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("[1]"), &v, &len, &is_prefix, err,
                                          sizeof(err)), -1);
    assert_int_equal(sl_admin_cache_parse(SL_LIT("{\"key\": \"a\", \"x\": 1}"), &v, &len,
                                          &is_prefix, err, sizeof(err)), -1);
    assert_int_equal(sl_admin_cache_parse(NULL, 0, &v, &len, &is_prefix, err, sizeof(err)), -1);
    assert_null(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_control), cmocka_unit_test(test_dates),
        cmocka_unit_test(test_freshness),     cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_keys),          cmocka_unit_test(test_vary_names),
        cmocka_unit_test(test_etags),         cmocka_unit_test(test_purge_body),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
