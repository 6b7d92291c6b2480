/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Test helper for test_store_redis_cluster.c: a cluster store whose nodes
 * are sockets on 127.0.0.1 (and ::1) that listen and never answer, so a
 * node stays connecting and its checks sit in its queue; the test finds a
 * queued batch by its keys and answers it as the link would (the reply
 * handed to on_eval_reply, as if the call had gone out), or fails it. A
 * fake seed answers CLUSTER SLOTS with a canned reply. Then the
 * expectations several tests share: a declared batch's exact bytes, a
 * command's arguments as Redis reads them.
 *
 * Header-only, static functions, and it reads the statics of the store:
 * include it after cmocka.h, src/store_redis_batch.c and
 * src/store_redis_cluster.c.
 */
#ifndef SL_TEST_CLUSTER_ENV_H
#define SL_TEST_CLUSTER_ENV_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store_int.h"

#define TIMEOUT_MS 5000 /* no node timer fires while a test runs */

/* ---- helpers ------------------------------------------------------------------------- */

/* A reply (or a command) as hiredis builds it from RESP text, which it
 * must take whole; freeReplyObject it. */
static redisReply *
reply_of_len(const char *resp, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    assert_int_equal(r->pos, r->len);
    redisReaderFree(r);
    return reply;
}

static redisReply *
reply_of(const char *resp)
{
    return reply_of_len(resp, strlen(resp));
}

/* A server that accepts (the kernel does) and never answers; -1 when the
 * family is not there (no IPv6). */
static int
silent_listener(int family, int *port)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(family, SOCK_STREAM, 0);

    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0
        || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        assert_true(family == AF_INET6);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* A seed that answers CLUSTER SLOTS with `reply`, on the test's loop. */
struct fake_seed {
    struct event_base *base;
    int fd, conn;
    struct event *accept_ev, *read_ev;
    char in[1024];
    size_t in_len;
    char reply[1024];
    unsigned nasked;
};

static void
on_fake_read(evutil_socket_t fd, short what, void *arg)
{
    struct fake_seed *f = arg;
    ssize_t n = read(fd, f->in + f->in_len, sizeof(f->in) - 1 - f->in_len);

    (void)what;
    if (n <= 0) {
        event_free(f->read_ev);
        f->read_ev = NULL;
        close(f->conn);
        f->conn = -1;
        f->in_len = 0;
        return;
    }
    f->in_len += (size_t)n;
    f->in[f->in_len] = '\0';
    if (strstr(f->in, "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n") != NULL) {
        assert_int_equal(write(fd, f->reply, strlen(f->reply)), (ssize_t)strlen(f->reply));
        f->nasked++;
        f->in_len = 0;
    }
}

static void
on_fake_accept(evutil_socket_t fd, short what, void *arg)
{
    struct fake_seed *f = arg;
    int conn = accept(fd, NULL, NULL);

    (void)what;
    if (conn < 0)
        return;
    if (f->read_ev != NULL) { /* one at a time: the store's ask link is one */
        close(conn);
        return;
    }
    f->conn = conn;
    f->read_ev = event_new(f->base, conn, EV_READ | EV_PERSIST, on_fake_read, f);
    event_add(f->read_ev, NULL);
}

/* A CLUSTER SLOTS reply: 0..split-1 at port_a, split..16383 at port_b
 * (no second range when port_b is 0), each master [ip, port, id]. */
static void
slots_resp(char *out, size_t size, unsigned split, int port_a, int port_b)
{
    if (port_b == 0)
        snprintf(out, size,
                 "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$1\r\na\r\n", port_a);
    else
        snprintf(out, size,
                 "*2\r\n*3\r\n:0\r\n:%u\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$1\r\na\r\n"
                 "*3\r\n:%u\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$1\r\nb\r\n",
                 split - 1, port_a, split, port_b);
}

struct env {
    struct event_base *base;
    struct sl_store *store;
    struct redis_cluster *c;
    int seed_fd, a_fd, b_fd, c_fd, v6_fd;
    int seed_port, a_port, b_port, c_port, v6_port;
    char url[128];
    struct fake_seed fake;
};

