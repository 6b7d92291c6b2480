/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * sl_config_dump (sluice -T): the text it writes loads again to the same
 * config (and dumps again to the same text), every default is written out,
 * passwords are masked in every URL form, key and cost functions come back
 * with the locals they use, and a function that cannot be printed makes the
 * text refuse to load instead of loading as something else.
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

/* From src/config_int.h, which cannot be included here (its fail() macro
 * is cmocka's too): the schema's top-level keys. */
const char **sl_conf_top_names(void);
const char **sl_conf_section_names(const char *section);

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

static char dir[PATH_MAX];

static int
make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-dump-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
remove_dir(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
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

/* The dump of cfg, without its first line (which names the file). */
static char *
dump(const struct sl_config *cfg, int *rc, char *err, size_t err_size)
{
    char *text = NULL, *body;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    assert_non_null(out);
    *rc = sl_config_dump(cfg, out, err, err_size);
    fclose(out);
    body = strdup(strchr(text, '\n') + 1);
    free(text);
    return body;
}

/* Dumps the conf at path, loads the text, dumps that: both texts must be the
 * same. Returns the first text. */
static char *
round_trip(const char *path)
{
    char again[PATH_MAX + 16], err[512];
    struct sl_config *cfg = load_ok(path), *cfg2;
    char *first, *second;
    int rc;

    first = dump(cfg, &rc, err, sizeof(err));
    if (rc != 0)
        fail_msg("dump of %s: %s", path, err);
    snprintf(again, sizeof(again), "%s/again.conf", dir);
    write_file(again, first);
    cfg2 = load_ok(again);
    second = dump(cfg2, &rc, err, sizeof(err));
    assert_int_equal(rc, 0);
    if (strcmp(first, second) != 0)
        fail_msg("the dump does not load to the same config:\n%s\n---\n%s", first, second);
    sl_config_free(cfg);
    sl_config_free(cfg2);
    free(second);
    return first;
}

static void
test_full_round_trip(void **state)
{
    static const char *const sections[] = { "client", "store", "upstreams", "limits",
                                             "routes", "metrics", "listen", "health", "cache" };
    char path[PATH_MAX];
    char *text;
    (void)state;

    snprintf(path, sizeof(path), "%s/tests/unit/conf/full.conf",
             getenv("SL_SOURCE_DIR") ? getenv("SL_SOURCE_DIR") : SL_SOURCE_DIR);
    text = round_trip(path);
    /* full.conf writes every key of every section it can: each is printed
     * (a key added to the schema without the dumper knowing it fails here) */
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        const char **names = sl_conf_section_names(sections[i]);
        assert_non_null(names);
        for (size_t j = 0; names[j] != NULL; j++) {
            char want[64], unset[64];
            snprintf(want, sizeof(want), " %s = ", names[j]);
            /* keys that name files full.conf cannot ship (password_file,
             * tls) are printed as "-- key: none" when unset */
            snprintf(unset, sizeof(unset), "-- %s: none", names[j]);
            if (strstr(text, want) == NULL && strstr(text, unset) == NULL)
                fail_msg("%s key %s not printed:\n%s", sections[i], names[j], text);
        }
        free(names);
    }
    /* what was written comes back, in the form a conf would write it */
    assert_non_null(strstr(text, "shutdown_timeout = \"90s\""));
    assert_non_null(strstr(text, "max_uri_size = \"4k\""));
    assert_non_null(strstr(text, "key = { \"ip\", \"method\", \"path\", \"query:token\", "
                                 "\"cookie:session\" }"));
    assert_non_null(strstr(text, "host = \"api.example.com\""));
    assert_non_null(strstr(text, "{ address = \"127.0.0.1:8082\", proxy_protocol = true }"));
    assert_non_null(strstr(text, "{ address = \"unix:/run/sluice/sluice.sock\", "
                                 "mode = \"0660\" }"));
    assert_non_null(strstr(text, "ipv6_prefix = 64"));
    assert_non_null(strstr(text, "servers = { \"127.0.0.1:9000\", { address = \"127.0.0.1:9001\", "
                                 "weight = 3 } },\n    balance = \"hash:header:x-tenant\","));
    assert_non_null(strstr(text, "headers = { accept = \"x\", [\"api-version\"] = \"2024-06-01\" }"));
    assert_non_null(strstr(text, "deprecation = \"2026-03-01T00:00:00Z\", "
                                 "sunset = \"2026-09-01T00:00:00Z\", "
                                 "link = \"https://example.com/migrate\",\n    brownouts = "
                                 "{ { from = \"2026-07-01T00:00:00Z\", to = \"2026-07-01T00:30:00Z\" }, "
                                 "{ from = \"2026-08-02T00:00:00Z\", to = \"2026-08-02T01:00:00Z\" } }"));
    assert_non_null(strstr(text, "consumer = \"header:x-client-id\", consumer_top = 5"));
    assert_non_null(strstr(text, "retries = 2,\n    retry_on = { \"reset\", \"503\" },\n"
                                 "    retry_budget = { percent = 50, min = 1 }"));
    assert_non_null(strstr(text, "path = \"/healthz?deep=1\""));
    assert_non_null(strstr(text, "max_fail_timeout = \"1m\""));
    assert_non_null(strstr(text, "-- no active checks (no path)"));
    assert_non_null(strstr(text, "cache = { ttl = \"30s\", max_memory = \"128m\", "
                                 "max_object = \"512k\""));
    assert_non_null(strstr(text, "stale_if_error = \"5m\", lock_timeout = \"2s\" }"));
    assert_non_null(strstr(text, "cache_hits = false"));
    assert_non_null(strstr(text, "lease = { ttl = \"400ms\", max_share = 0.25 }"));
    assert_non_null(strstr(text, "lease = true"));
    assert_non_null(strstr(text, "idempotency = { methods = { \"POST\", \"PUT\" }, required = true, "
                                 "ttl = \"1h\", lock = \"2m\",\n      max_response = \"256k\", "
                                 "scope = \"header:authorization\" }"));
    assert_non_null(strstr(text, "idempotency_memory = \"32m\""));
    assert_non_null(strstr(text, "key = function(r) return r.header[\"x-tenant\"] end"));
    assert_non_null(strstr(text, "cost = function(r) return r.method == \"POST\" and 5 or 1 end"));
    /* the password is not */
    assert_null(strstr(text, "secret"));
    assert_non_null(strstr(text, "url = \"redis://user:********@10.1.2.3:6380/2\""));
    free(text);
}

