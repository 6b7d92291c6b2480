/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * upstream pool tests on a real event_base against loopback servers the test
 * makes itself: listening sockets it accepts on, a port with no listener (a
 * refused server), and a listener whose accept queue is full, where the
 * kernel drops the SYN so a connect hangs until the pool's connect timeout.
 * Checks asynchronous delivery, round-robin, weights and the other balance
 * algorithms, failover and down marking,
 * keep-alive reuse and the idle cache, the in-flight bound with its queue and shedding, and
 * cancellation. Time passes for real only for a few timeouts of 30-50 ms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/log.h"
#include "sluice/netaddr.h"
#include "sluice/upstream.h"
#include "util/clock.h"

#define MAX_SERVERS 3
#define MAX_FDS 256

enum server_kind {
    SRV_ACCEPT, /* listens and accepts every connection */
    SRV_REFUSE, /* nothing listens: connect is refused */
    SRV_FULL,   /* listens with a full accept queue: connect hangs */
};

static struct {
    struct event_base *base;
    struct sl_sockaddr servers[MAX_SERVERS];
    unsigned weights[MAX_SERVERS];
    struct sl_upstream_conf conf;
    struct sl_upstream_pool *pool;
    struct event *accept_ev[MAX_SERVERS];
    unsigned naccept_ev;
    int fds[MAX_FDS]; /* listeners, fillers and accepted connections, closed at teardown */
    unsigned nfds;
    int naccepted;
} f;

/* What one acquire's callback saw. Tests keep waits and these in static
 * storage: a failed assertion leaves the test by longjmp, and a wait's timer
 * still in the event_base must not point into a dead stack frame. */
struct got {
    int calls;
    int status;
    struct sl_upconn *conn;
    bool was_early; /* fired while sl_upstream_acquire was still on the stack */
};

static bool is_in_acquire;

/* ---- loopback servers ------------------------------------------------------ */

static void
keep_fd(int fd)
{
    assert_true(f.nfds < MAX_FDS);
    f.fds[f.nfds++] = fd;
}

static int
bound_socket(struct sl_sockaddr *out)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    char text[32];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(text, sizeof(text), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    assert_int_equal(sl_sockaddr_parse(text, out), 0);
    return fd;
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
    int c;

    (void)what;
    (void)arg;
    while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        keep_fd(c);
        f.naccepted++;
    }
}