static struct env the_env;

static int
make_store(struct env *e)
{
    struct sl_store_conf conf = { .kind = SL_STORE_REDIS, .timeout_ms = TIMEOUT_MS };
    char err[256];

    snprintf(e->url, sizeof(e->url), "redis-cluster://127.0.0.1:%d", e->seed_port);
    conf.url = e->url;
    e->store = sl_store_redis_new(&conf, e->base, err, sizeof(err));
    if (e->store == NULL)
        fail_msg("%s", err);
    assert_ptr_equal(e->store->ops, &cluster_ops);
    e->c = (struct redis_cluster *)e->store;
    return 0;
}

static void
listeners(struct env *e)
{
    *e = (struct env){ .fake.fd = -1, .fake.conn = -1 };
    e->base = event_base_new();
    e->a_fd = silent_listener(AF_INET, &e->a_port);
    e->b_fd = silent_listener(AF_INET, &e->b_port);
    e->c_fd = silent_listener(AF_INET, &e->c_port);
    e->v6_fd = silent_listener(AF_INET6, &e->v6_port);
    if (e->v6_fd == -1)
        e->v6_port = e->a_port; /* refused on ::1, still a node to make */
}

/* The seed never answers: no map comes unless a test applies one. */
static int
setup(void **state)
{
    struct env *e = &the_env;

    listeners(e);
    e->seed_fd = silent_listener(AF_INET, &e->seed_port);
    make_store(e);
    *state = e;
    return 0;
}

static void
drop_check(void *arg, enum sl_store_status status, bool is_admitted,
           const struct sl_store_result *results, size_t n)
{
    (void)arg, (void)status, (void)is_admitted, (void)results, (void)n;
}

static void
drop_lease(void *arg, enum sl_store_status status, int64_t moved_milli,
           const struct sl_store_result *result)
{
    (void)arg, (void)status, (void)moved_milli, (void)result;
}

/* Every check still pending answers nowhere: a test that failed midway left
 * them, and the `struct answer`s on its stack are gone. A split's part
 * still answers the split, which then answers nowhere. */
static void
detach_answers(struct redis_cluster *c)
{
    for (size_t i = 0; i < c->nnodes; i++) {
        struct batch *lists[2] = { c->nodes[i]->rs->queue_head, c->nodes[i]->rs->inflight };

        for (size_t l = 0; l < 2; l++) {
            for (struct batch *b = lists[l]; b != NULL; b = b->next) {
                for (size_t j = 0; j < b->nchecks; j++) {
                    struct pending *p = &b->checks[j];

                    if (p->lease_cb != NULL)
                        p->lease_cb = drop_lease;
                    else if (p->cb == on_part)
                        ((struct split_part *)p->arg)->s->cb = drop_check;
                    else
                        p->cb = drop_check;
                }
            }
        }
    }
}

static int
teardown(void **state)
{
    struct env *e = *state;

    if (e->store != NULL) {
        detach_answers(e->c);
        sl_store_free(e->store);
    }
    event_base_loop(e->base, EVLOOP_NONBLOCK);
    if (e->fake.read_ev != NULL)
        event_free(e->fake.read_ev);
    if (e->fake.accept_ev != NULL)
        event_free(e->fake.accept_ev);
    if (e->fake.conn != -1)
        close(e->fake.conn);
    event_base_free(e->base);
    close(e->seed_fd);
    close(e->a_fd);
    close(e->b_fd);
    close(e->c_fd);
    if (e->v6_fd != -1)
        close(e->v6_fd);
    return 0;
}

/* Frees the store before a test returns when checks are pending: they
 * answer now, into the test's own `struct answer`s, not into a stack frame
 * that is gone (teardown would be too late). */
static void
free_store(struct env *e)
{
    sl_store_free(e->store);
    e->store = NULL;
}

/* The map asked of no one for now: the ask link in flight is dropped, so
 * that a refresh the code schedules shows on soon_timer. */
