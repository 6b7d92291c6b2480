/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store_redis: URL parsing, reply parsing and the script's argument text
 * (statics, reached by including the source), then the whole backend against
 * tests/unit/fakes/fake_redis.h, a RESP fake on a unix socket in a temporary
 * directory that runs the real script: handshake order, batching, NOSCRIPT
 * recovery, timeouts, lost connections and reconnection, error replies, and
 * every callback exactly once, freeing included. No network is used; time
 * passes for real only for a 20 ms timeout, 100 ms backoffs and the 1 s
 * connect timeout.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sluice/log.h"
#include "util/clock.h"

/* the statics of all three files of the store */
#include "../../src/store_redis.c"
#include "../../src/store_redis_batch.c"
#include "../../src/store_redis_conn.c"
#include "fakes/fake_redis.h"

/* ---- URLs ------------------------------------------------------------------------ */

/* parse_url with a conf of this url alone. */
static int
parse_url_text(const char *url, struct sl_redis_url *u, char *err, size_t err_size)
{
    struct sl_store_conf conf = { .kind = SL_STORE_REDIS, .url = (char *)(uintptr_t)url };

    return parse_url(&conf, u, err, err_size);
}

/* The grammar is util/redis_url's (tests/unit/test_redis_url.c); here, that
 * parse_url hands every parameter over and words its errors for the log. */
static void
test_parse_url(void **state)
{
    static const struct {
        const char *url;
        const char *host, *path, *user, *password;
        int port;
        long db;
    } good[] = {
        { "redis://app:p%40ss@h:7000/12", "h", NULL, "app", "p@ss", 7000, 12 },
        { "redis://[::1]", "::1", NULL, NULL, NULL, 6379, 0 },
        { "unix:/r.sock?db=1&user=a&password=b%26c", NULL, "/r.sock", "a", "b&c", 0, 1 },
        { "unix://a:b%26c@/r.sock?db=1", NULL, "/r.sock", "a", "b&c", 0, 1 },
    };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (parse_url_text(good[i].url, &u, err, sizeof(err)) != 0)
            fail_msg("%s: %s", good[i].url, err);
#define SAME(a, b) assert_true(((a) == NULL && (b) == NULL) || ((a) && (b) && !strcmp(a, b)))
        SAME(u.host, good[i].host);
        SAME(u.path, good[i].path);
        SAME(u.user, good[i].user);
        SAME(u.password, good[i].password);
#undef SAME
        assert_int_equal(u.port, good[i].port);
        assert_int_equal(u.db, good[i].db);
        sl_redis_url_fini(&u);
    }
    assert_int_equal(parse_url_text("rediss://h:0", &u, err, sizeof(err)), -1);
    assert_string_equal(err, "redis url: bad port \"0\" (use 1 to 65535)");
    assert_null(u.host);
    assert_int_equal(parse_url_text("rediss://h:6380", &u, err, sizeof(err)), 0);
    assert_true(u.is_tls);
    sl_redis_url_fini(&u);
    /* credentials never reach the message */
    assert_int_equal(parse_url_text("redis://:hunter2@h:99999", &u, err, sizeof(err)), -1);
    assert_null(strstr(err, "hunter2"));
}

/* password_file: the conf's password goes with the url's user, over TCP and
 * unix sockets alike. */
