/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * An upstream's health table (src/config_health.c): the defaults without
 * one, every key read, and each bad value refused with its file:line and a
 * message that says what to write instead.
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

static char dir[64];
static char path[128];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-health-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/sluice.conf", dir);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

/* The health table `health` (Lua text, NULL: none) of upstream api, on line 3. */
static struct sl_config *
load(const char *health, char **errors)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fprintf(fp, "listen = \"127.0.0.1:8080\"\n"
                "upstreams = { api = { servers = \"127.0.0.1:9000\",\n"
                "  health = %s } }\n"
                "routes = { { path = \"/\", upstream = \"api\" } }\n",
            health != NULL ? health : "nil");
    fclose(fp);
    *errors = NULL;
    return sl_config_load(path, errors);
}

static void
test_defaults(void **state)
{
    char *errors;
    struct sl_config *cfg = load(NULL, &errors);
    const struct sl_health_conf *hc;
    (void)state;

    assert_non_null(cfg);
    hc = &cfg->upstreams[0].health;
    assert_null(hc->path); /* no active checks unless asked */
    assert_int_equal(hc->interval_ms, 2000);
    assert_int_equal(hc->timeout_ms, 1000);
    assert_int_equal(hc->fails, 3);
    assert_int_equal(hc->passes, 2);
    assert_int_equal(hc->max_fails, 1);
    assert_int_equal(hc->fail_timeout_ms, 2000);
    assert_int_equal(hc->max_fail_timeout_ms, 30000);
    assert_false(hc->is_passive_5xx);
    sl_config_free(cfg);
}

static void
test_every_key(void **state)
{
    char *errors;
    struct sl_config *cfg =
        load("{ path = \"/healthz\", interval = \"5s\", timeout = \"250ms\", fails = 4, "
             "passes = 1, max_fails = 0, fail_timeout = \"10s\", max_fail_timeout = \"5m\", "
             "passive_5xx = true }",
             &errors);
    const struct sl_health_conf *hc;
    (void)state;

    if (cfg == NULL)
        fail_msg("%s", errors);
    hc = &cfg->upstreams[0].health;
    assert_string_equal(hc->path, "/healthz");
    assert_int_equal(hc->interval_ms, 5000);
    assert_int_equal(hc->timeout_ms, 250);
    assert_int_equal(hc->fails, 4);
    assert_int_equal(hc->passes, 1);
    assert_int_equal(hc->max_fails, 0);
    assert_int_equal(hc->fail_timeout_ms, 10000);
    assert_int_equal(hc->max_fail_timeout_ms, 300000);
    assert_true(hc->is_passive_5xx);
    sl_config_free(cfg);

    /* passive keys alone: no active check */
    cfg = load("{ max_fails = 3, passive_5xx = true }", &errors);
    assert_non_null(cfg);
    assert_null(cfg->upstreams[0].health.path);
    assert_int_equal(cfg->upstreams[0].health.max_fails, 3);
    sl_config_free(cfg);
}

static void
expect_error(const char *health, const char *phrase)
{
    char *errors, want[256];
    struct sl_config *cfg = load(health, &errors);

    if (cfg != NULL) {
        sl_config_free(cfg);
        fail_msg("health = %s should not load", health);
    }
    snprintf(want, sizeof(want), "%s:3: ", path);
    if (errors == NULL || strstr(errors, want) == NULL || strstr(errors, phrase) == NULL)
        fail_msg("health = %s: want \"%s...%s\", got %s", health, want, phrase,
                 errors ? errors : "(null)");
    free(errors);
}

static void
test_errors(void **state)
{
    (void)state;
    expect_error("{ path = \"healthz\" }", "path \"healthz\": the check's path must start");
    expect_error("{ path = \"/a b\" }", "byte 3 is not allowed in a request path");
    expect_error("{ path = \"/a\\r\\nX: y\" }", "not allowed in a request path");
    expect_error("{ path = \"\" }", "path");
    expect_error("{ path = \"/h\", interval = \"0s\" }", "interval \"0s\": must be between");
    expect_error("{ path = \"/h\", fails = 0 }", "fails 0: must be between 1 and");
    expect_error("{ path = \"/h\", passes = 0 }", "passes 0: must be between 1 and");
    expect_error("{ path = \"/h\", interval = \"1s\", timeout = \"2s\" }",
                 "timeout \"2s\" is longer than interval \"1s\"");
    expect_error("{ interval = \"1s\" }", "interval, timeout, fails and passes are for active "
                                          "checks: add path");
    expect_error("{ fail_timeout = \"1m\" }", "max_fail_timeout \"30s\" is shorter than "
                                              "fail_timeout \"1m\"");
    expect_error("{ path = \"/h\", max_fail = 3 }", "unknown key \"max_fail\" in upstream "
                                                   "\"api\" health");
    expect_error("{ passive_5xx = \"yes\" }", "passive_5xx");
    /* every error is reported, not only the first */
    expect_error("{ path = \"h\", interval = \"1s\", timeout = \"2s\" }",
                 "timeout \"2s\" is longer than interval \"1s\"");
    expect_error("\"/healthz\"", "health: expected a table");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