static void
quiet_ask(struct redis_cluster *c)
{
    if (c->ask != NULL)
        ask_done(c);
    evtimer_del(c->every_timer);
    evtimer_del(c->soon_timer);
}

static struct cluster_node *
node_at(struct redis_cluster *c, int port)
{
    return node_find(c, "127.0.0.1", port);
}

/* A: 0..split-1, B: split..16383, as a parsed CLUSTER SLOTS would say. */
static void
map_two(struct env *e, unsigned split)
{
    char host_a[] = "127.0.0.1", host_b[] = "127.0.0.1";
    struct sl_redis_slot_range r[2] = {
        { .first = 0, .last = split - 1, .host = host_a, .port = e->a_port },
        { .first = split, .last = SL_REDIS_SLOTS - 1, .host = host_b, .port = e->b_port },
    };
    struct sl_redis_slot_map map = { .ranges = r, .n = 2 };

    enter(e->c);
    apply_map(e->c, &map);
    leave(e->c);
}

/* A store with A: 0..8191, B: 8192..16383 and no ask in flight. */
static int
setup_mapped(void **state)
{
    setup(state);
    quiet_ask(the_env.c);
    map_two(&the_env, 8192);
    return 0;
}

/* Keys by hash tag: KEY_A's slot is under 8192 (node A), KEY_A2's too (a
 * slot of its own), KEY_B's is over (node B). */
#define KEY_A "{b}:x"
#define KEY_A2 "{c}:x"
#define KEY_B "{a}:x"
#define KEY_B_2 "{a}:y"

static unsigned
slot_of(const char *key)
{
    return sl_redis_key_slot(key, strlen(key));
}

static struct sl_store_bucket
bucket(const char *key)
{
    return (struct sl_store_bucket){ .key = key, .key_len = strlen(key), .rate = 10,
                                     .per_ms = 1000, .burst = 10, .cost = 1 };
}

struct answer {
    int n;
    enum sl_store_status status;
    bool is_admitted;
    int64_t moved_milli; /* a lease operation's */
    bool has_results;
    size_t nresults;
    struct sl_store_result results[8];
};

static void
record(void *arg, enum sl_store_status status, bool is_admitted,
       const struct sl_store_result *results, size_t n)
{
    struct answer *a = arg;

    a->n++;
    a->status = status;
    a->is_admitted = is_admitted;
    a->has_results = results != NULL;
    a->nresults = n;
    for (size_t i = 0; i < n && i < 8; i++)
        a->results[i] = results[i];
}

static void
record_lease(void *arg, enum sl_store_status status, int64_t moved_milli,
             const struct sl_store_result *result)
{
    struct answer *a = arg;

    (void)result;
    a->moved_milli = moved_milli;
    a->n++;
    a->status = status;
}

/* ---- a node's batches ---------------------------------------------------------------- */

/* Whether b carries `key` (RESP bulk strings, so no false match inside one). */
static bool
has_key(const struct batch *b, const char *key)
{
    char resp[128];
    int len = snprintf(resp, sizeof(resp), "$%zu\r\n%s\r\n", strlen(key), key);

    return b->keys.len > 0 && memmem(b->keys.data, b->keys.len, resp, (size_t)len) != NULL;
}

/* The first batch on rs's queue carrying `key`; NULL when none does. */
static struct batch *
queued(const struct redis_store *rs, const char *key)
{
    for (struct batch *b = rs->queue_head; b != NULL; b = b->next) {
        if (has_key(b, key))
            return b;
    }
    return NULL;
}

static size_t
queue_length(const struct redis_store *rs)
{
    size_t n = 0;

    for (const struct batch *b = rs->queue_head; b != NULL; b = b->next)
        n++;
    return n;
}

/* That batch, taken off the queue. */
static struct batch *
unqueue(struct redis_store *rs, const char *key)
{
    struct batch *prev = NULL, *b;

    for (b = rs->queue_head; b != NULL && !has_key(b, key); b = b->next)
        prev = b;
    if (b == NULL)
        fail_msg("no batch with %s queued on %s", key, rs->name);
    if (prev == NULL)
        return queue_pop(rs);
    prev->next = b->next;
    if (rs->queue_tail == b)
        rs->queue_tail = prev;
    rs->nqueued -= b->nchecks;
    rs->queued_bytes -= b->keys.len;
    return b;
}

