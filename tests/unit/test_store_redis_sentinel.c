/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store_redis_sentinel: the replies a sentinel gives, read as the store
 * reads them (statics, reached by including the sources): a master's
 * address from SENTINEL GET-MASTER-ADDR-BY-NAME, accepted only as an IP
 * address and a port; +switch-master messages, followed only for our
 * master name and only when whole, and only from the subscription; a
 * store freed while its sentinel links are out. The sentinel here is a
 * socket on 127.0.0.1 that listens and never answers: nothing leaves the
 * host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/log.h"

#include "../../src/store_redis.c"
#include "../../src/store_redis_batch.c"
#include "../../src/store_redis_conn.c"
#include "../../src/store_redis_sentinel.c"

/* A reply as hiredis builds it from RESP text; freeReplyObject it. */
static redisReply *
reply_of(const char *resp)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

static void
test_master_addr(void **state)
{
    static const struct {
        const char *resp, *host;
        int port;
    } good[] = {
        { "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", "127.0.0.1", 6380 },
        { "*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", "::1", 65535 },
        { "*2\r\n$8\r\n10.0.0.7\r\n$1\r\n1\r\n", "10.0.0.7", 1 },
    };
    static const char *const bad[] = {
        "$-1\r\n",                                         /* unknown master name */
        "*-1\r\n",
        "-IDONTKNOW No such master with that name\r\n",
        "*0\r\n",
        "*1\r\n$9\r\n127.0.0.1\r\n",
        "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$1\r\nx\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n:6380\r\n",               /* port as an integer */
        "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n63x0\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$0\r\n\r\n",
        "*2\r\n$10\r\nredis.host\r\n$4\r\n6379\r\n",      /* a name: no lookup on a worker */
        "*2\r\n$0\r\n\r\n$4\r\n6379\r\n",
        "*2\r\n$50\r\n11111111111111111111111111111111111111111111111111\r\n$1\r\n1\r\n",
        "*2\r\n*0\r\n$4\r\n6379\r\n",
    };
    char host[INET6_ADDRSTRLEN];
    int port;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        redisReply *r = reply_of(good[i].resp);

        assert_true(master_addr_ok(r, host, sizeof(host), &port));
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
        freeReplyObject(r);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = reply_of(bad[i]);

        if (master_addr_ok(r, host, sizeof(host), &port))
            fail_msg("case %zu accepted", i);
        freeReplyObject(r);
    }
}

struct env {
    struct event_base *base;
    struct sl_store *store;
    int silent_fd;
    char url[128];
};

