/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Config generations of one worker's proxy: sl_proxy_prepare builds without
 * switching, sl_proxy_commit switches, sl_proxy_abort throws away, and a
 * failed prepare leaves the running generation alone. Which generation runs
 * is read from the shared configs' reference counts (the proxy's generation
 * holds one on the config it was built from).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/limiter.h"
#include "sluice/proxy.h"

struct fixture {
    char dir[64];
    struct event_base *base;
    struct sl_limiter_shared *limiter_shared;
    struct sl_proxy *px;
    struct sl_shared_config *running; /* set with sl_proxy_set_config */
};

static struct sl_shared_config *
load(struct fixture *f, const char *name, const char *access_log)
{
    char path[128], *errors = NULL;
    struct sl_config *cfg;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "listen = \"127.0.0.1:8080\"\n"
            "access_log = \"%s\"\n"
            "upstreams = { app = { servers = { \"127.0.0.1:9000\" } } }\n"
            "limits = { per_ip = { key = \"ip\", rate = 10 } }\n"
            "routes = { { path = \"/\", upstream = \"app\", limits = { \"per_ip\" } } }\n",
            access_log);
    fclose(fp);
    cfg = sl_config_load(path, &errors);
    if (cfg == NULL)
        fail_msg("%s", errors);
    return sl_shared_config_new(cfg);
}

static unsigned
refs(struct sl_shared_config *shared)
{
    return atomic_load(&shared->refs);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    snprintf(f->dir, sizeof(f->dir), "/tmp/sl-proxy-gen-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    f->limiter_shared = sl_limiter_shared_new(1000);
    f->px = sl_proxy_new(f->base, 0, 1, f->limiter_shared, NULL);
    f->running = load(f, "old.conf", "off");
    assert_int_equal(sl_proxy_set_config(f->px, f->running, err, sizeof(err)), 0);
    assert_int_equal(refs(f->running), 2);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    static const char *const files[] = { "old.conf", "new.conf", "bad.conf", "log.conf",
                                         "access.log" };
    char path[128];

    sl_proxy_free(f->px);
    assert_int_equal(refs(f->running), 1);
    sl_shared_config_unref(f->running);
    sl_limiter_shared_free(f->limiter_shared);
    event_base_free(f->base);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        (void)unlink(path);
    }
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    return 0;
}

static void
test_prepare_does_not_switch_commit_does(void **state)
{
    struct fixture *f = *state;
    struct sl_shared_config *next = load(f, "new.conf", "off");
    struct sl_proxy_gen *gen;
    char err[256];

    gen = sl_proxy_prepare(f->px, next, err, sizeof(err));
    assert_non_null(gen);
    assert_int_equal(refs(next), 2);       /* held by the prepared generation */
    assert_int_equal(refs(f->running), 2); /* still the running one */
    sl_proxy_commit(f->px, gen);
    assert_int_equal(refs(next), 2);       /* now running */
    assert_int_equal(refs(f->running), 1); /* let go */
    sl_shared_config_unref(f->running);
    f->running = next;
}

static void
test_abort_keeps_the_running_generation(void **state)
{
    struct fixture *f = *state;
    struct sl_shared_config *next = load(f, "new.conf", "off");
    struct sl_proxy_gen *gen;
    char err[256];

    gen = sl_proxy_prepare(f->px, next, err, sizeof(err));
    assert_non_null(gen);
    sl_proxy_abort(f->px, gen);
    assert_int_equal(refs(next), 1);
    assert_int_equal(refs(f->running), 2);
    sl_proxy_abort(f->px, NULL); /* a no-op */
    sl_shared_config_unref(next);
}

static void
test_unopenable_access_log_fails_prepare(void **state)
{
    struct fixture *f = *state;
    char path[128], want[192], err[256];
    struct sl_shared_config *next;

    snprintf(path, sizeof(path), "%s/no-such-dir/access.log", f->dir);
    next = load(f, "bad.conf", path);
    err[0] = '\0';
    assert_null(sl_proxy_prepare(f->px, next, err, sizeof(err)));
    snprintf(want, sizeof(want), "access log \"%s\": %s", path, strerror(ENOENT));
    assert_string_equal(err, want);
    assert_int_equal(refs(next), 1); /* nothing of it is kept */
    assert_int_equal(refs(f->running), 2);
    assert_int_equal(sl_proxy_set_config(f->px, next, err, sizeof(err)), -1);
    assert_int_equal(refs(f->running), 2);
    sl_shared_config_unref(next);
}

static void
test_new_access_log_is_opened_at_prepare(void **state)
{
    struct fixture *f = *state;
    char path[128], err[256];
    struct sl_shared_config *next;
    struct sl_proxy_gen *gen;
    struct stat st;

    snprintf(path, sizeof(path), "%s/access.log", f->dir);
    next = load(f, "log.conf", path);
    gen = sl_proxy_prepare(f->px, next, err, sizeof(err));
    assert_non_null(gen);
    /* Opened (created) before the switch: a commit cannot fail on it. */
    assert_int_equal(stat(path, &st), 0);
    sl_proxy_commit(f->px, gen);
    sl_shared_config_unref(f->running);
    f->running = next;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prepare_does_not_switch_commit_does, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_keeps_the_running_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_access_log_fails_prepare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_access_log_is_opened_at_prepare, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