static void
add_server(enum server_kind kind)
{
    struct sl_sockaddr *sa = &f.servers[f.conf.nservers++];
    int fd = bound_socket(sa);

    assert_true(f.conf.nservers <= MAX_SERVERS);
    switch (kind) {
    case SRV_ACCEPT:
        assert_int_equal(listen(fd, 16), 0);
        evutil_make_socket_nonblocking(fd);
        keep_fd(fd);
        f.accept_ev[f.naccept_ev] = event_new(f.base, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
        event_add(f.accept_ev[f.naccept_ev++], NULL);
        break;
    case SRV_REFUSE:
        /* the port was free a moment ago and nothing listens on it now */
        close(fd);
        break;
    case SRV_FULL: {
        /* Backlog 0 holds one connection; with it taken by a filler that is
         * never accepted, Linux drops further SYNs and the connect hangs. */
        int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(listen(fd, 0), 0);
        keep_fd(fd);
        assert_true(filler >= 0);
        assert_int_equal(connect(filler, (const struct sockaddr *)&sa->ss, sa->len), 0);
        keep_fd(filler);
        break;
    }
    }
}

static void
pool_new(void)
{
    f.pool = sl_upstream_pool_new(f.base, &f.conf, 1, NULL, 0, NULL, NULL);
    assert_non_null(f.pool);
}

static struct sl_upstream_stats
stats(void)
{
    struct sl_upstream_stats st;

    memset(&st, 0xa5, sizeof(st));
    sl_upstream_pool_stats(f.pool, &st);
    return st;
}

/* ---- running the loop ------------------------------------------------------- */

static void
on_conn(void *arg, struct sl_upconn *conn, int status)
{
    struct got *g = arg;

    g->calls++;
    g->conn = conn;
    g->status = status;
    if (is_in_acquire)
        g->was_early = true;
}

static void
acquire(struct sl_upstream_wait *wait, struct got *g)
{
    memset(g, 0, sizeof(*g));
    is_in_acquire = true;
    sl_upstream_acquire(f.pool, wait, on_conn, g);
    is_in_acquire = false;
    assert_int_equal(g->calls, 0);
}

/* Gives the connection back and forgets it, so LeakSanitizer does not take
 * the static `got` for a reference should the pool leak it. */
static void
release(struct got *g, bool is_reusable)
{
    sl_upstream_release(g->conn, is_reusable);
    g->conn = NULL;
}

static void
expired_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until *count reaches want; fails after `ms`. */
static void
run_until(const int *count, int want, unsigned ms)
{
    bool is_expired = false;
    struct event *ev = evtimer_new(f.base, expired_cb, &is_expired);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

    evtimer_add(ev, &tv);
    while (*count < want && !is_expired)
        event_base_loop(f.base, EVLOOP_ONCE);
    event_free(ev);
    assert_int_equal(*count, want);
}

static void
run_until_idle(unsigned want, unsigned ms)
{
    bool is_expired = false;
    struct event *ev = evtimer_new(f.base, expired_cb, &is_expired);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

    evtimer_add(ev, &tv);
    while (stats().idle != want && !is_expired)
        event_base_loop(f.base, EVLOOP_ONCE);
    event_free(ev);
    assert_int_equal(stats().idle, want);
}

/* Runs the loop for `ms` whatever happens. */
static void
run_for(unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

    event_base_loopexit(f.base, &tv);
    event_base_dispatch(f.base);
}

static void
expect_conn(const struct got *g, const struct sl_sockaddr *server)
{
    assert_int_equal(g->calls, 1);
    assert_false(g->was_early);
    assert_int_equal(g->status, 0);
    assert_non_null(g->conn);
    assert_string_equal(sl_upconn_address(g->conn), server->text);
}

static void
expect_status(const struct got *g, int status)
{
    assert_int_equal(g->calls, 1);
    assert_false(g->was_early);
    assert_int_equal(g->status, status);
    assert_null(g->conn);
}

/* ---- fixture ------------------------------------------------------------------ */

static int
setup(void **state)
{
    (void)state;
    memset(&f, 0, sizeof(f));
    f.base = event_base_new();
    assert_non_null(f.base);
    f.conf.name = (char *)(uintptr_t)"app";
    f.conf.servers = f.servers;
    f.conf.keepalive = 4;
    f.conf.connect_timeout_ms = 2000;
    f.conf.timeout_ms = 2000;
    f.conf.idle_timeout_ms = 10000;
    f.conf.max_inflight = 64;
    f.conf.queue = 0;
    f.conf.retry = (struct sl_retry_conf){ .retries = 1,
                                           .on = SL_RETRY_ON_CONNECT_FAILURE | SL_RETRY_ON_RESET,
                                           .budget_percent = 20,
                                           .budget_min = 3 };
    /* the defaults of health = { ... } without a path */
    f.conf.health.max_fails = 1;
    f.conf.health.fail_timeout_ms = 2000;
    f.conf.health.max_fail_timeout_ms = 30000;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sl_upstream_pool_free(f.pool);
    for (unsigned i = 0; i < f.naccept_ev; i++)
        event_free(f.accept_ev[i]);
    for (unsigned i = 0; i < f.nfds; i++)
        close(f.fds[i]);
    event_base_free(f.base);
    sl_clock_set_fake(NULL);
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_acquire_is_async(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_upstream_stats st;

    (void)state;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    assert_int_equal(stats().active, 1);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_false(sl_upconn_is_reused(g.conn));
    st = stats();
    assert_int_equal(st.active, 1);
    assert_int_equal(st.idle, 0);
    assert_true(st.has_reachable_server);
    release(&g, true);
    assert_int_equal(stats().active, 0);
    assert_int_equal(stats().idle, 1);

    /* from the idle cache too: the callback waits for the loop */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_true(sl_upconn_is_reused(g.conn));
    release(&g, false);
    st = stats();
    assert_int_equal(st.active, 0);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.connect_failures, 0);
}

static void
test_round_robin(void **state)
{
    static struct sl_upstream_wait w[4];
    static struct got g[4];
    int total = 0;

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    for (int i = 0; i < 4; i++)
        acquire(&w[i], &g[i]);
    assert_int_equal(stats().active, 4);
    for (int i = 0; i < 4; i++) {
        run_until(&g[i].calls, 1, 2000);
        total += g[i].calls;
    }
    assert_int_equal(total, 4);
    for (int i = 0; i < 4; i++) {
        expect_conn(&g[i], &f.servers[i % 2]);
        release(&g[i], false);
    }
    assert_int_equal(stats().active, 0);
}

/* Weights 3 and 1: a a b a, each cycle. */
static void
test_weighted_round_robin(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    static const int want[] = { 0, 0, 1, 0 };

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    f.weights[0] = 3;
    f.weights[1] = 1;
    f.conf.weights = f.weights;
    pool_new();

    for (int i = 0; i < 12; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        expect_conn(&g, &f.servers[want[i % 4]]);
        release(&g, true); /* kept alive: reuse follows the choice, not the other way */
    }
}

/* least_conn: a server busy with a request is passed over while another is
 * free; equally loaded ones take turns. */
static void
test_least_conn(void **state)
{
    static struct sl_upstream_wait w[2];
    static struct got g[2];

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    f.conf.balance = SL_BALANCE_LEAST_CONN;
    pool_new();

    acquire(&w[0], &g[0]);
    run_until(&g[0].calls, 1, 2000);
    expect_conn(&g[0], &f.servers[0]);
    /* server 0 holds one request: every new one goes to server 1 */
    for (int i = 0; i < 4; i++) {
        acquire(&w[1], &g[1]);
        run_until(&g[1].calls, 1, 2000);
        expect_conn(&g[1], &f.servers[1]);
        release(&g[1], i % 2 == 0);
    }
    release(&g[0], false);
    /* both idle: they alternate */
    for (int i = 0; i < 4; i++) {
        acquire(&w[1], &g[1]);
        run_until(&g[1].calls, 1, 2000);
        assert_int_equal(g[1].status, 0);
        if (i > 0)
            assert_string_not_equal(sl_upconn_address(g[1].conn), f.servers[0].text);
        release(&g[1], false);
        acquire(&w[1], &g[1]);
        run_until(&g[1].calls, 1, 2000);
        expect_conn(&g[1], &f.servers[0]);
        release(&g[1], false);
    }
}

/* random2 with one server busy: the idle one is always taken (with two
 * servers both are always drawn). */
static void
test_random2(void **state)
{
    static struct sl_upstream_wait w[2];
    static struct got g[2];

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    f.conf.balance = SL_BALANCE_RANDOM2;
    pool_new();

    acquire(&w[0], &g[0]);
    run_until(&g[0].calls, 1, 2000);
    assert_int_equal(g[0].status, 0);
    for (int i = 0; i < 6; i++) {
        acquire(&w[1], &g[1]);
        run_until(&g[1].calls, 1, 2000);
        assert_int_equal(g[1].status, 0);
        assert_string_not_equal(sl_upconn_address(g[1].conn), sl_upconn_address(g[0].conn));
        release(&g[1], false);
    }
    release(&g[0], false);
}

/*
 * hash: a key goes to one server every time; a key whose server refuses
 * falls to another, the same one every time; requests without a key are
 * spread.
 */
static void
test_hash(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    char first[32][64];
    unsigned on[MAX_SERVERS] = { 0 };
    uint64_t now = sl_clock_now_us();

    (void)state;
    sl_clock_set_fake(&now); /* the refused server stays marked down throughout */
    add_server(SRV_ACCEPT);
    add_server(SRV_REFUSE);
    add_server(SRV_ACCEPT);
    f.conf.balance = SL_BALANCE_HASH;
    pool_new();

    for (int round = 0; round < 3; round++) {
        for (unsigned k = 0; k < 32; k++) {
            w.hash = (uint64_t)k * 0x9e3779b97f4a7c15ull;
            w.has_hash = true;
            acquire(&w, &g);
            assert_true(w.has_hash); /* kept by acquire */
            run_until(&g.calls, 1, 2000);
            assert_int_equal(g.status, 0);
            if (round == 0)
                snprintf(first[k], sizeof(first[k]), "%s", sl_upconn_address(g.conn));
            else
                assert_string_equal(sl_upconn_address(g.conn), first[k]);
            release(&g, round == 1);
        }
    }
    for (unsigned k = 0; k < 32; k++)
        on[strcmp(first[k], f.servers[0].text) == 0 ? 0 : 2]++;
    assert_true(on[0] > 4 && on[2] > 4);
    /* the refused server was tried once, by the first key that hashed to it */
    assert_int_equal(stats().connect_failures, 1);
    w.has_hash = false;
    for (int i = 0; i < 2; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        assert_int_equal(g.status, 0);
        release(&g, false);
    }
}

static void
test_refused_server_skipped(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_upstream_stats st;
    uint64_t failures;

    (void)state;
    add_server(SRV_REFUSE);
    add_server(SRV_ACCEPT);
    pool_new();

    /* round-robin starts at the refused server and fails over */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1]);
    release(&g, false);
    st = stats();
    assert_int_equal(st.connect_failures, 1); /* each server tried once per request */
    assert_int_equal(st.connect_timeouts, 0);
    assert_true(st.has_reachable_server);
    failures = st.connect_failures;

    /* the next two requests start at server 1, then at the refused one,
     * which is marked down now and not tried again */
    for (int i = 0; i < 2; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        expect_conn(&g, &f.servers[1]);
        release(&g, false);
    }
    assert_int_equal(stats().connect_failures, failures);
    assert_int_equal(stats().active, 0);
}

