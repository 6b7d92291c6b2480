/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/redis_url: every accepted form with the parameters it yields, every
 * refusal with the words of its reason, credentials kept out of reasons,
 * and a refused URL leaving nothing allocated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/redis_url.h"

static void
same(const char *url, const char *what, const char *got, const char *want)
{
    if ((got == NULL) != (want == NULL) || (got != NULL && strcmp(got, want) != 0))
        fail_msg("%s: %s \"%s\", want \"%s\"", url, what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void
test_accepted(void **state)
{
    static const struct {
        const char *url;
        const char *host, *path, *user, *password;
        int port;
        long db;
    } good[] = {
        { "redis://127.0.0.1:6379/0", "127.0.0.1", NULL, NULL, NULL, 6379, 0 },
        { "redis://127.0.0.1:6379", "127.0.0.1", NULL, NULL, NULL, 6379, 0 },
        { "redis://localhost", "localhost", NULL, NULL, NULL, 6379, 0 },
        { "redis://localhost/", "localhost", NULL, NULL, NULL, 6379, 0 },
        { "redis://redis.internal:6380/15", "redis.internal", NULL, NULL, NULL, 6380, 15 },
        { "redis://h:7000/2147483647", "h", NULL, NULL, NULL, 7000, 2147483647 },
        { "redis://:secret@h:1", "h", NULL, NULL, "secret", 1, 0 },
        { "redis://user:pass@127.0.0.1:6379/1", "127.0.0.1", NULL, "user", "pass", 6379, 1 },
        { "redis://app:p%40ss%3Aw@h/3", "h", NULL, "app", "p@ss:w", 6379, 3 },
        { "redis://u:p:q@h", "h", NULL, "u", "p:q", 6379, 0 },
        { "redis://u:a@b@h", "h", NULL, "u", "a@b", 6379, 0 },
        { "redis://[::1]:6380/2", "::1", NULL, NULL, NULL, 6380, 2 },
        { "redis://[::1]", "::1", NULL, NULL, NULL, 6379, 0 },
        { "redis://:pw@[2001:db8::7]:7000", "2001:db8::7", NULL, NULL, "pw", 7000, 0 },
        { "rediss://u:pw@h:6380/1", "h", NULL, "u", "pw", 6380, 1 },
        { "rediss://h", "h", NULL, NULL, NULL, 6379, 0 },
        { "unix:/run/redis.sock", NULL, "/run/redis.sock", NULL, NULL, 0, 0 },
        { "unix:/tmp/r.sock?db=2", NULL, "/tmp/r.sock", NULL, NULL, 0, 2 },
        { "unix:/tmp/a%20b@c.sock", NULL, "/tmp/a b@c.sock", NULL, NULL, 0, 0 },
        { "unix:///run/redis.sock?db=4", NULL, "/run/redis.sock", NULL, NULL, 0, 4 },
        { "unix:/r.sock?db=1&user=a&password=b%26c", NULL, "/r.sock", "a", "b&c", 0, 1 },
        { "unix:/r.sock?password=pw", NULL, "/r.sock", NULL, "pw", 0, 0 },
        /* credentials over a unix socket, as redis-py and redis-cli -u write them */
        { "unix://app:pw@/run/redis.sock?db=3", NULL, "/run/redis.sock", "app", "pw", 0, 3 },
        { "unix://:p%2Fw@/run/redis.sock", NULL, "/run/redis.sock", NULL, "p/w", 0, 0 },
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *url = good[i].url;

        if (sl_redis_url_parse(url, &u, err, sizeof(err)) != 0)
            fail_msg("%s: %s", url, err);
        assert_int_equal(u.is_unix, good[i].path != NULL);
        same(url, "host", u.host, good[i].host);
        same(url, "path", u.path, good[i].path);
        same(url, "user", u.user, good[i].user);
        same(url, "password", u.password, good[i].password);
        assert_int_equal(u.port, good[i].port);
        assert_int_equal(u.db, good[i].db);
        sl_redis_url_fini(&u);
    }
}

static void
test_refused(void **state)
{
    static const struct {
        const char *url, *why;
    } bad[] = {
        { "", "missing url" },
        { "http://h:6379", "bad url (use redis://" },
        { "cluster://h:6379", "redis-cluster://host[:port][,host[:port]...]" },
        { "redis:/127.0.0.1:6379", "bad url" },
        { "rediss://h:x", "bad port" },
        { "rediss://", "missing host" },
        { "redis://", "missing host" },
        { "redis://:6379", "missing host" },
        { "redis://h:0", "bad port \"0\"" },
        { "redis://h:65536", "bad port" },
        { "redis://127.0.0.1:", "bad port \"\"" },
        { "redis://h:x", "bad port" },
        { "redis://h:6379/x", "bad database number" },
        { "redis://h/-1", "bad database number" },
        { "redis://h/2147483648", "bad database number" },
        { "redis://h?db=1", "query and fragment are not supported" },
        { "redis://h#x", "query and fragment are not supported" },
        { "redis://pass@h:6379", "user without a password" },
        { "redis://:p%zz@h", "bad %-escape in the password" },
        { "redis://:p%00@h", "bad %-escape in the password" },
        { "redis://u%4@h", "bad %-escape in the user" },
        { "redis://u%4:p@h", "bad %-escape in the user" },
        { "redis://[::1", "unterminated [" },
        { "redis://[::1]6379", "junk after ]" },
        { "redis://[::1:6379", "unterminated [" },
        { "redis://[zz::1]:1", "bad host" },
        { "redis://a b:1", "bad host" },
        { "unix:", "absolute socket path" },
        { "unix:/", "absolute socket path" },
        { "unix:relative.sock", "absolute socket path" },
        { "unix:/r.sock?db=x", "bad database number" },
        { "unix:/r.sock?db=1&db=2", "bad database number" },
        { "unix:/s?timeout=1", "unknown query parameter \"timeout\"" },
        { "unix:/s?db", "query parameter without a value" },
        { "unix:/s?user=a", "user without a password" },
        { "unix:/s%zz", "bad %-escape in the socket path" },
        { "unix://host/run/r.sock", "unix:// takes no host" },
        { "unix://u:p@host/run/r.sock", "takes no host after the '@'" },
        { "unix://u@/run/r.sock", "user without a password" },
        { "unix://:a@/r.sock?password=b", "password given twice" },
        { "unix://relative", "absolute socket path" },
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (sl_redis_url_parse(bad[i].url, &u, err, sizeof(err)) != -1)
            fail_msg("%s: accepted", bad[i].url);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].url, err, bad[i].why);
        /* a refusal leaves nothing to free */
        assert_null(u.host);
        assert_null(u.path);
        assert_null(u.user);
        assert_null(u.password);
    }
}