/* A sentinel that accepts (the kernel does) and never answers. */
static int
silent_listener(int *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static int
setup(void **state)
{
    static struct env e;
    struct sl_store_conf conf = { .kind = SL_STORE_REDIS, .timeout_ms = 100 };
    char err[256];
    int port;

    e.silent_fd = silent_listener(&port);
    snprintf(e.url, sizeof(e.url), "redis-sentinel://127.0.0.1:%d/mymaster/0", port);
    conf.url = e.url;
    e.base = event_base_new();
    e.store = sl_store_redis_new(&conf, e.base, err, sizeof(err));
    if (e.store == NULL)
        fail_msg("%s", err);
    *state = &e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;

    sl_store_free(e->store);
    event_base_loop(e->base, EVLOOP_NONBLOCK);
    event_base_free(e->base);
    close(e->silent_fd);
    return 0;
}

static int nanswers;
static enum sl_store_status last_status;

static void
record(void *arg, enum sl_store_status status, bool is_admitted,
       const struct sl_store_result *results, size_t n)
{
    (void)arg;
    (void)is_admitted;
    (void)results;
    (void)n;
    nanswers++;
    last_status = status;
}

/* No sentinel answers: the store is down, and checks fail at once (on_error
 * decides for them); nothing waits for the master. */
static void
test_no_sentinel_answers(void **state)
{
    struct env *e = *state;
    struct redis_store *rs = (struct redis_store *)e->store;
    struct sl_store_bucket b = { .key = "k", .key_len = 1, .rate = 1, .per_ms = 1000,
                                 .burst = 1, .cost = 1 };
    struct timeval tv = { 0, 50000 };

    event_base_loopexit(e->base, &tv);
    event_base_dispatch(e->base);
    assert_false(e->store->ops->is_up(e->store));
    assert_false(rs->sentinel->has_master);
    assert_non_null(rs->sentinel->query);
    assert_null(rs->link);
    nanswers = 0;
    e->store->ops->check(e->store, &b, 1, record, NULL);
    assert_int_equal(nanswers, 1);
    assert_int_equal(last_status, SL_STORE_CONNECTION);
}

/* +switch-master: our name only, the message whole, the new address numeric. */
static void
test_switch_master(void **state)
{
    struct env *e = *state;
    struct redis_store *rs = (struct redis_store *)e->store;
    struct sentinel *s = rs->sentinel;
    static const char *const ignored[] = {
        "other 127.0.0.1 6379 127.0.0.2 6380",
        "mymaster2 127.0.0.1 6379 127.0.0.2 6380",
        "mymaste 127.0.0.1 6379 127.0.0.2 6380",
        "mymaster 127.0.0.1 6379 127.0.0.2",
        "mymaster 127.0.0.1 6379 127.0.0.2 0",
        "mymaster 127.0.0.1 6379 127.0.0.2 65536",
        "mymaster 127.0.0.1 6379 new.host 6380",
        "",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        sl_redis_enter(rs);
        on_switch(s, ignored[i]);
        sl_redis_leave(rs);
        if (s->has_master)
            fail_msg("\"%s\" followed", ignored[i]);
    }
    sl_redis_enter(rs);
    on_switch(s, "mymaster 127.0.0.1 6379 127.0.0.2 6380");
    sl_redis_leave(rs);
    assert_true(s->has_master);
    assert_string_equal(s->master_host, "127.0.0.2");
    assert_int_equal(s->master_port, 6380);
    sl_redis_enter(rs);
    on_switch(s, "mymaster 127.0.0.2 6380 ::1 7000");
    sl_redis_leave(rs);
    assert_string_equal(s->master_host, "::1");
    assert_int_equal(s->master_port, 7000);
    /* a connection that goes down forgets it: the sentinels are asked again */
    sl_redis_sentinel_forget(rs);
    assert_false(s->has_master);
}

/* Pushed messages of other shapes are ignored. */
static void
test_push_shapes(void **state)
{
    struct env *e = *state;
    struct redis_store *rs = (struct redis_store *)e->store;
    struct sentinel *s = rs->sentinel;
    static const char *const pushes[] = {
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n:1\r\n",
        "*2\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n",
        "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n"
        "$35\r\nmymaster 127.0.0.1 1 127.0.0.3 6380\r\n",
        "+OK\r\n",
    };
    struct sl_redis_link *sub = s->sub;

    (void)state;
    for (size_t i = 0; i < sizeof(pushes) / sizeof(pushes[0]); i++) {
        redisReply *r = reply_of(pushes[i]);

        on_sub_push(s->sub, r, rs);
        freeReplyObject(r);
        assert_false(s->has_master);
    }
    /* from a link that is not the subscription (an old one): ignored */
    {
        redisReply *r = reply_of("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n"
                                 "$35\r\nmymaster 127.0.0.1 1 127.0.0.3 6380\r\n");

        on_sub_push((struct sl_redis_link *)(uintptr_t)1, r, rs);
        assert_false(s->has_master);
        assert_non_null(sub);
        on_sub_push(sub, r, rs);
        assert_true(s->has_master);
        assert_string_equal(s->master_host, "127.0.0.3");
        assert_int_equal(s->master_port, 6380);
        freeReplyObject(r);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_master_addr),
        cmocka_unit_test_setup_teardown(test_no_sentinel_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_shapes, setup, teardown),
    };

    sl_log_set_level(SL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