static void
test_all_refused(void **state)
{
    uint64_t now = sl_clock_now_us();
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_upstream_stats st;

    (void)state;
    sl_clock_set_fake(&now);
    add_server(SRV_REFUSE);
    add_server(SRV_REFUSE);
    pool_new();
    assert_true(stats().has_reachable_server);

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 502);
    st = stats();
    assert_false(st.has_reachable_server);
    assert_int_equal(st.connect_failures, 2); /* once each, not again in the second pass */
    assert_int_equal(st.active, 0);

    /* all down: still tried (once each) rather than refused without a connect */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 502);
    assert_int_equal(stats().connect_failures, st.connect_failures + 2);

    /* down marks expire */
    now += 3u * 1000u * 1000u;
    assert_true(stats().has_reachable_server);
}

/* Lines in the log file that contain `needle`. */
static int
count_lines(const char *path, const char *needle)
{
    char line[1024];
    int n = 0;
    FILE *fp = fopen(path, "r");

    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

/* A dead server under load: one line a second, with the count of the rest. */
static void
test_failure_log_rate_limited(void **state)
{
    uint64_t now = sl_clock_now_us();
    static struct sl_upstream_wait w;
    static struct got g;
    char path[] = "/tmp/sl-test-upstream-log.XXXXXX";
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sl_log_open(path), 0);
    sl_log_set_level(SL_LOG_WARN);
    sl_clock_set_fake(&now);
    add_server(SRV_REFUSE);
    pool_new();

    for (int i = 0; i < 20; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        expect_status(&g, 502);
    }
    assert_int_equal(stats().connect_failures, 20);
    assert_int_equal(count_lines(path, "connect "), 1);

    now += 1500u * 1000u; /* a second later: one more line, with the count */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    assert_int_equal(count_lines(path, "connect "), 2);
    assert_int_equal(count_lines(path, "(and 19 more failures in the last 1.5 s, not logged)"), 1);

    sl_clock_set_fake(NULL);
    sl_log_set_level(SL_LOG_ERROR);
    sl_log_open("stderr");
    unlink(path);
}