static void
test_no_credentials_in_reasons(void **state)
{
    static const char *const urls[] = {
        "redis://:hunter2@h:99999", "redis://hunter2:hunter2@h/x", "unix://:hunter2@/s?db=x",
        "unix:/s?password=hunter2&nope=1", "redis://:hunter2@[::1",
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        assert_int_equal(sl_redis_url_parse(urls[i], &u, err, sizeof(err)), -1);
        if (strstr(err, "hunter2") != NULL)
            fail_msg("%s: reason quotes the secret: %s", urls[i], err);
    }
}

/* A user alone, its password supplied later (store.password_file). */
static void
test_password_later(void **state)
{
    static const char *const urls[] = { "redis://app@h:1/2", "unix://app@/r.sock",
                                        "unix:/r.sock?user=app" };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        assert_int_equal(sl_redis_url_parse(urls[i], &u, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "password_file"));
        if (sl_redis_url_parse_flags(urls[i], SL_REDIS_URL_PASSWORD_LATER, &u, err, sizeof(err)))
            fail_msg("%s: %s", urls[i], err);
        assert_string_equal(u.user, "app");
        assert_null(u.password);
        sl_redis_url_fini(&u);
    }
}

static void
test_mask(void **state)
{
    static const struct {
        const char *url, *want;
    } cases[] = {
        { "redis://:hunter2@h:1/2", "redis://:********@h:1/2" },
        { "redis://app:hunter2@h", "redis://app:********@h" },
        { "redis://app:a@b@h", "redis://app:********@h" },
        { "redis://app@h", "redis://app@h" },
        { "rediss://app:hunter2@h:1", "rediss://app:********@h:1" },
        { "redis://h:1", "redis://h:1" },
        { "unix://app:hunter2@/r.sock?db=1", "unix://app:********@/r.sock?db=1" },
        { "unix:/r.sock?user=a&password=hunter2&db=2",
          "unix:/r.sock?user=a&password=********&db=2" },
        { "unix:/r.sock", "unix:/r.sock" },
        { "redis-sentinel://app:hunter2@10.0.0.1,10.0.0.2:26380/m/1",
          "redis-sentinel://app:********@10.0.0.1,10.0.0.2:26380/m/1" },
        { "redis-sentinel://10.0.0.1/m", "redis-sentinel://10.0.0.1/m" },
        { "redis-cluster://app:hunter2@h1:7000,h2:7001/0",
          "redis-cluster://app:********@h1:7000,h2:7001/0" },
        { "rediss-cluster://:hunter2@[::1]:7000,h2", "rediss-cluster://:********@[::1]:7000,h2" },
        { "redis-cluster://app@h1,h2", "redis-cluster://app@h1,h2" },
        { "rediss-cluster://h1", "rediss-cluster://h1" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *m = sl_redis_url_mask(cases[i].url);
        assert_string_equal(m, cases[i].want);
        free(m);
    }
}

/* redis-sentinel://: the sentinels, in order, with their default port,
 * the master name, the db, and the userinfo kept for the master. */
static void
test_sentinel(void **state)
{
    static const struct {
        const char *url, *why;
    } bad[] = {
        { "redis-sentinel://", "empty sentinel address" },
        { "redis-sentinel:///mymaster", "empty sentinel address" },
        { "redis-sentinel://127.0.0.1", "missing or bad master name" },
        { "redis-sentinel://127.0.0.1/", "missing or bad master name" },
        { "redis-sentinel://127.0.0.1//0", "missing or bad master name" },
        { "redis-sentinel://127.0.0.1,/m", "empty sentinel address" },
        { "redis-sentinel://,127.0.0.1/m", "empty sentinel address" },
        { "redis-sentinel://127.0.0.1:0/m", "bad port \"0\"" },
        { "redis-sentinel://127.0.0.1:26379,10.0.0.2:x/m", "bad port" },
        { "redis-sentinel://[::1/m", "unterminated [" },
        { "redis-sentinel://127.0.0.1/m/x", "bad database number" },
        { "redis-sentinel://127.0.0.1/m?db=1", "query and fragment are not supported" },
        { "redis-sentinel://127.0.0.1/m%20x", "missing or bad master name" },
        { "redis-sentinel://app@127.0.0.1/m", "user without a password" },
        { "rediss-sentinel://127.0.0.1/m", "not supported yet" },
        { "redis-sentinel://1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,"
          "1.1.1.9,1.1.1.10,1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17/m",
          "more than 16 sentinels" },
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    assert_int_equal(sl_redis_url_parse("redis-sentinel://:pw@127.0.0.1,10.0.0.2:26380,"
                                        "[::1]:5000/my-master.1/3", &u, err, sizeof(err)), 0);
    assert_true(u.is_sentinel);
    assert_false(u.is_tls);
    assert_null(u.host);
    assert_null(u.path);
    assert_null(u.user);
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.master_name, "my-master.1");
    assert_int_equal(u.db, 3);
    assert_int_equal(u.nsentinels, 3);
    assert_string_equal(u.sentinels[0].host, "127.0.0.1");
    assert_int_equal(u.sentinels[0].port, 26379);
    assert_string_equal(u.sentinels[1].host, "10.0.0.2");
    assert_int_equal(u.sentinels[1].port, 26380);
    assert_string_equal(u.sentinels[2].host, "::1");
    assert_int_equal(u.sentinels[2].port, 5000);
    sl_redis_url_fini(&u);
    assert_int_equal(u.nsentinels, 0);
    assert_null(u.sentinels);

    assert_int_equal(sl_redis_url_parse("redis-sentinel://10.1.2.3:1/m/", &u, err, sizeof(err)),
                     0);
    assert_int_equal(u.nsentinels, 1);
    assert_int_equal(u.db, 0);
    sl_redis_url_fini(&u);
    /* a user whose password comes from store.password_file */
    assert_int_equal(sl_redis_url_parse_flags("redis-sentinel://app@127.0.0.1/m",
                                              SL_REDIS_URL_PASSWORD_LATER, &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.user, "app");
    sl_redis_url_fini(&u);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (sl_redis_url_parse(bad[i].url, &u, err, sizeof(err)) != -1)
            fail_msg("%s: accepted", bad[i].url);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].url, err, bad[i].why);
        assert_null(u.sentinels);
        assert_null(u.master_name);
        assert_null(u.password);
    }
    assert_int_equal(sl_redis_url_parse("redis-sentinel://:hunter2@127.0.0.1:0/m", &u, err,
                                        sizeof(err)), -1);
    assert_null(strstr(err, "hunter2"));
}

