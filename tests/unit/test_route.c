/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* Route selection: host filter, longest prefix, header conditions, and the
 * order between them (include/sluice/route.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/route.h"

static struct sl_route_conf routes[] = {
    { .host = NULL, .path = "/", .path_len = 1, .upstream = 0 },
    { .host = NULL, .path = "/v1/", .path_len = 4, .upstream = 1 },
    { .host = NULL, .path = "/v1/admin", .path_len = 9, .upstream = 2 },
    { .host = "api.example.com", .path = "/v1/", .path_len = 4, .upstream = 3 },
    { .host = "static.example.com", .path = "/img", .path_len = 4, .upstream = 4 },
};

static const struct sl_route_conf *
match(const struct sl_config *cfg, const char *host, const char *path)
{
    return sl_route_match(cfg, host, host ? strlen(host) : 0, path, strlen(path), NULL, 0);
}

static void
test_longest_prefix_wins(void **state)
{
    struct sl_config cfg = { .routes = routes, .nroutes = 5 };

    (void)state;
    assert_int_equal(match(&cfg, "x", "/")->upstream, 0);
    assert_int_equal(match(&cfg, "x", "/v1")->upstream, 0);
    assert_int_equal(match(&cfg, "x", "/v1/users")->upstream, 1);
    assert_int_equal(match(&cfg, "x", "/v1/admin/keys")->upstream, 2);
    assert_int_equal(match(&cfg, NULL, "/v1/admin")->upstream, 2);
}

static void
test_host_match(void **state)
{
    struct sl_config cfg = { .routes = routes, .nroutes = 5 };

    (void)state;
    assert_int_equal(match(&cfg, "api.example.com", "/v1/users")->upstream, 3);
    assert_int_equal(match(&cfg, "API.Example.COM", "/v1/users")->upstream, 3);
    /* a longer host-less prefix still wins over a shorter host route */
    assert_int_equal(match(&cfg, "api.example.com", "/v1/admin/x")->upstream, 2);
    assert_int_equal(match(&cfg, "static.example.com", "/img/a.png")->upstream, 4);
    assert_int_equal(match(&cfg, "other.example.com", "/img/a.png")->upstream, 0);
    assert_int_equal(match(&cfg, "api.example.co", "/v1/x")->upstream, 1);
}

static void
test_no_match(void **state)
{
    struct sl_config cfg = { .routes = routes + 1, .nroutes = 4 };

    (void)state;
    assert_null(match(&cfg, "x", "/"));
    assert_null(match(&cfg, "x", "/v2/users"));
    assert_null(match(&cfg, "static.example.com", "/im"));
}

static struct sl_route_header v1[] = { { "api-version", 11, "2024-01-01", 10 } };
static struct sl_route_header v2[] = { { "api-version", 11, "2024-06-01", 10 } };
static struct sl_route_header v2_beta[] = { { "api-version", 11, "2024-06-01", 10 },
                                            { "x-beta", 6, "1", 1 } };

static struct sl_route_conf versioned[] = {
    { .path = "/", .path_len = 1, .upstream = 0 },
    { .path = "/", .path_len = 1, .upstream = 1, .headers = v1, .nheaders = 1 },
    { .path = "/", .path_len = 1, .upstream = 2, .headers = v2, .nheaders = 1 },
    { .path = "/", .path_len = 1, .upstream = 3, .headers = v2_beta, .nheaders = 2 },
    { .path = "/v3/", .path_len = 4, .upstream = 4 },
    { .host = "api.example.com", .path = "/", .path_len = 1, .upstream = 5 },
};

static const struct sl_route_conf *
match_h(const char *host, const char *path, const struct sl_header *h, size_t n)
{
    static struct sl_config cfg = { .routes = versioned, .nroutes = 6 };
    return sl_route_match(&cfg, host, host ? strlen(host) : 0, path, strlen(path), h, n);
}

#define HDR(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static void
test_header_match(void **state)
{
    struct sl_header h_v1[] = { HDR("Accept", "*/*"), HDR("API-Version", "2024-01-01") };
    struct sl_header h_v2[] = { HDR("api-version", "2024-06-01") };
    struct sl_header h_beta[] = { HDR("X-Beta", "1"), HDR("API-VERSION", "2024-06-01") };
    struct sl_header h_other[] = { HDR("API-Version", "2023-01-01") };
    /* the value is case-sensitive and whole: no prefix, no list splitting */
    struct sl_header h_case[] = { HDR("API-Version", "2024-06-01 "), HDR("Api-Version", "x") };
    struct sl_header h_list[] = { HDR("API-Version", "2024-01-01, 2024-06-01") };
    struct sl_header h_two[] = { HDR("API-Version", "zzz"), HDR("API-Version", "2024-06-01") };

    (void)state;
    assert_int_equal(match_h(NULL, "/x", NULL, 0)->upstream, 0);
    assert_int_equal(match_h(NULL, "/x", h_v1, 2)->upstream, 1);
    assert_int_equal(match_h(NULL, "/x", h_v2, 1)->upstream, 2);
    /* every condition of a route must be met; the route with more wins */
    assert_int_equal(match_h(NULL, "/x", h_beta, 1)->upstream, 0);
    assert_int_equal(match_h(NULL, "/x", h_beta, 2)->upstream, 3);
    assert_int_equal(match_h(NULL, "/x", h_other, 1)->upstream, 0);
    assert_int_equal(match_h(NULL, "/x", h_case, 2)->upstream, 0);
    assert_int_equal(match_h(NULL, "/x", h_list, 1)->upstream, 0);
    /* any field of the name may carry the value */
    assert_int_equal(match_h(NULL, "/x", h_two, 2)->upstream, 2);
}

static void
test_header_precedence(void **state)
{
    struct sl_header h_v2[] = { HDR("API-Version", "2024-06-01") };

    (void)state;
    /* a longer path prefix beats header conditions on a shorter one */
    assert_int_equal(match_h(NULL, "/v3/x", h_v2, 1)->upstream, 4);
    /* on the same prefix, header conditions beat a host */
    assert_int_equal(match_h("api.example.com", "/x", h_v2, 1)->upstream, 2);
    assert_int_equal(match_h("api.example.com", "/x", NULL, 0)->upstream, 5);
}

static void
test_route_name(void **state)
{
    char *name;

    (void)state;
    name = sl_route_name(&versioned[3]);
    assert_string_equal(name, "/;api-version=2024-06-01;x-beta=1");
    free(name);
    name = sl_route_name(&versioned[5]);
    assert_string_equal(name, "api.example.com/");
    free(name);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix_wins),
        cmocka_unit_test(test_host_match),
        cmocka_unit_test(test_no_match),
        cmocka_unit_test(test_header_match),
        cmocka_unit_test(test_header_precedence),
        cmocka_unit_test(test_route_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