static void
test_connect_timeout(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_upstream_stats st;

    (void)state;
    f.conf.connect_timeout_ms = 30;
    add_server(SRV_FULL);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 504);
    st = stats();
    assert_int_equal(st.connect_timeouts, 1); /* one connect_timeout, not two */
    assert_int_equal(st.connect_failures, 0);
    assert_false(st.has_reachable_server);
    assert_int_equal(st.active, 0);
}

static void
test_connect_timeout_failover(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.connect_timeout_ms = 30;
    add_server(SRV_FULL);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1]);
    assert_int_equal(stats().connect_timeouts, 1);
    assert_true(stats().has_reachable_server);
    release(&g, false);
}

static void
test_keepalive_reuse(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_upconn *first;

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    first = g.conn;
    release(&g, true);
    assert_int_equal(stats().idle, 1);

    /* round-robin moves on to server 1, which has nothing idle */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1]);
    assert_false(sl_upconn_is_reused(g.conn));
    assert_int_equal(stats().idle, 1);
    release(&g, false);

    /* back at server 0: its idle connection is taken */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_true(sl_upconn_is_reused(g.conn));
    assert_ptr_equal(g.conn, first);
    assert_int_equal(stats().idle, 0);
    release(&g, false);
    assert_int_equal(stats().idle, 0);
    assert_int_equal(stats().active, 0);
}