/* The confs we ship print and load back too. */
static void
test_shipped_confs(void **state)
{
    static const char *const confs[] = { "conf/sluice.conf", "conf/redis.conf" };
    const char *top = getenv("SL_SOURCE_DIR") ? getenv("SL_SOURCE_DIR") : SL_SOURCE_DIR;
    (void)state;

    for (size_t i = 0; i < sizeof(confs) / sizeof(confs[0]); i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", top, confs[i]);
        free(round_trip(path));
    }
}

static void
test_defaults_written(void **state)
{
    static const char *const defaults[] = {
        "admin = \"127.0.0.1:9901\"", "workers = \"auto\"", "trusted_proxies = {}",
        "shutdown_timeout = \"30s\"", "access_log = \"stderr\"", "error_log = \"stderr\"",
        "log_level = \"info\"", "slow_request = \"0\"", "header_timeout = \"10s\"",
        "body_timeout = \"30s\"", "idle_timeout = \"1m\"", "max_header_size = \"16k\"",
        "max_uri_size = \"8k\"", "max_headers = 100", "max_body_size = \"0\"",
        "max_connections = 10000", "kind = \"local\"", "timeout = \"20ms\"",
        "on_error = \"allow\"", "prefix = \"sluice\"", "max_keys = 2000000",
        "keepalive = 64", "connect_timeout = \"1s\"", "timeout = \"30s\"",
        "max_inflight = 1024", "queue = 4096", "balance = \"round_robin\"", "retries = 1",
        "retry_on = { \"connect_failure\", \"reset\" }",
        "retry_budget = { percent = 20, min = 3 }", "per = \"1s\"", "burst = 2.5", "cost = 1",
        "shadow = false", "lease = false", "lease = { ttl = \"250ms\", max_share = 0.1 }", "limits = {}", "ratelimit_headers = true", "server_timing = false",
        "metrics = {}", "-- pidfile: none",
    };
    char path[PATH_MAX + 16];
    const char **top_keys;
    char *text;
    (void)state;

    snprintf(path, sizeof(path), "%s/min.conf", dir);
    write_file(path, "listen = \"127.0.0.1:8080\"\n"
                     "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
                     "limits = { l = { key = \"ip\", rate = 2.5 } }\n"
                     "routes = { { path = \"/\", upstream = \"api\" } }\n");
    text = round_trip(path);
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        if (strstr(text, defaults[i]) == NULL)
            fail_msg("no %s in:\n%s", defaults[i], text);
    }
    /* every top-level key of the schema: a key added without the dumper
     * knowing it fails here instead of vanishing from -T */
    top_keys = sl_conf_top_names();
    for (size_t i = 0; top_keys[i] != NULL; i++) {
        char line[64], comment[64];
        snprintf(line, sizeof(line), "\n%s = ", top_keys[i]);
        snprintf(comment, sizeof(comment), "\n-- %s: ", top_keys[i]);
        if (strstr(text, line) == NULL && strstr(text, comment) == NULL)
            fail_msg("top-level key %s not printed:\n%s", top_keys[i], text);
    }
    free(top_keys);
    free(text);
}

