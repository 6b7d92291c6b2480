/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * sl_config_load_within (issue 12, point 3): time spent inside C, where the
 * instruction budget cannot see it, is bounded too. A pattern that
 * backtracks and a loop of slow string calls are refused with the bound's
 * message; a good conf, with its included files, loads through the child.
 * Bounds here are short (300 ms) so that the test is quick; none of the
 * assertions is about how long anything took.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"

static char dir[PATH_MAX];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-bound-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char base[] = "listen = \"127.0.0.1:8080\"\n"
                           "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
                           "routes = { { path = \"/\", upstream = \"api\" } }\n";

static void
write_conf(const char *path, const char *extra)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(base, f);
    fputs(extra, f);
    fclose(f);
}

static void
expect_refused(const char *extra)
{
    char path[PATH_MAX + 16], want[PATH_MAX + 64];
    char *errors = NULL;

    snprintf(path, sizeof(path), "%s/slow.conf", dir);
    write_conf(path, extra);
    assert_null(sl_config_load_within(path, 300, &errors));
    assert_non_null(errors);
    snprintf(want, sizeof(want), "%s: conf still running after 300 ms, refused", path);
    if (strncmp(errors, want, strlen(want)) != 0)
        fail_msg("want %s..., got %s", want, errors);
    free(errors);
}

/* The conf of issue 12: backtracking inside string.find, no Lua instruction
 * runs while it does (it takes tens of seconds unbounded). */
static void
test_backtracking_refused(void **state)
{
    (void)state;
    expect_refused("local s = string.rep(\"a\", 30) .. \"b\"\n"
                   "local found = s:find(string.rep(\"a*\", 10) .. \"c\")\n");
}

/* Few instructions, each a long C call: within the instruction budget. */
static void
test_slow_calls_refused(void **state)
{
    (void)state;
    expect_refused("local s = string.rep(\"a\", 10000000)\n"
                   "for i = 1, 100000 do local u = s:upper() end\n");
}

/* A good conf and its included file come back through the child; errors
 * keep their file:line. */
static void
test_good_and_bad_confs(void **state)
{
    char path[PATH_MAX + 16], inc[PATH_MAX + 16], want[PATH_MAX + 64];
    struct sl_config *cfg;
    char *errors = NULL;
    FILE *f;
    (void)state;

    snprintf(path, sizeof(path), "%s/good.conf", dir);
    snprintf(inc, sizeof(inc), "%s/inc.lua", dir);
    f = fopen(inc, "w");
    assert_non_null(f);
    fputs("workers = 3\nlimits = { l = { key = function(r) return r.ip end, rate = 1 } }\n", f);
    fclose(f);
    write_conf(path, "include(\"inc.lua\")\n");
    cfg = sl_config_load_within(path, SL_CONFIG_TIME_MAX_MS, &errors);
    if (cfg == NULL)
        fail_msg("%s", errors);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->nfiles, 1);
    assert_string_equal(cfg->files[0].source, "workers = 3\nlimits = { l = { key = function(r) "
                                              "return r.ip end, rate = 1 } }\n");
    assert_int_equal(cfg->nincludes, 1);
    assert_true(cfg->limits[0].parts[0].kind == SL_KEY_FUNCTION);
    sl_config_free(cfg);

    f = fopen(inc, "w");
    assert_non_null(f);
    fputs("\nworkers = 0\n", f);
    fclose(f);
    assert_null(sl_config_load_within(path, SL_CONFIG_TIME_MAX_MS, &errors));
    snprintf(want, sizeof(want), "%s:2: workers 0", inc);
    if (strncmp(errors, want, strlen(want)) != 0)
        fail_msg("want %s..., got %s", want, errors);
    free(errors);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backtracking_refused),
        cmocka_unit_test(test_slow_calls_refused),
        cmocka_unit_test(test_good_and_bad_confs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
