/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * include() and env() in the conf sandbox: a sorted glob relative to the
 * including file, run in the same environment; errors that name the
 * included file and its line; cycles, depth and missing files; the bytes a
 * load recorded are what a worker's runtime and -T run (never the disk
 * again); a new load reads the disk again; env() with and without a default.
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
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/lua_rt.h"

static char dir[PATH_MAX];

static int
setup(void **state)
{
    char sub[PATH_MAX + 16];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-include-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(sub, sizeof(sub), "%s/conf.d", dir);
    return mkdir(sub, 0700);
}

static int
teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Empties conf.d between tests. */
static int
clean(void **state)
{
    char cmd[2 * PATH_MAX + 64];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/conf.d/* '%s'/*.conf", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes `text` at dir/rel; returns the full path, in a static buffer that
 * the next call overwrites. */
static const char *
put(const char *rel, const char *text)
{
    static char path[PATH_MAX + 64];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct sl_config *
load_ok(const char *path)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_config_load(path, &errors);

    if (cfg == NULL)
        fail_msg("%s should load, got:\n%s", path, errors ? errors : "(none)");
    return cfg;
}

/* The errors of a conf that must not load. */
static char *
load_bad(const char *path)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_config_load(path, &errors);

    if (cfg != NULL)
        fail_msg("%s should not load", path);
    assert_non_null(errors);
    return errors;
}

/* "dir/rel:line: " followed, later on that line, by phrase. */
static void
expect_error(const char *errors, const char *rel, int line, const char *phrase)
{
    char want[PATH_MAX + 64];
    const char *at;

    snprintf(want, sizeof(want), "%s/%s:%d: ", dir, rel, line);
    at = strstr(errors, want);
    if (at == NULL || strstr(at, phrase) == NULL
        || (strchr(at, '\n') != NULL && strstr(at, phrase) > strchr(at, '\n')))
        fail_msg("want %s...%s, got:\n%s", want, phrase, errors);
}

static const char main_conf[] = "listen = \"127.0.0.1:8080\"\n"      /* 1 */
                                "upstreams = {}\n"                   /* 2 */
                                "limits = {}\n"                      /* 3 */
                                "include(\"conf.d/*.conf\")\n"       /* 4 */
                                "routes = { { path = \"/\", upstream = \"api\" } }\n";

static void
test_glob_sorted_same_globals(void **state)
{
    struct sl_config *cfg;
    const char *path;
    (void)state;

    /* written out of order: include runs them sorted */
    put("conf.d/20-b.conf", "limits.b = { key = \"ip\", rate = limits.a.rate * 2 }\n");
    put("conf.d/10-a.conf", "upstreams.api = { servers = \"127.0.0.1:9000\" }\n"
                            "limits.a = { key = \"ip\", rate = 3 }\n");
    put("conf.d/notes.txt", "this is not Lua\n");
    path = put("main.conf", main_conf);
    cfg = load_ok(path);
    assert_int_equal(cfg->nlimits, 2);
    assert_string_equal(cfg->limits[0].name, "a");
    assert_true(cfg->limits[1].rate == 6);
    assert_int_equal(cfg->nfiles, 2);
    assert_non_null(strstr(cfg->files[0].path, "conf.d/10-a.conf"));
    assert_non_null(strstr(cfg->files[1].path, "conf.d/20-b.conf"));
    assert_int_equal(cfg->nincludes, 1);
    sl_config_free(cfg);
}

/* Relative to the including file; an empty glob is fine; a nested include
 * works; an included file may define functions. */
static void
test_nested_and_empty(void **state)
{
    struct sl_config *cfg;
    const char *path;
    (void)state;

    put("conf.d/up.conf", "upstreams.api = { servers = \"127.0.0.1:9000\" }\n"
                          "include(\"../more.lua\")\n"
                          "include(\"empty.d/*.conf\")\n");
    put("more.lua", "workers = 3\n");
    path = put("main.conf", main_conf);
    cfg = load_ok(path);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->nfiles, 2);
    sl_config_free(cfg);
}

