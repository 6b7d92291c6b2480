/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* Route selection: host filter, longest prefix, host-specific beats host-less. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/config.h"
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
    return sl_route_match(cfg, host, host ? strlen(host) : 0, path, strlen(path));
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix_wins),
        cmocka_unit_test(test_host_match),
        cmocka_unit_test(test_no_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