/* b (off the queue) as if sent, answered by the link with `resp`: the
 * reply goes through on_eval_reply, redirects and READONLY included. */
static void
mark_sent(struct redis_store *rs, struct batch *b)
{
    b->state = BATCH_SENT;
    b->sent_us = sl_clock_now_us();
    b->next = rs->inflight;
    rs->inflight = b;
    rs->ninflight++;
    rs->nowned++; /* the link's callback, owed */
}

static void
reply_batch(struct redis_store *rs, struct batch *b, const char *resp)
{
    redisReply *r = reply_of(resp);

    mark_sent(rs, b);
    on_eval_reply(rs->link, r, b);
    freeReplyObject(r);
}

/* rs's queued batch carrying `key`, answered with `resp`: the script's
 * reply for all its checks in order (or an error reply). */
static void
answer_reply(struct redis_store *rs, const char *key, const char *resp)
{
    reply_batch(rs, unqueue(rs, key), resp);
}

/* ... or failed with `status`, as a timeout or a lost connection does. */
static void
answer_fail(struct redis_store *rs, const char *key, enum sl_store_status status)
{
    struct batch *b = unqueue(rs, key);

    sl_redis_enter(rs);
    sl_redis_batch_fail(rs, b, status);
    sl_redis_batch_release(rs, b);
    sl_redis_leave(rs);
}

/* One check of one bucket, as the script answers it: admitted or not,
 * remaining milli-tokens; a key its master does not serve. */
#define ONE_ADMITTED(milli) ":1\r\n:" milli "\r\n:0\r\n:100\r\n"
#define ONE_REFUSED ":0\r\n:0\r\n:100\r\n:1000\r\n"
#define ONE_NOT_SERVED ":-9\r\n:0\r\n:0\r\n:0\r\n"
#define REPLY1(c1) "*4\r\n" c1
#define REPLY2(c1, c2) "*8\r\n" c1 c2

/* Operations (a check's first argument: its bucket count, or -1, -2, -3)
 * `op` on `key` queued on rs, one per check found. */
static size_t
ops_queued(const struct redis_store *rs, const char *key, const char *op)
{
    char key_resp[128], op_resp[32];
    size_t n = 0;

    snprintf(key_resp, sizeof(key_resp), "$%zu\r\n%s\r\n", strlen(key), key);
    snprintf(op_resp, sizeof(op_resp), "$%zu\r\n%s\r\n", strlen(op), op);
    for (const struct batch *b = rs->queue_head; b != NULL; b = b->next) {
        for (size_t i = 0; i < b->nchecks; i++) {
            const struct pending *p = &b->checks[i];

            if (p->args_len >= strlen(op_resp)
                && memcmp(b->args.data + p->args_off, op_resp, strlen(op_resp)) == 0
                && memmem(b->keys.data + p->keys_off, p->keys_len, key_resp, strlen(key_resp))
                       != NULL)
                n++;
        }
    }
    return n;
}

/* Refunds (k = -3) queued on rs for `key`, and anywhere on rs. */
static size_t
refunds_queued(const struct redis_store *rs, const char *key)
{
    return ops_queued(rs, key, "-3");
}

static size_t
refunds_anywhere(const struct redis_store *rs)
{
    size_t n = 0;

    for (const struct batch *b = rs->queue_head; b != NULL; b = b->next) {
        for (size_t i = 0; i < b->nchecks; i++)
            n += b->args.len >= b->checks[i].args_off + 8
                 && memcmp(b->args.data + b->checks[i].args_off, "$2\r\n-3\r\n", 8) == 0;
    }
    return n;
}

/* ---- expectations ------------------------------------------------------------------ */

/* Two buckets of one slot on A (KEY_A2's), and a lease operation. */
#define KEY_A2_2 "{c}:y"
#define TWO_NOT_SERVED ":-9\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"