static void
test_errors_name_included_file(void **state)
{
    char path[PATH_MAX + 64];
    char *errors;
    (void)state;

    put("conf.d/up.conf", "upstreams.api = { servers = \"127.0.0.1:9000\" }\n");
    /* a value checked after the run, a top-level key assigned in the file */
    put("conf.d/w.conf", "\n-- workers\nworkers = 0\n");
    snprintf(path, sizeof(path), "%s", put("main.conf", main_conf));
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 3, "workers 0");
    free(errors);

    /* a nested key of a table assigned in the included file */
    put("conf.d/w.conf", "client = {\n  header_timeout = \"10x\",\n}\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 2, "header_timeout \"10x\": bad duration");
    free(errors);

    /* `limits.x = {...}` in an included file: that file and line, not the
     * main file's `limits = {}` */
    put("conf.d/w.conf", "limits.x = { key = \"ip\",\n  rate = 1, per = \"10x\" }\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 2, "limit \"x\": per \"10x\": bad duration");
    free(errors);
    put("conf.d/w.conf", "limits.x = { key = \"ip\", rate = 1 }\nlimits = {}\n"
                         "limits.y = { key = \"ip\", rate = 0 }\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 3, "limit \"y\": rate 0");
    free(errors);

    /* a syntax error, and a runtime error */
    put("conf.d/w.conf", "\nx = = 1\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 2, "unexpected symbol");
    free(errors);
    put("conf.d/w.conf", "\n\nerror(\"no\")\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 3, "no");
    free(errors);
    put("conf.d/w.conf", "local s = io.open\n");
    errors = load_bad(path);
    expect_error(errors, "conf.d/w.conf", 1, "undefined variable \"io\"");
    free(errors);
}

static void
test_missing_cycle_depth(void **state)
{
    char sub[PATH_MAX + 32];
    const char *path;
    char *errors;
    (void)state;

    path = put("main.conf", "listen = \"127.0.0.1:8080\"\ninclude(\"nope.conf\")\n");
    errors = load_bad(path);
    expect_error(errors, "main.conf", 2, "nope.conf\": no such file");
    free(errors);

    put("a.conf", "include(\"main.conf\")\n");
    path = put("main.conf", "listen = \"127.0.0.1:8080\"\n\ninclude(\"a.conf\")\n");
    errors = load_bad(path);
    expect_error(errors, "a.conf", 1, "includes itself (an include cycle)");
    free(errors);

    /* a chain deeper than SL_LUA_INCLUDE_DEPTH, without a cycle */
    for (int i = 0; i <= SL_LUA_INCLUDE_DEPTH; i++) {
        char rel[32], text[64];
        snprintf(rel, sizeof(rel), "d%d.conf", i);
        snprintf(text, sizeof(text), "include(\"d%d.conf\")\n", i + 1);
        put(rel, text);
    }
    put("d9.conf", "workers = 1\n");
    path = put("main.conf", "listen = \"127.0.0.1:8080\"\ninclude(\"d0.conf\")\n");
    errors = load_bad(path);
    if (strstr(errors, "nested more than 8 deep") == NULL)
        fail_msg("got %s", errors);
    free(errors);

    /* a match that cannot be read */
    snprintf(sub, sizeof(sub), "%s/conf.d/dir.conf", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    path = put("main.conf", "listen = \"127.0.0.1:8080\"\ninclude(\"conf.d/*.conf\")\n");
    errors = load_bad(path);
    expect_error(errors, "main.conf", 2, "dir.conf: cannot read");
    free(errors);

    /* a pcall that catches an included file's error does not leave it
     * "running": including it again is no cycle */
    put("e.conf", "error(\"e\")\n");
    path = put("main.conf", "listen = \"127.0.0.1:8080\"\n"
                            "assert(not pcall(include, \"e.conf\"))\n"
                            "assert(not pcall(include, \"e.conf\"))\n"
                            "include(\"e.conf\")\n");
    errors = load_bad(path);
    expect_error(errors, "e.conf", 1, "e");
    if (strstr(errors, "cycle") != NULL)
        fail_msg("got %s", errors);
    free(errors);

    path = put("main.conf", "\ninclude({})\n");
    errors = load_bad(path);
    expect_error(errors, "main.conf", 2, "bad argument #1 to 'include'");
    free(errors);
}

static const char funcs[] = "listen = \"127.0.0.1:8080\"\n"
                            "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
                            "limits = {}\n"
                            "include(\"conf.d/*.conf\")\n"
                            "routes = { { path = \"/\", upstream = \"api\", limits = \"t\" } }\n";

/* A worker's runtime and -T run the bytes the load read, not the disk: the
 * included file is gone by then. A new load reads the disk again. */
static void
test_recorded_bytes(void **state)
{
    struct sl_request req;
    struct sl_header hdr = { .name = "x-tenant", .name_len = 8, .value = "acme",
                             .value_len = 4 };
    struct sl_config *cfg;
    struct sl_lua_rt *rt;
    const char *value;
    char inc[PATH_MAX + 64], path[PATH_MAX + 64], err[512];
    char *text = NULL;
    size_t len = 0;
    FILE *out;
    (void)state;

    snprintf(inc, sizeof(inc), "%s",
             put("conf.d/t.conf", "limits.t = { rate = 1,\n"
                                  "  key = function(r) return \"t:\" .. r.header.x_tenant end"
                                  " }\n"));
    snprintf(path, sizeof(path), "%s", put("main.conf", funcs));
    cfg = load_ok(path);
    unlink(inc);

    rt = sl_lua_rt_new(cfg, err, sizeof(err));
    if (rt == NULL)
        fail_msg("sl_lua_rt_new: %s", err);
    memset(&req, 0, sizeof(req));
    req.headers = &hdr;
    req.nheaders = 1;
    assert_int_equal(sl_lua_rt_key(rt, 0, 0, &req, &value, &len), SL_LUA_VALUE);
    assert_int_equal(len, 6);
    assert_memory_equal(value, "t:acme", 6);
    sl_lua_rt_free(rt);

    out = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, out, err, sizeof(err)), 0);
    fclose(out);
    assert_non_null(strstr(text, "key = function(r) return \"t:\" .. r.header.x_tenant end"));
    free(text);
    sl_config_free(cfg);

    /* a reload is a new load: it reads the included files again */
    put("conf.d/t.conf", "limits.t = { key = \"ip\", rate = 7 }\n");
    cfg = load_ok(path);
    assert_true(cfg->limits[0].rate == 7);
    assert_int_equal(cfg->limits[0].parts[0].kind, SL_KEY_IP);
    sl_config_free(cfg);
}

