/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * config_redis_tls: store.password_file (read at load, line end stripped,
 * every refusal at the file:line of the key, one place for a password) and
 * the secret never in an error or in `sluice -T`; util/secret's reader;
 * store.tls (its keys, its defaults, the context built at load, a bad file
 * refused at its line, tls only with rediss://, printed by -T); the store
 * url forms accepted and refused.
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
#include "util/secret.h"

#define SECRET "hunter2-s3cret"

static char dir[PATH_MAX];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-redis-tls-XXXXXX");
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

/* Writes dir/name with `len` bytes of text; returns its path (static, one
 * of eight in turn). */
static const char *
write_file(const char *name, const char *text, size_t len)
{
    static char paths[8][PATH_MAX + 64];
    static unsigned next;
    char *path = paths[next++ % 8];
    FILE *f;

    snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    return path;
}

/* Loads a conf whose store table is `store` (line 2); the errors or NULL. */
static char *
load(const char *store, struct sl_config **out)
{
    char text[PATH_MAX + 1024];
    const char *path;
    char *errors = NULL;
    struct sl_config *cfg;

    snprintf(text, sizeof(text),
             "listen = \"127.0.0.1:8080\"\n"
             "store = %s\n"
             "upstreams = { api = { servers = { \"127.0.0.1:9000\" } } }\n"
             "routes = { { path = \"/\", upstream = \"api\" } }\n", store);
    path = write_file("t.conf", text, strlen(text));
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
    if (strstr(errors, SECRET) != NULL)
        fail_msg("%s: errors quote the secret: %s", store, errors);
    free(errors);
}

static void
test_secret_read(void **state)
{
    static const struct {
        const char *content;
        const char *want;
    } good[] = {
        { SECRET "\n", SECRET }, { SECRET, SECRET }, { SECRET "\r\n", SECRET },
        { " pass word ", " pass word " }, { "a:b@c", "a:b@c" },
    };
    static const struct {
        const char *content;
        size_t len;
        const char *why;
    } bad[] = {
        { "", 0, "empty" }, { "\n", 1, "empty" }, { SECRET "\n\n", 16, "more than one line" },
        { "a\nb\n", 4, "more than one line" }, { "a\0b", 3, "NUL" },
    };
    char err[200], *got, *big;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *p = write_file("pw", good[i].content, strlen(good[i].content));
        assert_int_equal(sl_secret_read(p, &got, err, sizeof(err)), 0);
        assert_string_equal(got, good[i].want);
        sl_secret_free(got);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = write_file("pw", bad[i].content, bad[i].len);
        assert_int_equal(sl_secret_read(p, &got, err, sizeof(err)), -1);
        assert_null(got);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].why);
        assert_null(strstr(err, SECRET));
    }
    big = malloc(SL_SECRET_MAX + 2);
    memset(big, 'x', SL_SECRET_MAX + 1);
    write_file("pw", big, SL_SECRET_MAX);
    assert_int_equal(sl_secret_read(write_file("pw", big, SL_SECRET_MAX), &got, err, 200), 0);
    sl_secret_free(got);
    assert_int_equal(sl_secret_read(write_file("pw", big, SL_SECRET_MAX + 1), &got, err, 200), -1);
    assert_non_null(strstr(err, "more than"));
    free(big);
    assert_int_equal(sl_secret_read("/nonexistent/pw", &got, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    sl_secret_free(NULL);
}

static void
test_password_file(void **state)
{
    char store[PATH_MAX + 256];
    struct sl_config *cfg;
    char *errors;
    const char *pw = write_file("pw", SECRET "\n", strlen(SECRET) + 1);

    (void)state;
    /* a user in the url, the password from the file: TCP and unix alike */
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis://app@127.0.0.1:6379/1\", "
             "password_file = \"%s\" }", pw);
    errors = load(store, &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_string_equal(cfg->store.password, SECRET);
    assert_string_equal(cfg->store.password_file, pw);
    sl_config_free(cfg);
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"unix:/run/r.sock?db=2\", "
             "password_file = \"%s\" }", pw);
    errors = load(store, &cfg);
    assert_null(errors);
    assert_string_equal(cfg->store.password, SECRET);
    sl_config_free(cfg);
    /* no file: no password */
    errors = load("{ kind = \"redis\", url = \"redis://127.0.0.1\" }", &cfg);
    assert_null(errors);
    assert_null(cfg->store.password);
    assert_null(cfg->store.password_file);
    sl_config_free(cfg);
}