static void
test_keepalive_bound(void **state)
{
    static struct sl_upstream_wait w[3];
    static struct got g[3];

    (void)state;
    f.conf.keepalive = 2;
    add_server(SRV_ACCEPT);
    pool_new();

    for (int i = 0; i < 3; i++)
        acquire(&w[i], &g[i]);
    for (int i = 0; i < 3; i++) {
        run_until(&g[i].calls, 1, 2000);
        expect_conn(&g[i], &f.servers[0]);
    }
    for (int i = 0; i < 3; i++)
        release(&g[i], true);
    assert_int_equal(stats().idle, 2);
    assert_int_equal(stats().active, 0);
}

static void
test_idle_closed_by_server(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    release(&g, true);
    run_until(&f.naccepted, 1, 2000);
    assert_int_equal(stats().idle, 1);

    /* the server closes it while idle: the pool drops it */
    close(f.fds[--f.nfds]);
    run_until_idle(0, 2000);

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_false(sl_upconn_is_reused(g.conn));
    release(&g, true);
    run_until(&f.naccepted, 2, 2000);
    assert_int_equal(stats().idle, 1);

    /* an idle connection has nothing to say: bytes from it mean it is unusable */
    assert_int_equal(write(f.fds[f.nfds - 1], "HTTP/1.1 408 \r\n\r\n", 18), 18);
    run_until_idle(0, 2000);
    assert_int_equal(stats().active, 0);
}

static void
test_idle_timeout(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.idle_timeout_ms = 30;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    release(&g, true);
    assert_int_equal(stats().idle, 1);
    run_until_idle(0, 2000);
}

static void
test_inflight_queue_shed(void **state)
{
    static struct sl_upstream_wait wa, wb, wc;
    static struct got a, b, c;
    struct sl_upstream_stats st;

    (void)state;
    f.conf.max_inflight = 1;
    f.conf.queue = 1;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&wa, &a);
    acquire(&wb, &b);
    st = stats();
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.shed, 0);
    acquire(&wc, &c); /* bound and queue full: shed, still asynchronously */
    assert_int_equal(stats().shed, 1);

    run_until(&c.calls, 1, 2000);
    expect_status(&c, 503);
    run_until(&a.calls, 1, 2000);
    expect_conn(&a, &f.servers[0]);
    run_for(20);
    assert_int_equal(b.calls, 0);
    st = stats();
    assert_int_equal(st.active, 1);
    assert_int_equal(st.queued, 1);

    /* the slot goes to the queued request, with the connection just kept */
    release(&a, true);
    assert_int_equal(b.calls, 0);
    assert_int_equal(stats().queued, 0);
    run_until(&b.calls, 1, 2000);
    expect_conn(&b, &f.servers[0]);
    assert_true(sl_upconn_is_reused(b.conn));
    assert_int_equal(stats().active, 1);
    release(&b, false);
    st = stats();
    assert_int_equal(st.active, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.shed, 1);
}

static void
test_queue_wait_timeout(void **state)
{
    static struct sl_upstream_wait wa, wb;
    static struct got a, b;

    (void)state;
    f.conf.max_inflight = 1;
    f.conf.queue = 1;
    f.conf.timeout_ms = 30;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&wa, &a);
    acquire(&wb, &b);
    run_until(&a.calls, 1, 2000);
    expect_conn(&a, &f.servers[0]);
    run_until(&b.calls, 1, 2000);
    expect_status(&b, 503);
    assert_int_equal(stats().shed, 1);
    assert_int_equal(stats().queued, 0);
    assert_int_equal(stats().active, 1);
    release(&a, false);
    assert_int_equal(stats().active, 0);
}

static void
test_cancel_queued(void **state)
{
    static struct sl_upstream_wait wa, wb, wc;
    static struct got a, b, c;

    (void)state;
    f.conf.max_inflight = 1;
    f.conf.queue = 1;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&wa, &a);
    acquire(&wb, &b);
    sl_upstream_cancel(&wb);
    assert_int_equal(stats().queued, 0);
    /* its place in the queue is free again */
    acquire(&wc, &c);
    assert_int_equal(stats().queued, 1);
    assert_int_equal(stats().shed, 0);
    sl_upstream_cancel(&wc);

    run_until(&a.calls, 1, 2000);
    expect_conn(&a, &f.servers[0]);
    release(&a, true);
    run_for(30);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 0);
    assert_int_equal(stats().active, 0);
    assert_int_equal(stats().idle, 1);
}