static void
test_passwords_masked(void **state)
{
    static const struct {
        const char *url, *masked;
    } urls[] = {
        { "redis://:hunter2@127.0.0.1:6379/0", "redis://:********@127.0.0.1:6379/0" },
        { "redis://bob:hu%40nter2@[::1]:6379", "redis://bob:********@[::1]:6379" },
        { "redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3" },
        { "unix:/run/redis.sock?user=bob&password=hunter2&db=2",
          "unix:/run/redis.sock?user=bob&password=********&db=2" },
        { "unix:/run/redis.sock?password=hunter2", "unix:/run/redis.sock?password=********" },
        { "unix://bob:hunter2@/run/redis.sock?db=1", "unix://bob:********@/run/redis.sock?db=1" },
        { "unix:///run/redis.sock", "unix:///run/redis.sock" },
    };
    char path[PATH_MAX + 16], conf[512], want[256];
    (void)state;

    snprintf(path, sizeof(path), "%s/url.conf", dir);
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char *text;
        snprintf(conf, sizeof(conf),
                 "listen = \"127.0.0.1:8080\"\n"
                 "store = { kind = \"redis\", url = \"%s\" }\n"
                 "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
                 "routes = { { path = \"/\", upstream = \"api\" } }\n",
                 urls[i].url);
        write_file(path, conf);
        text = round_trip(path);
        snprintf(want, sizeof(want), "url = \"%s\"", urls[i].masked);
        if (strstr(text, want) == NULL || strstr(text, "hunter2") != NULL
            || strstr(text, "hu%40nter2") != NULL)
            fail_msg("%s: want %s in:\n%s", urls[i].url, want, text);
        free(text);
    }
}

/* The admin table keeps the token file's name; neither the token nor its
 * digest is printed. */
