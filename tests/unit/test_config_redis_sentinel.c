/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * config_redis_sentinel: store.sentinel (user, password_file read at load),
 * every refusal at the file:line of the store table, the table only with a
 * redis-sentinel:// url, the secret never in an error nor in `sluice -T`.
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

#define SECRET "s3ntinel-hunter2"
#define URL "redis-sentinel://10.0.0.1,10.0.0.2:26380/mymaster/1"

static char dir[PATH_MAX];
static char pw_path[PATH_MAX + 16];

static int
setup(void **state)
{
    FILE *f;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-sentinel-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(pw_path, sizeof(pw_path), "%s/pw", dir);
    f = fopen(pw_path, "w");
    if (f == NULL)
        return -1;
    fputs(SECRET "\n", f);
    return fclose(f);
}

static int
teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads a conf whose store table is `store` (line 2); the errors or NULL. */
static char *
load(const char *store, struct sl_config **out)
{
    char text[PATH_MAX + 1024], path[PATH_MAX + 16];
    char *errors = NULL;
    struct sl_config *cfg;
    FILE *f;

    snprintf(text, sizeof(text),
             "listen = \"127.0.0.1:8080\"\n"
             "store = %s\n"
             "upstreams = { api = { servers = { \"127.0.0.1:9000\" } } }\n"
             "routes = { { path = \"/\", upstream = \"api\" } }\n", store);
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    cfg = sl_config_load(path, &errors);
    if (out != NULL)
        *out = cfg;
    else
        sl_config_free(cfg);
    return errors;
}

static void
expect_error(const char *store, const char *want)
{
    char *errors = load(store, NULL);

    if (errors == NULL)
        fail_msg("%s: accepted", store);
    if (strstr(errors, want) == NULL)
        fail_msg("%s: errors \"%s\" lack \"%s\"", store, errors, want);
    if (strstr(errors, "t.conf:2: ") == NULL)
        fail_msg("%s: errors \"%s\" lack the file:line", store, errors);
    if (strstr(errors, SECRET) != NULL || strstr(errors, "hunter2") != NULL)
        fail_msg("%s: errors quote the secret: %s", store, errors);
    free(errors);
}

static void
test_accepted(void **state)
{
    char store[PATH_MAX + 256];
    struct sl_config *cfg;
    char *errors;

    (void)state;
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"" URL "\", "
             "sentinel = { user = \"sl\", password_file = \"%s\" } }", pw_path);
    errors = load(store, &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_true(cfg->store.sentinel.is_set);
    assert_string_equal(cfg->store.sentinel.user, "sl");
    assert_string_equal(cfg->store.sentinel.password_file, pw_path);
    assert_string_equal(cfg->store.sentinel.password, SECRET);
    sl_config_free(cfg);
    /* no table: sentinels without AUTH */
    errors = load("{ kind = \"redis\", url = \"" URL "\" }", &cfg);
    assert_null(errors);
    assert_false(cfg->store.sentinel.is_set);
    assert_null(cfg->store.sentinel.password);
    sl_config_free(cfg);
}

static void
test_refused(void **state)
{
    char store[PATH_MAX + 256];

    (void)state;
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis://127.0.0.1\", "
             "sentinel = { password_file = \"%s\" } }", pw_path);
    expect_error(store, "sentinel is for a redis-sentinel:// url");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis-cluster://10.0.0.1,"
             "10.0.0.2\", sentinel = { password_file = \"%s\" } }", pw_path);
    expect_error(store, "sentinel is for a redis-sentinel:// url (a cluster url finds its nodes");
    expect_error("{ kind = \"redis\", url = \"" URL "\", sentinel = { user = \"sl\" } }",
                 "sentinel: user without a password (set password_file)");
    expect_error("{ kind = \"redis\", url = \"" URL "\", sentinel = { password = \"x\" } }",
                 "password");
    expect_error("{ kind = \"redis\", url = \"" URL "\", sentinel = \"10.0.0.1\" }",
                 "a table");
    expect_error("{ kind = \"redis\", url = \"" URL "\", sentinel = { password_file = "
                 "\"/nonexistent/pw\" } }", "cannot read it");
    expect_error("{ kind = \"redis\", url = \"redis-sentinel://:hunter2@10.0.0.1:0/m\" }",
                 "url \"redis-sentinel://:********@10.0.0.1:0/m\": bad port");
    expect_error("{ kind = \"redis\", url = \"redis-sentinel://10.0.0.1\" }",
                 "missing or bad master name");
}

static char *
dump(const char *store)
{
    struct sl_config *cfg;
    char *text = NULL, *errors, err[256];
    size_t len = 0;
    FILE *out;

    errors = load(store, &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    out = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, out, err, sizeof(err)), 0);
    fclose(out);
    sl_config_free(cfg);
    return text;
}

/* sluice -T: the url masked, the file's name, never the passwords. */
static void
test_dump(void **state)
{
    char store[PATH_MAX + 256], *text;

    (void)state;
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = "
             "\"redis-sentinel://:hunter2@10.0.0.1/m\", sentinel = { password_file = \"%s\" } }",
             pw_path);
    text = dump(store);
    assert_non_null(strstr(text, "url = \"redis-sentinel://:********@10.0.0.1/m\""));
    assert_non_null(strstr(text, "  sentinel = {\n    -- user: none"));
    assert_non_null(strstr(text, pw_path));
    assert_null(strstr(text, SECRET));
    assert_null(strstr(text, "hunter2"));
    free(text);
    text = dump("{ kind = \"redis\", url = \"" URL "\" }");
    assert_non_null(strstr(text, "    -- password_file: none (the sentinels take no AUTH)"));
    free(text);
    text = dump("{ kind = \"redis\", url = \"redis://127.0.0.1\" }");
    assert_non_null(strstr(text, "  -- sentinel: none"));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_dump),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