static void
test_cancel_connecting(void **state)
{
    static struct sl_upstream_wait wa, wb;
    static struct got a, b;

    (void)state;
    add_server(SRV_FULL);
    add_server(SRV_ACCEPT);
    pool_new();

    /* a connect that hangs, cancelled half-way */
    acquire(&wa, &a);
    run_for(20);
    sl_upstream_cancel(&wa);
    assert_int_equal(stats().active, 0);
    /* one cancelled before the loop ever ran its connect */
    acquire(&wb, &b);
    sl_upstream_cancel(&wb);
    assert_int_equal(stats().active, 0);
    run_for(50);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(stats().connect_timeouts, 0);

    /* cancelling twice changes nothing */
    sl_upstream_cancel(&wa);
    assert_int_equal(stats().active, 0);
}

static void
test_cancel_pending_delivery(void **state)
{
    static struct sl_upstream_wait wa, wb, wc;
    static struct got a, b, c;

    (void)state;
    f.conf.max_inflight = 1;
    f.conf.queue = 0;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&wa, &a);
    run_until(&a.calls, 1, 2000);
    expect_conn(&a, &f.servers[0]);
    /* after the callback, cancel is a no-op */
    sl_upstream_cancel(&wa);
    assert_int_equal(stats().active, 1);

    /* a shed answer not yet delivered */
    acquire(&wb, &b);
    assert_int_equal(stats().shed, 1);
    sl_upstream_cancel(&wb);
    assert_int_equal(stats().active, 1);
    release(&a, true);
    assert_int_equal(stats().idle, 1);

    /* a connection from the idle cache not yet delivered goes back to it */
    acquire(&wc, &c);
    assert_int_equal(stats().idle, 0);
    sl_upstream_cancel(&wc);
    assert_int_equal(stats().idle, 1);
    assert_int_equal(stats().active, 0);
    run_for(30);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 0);
}

static void
test_free_with_idle(void **state)
{
    static struct sl_upstream_wait w[3];
    static struct got g[3];

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    for (int i = 0; i < 3; i++)
        acquire(&w[i], &g[i]);
    for (int i = 0; i < 3; i++)
        run_until(&g[i].calls, 1, 2000);
    for (int i = 0; i < 3; i++)
        release(&g[i], true);
    assert_int_equal(stats().idle, 3);
    /* teardown frees the pool with three idle connections; ASan counts leaks */
}

/* ---- retries -------------------------------------------------------------------- */

/* Another attempt at the request g holds a connection for: what
 * sl_upstream_retry said. On true the connection is gone and g waits anew. */
static bool
retry(struct sl_upstream_wait *wait, struct got *g, unsigned reason)
{
    struct sl_upconn *conn = g->conn;
    bool is_ok;

    g->calls = 0;
    g->was_early = false;
    is_in_acquire = true;
    is_ok = sl_upstream_retry(conn, wait, reason, on_conn, g);
    is_in_acquire = false;
    assert_int_equal(g->calls, 0);
    if (is_ok)
        g->conn = NULL;
    return is_ok;
}