/* redis-cluster:// and rediss-cluster://: the seeds, in order, with port
 * 6379 by default, names kept for the resolver, the userinfo for every
 * node, db 0 only. */
static void
test_cluster(void **state)
{
    static const char *const db0[] = { "redis-cluster://h1", "redis-cluster://h1/",
                                       "redis-cluster://h1/0", "redis-cluster://h1/00" };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    assert_int_equal(sl_redis_url_parse("redis-cluster://app:p%40w@10.0.0.1:7000,"
                                        "redis-0.redis.svc,[::1]:7002/0", &u, err,
                                        sizeof(err)), 0);
    assert_true(u.is_cluster);
    assert_false(u.is_tls);
    assert_false(u.is_sentinel);
    assert_false(u.is_unix);
    assert_null(u.host);
    assert_null(u.path);
    assert_int_equal(u.port, 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@w");
    assert_int_equal(u.db, 0);
    assert_int_equal(u.nsentinels, 0);
    assert_int_equal(u.nseeds, 3);
    assert_string_equal(u.seeds[0].host, "10.0.0.1");
    assert_int_equal(u.seeds[0].port, 7000);
    assert_string_equal(u.seeds[1].host, "redis-0.redis.svc");
    assert_int_equal(u.seeds[1].port, 6379);
    assert_string_equal(u.seeds[2].host, "::1");
    assert_int_equal(u.seeds[2].port, 7002);
    sl_redis_url_fini(&u);
    assert_int_equal(u.nseeds, 0);
    assert_null(u.seeds);
    assert_false(u.is_cluster);

    assert_int_equal(sl_redis_url_parse("rediss-cluster://:pw@redis.internal:6380", &u, err,
                                        sizeof(err)), 0);
    assert_true(u.is_cluster);
    assert_true(u.is_tls);
    assert_null(u.user);
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.nseeds, 1);
    assert_string_equal(u.seeds[0].host, "redis.internal");
    assert_int_equal(u.seeds[0].port, 6380);
    sl_redis_url_fini(&u);
    for (size_t i = 0; i < sizeof(db0) / sizeof(db0[0]); i++) {
        if (sl_redis_url_parse(db0[i], &u, err, sizeof(err)) != 0)
            fail_msg("%s: %s", db0[i], err);
        assert_int_equal(u.db, 0);
        assert_int_equal(u.nseeds, 1);
        sl_redis_url_fini(&u);
    }
    /* 16 seeds are fine */
    assert_int_equal(sl_redis_url_parse("redis-cluster://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p", &u,
                                        err, sizeof(err)), 0);
    assert_int_equal(u.nseeds, SL_REDIS_SEEDS_MAX);
    assert_string_equal(u.seeds[15].host, "p");
    sl_redis_url_fini(&u);
    /* a user whose password comes from store.password_file */
    assert_int_equal(sl_redis_url_parse_flags("rediss-cluster://app@h1:7000,h2:7001",
                                              SL_REDIS_URL_PASSWORD_LATER, &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.user, "app");
    assert_null(u.password);
    assert_int_equal(u.nseeds, 2);
    sl_redis_url_fini(&u);

}

/* Cluster urls refused, with a reason that never quotes the password. */
static void
test_cluster_refused(void **state)
{
    static const struct {
        const char *url, *why;
    } bad[] = {
        { "redis-cluster://", "empty cluster node address" },
        { "redis-cluster:///0", "empty cluster node address" },
        { "redis-cluster://h1,,h2", "empty cluster node address" },
        { "redis-cluster://h1,", "empty cluster node address" },
        { "redis-cluster://:pw@", "empty cluster node address" },
        { "redis-cluster://h1:0", "bad port \"0\"" },
        { "redis-cluster://h1:7000,h2:x", "bad port" },
        { "redis-cluster://[::1", "unterminated [" },
        { "redis-cluster://a b", "bad host" },
        { "redis-cluster://h1/1", "database 1: Redis Cluster has only db 0" },
        { "redis-cluster://h1,h2:7001/15", "Redis Cluster has only db 0" },
        { "rediss-cluster://h1/2", "Redis Cluster has only db 0" },
        { "redis-cluster://h1/x", "bad path \"/x\"" },
        { "redis-cluster://h1/0/", "bad path" },
        { "redis-cluster://h1/mymaster/0", "bad path" },
        { "redis-cluster://h1?db=0", "query and fragment are not supported" },
        { "redis-cluster://h1/0#x", "query and fragment are not supported" },
        { "redis-cluster://app@h1", "user without a password" },
        { "redis-cluster://:p%zz@h1", "bad %-escape in the password" },
        { "redis-cluster://1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,"
          "1.1.1.9,1.1.1.10,1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17",
          "more than 16 cluster nodes" },
        { "redis-clusters://h1", "bad url" },
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (sl_redis_url_parse(bad[i].url, &u, err, sizeof(err)) != -1)
            fail_msg("%s: accepted", bad[i].url);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].url, err, bad[i].why);
        assert_null(u.seeds);
        assert_int_equal(u.nseeds, 0);
        assert_false(u.is_cluster);
        assert_null(u.password);
    }
    assert_int_equal(sl_redis_url_parse("redis-cluster://:hunter2@h1:0", &u, err,
                                        sizeof(err)), -1);
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(sl_redis_url_parse("rediss-cluster://hunter2:hunter2@h1/3", &u, err,
                                        sizeof(err)), -1);
    assert_null(strstr(err, "hunter2"));
}

static void
test_fini_zeroed(void **state)
{
    struct sl_redis_url u = { 0 };

    (void)state;
    sl_redis_url_fini(&u);
    assert_null(u.host);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_no_credentials_in_reasons),
        cmocka_unit_test(test_password_later),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_sentinel),
        cmocka_unit_test(test_cluster),
        cmocka_unit_test(test_cluster_refused),
        cmocka_unit_test(test_fini_zeroed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