static void
test_parse_url_password_from_file(void **state)
{
    struct sl_store_conf conf = { .kind = SL_STORE_REDIS, .password = (char *)"from-file" };
    struct sl_redis_url u;
    char err[256];

    (void)state;
    conf.url = (char *)"redis://app@h:7000/1";
    assert_int_equal(parse_url(&conf, &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "from-file");
    sl_redis_url_fini(&u);
    conf.url = (char *)"unix:/r.sock?db=2";
    assert_int_equal(parse_url(&conf, &u, err, sizeof(err)), 0);
    assert_null(u.user);
    assert_string_equal(u.password, "from-file");
    sl_redis_url_fini(&u);
    conf.url = (char *)"unix://app@/r.sock";
    assert_int_equal(parse_url(&conf, &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "from-file");
    sl_redis_url_fini(&u);
}

/* ---- the script's arguments and its reply ---------------------------------------- */

static void
test_params_resp(void **state)
{
    static const char want[] = "$1\r\n1\r\n$3\r\n100\r\n$1\r\n1\r\n$5\r\n20000\r\n$4\r\n1500\r\n";
    struct redis_store rs = { 0 };
    struct sl_store_bucket b = { .key = "k", .key_len = 1, .rate = 10, .per_ms = 1000,
                                 .burst = 20, .cost = 1.5 };
    const struct param_cache *pc;

    (void)state;
    pc = params_resp(&rs, &b);
    assert_non_null(pc);
    /* q p tu b c, each a RESP bulk string */
    assert_int_equal(pc->len, sizeof(want) - 1);
    assert_memory_equal(pc->resp, want, pc->len);
    assert_ptr_equal(params_resp(&rs, &b), pc); /* cached */
    b.per_ms = 0;
    assert_null(params_resp(&rs, &b));
    assert_null(params_resp(&rs, &b)); /* cached as invalid */
    b.per_ms = 1000;
    for (int i = 0; i < 20; i++) {
        b.rate = i + 1;
        assert_non_null(params_resp(&rs, &b)); /* evicts round robin */
    }
}

/* Feeds RESP text to a reader using the pooled object functions. */
static redisReader *
pooled_reader(struct reply_pool *pool)
{
    redisReader *r = redisReaderCreateWithFunctions(&sl_redis_reply_functions);

    assert_non_null(r);
    r->privdata = pool;
    return r;
}

static void
test_reply_pool(void **state)
{
    static const char batch[] = "*4\r\n:1\r\n:-5\r\n:0\r\n:1500\r\n";
    struct reply_pool pool = { 0 }; /* on the stack: drained, never released */
    redisReader *r = pooled_reader(&pool);
    redisReply *reply;
    void *obj;

    (void)state;
    /* an array of integers, as the script answers */
    assert_int_equal(redisReaderFeed(r, batch, sizeof(batch) - 1), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    reply = obj;
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 4);
    assert_int_equal(reply->element[0]->integer, 1);
    assert_int_equal(reply->element[1]->integer, -5);
    assert_int_equal(reply->element[3]->integer, 1500);
    reply_free(reply);
    assert_int_equal(pool.nfree, 5); /* the array and its four elements */

    /* the next reply reuses them: nothing new is allocated */
    assert_int_equal(redisReaderFeed(r, batch, sizeof(batch) - 1), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_int_equal(pool.nfree, 0);
    reply_free(obj);
    assert_int_equal(pool.nfree, 5);

    /* strings, errors, nil and nested arrays */
    static const char mixed[] = "*3\r\n$3\r\nabc\r\n$-1\r\n*1\r\n-NOSCRIPT x\r\n";
    assert_int_equal(redisReaderFeed(r, mixed, sizeof(mixed) - 1), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    reply = obj;
    assert_int_equal(reply->elements, 3);
    assert_int_equal(reply->element[0]->type, REDIS_REPLY_STRING);
    assert_string_equal(reply->element[0]->str, "abc");
    assert_int_equal(reply->element[0]->len, 3);
    assert_int_equal(reply->element[1]->type, REDIS_REPLY_NIL);
    assert_int_equal(reply->element[2]->element[0]->type, REDIS_REPLY_ERROR);
    assert_string_equal(reply->element[2]->element[0]->str, "NOSCRIPT x");
    reply_free(reply);
    assert_int_equal(pool.nfree, 5);

    /* a reply cut off when the connection goes is freed by the reader */
    assert_int_equal(redisReaderFeed(r, "*3\r\n:1\r\n", 8), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_null(obj);
    redisReaderFree(r);
    assert_int_equal(pool.nfree, 5);
    reply_pool_drain(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free);
    assert_int_equal(pool.nlive, 0);
}

/* The store goes while hiredis still holds a reply (freed from inside its
 * callback): the pool outlives it until the reply comes back. ASan and
 * valgrind see any access to freed memory or a leak. */
static void
test_reply_pool_outlives_store(void **state)
{
    static const char batch[] = "*2\r\n:1\r\n:2\r\n";
    struct reply_pool *pool = sl_xcalloc(1, sizeof(*pool));
    redisReader *r = pooled_reader(pool);
    void *obj;

    (void)state;
    assert_int_equal(redisReaderFeed(r, batch, sizeof(batch) - 1), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_int_equal(pool->nlive, 3);
    reply_pool_release(pool); /* the store is destroyed: the pool stays, detached */
    reply_free(obj);          /* hiredis gives the reply back: the pool goes too */
    redisReaderFree(r);
    reply_pool_release(NULL);
}

static int nanswers;
static enum sl_store_status last_status;
static bool last_admitted;
static struct sl_store_result last_results[4];
static size_t last_n;

static void
record(void *arg, enum sl_store_status status, bool is_admitted,
       const struct sl_store_result *results, size_t n)
{
    int *count = arg;

    if (count != NULL)
        (*count)++;
    nanswers++;
    last_status = status;
    last_admitted = is_admitted;
    last_n = n;
    if (status == SL_STORE_OK && n > 0)
        memcpy(last_results, results, (n < 4 ? n : 4) * sizeof(*results));
}

static redisReply *
int_reply(long long v)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static void
test_reply_parsing(void **state)
{
    struct redis_store rs = { 0 };
    struct batch b = { 0 };
    struct pending checks[2] = { { .cb = record, .nbuckets = 2 }, { .cb = record, .nbuckets = 1 } };
    /* check 1: admitted, two buckets; check 2: refused, one bucket */
    long long vals[11] = { 1, 2500, 0, 100, 7, 3, 9, 0, 12000, -1, 0 };
    redisReply arr = { .type = REDIS_REPLY_ARRAY }, *el[11];

    (void)state;
    b.checks = checks;
    b.nchecks = 2;
    for (int i = 0; i < 11; i++)
        el[i] = int_reply(vals[i]);
    arr.element = el;
    arr.elements = 10;
    assert_false(reply_fits(&b, &arr)); /* one short */
    arr.elements = 11;
    assert_true(reply_fits(&b, &arr));
    el[4]->type = REDIS_REPLY_STRING;
    assert_false(reply_fits(&b, &arr)); /* not an integer */
    el[4]->type = REDIS_REPLY_INTEGER;
    nanswers = 0;
    deliver(&rs, &b, &arr);
    assert_int_equal(nanswers, 2);
    /* the second check: refused, 12 tokens left, retry never */
    assert_false(last_admitted);
    assert_int_equal(last_n, 1);
    assert_true(last_results[0].remaining == 12.0);
    assert_true(last_results[0].retry_ms == SL_STORE_RETRY_NEVER);
    assert_int_equal(b.state, BATCH_DONE);
    assert_int_equal(atomic_load(&rs.checks), 2);
    for (int i = 0; i < 11; i++)
        free(el[i]);
    free(rs.results);
}

/* ---- against the fake ------------------------------------------------------------ */

struct env {
    struct event_base *base;
    struct fake_redis fr;
    struct sl_store *store;
    struct sl_store_conf conf;
    char url[200];
};

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    e->base = event_base_new();
    fake_redis_init(&e->fr, e->base);
    snprintf(e->url, sizeof(e->url), "unix:%s", e->fr.path);
    /* generous: the fake shares the thread; the timeout test sets its own */
    e->conf = (struct sl_store_conf){ .kind = SL_STORE_REDIS, .url = e->url, .timeout_ms = 1000 };
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;

    sl_store_free(e->store);
    fake_redis_fini(&e->fr);
    event_base_free(e->base);
    free(e);
    return 0;
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until *flag (or the store is up, when flag is NULL) or ms pass. */
static bool
run_until(struct env *e, const int *count, int want, int ms)
{
    bool is_late = false;
    struct event *deadline = evtimer_new(e->base, on_deadline, &is_late);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    evtimer_add(deadline, &tv);
    while (!is_late) {
        if (count != NULL ? *count >= want : e->store->ops->is_up(e->store))
            break;
        event_base_loop(e->base, EVLOOP_ONCE);
    }
    event_free(deadline);
    return !is_late;
}

static void
run_for(struct env *e, int ms)
{
    int never = 0;

    run_until(e, &never, 1, ms);
}

static struct sl_store_bucket
bk(const char *key, double burst)
{
    return (struct sl_store_bucket){ .key = key, .key_len = strlen(key), .rate = 1,
                                     .per_ms = 60000, .burst = burst, .cost = 1 };
}

static struct sl_store_stats
stats(struct env *e)
{
    struct sl_store_stats st;

    sl_store_get_stats(e->store, &st);
    return st;
}

static void
test_handshake_and_batching(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:a", 3);
    int count = 0;

    e->fr.user = "app";
    e->fr.password = "pw";
    snprintf(e->url, sizeof(e->url), "unix:%s?db=5&user=app&password=pw", e->fr.path);
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_non_null(e->store);
    assert_string_equal(e->store->ops->name, "redis");
    assert_true(run_until(e, NULL, 0, 1000));
    assert_string_equal(e->fr.trace, "AUTH3 SELECT LOAD");
    assert_int_equal(e->fr.conns->db, 5);

    /* 100 checks made in one loop pass share one script call */
    for (int i = 0; i < 100; i++)
        sl_store_check(e->store, &b, 1, record, &count);
    assert_int_equal(count, 0); /* nothing answered before the loop runs */
    assert_true(run_until(e, &count, 100, 1000));
    assert_int_equal(e->fr.nevalsha, 1);
    assert_int_equal(e->fr.nchecks, 100);
    assert_int_equal(stats(e).calls, 1);
    assert_int_equal(stats(e).checks, 100);
    assert_int_equal(stats(e).connects, 1);

    /* exact admission: the burst and not one more; a later check sees retry */
    nanswers = 0;
    count = 0;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_false(last_admitted);
    assert_true(last_results[0].retry_ms == 60000);
}

static void
test_exact_admission(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket pair[2] = { bk("t:p1", 1000), bk("t:p2", 250) };
    int count = 0, admitted = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    /* 1000 checks over several passes: batches of at most 128, full ones pipelined */
    for (int i = 0; i < 1000; i++) {
        sl_store_check(e->store, pair, 2, record, &count);
        if (i % 300 == 299)
            event_base_loop(e->base, EVLOOP_NONBLOCK);
    }
    while (count < 1000 && run_until(e, &count, 1000, 1000))
        ;
    assert_int_equal(count, 1000);
    assert_int_equal(stats(e).errors_timeout + stats(e).errors_connection, 0);
    assert_true(stats(e).calls >= 8 && stats(e).calls <= 12);
    /* all or nothing: t:p1 lost exactly what t:p2 allowed */
    nanswers = 0;
    count = 0;
    pair[0].cost = 0;
    sl_store_check(e->store, pair, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_true(last_admitted && last_results[0].remaining == 750);
    (void)admitted;
}

static void
test_noscript(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:n", 100);
    int count = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.has_script = false; /* SCRIPT FLUSH, or a restarted Redis behind a proxy */
    for (int i = 0; i < 10; i++)
        sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 10, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_int_equal(stats(e).errors_reply, 0);
    assert_int_equal(stats(e).noscript_reloads, 1);
    assert_int_equal(e->fr.nnoscript, 1);
    assert_int_equal(e->fr.nscript_loads, 2);
    assert_int_equal(e->fr.nchecks, 10);
    assert_string_equal(e->fr.trace, "LOAD EVALSHA LOAD EVALSHA");
}

/* A late call fails its own checks with SL_STORE_TIMEOUT and the connection
 * stays; its reply, when it comes, is dropped. */
static void
test_late_call_keeps_connection(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:l", 100);
    int count = 0, late = 0, after = 0;

    e->conf.timeout_ms = 20;
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.is_holding = true;
    for (int i = 0; i < 5; i++)
        sl_store_check(e->store, &b, 1, record, &count);
    event_base_loop(e->base, EVLOOP_NONBLOCK); /* sent; the next ones queue behind */
    for (int i = 0; i < 5; i++)
        sl_store_check(e->store, &b, 1, record, &late);
    assert_true(run_until(e, &late, 5, 1000));
    /* the first call timed out, then the queued one went out and did too */
    assert_int_equal(count, 5);
    assert_int_equal(late, 5);
    /* no wall-clock bounds: libevent's coarse monotonic clock fires a 20 ms
     * timer a few ms either way, and a loaded CI box stretches it further */
    assert_int_equal(last_status, SL_STORE_TIMEOUT);
    assert_int_equal(stats(e).errors_timeout, 10);
    assert_true(e->store->ops->is_up(e->store));

    /* the late replies arrive: dropped, nobody is answered twice */
    fake_redis_release(&e->fr);
    run_for(e, 50);
    assert_int_equal(count, 5);
    assert_int_equal(late, 5);
    assert_int_equal(e->fr.nchecks, 10); /* Redis did run them */
    sl_store_check(e->store, &b, 1, record, &after);
    assert_true(run_until(e, &after, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_int_equal(stats(e).connects, 1); /* the same connection all along */
    assert_int_equal(stats(e).reconnects, 0);
    assert_int_equal(e->fr.naccepts, 1);
}

/* A Redis that answers nothing: dropped after more than ORPHANS_MAX late
 * calls, or after the stall time, whichever comes first; then recovery. */
static void
test_silent_redis_dropped_then_recovery(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:t", 100);
    int count = 0;

    e->conf.timeout_ms = 20;
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.is_silent = true;
    /* one call at a time, each timing out: the connection owes them all */
    for (int i = 0; i < ORPHANS_MAX; i++) {
        int one = 0;
        sl_store_check(e->store, &b, 1, record, &one);
        assert_true(run_until(e, &one, 1, 1000));
        assert_int_equal(last_status, SL_STORE_TIMEOUT);
        assert_true(e->store->ops->is_up(e->store));
    }
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_TIMEOUT);
    assert_false(e->store->ops->is_up(e->store)); /* one late reply too many */

    /* reconnected at once; while the new connection hangs, checks wait at
     * most the timeout, then it too is dropped after the stall time */
    count = 0;
    run_for(e, 5);
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_true(last_status == SL_STORE_TIMEOUT || last_status == SL_STORE_CONNECTION);
    e->fr.is_silent = false;
    e->fr.trace[0] = '\0';
    assert_true(run_until(e, NULL, 0, 5000));
    count = 0;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_true(stats(e).reconnects >= 1);
}

/* Late replies trickling in keep a slow connection; silence does not. */
static void
test_stall_drops_connection(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:s", 100);
    int count = 0;
    uint64_t t0;

    e->conf.timeout_ms = 20;
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.is_silent = true;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_TIMEOUT);
    t0 = sl_clock_now_us();
    /* nothing more is asked, nothing answers: dropped after STALL_MIN_MS */
    while (e->store->ops->is_up(e->store) && sl_clock_now_us() - t0 < 3000000)
        run_for(e, 50);
    assert_false(e->store->ops->is_up(e->store));
    assert_true(sl_clock_now_us() - t0 >= (STALL_MIN_MS - 100) * 1000ULL);
}

static void
test_connection_lost(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:c", 100);
    int count = 0, fast = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.is_silent = true;
    sl_store_check(e->store, &b, 1, record, &count);
    event_base_loop(e->base, EVLOOP_NONBLOCK);
    fake_redis_stop(&e->fr); /* drops the connection, and nobody listens */
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_CONNECTION);
    /* down: fail fast, before check returns */
    sl_store_check(e->store, &b, 1, record, &fast);
    assert_int_equal(fast, 1);
    assert_int_equal(last_status, SL_STORE_CONNECTION);
    run_for(e, 150); /* a few attempts with backoff */
    assert_false(e->store->ops->is_up(e->store));
    e->fr.is_silent = false;
    fake_redis_listen(&e->fr);
    assert_true(run_until(e, NULL, 0, 3000));
    count = 0;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_int_equal(stats(e).reconnects, 1);
    assert_int_equal(stats(e).connects, 2);
}

static void
test_error_reply(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:e", 100);
    int count = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    e->fr.eval_error = "BUSY Redis is busy running a script";
    sl_store_check(e->store, &b, 1, record, &count);
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 2, 1000));
    assert_int_equal(last_status, SL_STORE_REPLY);
    assert_int_equal(stats(e).errors_reply, 2);
    assert_true(e->store->ops->is_up(e->store)); /* the connection is fine */
    e->fr.eval_error = NULL;
    count = 0;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    /* a bucket the script cannot represent fails alone, at once */
    b.rate = 0;
    count = 0;
    sl_store_check(e->store, &b, 1, record, &count);
    assert_int_equal(count, 1);
    assert_int_equal(last_status, SL_STORE_REPLY);
}

static void
test_wrong_password(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:w", 100);
    int count = 0;

    e->fr.password = "right";
    snprintf(e->url, sizeof(e->url), "unix:%s?password=wrong", e->fr.path);
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    sl_store_check(e->store, &b, 1, record, &count); /* waits for the handshake */
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_CONNECTION);
    assert_false(e->store->ops->is_up(e->store));
    assert_null(strstr(e->fr.trace, "EVALSHA"));
}

static struct sl_store *free_me;
static int freed_answers;

static void
free_in_callback(void *arg, enum sl_store_status status, bool is_admitted,
                 const struct sl_store_result *results, size_t n)
{
    (void)status;
    (void)is_admitted;
    (void)results;
    (void)n;
    (*(int *)arg)++;
    freed_answers++;
    if (free_me != NULL) {
        struct sl_store *s = free_me;

        free_me = NULL;
        sl_store_free(s);
    }
}

static void
test_free_inside_callback(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:f", 100);
    int first = 0, rest = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    /* a full batch and more, so calls are in flight and queued when it goes */
    free_me = e->store;
    freed_answers = 0;
    sl_store_check(e->store, &b, 1, free_in_callback, &first);
    for (int i = 0; i < 300; i++)
        sl_store_check(e->store, &b, 1, free_in_callback, &rest);
    e->store = NULL;
    assert_true(run_until(e, &freed_answers, 301, 2000));
    run_for(e, 10);
    assert_int_equal(first, 1);
    assert_int_equal(rest, 300);
    assert_int_equal(freed_answers, 301);
}

/* The only check out, and the store freed in its callback: the store is
 * destroyed before hiredis gives that reply back to the reply pool. */
static void
test_free_inside_only_callback(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:o", 100);
    int only = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    free_me = e->store;
    freed_answers = 0;
    sl_store_check(e->store, &b, 1, free_in_callback, &only);
    e->store = NULL;
    assert_true(run_until(e, &freed_answers, 1, 2000));
    run_for(e, 10);
    assert_int_equal(only, 1);
}

static void
test_free_pending_and_down(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:g", 100);
    int count = 0;

    /* freed while connecting, with checks queued */
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    for (int i = 0; i < 3; i++)
        sl_store_check(e->store, &b, 1, record, &count);
    sl_store_free(e->store);
    assert_int_equal(count, 3);
    assert_int_equal(last_status, SL_STORE_CONNECTION);
    /* freed while down */
    fake_redis_stop(&e->fr);
    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    run_for(e, 10);
    sl_store_free(e->store);
    e->store = NULL;
    run_for(e, 10);
    assert_int_equal(count, 3);
}

/* A reset is a DEL queued with the checks: in order with them, answered
 * once, the bucket full after it; while down it fails fast like a check. */
static void
test_reset(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:r", 2);
    int count = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    for (int i = 0; i < 3; i++)
        sl_store_check(e->store, &b, 1, record, &count);
    sl_store_reset(e->store, "t:r", 3, record, &count);
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 5, 1000));
    /* the third check was refused, the one after the reset admitted */
    assert_int_equal(last_status, SL_STORE_OK);
    assert_true(last_admitted);
    assert_true(last_results[0].remaining == 1);
    assert_string_equal(e->fr.trace, "LOAD EVALSHA DEL EVALSHA");
    count = 0;
    sl_store_reset(e->store, "t:none", 6, record, &count);
    assert_true(run_until(e, &count, 1, 1000));
    assert_int_equal(last_status, SL_STORE_OK);
    assert_true(last_admitted);
    assert_int_equal(last_n, 0);

    fake_redis_stop(&e->fr);
    run_for(e, 50);
    count = 0;
    sl_store_reset(e->store, "t:r", 3, record, &count);
    assert_int_equal(count, 1); /* not connected: before reset returns */
    assert_int_equal(last_status, SL_STORE_CONNECTION);
}

static int64_t last_moved;

static void
record_lease(void *arg, enum sl_store_status status, int64_t moved,
             const struct sl_store_result *result)
{
    (*(int *)arg)++;
    last_status = status;
    last_moved = moved;
    if (result != NULL)
        last_results[0] = *result;
}

/* Lease operations go in the same batches as checks, in order, and run the
 * script's take / give-back (lua/token_bucket.lua). */
static void
test_lease(void **state)
{
    struct env *e = *state;
    struct sl_store_bucket b = bk("t:l", 100);
    int count = 0;

    e->store = sl_store_redis_new(&e->conf, e->base, NULL, 0);
    assert_true(run_until(e, NULL, 0, 1000));
    sl_store_check(e->store, &b, 1, record, &count);
    sl_store_lease(e->store, &b, SL_LEASE_TAKE, 30000, 0, 500, "ab12", record_lease, &count);
    assert_true(run_until(e, &count, 2, 1000));
    assert_int_equal(e->fr.nevalsha, 1);
    assert_int_equal(last_status, SL_STORE_OK);
    assert_int_equal(last_moved, 30000);
    assert_true(last_results[0].remaining == 69);
    /* what is held stays out of the bucket; given back, it is in again */
    sl_store_lease(e->store, &b, SL_LEASE_GIVE, 20000, 0, 500, "ab12", record_lease, &count);
    sl_store_check(e->store, &b, 1, record, &count);
    assert_true(run_until(e, &count, 4, 1000));
    assert_true(last_admitted);
    assert_true(last_results[0].remaining == 88);
    /* a bad holder id fails at once, and nothing goes out */
    count = 0;
    sl_store_lease(e->store, &b, SL_LEASE_TAKE, 1000, 0, 500, "x y", record_lease, &count);
    assert_int_equal(count, 1);
    assert_int_equal(last_status, SL_STORE_REPLY);
}

static void
test_bad_url(void **state)
{
    struct env *e = *state;
    char err[128];

    e->conf.url = "redis://h:99999";
    assert_null(sl_store_redis_new(&e->conf, e->base, err, sizeof(err)));
    assert_non_null(strstr(err, "bad port"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_parse_url_password_from_file),
        cmocka_unit_test(test_params_resp),
        cmocka_unit_test(test_reply_pool),
        cmocka_unit_test(test_reply_pool_outlives_store),
        cmocka_unit_test(test_reply_parsing),
        cmocka_unit_test_setup_teardown(test_handshake_and_batching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_admission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noscript, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_call_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_redis_dropped_then_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_drops_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_only_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_pending_and_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_url, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    sl_log_set_level(SL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