static void
test_retry_decisions(void **state)
{
    static const char *const yes[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE" };
    static const char *const no[] = { "POST", "PATCH", "CONNECT", "get", "GETX", "PUTS", "" };

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(sl_upstream_method_is_idempotent(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(sl_upstream_method_is_idempotent(no[i], strlen(no[i])));

    /* nothing written: any request, body kept or not */
    assert_true(sl_upstream_is_resendable(false, false, 0));
    assert_true(sl_upstream_is_resendable(true, false, 0));
    /* written: only an idempotent one whose body is at hand */
    assert_true(sl_upstream_is_resendable(true, true, 1));
    assert_false(sl_upstream_is_resendable(true, false, 1));
    assert_false(sl_upstream_is_resendable(false, true, 1));
    assert_false(sl_upstream_is_resendable(false, false, 100000));

    /* max(min, percent of in flight) */
    assert_true(sl_upstream_retry_budget_ok(20, 3, 0, 2));
    assert_false(sl_upstream_retry_budget_ok(20, 3, 0, 3));
    assert_false(sl_upstream_retry_budget_ok(20, 3, 10, 3)); /* 20 % of 10 is 2 < 3 */
    assert_true(sl_upstream_retry_budget_ok(20, 3, 100, 19));
    assert_false(sl_upstream_retry_budget_ok(20, 3, 100, 20));
    assert_false(sl_upstream_retry_budget_ok(20, 3, 24, 4)); /* 4.8 rounds down */
    assert_false(sl_upstream_retry_budget_ok(0, 0, 1000, 0));
    assert_true(sl_upstream_retry_budget_ok(100, 0, 1, 0));
    assert_true(sl_upstream_retry_budget_ok(100, 0, 4000000000u, 3999999999u));
}

static void
test_retry_other_server(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    int first;

    (void)state;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_true(retry(&w, &g, SL_RETRY_ON_RESET));
    assert_int_equal(stats().retrying, 1);
    assert_int_equal(stats().active, 1);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1]);
    /* retries = 1: no second one; the connection is still ours */
    assert_false(retry(&w, &g, SL_RETRY_ON_RESET));
    assert_non_null(g.conn);
    assert_int_equal(stats().retrying, 1);
    release(&g, false);
    assert_int_equal(stats().retrying, 0);
    assert_int_equal(stats().active, 0);

    /* the next request starts with its own count, and its retry too goes
     * to the server its first attempt did not use */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    assert_non_null(g.conn);
    first = strcmp(sl_upconn_address(g.conn), f.servers[0].text) == 0 ? 0 : 1;
    assert_true(retry(&w, &g, SL_RETRY_ON_CONNECT_FAILURE));
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1 - first]);
    release(&g, true);
}

static void
test_retry_single_server(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.retry.retries = 2;
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    for (int i = 0; i < 2; i++) {
        expect_conn(&g, &f.servers[0]);
        assert_true(retry(&w, &g, SL_RETRY_ON_RESET));
        run_until(&g.calls, 1, 2000);
    }
    expect_conn(&g, &f.servers[0]); /* the same one: there is no other */
    assert_false(retry(&w, &g, SL_RETRY_ON_RESET));
    assert_int_equal(f.naccepted, 3);
    release(&g, false);
    assert_int_equal(stats().retrying, 0);
}

static void
test_retry_on_filter(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.retry.on = SL_RETRY_ON_503;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    assert_false(retry(&w, &g, SL_RETRY_ON_RESET));
    assert_false(retry(&w, &g, SL_RETRY_ON_502));
    assert_true(retry(&w, &g, SL_RETRY_ON_503));
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[1]);
    release(&g, false);

    /* retries = 0: never */
    f.conf.retry.on = SL_RETRY_ON_503;
    f.conf.retry.retries = 0;
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    assert_false(retry(&w, &g, SL_RETRY_ON_503));
    release(&g, false);
}

static void
test_retry_budget(void **state)
{
    static struct sl_upstream_wait w[3];
    static struct got g[3];

    (void)state;
    f.conf.retry.budget_percent = 0;
    f.conf.retry.budget_min = 1;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();

    for (int i = 0; i < 3; i++) {
        acquire(&w[i], &g[i]);
        run_until(&g[i].calls, 1, 2000);
    }
    assert_true(retry(&w[0], &g[0], SL_RETRY_ON_RESET));
    assert_false(retry(&w[1], &g[1], SL_RETRY_ON_RESET)); /* one retry in flight at most */
    run_until(&g[0].calls, 1, 2000);
    assert_int_equal(stats().retrying, 1);
    release(&g[0], false);
    /* the first retry is over: room again */
    assert_true(retry(&w[1], &g[1], SL_RETRY_ON_RESET));
    run_until(&g[1].calls, 1, 2000);
    assert_int_equal(g[1].status, 0);
    release(&g[1], false);
    release(&g[2], false);
    assert_int_equal(stats().retrying, 0);
    assert_int_equal(stats().active, 0);
}

/* Connect failures are retries too: bounded by retries, and by nothing else
 * than the servers there are. */
static void
test_connect_retry_bounded(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    add_server(SRV_REFUSE);
    add_server(SRV_REFUSE);
    add_server(SRV_ACCEPT);
    pool_new();

    /* retries = 1: two refused connects, then 502 */
    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 502);
    assert_int_equal(stats().connect_failures, 2);
    assert_int_equal(stats().retrying, 0);
    assert_int_equal(stats().active, 0);
}