static void
take(struct sl_store *store, const char *key, struct answer *ans)
{
    struct sl_store_bucket bk = bucket(key);

    store->ops->lease(store, &bk, SL_LEASE_TAKE, 1000, 0, 1000, "ab12", record_lease, ans);
}

/* The script's arguments of one operation: its count (or k), then each
 * bucket's q p tu b c, then a lease's numbers and holder. */
static void
expect_args(struct sl_buf *out, const char *k, const char *const *keys, size_t n,
            bool is_lease)
{
    char num[24];

    sl_redis_resp_arg(out, k, strlen(k));
    for (size_t i = 0; i < n; i++) {
        struct sl_store_bucket bk = bucket(keys[i]);
        struct sl_tb_params pr = { 0 };
        int64_t v[5];

        assert_int_equal(sl_tb_params_from_bucket(&pr, &bk), 0);
        v[0] = pr.q, v[1] = pr.p, v[2] = pr.tu, v[3] = pr.burst, v[4] = pr.cost;
        for (size_t j = 0; j < 5; j++)
            sl_redis_resp_arg(out, num, sl_redis_fmt_i64(num, v[j]));
    }
    if (is_lease) {
        sl_redis_resp_arg(out, "1000", 4);     /* milli */
        sl_redis_resp_arg(out, "0", 1);        /* held */
        sl_redis_resp_arg(out, "1000000", 7); /* ttl2, in us */
        sl_redis_resp_arg(out, "ab12", 4);
    }
}

/* A declared batch of one operation: exactly its keys and args. */
static void
assert_declared(const struct batch *d, const char *keys_resp, size_t nkeys, const char *k,
                const char *const *keys, bool is_lease)
{
    struct sl_buf args;

    sl_buf_init(&args, 4096);
    expect_args(&args, k, keys, nkeys, is_lease);
    assert_true(d->is_declared);
    assert_false(d->is_asking);
    assert_int_equal(d->nchecks, 1);
    assert_int_equal(d->nkeys, nkeys);
    assert_int_equal(d->nargs, is_lease ? 10 : 1 + 5 * nkeys);
    assert_int_equal(d->keys.len, strlen(keys_resp));
    assert_memory_equal(d->keys.data, keys_resp, d->keys.len);
    assert_int_equal(d->args.len, args.len);
    assert_memory_equal(d->args.data, args.data, args.len);
    assert_int_equal(d->checks[0].keys_off, 0);
    assert_int_equal(d->checks[0].keys_len, d->keys.len);
    assert_int_equal(d->checks[0].args_off, 0);
    assert_int_equal(d->checks[0].args_len, d->args.len);
    assert_int_equal(d->checks[0].nkeys, nkeys);
    assert_int_equal(d->checks[0].nargs, d->nargs);
    sl_buf_fini(&args);
}

/* Answers the batch of `key` on rs with a MOVED or ASK to port. */
static void
redirect_to(struct redis_store *rs, const char *key, const char *kind, int port)
{
    char text[128];

    snprintf(text, sizeof(text), "-%s %u 127.0.0.1:%d\r\n", kind, slot_of(key), port);
    answer_reply(rs, key, text);
}

/* The command as Redis reads it: every argument, and nothing after. */
static void
assert_command(const struct sl_buf *cmd, const char *const *want, size_t n)
{
    redisReply *r = reply_of_len(cmd->data, cmd->len);

    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_STRING);
        if (strcmp(r->element[i]->str, want[i]) != 0)
            fail_msg("argument %zu: \"%s\", want \"%s\"", i, r->element[i]->str, want[i]);
    }
    freeReplyObject(r);
}

static void
apply_resp(struct redis_cluster *c, const char *resp)
{
    redisReply *reply = reply_of(resp);
    struct sl_redis_slot_map map = { 0 };
    char err[200];

    if (sl_redis_slot_map_parse(reply, "127.0.0.1", &map, err, sizeof(err)) == -1)
        fail_msg("%s", err);
    enter(c);
    apply_map(c, &map);
    leave(c);
    sl_redis_slot_map_fini(&map);
    freeReplyObject(reply);
}

#endif