/* include() belongs to loading: a key function that calls it at request time
 * fails (and so does not apply), it does not read the disk. */
static void
test_no_include_at_request_time(void **state)
{
    struct sl_request req;
    struct sl_config *cfg;
    struct sl_lua_rt *rt;
    const char *value;
    size_t len;
    char err[512];
    (void)state;

    put("conf.d/t.conf", "limits.t = { rate = 1,\n"
                         "  key = function(r) include(\"x.conf\") return \"k\" end }\n");
    cfg = load_ok(put("main.conf", funcs));
    rt = sl_lua_rt_new(cfg, err, sizeof(err));
    assert_non_null(rt);
    memset(&req, 0, sizeof(req));
    assert_int_equal(sl_lua_rt_key(rt, 0, 0, &req, &value, &len), SL_LUA_ERROR);
    assert_non_null(strstr(sl_lua_rt_error(rt), "include() works only while the conf is loaded"));
    sl_lua_rt_free(rt);
    sl_config_free(cfg);
}

static void
test_env(void **state)
{
    struct sl_config *cfg;
    const char *path;
    char *errors;
    (void)state;

    setenv("SL_TEST_LISTEN", "127.0.0.1:8181", 1);
    unsetenv("SL_TEST_UNSET");
    path = put("main.conf",
               "listen = env(\"SL_TEST_LISTEN\")\n"
               "workers = tonumber(env(\"SL_TEST_UNSET\", \"5\"))\n"
               "pidfile = env(\"SL_TEST_UNSET\", nil)\n"
               "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
               "routes = { { path = \"/\", upstream = \"api\" } }\n");
    cfg = load_ok(path);
    assert_string_equal(cfg->listen[0].text, "127.0.0.1:8181");
    assert_int_equal(cfg->workers, 5);
    assert_null(cfg->pidfile);
    sl_config_free(cfg);

    put("conf.d/e.conf", "\nlocal pw = env(\"SL_TEST_UNSET\")\n");
    path = put("main.conf", main_conf);
    errors = load_bad(path);
    expect_error(errors, "conf.d/e.conf", 2, "env \"SL_TEST_UNSET\": not set, and no default");
    free(errors);
    unsetenv("SL_TEST_LISTEN");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_glob_sorted_same_globals, clean),
        cmocka_unit_test_setup(test_nested_and_empty, clean),
        cmocka_unit_test_setup(test_errors_name_included_file, clean),
        cmocka_unit_test_setup(test_missing_cycle_depth, clean),
        cmocka_unit_test_setup(test_recorded_bytes, clean),
        cmocka_unit_test_setup(test_no_include_at_request_time, clean),
        cmocka_unit_test_setup(test_env, clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