static void
test_admin_token_file(void **state)
{
    char path[PATH_MAX + 16], token[PATH_MAX + 16], conf[PATH_MAX + 512], want[PATH_MAX + 128];
    char *text;
    (void)state;

    snprintf(token, sizeof(token), "%s/admin.token", dir);
    write_file(token, "s3cret-admin-token\n");
    snprintf(path, sizeof(path), "%s/admin.conf", dir);
    snprintf(conf, sizeof(conf),
             "listen = \"127.0.0.1:8080\"\n"
             "admin = { listen = \"127.0.0.1:9901\", token_file = \"%s\" }\n"
             "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
             "routes = { { path = \"/\", upstream = \"api\" } }\n",
             token);
    write_file(path, conf);
    text = round_trip(path);
    snprintf(want, sizeof(want), "admin = { listen = \"127.0.0.1:9901\", token_file = \"%s\" }",
             token);
    if (strstr(text, want) == NULL || strstr(text, "s3cret") != NULL)
        fail_msg("want %s and no token in:\n%s", want, text);
    free(text);
}

/* Functions come back with the locals they use: helpers, tables, library
 * functions and a recursive local function. */
static void
test_functions(void **state)
{
    char path[PATH_MAX + 16];
    char *text;
    (void)state;

    snprintf(path, sizeof(path), "%s/fn.conf", dir);
    write_file(path,
               "listen = \"127.0.0.1:8080\"\n"
               "local hdr = \"x-tenant\"\n"
               "local lower = string.lower\n"
               "local t = { n = 3 }\n"
               "local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end\n"
               "local function norm(s) return lower(s) end\n"
               "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
               "limits = {\n"
               "  a = { key = function(r) return norm(r.header[hdr]) end, rate = 1 },\n"
               "  b = { key = function(r) return r.ip .. fact(t.n) end, rate = 1,\n"
               "        cost = function(r)\n"
               "          return r.method == \"POST\" and 10 or nil\n"
               "        end },\n"
               "}\n"
               "routes = { { path = \"/\", upstream = \"api\", limits = { \"a\", \"b\" } } }\n");
    text = round_trip(path);
    assert_non_null(strstr(text, "local hdr = \"x-tenant\""));
    assert_non_null(strstr(text, "local lower = string.lower"));
    assert_non_null(strstr(text, "local t = { n = 3, }"));
    assert_non_null(strstr(text, "fact = function(n) if n <= 1"));
    assert_non_null(strstr(text, "return function(r) return norm(r.header[hdr]) end"));
    assert_non_null(strstr(text, "return r.method == \"POST\" and 10 or nil"));
    free(text);
}

/* Two functions on one line cannot be told apart: the dump says so, and its
 * text refuses to load with a message naming the function's line. */
static void
test_unprintable_function(void **state)
{
    char path[PATH_MAX + 16], again[PATH_MAX + 16], err[512];
    char *text, *errors = NULL;
    struct sl_config *cfg;
    int rc;
    (void)state;

    snprintf(path, sizeof(path), "%s/two.conf", dir);
    write_file(path, "listen = \"127.0.0.1:8080\"\n"
                     "upstreams = { api = { servers = \"127.0.0.1:9000\" } }\n"
                     "limits = { a = { rate = 1,\n"
                     "  key = function(r) return r.ip end, cost = function(r) return 2 end } }\n"
                     "routes = { { path = \"/\", upstream = \"api\", limits = \"a\" } }\n");
    cfg = load_ok(path);
    text = dump(cfg, &rc, err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "two.conf:4 cannot be printed"));
    snprintf(again, sizeof(again), "%s/again.conf", dir);
    write_file(again, text);
    assert_null(sl_config_load(again, &errors));
    assert_non_null(strstr(errors, "cannot print the function at"));
    assert_non_null(strstr(errors, "two.conf:4"));
    free(errors);
    free(text);
    sl_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_shipped_confs),
        cmocka_unit_test(test_defaults_written),
        cmocka_unit_test(test_passwords_masked),
        cmocka_unit_test(test_admin_token_file),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_unprintable_function),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