static void
test_connect_retry_more(void **state)
{
    uint64_t now = sl_clock_now_us();
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    sl_clock_set_fake(&now);
    f.conf.retry.retries = 2;
    add_server(SRV_REFUSE);
    add_server(SRV_REFUSE);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[2]);
    assert_int_equal(stats().connect_failures, 2);
    assert_int_equal(stats().retrying, 1);
    release(&g, false);
    assert_int_equal(stats().retrying, 0);
    sl_clock_set_fake(NULL);
}

/* retries = 0: the first failure is the answer, even with a server up (the
 * first choice of a new pool is its first server) */
static void
test_connect_retry_zero(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.retry.retries = 0;
    add_server(SRV_REFUSE);
    add_server(SRV_ACCEPT);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 502);
    assert_int_equal(stats().connect_failures, 1);
}

/* A request waiting on its retry can be withdrawn: the budget's count goes. */
static void
test_retry_cancel(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;

    (void)state;
    f.conf.connect_timeout_ms = 2000;
    add_server(SRV_ACCEPT);
    add_server(SRV_FULL);
    pool_new();

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_conn(&g, &f.servers[0]);
    assert_true(retry(&w, &g, SL_RETRY_ON_RESET));
    run_for(20); /* connecting to the full server */
    assert_int_equal(g.calls, 0);
    assert_int_equal(stats().retrying, 1);
    sl_upstream_cancel(&w);
    assert_int_equal(stats().retrying, 0);
    assert_int_equal(stats().active, 0);
}

/* passive_5xx: the proxy's reports of 5xx eject a server after max_fails in a row. */
static void
test_passive_5xx(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    static const int statuses[] = { 502, 200, 500 }; /* server 0, 1, 0 */

    (void)state;
    f.conf.health.max_fails = 2;
    f.conf.health.is_passive_5xx = true;
    add_server(SRV_ACCEPT);
    add_server(SRV_ACCEPT);
    pool_new();
    for (int i = 0; i < 3; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        expect_conn(&g, &f.servers[i % 2]);
        sl_upstream_report(g.conn, statuses[i]);
        release(&g, true);
    }
    /* two 5xx in a row from server 0: ejected, server 1 takes everything */
    for (int i = 0; i < 3; i++) {
        acquire(&w, &g);
        run_until(&g.calls, 1, 2000);
        expect_conn(&g, &f.servers[1]);
        sl_upstream_report(g.conn, 200);
        release(&g, true);
    }
}

/* Every server down by the active check: 503 at once, no connect tried. */
static void
test_all_down_by_check(void **state)
{
    static struct sl_upstream_wait w;
    static struct got g;
    struct sl_config cfg;
    struct sl_health *h = sl_health_new(f.base, NULL);
    int accepted;

    (void)state;
    f.conf.health.path = (char *)(uintptr_t)"/h";
    f.conf.health.interval_ms = 100;
    f.conf.health.timeout_ms = 50;
    f.conf.health.fails = 1;
    f.conf.health.passes = 1;
    add_server(SRV_ACCEPT); /* accepts, never answers: the checks time out */
    add_server(SRV_ACCEPT);
    memset(&cfg, 0, sizeof(cfg));
    cfg.upstreams = &f.conf;
    cfg.nupstreams = 1;
    f.pool = sl_upstream_pool_new(f.base, &f.conf, 1, NULL, 0, NULL, h);
    sl_health_configure(h, &cfg);
    run_for(150);
    assert_false(stats().has_reachable_server);
    accepted = f.naccepted;

    acquire(&w, &g);
    run_until(&g.calls, 1, 2000);
    expect_status(&g, 503);
    assert_true(w.is_all_down);
    assert_int_equal(stats().connect_failures, 0);
    assert_int_equal(stats().active, 0);
    sl_upstream_pool_free(f.pool);
    f.pool = NULL;
    sl_health_free(h);
    assert_true(f.naccepted - accepted <= 2); /* at most the checks of one more round */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acquire_is_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weighted_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_conn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_server_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_log_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_closed_by_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_queue_shed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_wait_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_pending_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_idle, setup, teardown),
        cmocka_unit_test(test_retry_decisions),
        cmocka_unit_test_setup_teardown(test_retry_other_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_single_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_on_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_retry_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_retry_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_retry_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passive_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_down_by_check, setup, teardown),
    };

    /* failover and refusals log warnings by design; keep the output to results */
    sl_log_set_level(SL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
