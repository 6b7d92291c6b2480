/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The one reading of key selectors that limits, hash balancing, route
 * consumers and idempotency scopes share: each selector's value from a
 * request, and false where the request lacks it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reqfield.h"
#include "sluice/config.h"
#include "sluice/http.h"

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static const struct sl_header headers[] = {
    H("X-Tenant", "acme"), H("Cookie", "a=1; session=s3"),
};

static struct sl_request
request(void)
{
    struct sl_request req = { 0 };

    req.method = "POST";
    req.method_len = 4;
    req.path = "/v1/orders";
    req.path_len = 10;
    req.query = "page=2&token=t0";
    req.query_len = strlen(req.query);
    req.client_ip = "10.0.0.7";
    req.client_ip_len = 8;
    req.headers = headers;
    req.nheaders = 2;
    return req;
}

static void
expect(const struct sl_request *req, enum sl_key_kind kind, const char *name, const char *want)
{
    struct sl_key_part part = { .kind = kind, .name = (char *)(uintptr_t)name,
                                .name_len = name != NULL ? strlen(name) : 0 };
    const char *v = NULL;
    size_t len = 0;
    bool ok = sl_reqfield_selector(req, &part, &v, &len);

    if (want == NULL) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
}

static void
test_selectors(void **state)
{
    struct sl_request req = request();

    (void)state;
    expect(&req, SL_KEY_IP, NULL, "10.0.0.7");
    expect(&req, SL_KEY_HEADER, "x-tenant", "acme");
    expect(&req, SL_KEY_HEADER, "x-absent", NULL);
    expect(&req, SL_KEY_QUERY, "token", "t0");
    expect(&req, SL_KEY_QUERY, "tok", NULL);
    expect(&req, SL_KEY_COOKIE, "session", "s3");
    expect(&req, SL_KEY_COOKIE, "Session", NULL);
    expect(&req, SL_KEY_PATH, NULL, "/v1/orders");
    expect(&req, SL_KEY_METHOD, NULL, "POST");
    expect(&req, SL_KEY_GLOBAL, NULL, "");
    expect(&req, SL_KEY_FUNCTION, NULL, NULL); /* the limiter's to run */
    req.client_ip_len = 0;
    expect(&req, SL_KEY_IP, NULL, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