static void
test_password_file_refused(void **state)
{
    char store[PATH_MAX + 256];
    const char *empty = write_file("empty", "", 0);

    (void)state;
    expect_error("{ kind = \"redis\", url = \"redis://h\", password_file = \"/nonexistent/pw\" }",
                 "password_file \"/nonexistent/pw\": cannot read it: No such file");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis://h\", password_file = "
             "\"%s\" }", empty);
    expect_error(store, "the file is empty");
    expect_error("{ kind = \"redis\", url = \"redis://h\", password_file = \"\" }",
                 "password_file");
    /* one place for a password */
    write_file("pw", SECRET, strlen(SECRET));
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis://:" SECRET "@h\", "
             "password_file = \"%s/pw\" }", dir);
    expect_error(store, "the url has a password too");
    /* a user alone needs the file */
    expect_error("{ kind = \"redis\", url = \"redis://app@h\" }",
                 "user without a password (write user:password@, or set password_file)");
    expect_error("{ kind = \"redis\", url = \"rediss-cluster://app@h1,h2\" }",
                 "user without a password (write user:password@, or set password_file)");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis-cluster://:" SECRET
             "@h1,h2\", password_file = \"%s/pw\" }", dir);
    expect_error(store, "the url has a password too");
    /* a bad url is quoted masked */
    expect_error("{ kind = \"redis\", url = \"redis://app:" SECRET "@h:99999\" }",
                 "url \"redis://app:********@h:99999\": bad port");
    expect_error("{ kind = \"redis\", url = \"unix:/s?password=" SECRET "&x=1\" }",
                 "url \"unix:/s?password=********&x=1\": unknown query parameter");
    expect_error("{ kind = \"redis\", url = \"redis-cluster://app:" SECRET "@h1,h2/3\" }",
                 "url \"redis-cluster://app:********@h1,h2/3\": database 3: Redis Cluster has "
                 "only db 0");
}

/* sluice -T names the file, never its content. */
static void
test_dump(void **state)
{
    char store[PATH_MAX + 256], *text = NULL, err[256];
    size_t len = 0;
    struct sl_config *cfg;
    const char *pw = write_file("pw", SECRET "\n", strlen(SECRET) + 1);
    FILE *out;

    (void)state;
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"redis://app@127.0.0.1:6379/1\", "
             "password_file = \"%s\" }", pw);
    assert_null(load(store, &cfg));
    out = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, out, err, sizeof(err)), 0);
    fclose(out);
    assert_non_null(strstr(text, "password_file = \""));
    assert_non_null(strstr(text, pw));
    assert_null(strstr(text, SECRET));
    free(text);
    sl_config_free(cfg);
}

static void
test_tls(void **state)
{
    struct sl_config *cfg;
    char *errors;

    (void)state;
    /* defaults: the system's trust store, verify on, the url's host */
    errors = load("{ kind = \"redis\", url = \"rediss://h:6380\" }", &cfg);
    assert_null(errors);
    assert_non_null(cfg->store.tls.ssl_ctx);
    assert_true(cfg->store.tls.is_verify);
    assert_false(cfg->store.tls.is_set);
    assert_null(cfg->store.tls.server_name);
    sl_config_free(cfg);
    errors = load("{ kind = \"redis\", url = \"rediss://h:6380\", tls = { server_name = "
                  "\"redis.example\", verify = false } }", &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_non_null(cfg->store.tls.ssl_ctx);
    assert_false(cfg->store.tls.is_verify);
    assert_string_equal(cfg->store.tls.server_name, "redis.example");
    sl_config_free(cfg);
    /* plaintext: no context */
    errors = load("{ kind = \"redis\", url = \"redis://h\" }", &cfg);
    assert_null(errors);
    assert_null(cfg->store.tls.ssl_ctx);
    sl_config_free(cfg);
    /* a cluster over TLS: one context for every node's connections */
    errors = load("{ kind = \"redis\", url = \"rediss-cluster://h1:7000,h2:7001\" }", &cfg);
    assert_null(errors);
    assert_non_null(cfg->store.tls.ssl_ctx);
    assert_true(cfg->store.tls.is_verify);
    sl_config_free(cfg);
    errors = load("{ kind = \"redis\", url = \"rediss-cluster://h1\", tls = { verify = false } }",
                  &cfg);
    assert_null(errors);
    assert_non_null(cfg->store.tls.ssl_ctx);
    assert_false(cfg->store.tls.is_verify);
    sl_config_free(cfg);
    errors = load("{ kind = \"redis\", url = \"redis-cluster://h1,h2\" }", &cfg);
    assert_null(errors);
    assert_null(cfg->store.tls.ssl_ctx);
    sl_config_free(cfg);
}

static void
test_tls_refused(void **state)
{
    char store[PATH_MAX + 256];
    const char *junk = write_file("junk.pem", "not a certificate\n", 18);

    (void)state;
    expect_error("{ kind = \"redis\", url = \"redis://h\", tls = { verify = true } }",
                 "tls is for a rediss:// url");
    expect_error("{ kind = \"redis\", url = \"redis-cluster://h1,h2\", tls = { verify = true } }",
                 "tls is for a rediss-cluster:// url");
    expect_error("{ kind = \"redis\", url = \"rediss://h\", "
                 "tls = { ca_file = \"/nonexistent/ca\" } }",
                 "tls.ca_file \"/nonexistent/ca\": cannot load CA certificates");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"rediss://h\", tls = { ca_file = "
             "\"%s\" } }", junk);
    expect_error(store, "cannot load CA certificates");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"rediss://h\", tls = { cert_file "
             "= \"%s\" } }", junk);
    expect_error(store, "cert_file and key_file go together");
    snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"rediss://h\", tls = { cert_file "
             "= \"%s\", key_file = \"%s\" } }", junk, junk);
    expect_error(store, "tls.cert_file");
    expect_error("{ kind = \"redis\", url = \"rediss://h\", tls = { server_name = \"a b\" } }",
                 "not a host name or an address");
    expect_error("{ kind = \"redis\", url = \"rediss://h\", tls = { verfy = false } }",
                 "verfy");
    expect_error("{ kind = \"redis\", url = \"rediss://h\", tls = { verify = \"no\" } }",
                 "verify");
    expect_error("{ kind = \"redis\", url = \"rediss://h\", tls = \"on\" }", "tls");
}

static void
test_tls_dump(void **state)
{
    char *text = NULL, err[256];
    size_t len = 0;
    struct sl_config *cfg;
    FILE *out;

    (void)state;
    assert_null(load("{ kind = \"redis\", url = \"rediss://h:6380\", tls = { verify = false } }",
                     &cfg));
    out = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, out, err, sizeof(err)), 0);
    fclose(out);
    assert_non_null(strstr(text, "  tls = {\n    -- ca_file: none (the system's trust store)\n"));
    assert_non_null(strstr(text, "    verify = false,\n  },\n"));
    free(text);
    sl_config_free(cfg);
    /* a cluster url: masked, its tls table written out */
    assert_null(load("{ kind = \"redis\", url = \"rediss-cluster://app:" SECRET "@h1:7000,"
                     "[::1]:7001/0\" }", &cfg));
    text = NULL;
    out = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, out, err, sizeof(err)), 0);
    fclose(out);
    assert_non_null(strstr(text, "  url = \"rediss-cluster://app:********@h1:7000,[::1]:7001/0\""));
    assert_non_null(strstr(text, "  tls = {\n"));
    assert_null(strstr(text, SECRET));
    free(text);
    sl_config_free(cfg);
}

/* The url forms config accepts and refuses (util/redis_url.c, one parser
 * with the store); rediss:// builds a context with the system's trust store. */
static void
test_redis_urls(void **state)
{
    static const char *const good[] = {
        "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0", "redis://redis.internal:6380/15",
        "redis://user:pass@127.0.0.1:6379/1", "redis://:pass@127.0.0.1:6379",
        "redis://[::1]:6379", "unix:/run/redis.sock", "unix:/tmp/r.sock?db=2",
        /* the forms store_redis always took, now accepted here too (one parser) */
        "redis://127.0.0.1", "redis://h:6379/", "unix:/r.sock?db=1&user=a&password=b",
        "unix://app:pw@/run/redis.sock?db=3",
        "redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
        "redis-cluster://:pw@redis-cluster.redis.svc/0", "redis-cluster://[::1]:7000/",
    };
    static const char *const bad[] = {
        "redis://127.0.0.1:", "redis://:6379", "redis://h:65536", "redis://h:6379/x",
        "redis://pass@h:6379", "http://h:6379", "unix:", "unix:relative.sock",
        "unix:/r.sock?db=x", "redis://[::1:6379", "", "rediss://h:x",
        "redis-cluster://h1/1", "redis-cluster://h1,", "redis-cluster://h1/x",
        "redis-cluster://app@h1",
    };
    struct sl_config *cfg = NULL;
    char store[256], *errors;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"%s\" }", good[i]);
        if ((errors = load(store, NULL)) != NULL)
            fail_msg("%s: %s", good[i], errors);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(store, sizeof(store), "{ kind = \"redis\", url = \"%s\" }", bad[i]);
        if ((errors = load(store, NULL)) == NULL)
            fail_msg("%s should be refused", bad[i]);
        free(errors);
    }
    errors = load("{ kind = \"redis\", url = \"rediss://h:6380\" }", &cfg);
    if (errors != NULL)
        fail_msg("got %s", errors);
    assert_non_null(cfg->store.tls.ssl_ctx);
    assert_true(cfg->store.tls.is_verify);
    sl_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_read),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_password_file_refused),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_tls_refused),
        cmocka_unit_test(test_tls_dump),
        cmocka_unit_test(test_redis_urls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
