/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream health: the active check's state machine, passive ejection with
 * its back-off (on a time the test gives), the registry that shares one
 * state per upstream and address, and the checks themselves on a real
 * event_base against a loopback server of the test's own that answers what
 * the test sets: a status, garbage, an endless head, or nothing.
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
#include <event2/buffer.h>
#include <event2/event.h>

#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/netaddr.h"

static struct sl_health_conf
conf(unsigned fails, unsigned passes)
{
    struct sl_health_conf hc = { 0 };

    hc.fails = fails;
    hc.passes = passes;
    hc.max_fails = 2;
    hc.fail_timeout_ms = 1000;
    hc.max_fail_timeout_ms = 3000;
    return hc;
}

/* ---- the state machines ------------------------------------------------- */

static void
test_verdict(void **state)
{
    struct sl_health_conf hc = conf(3, 2);
    struct sl_health_verdict v = { 0 };
    (void)state;

    assert_false(sl_health_verdict_record(&v, &hc, false));
    assert_false(sl_health_verdict_record(&v, &hc, false));
    assert_false(v.is_down);
    /* a pass in between starts the count of failures over */
    assert_false(sl_health_verdict_record(&v, &hc, true));
    assert_false(sl_health_verdict_record(&v, &hc, false));
    assert_false(sl_health_verdict_record(&v, &hc, false));
    assert_true(sl_health_verdict_record(&v, &hc, false)); /* the third in a row */
    assert_true(v.is_down);
    assert_false(sl_health_verdict_record(&v, &hc, false)); /* no second transition */
    assert_false(sl_health_verdict_record(&v, &hc, true));
    assert_false(sl_health_verdict_record(&v, &hc, false)); /* passes start over too */
    assert_false(sl_health_verdict_record(&v, &hc, true));
    assert_true(v.is_down);
    assert_true(sl_health_verdict_record(&v, &hc, true));
    assert_false(v.is_down);
    /* the counters stay bounded however long a state lasts */
    for (int i = 0; i < 10000; i++)
        sl_health_verdict_record(&v, &hc, true);
    assert_int_equal(v.npasses, 2);
}

static void
test_passive_backoff(void **state)
{
    struct sl_health_conf hc = conf(1, 1);
    struct sl_health_server *s = sl_health_ref(NULL, "api", "10.0.0.1:80");
    uint64_t now = 1000000000;
    (void)state;

    sl_health_failed(s, &hc, now);
    assert_false(sl_health_is_ejected(s, now));
    sl_health_failed(s, &hc, now);
    assert_true(sl_health_is_ejected(s, now));
    assert_true(sl_health_is_ejected(s, now + 999999));
    assert_false(sl_health_is_ejected(s, now + 1000000)); /* fail_timeout 1s */

    /* failures while ejected (tried because all were) do not count */
    sl_health_failed(s, &hc, now + 500000);
    sl_health_failed(s, &hc, now + 600000);
    assert_false(sl_health_is_ejected(s, now + 1000000));

    /* failing on after it: twice as long, then capped at max_fail_timeout */
    now += 1000000;
    sl_health_failed(s, &hc, now);
    sl_health_failed(s, &hc, now);
    assert_true(sl_health_is_ejected(s, now + 1999999));
    assert_false(sl_health_is_ejected(s, now + 2000000));
    now += 2000000;
    sl_health_failed(s, &hc, now);
    sl_health_failed(s, &hc, now);
    assert_true(sl_health_is_ejected(s, now + 2999999));
    assert_false(sl_health_is_ejected(s, now + 3000000));

    /* a success ends the run and the back-off: one failure is not enough,
     * and the next ejection is fail_timeout again */
    now += 3000000;
    sl_health_failed(s, &hc, now);
    sl_health_succeeded(s);
    sl_health_failed(s, &hc, now);
    assert_false(sl_health_is_ejected(s, now));
    sl_health_failed(s, &hc, now);
    assert_true(sl_health_is_ejected(s, now + 999999));
    assert_false(sl_health_is_ejected(s, now + 1000000));
    /* working while ejected (tried because all were) ends the ejection */
    sl_health_failed(s, &hc, now);
    sl_health_failed(s, &hc, now);
    assert_true(sl_health_is_ejected(s, now));
    sl_health_succeeded(s);
    assert_false(sl_health_is_ejected(s, now));

    /* max_fails = 0: never */
    hc.max_fails = 0;
    now += 10000000;
    for (int i = 0; i < 10; i++)
        sl_health_failed(s, &hc, now);
    assert_false(sl_health_is_ejected(s, now));
    sl_health_unref(s);
}

static void
test_registry_shares(void **state)
{
    struct event_base *base = event_base_new();
    struct sl_health *h = sl_health_new(base, NULL);
    struct sl_health_conf hc = conf(1, 1);
    struct sl_health_server *a1 = sl_health_ref(h, "api", "10.0.0.1:80");
    struct sl_health_server *a2 = sl_health_ref(h, "api", "10.0.0.1:80");
    struct sl_health_server *b = sl_health_ref(h, "web", "10.0.0.1:80");
    struct sl_health_server *own = sl_health_ref(NULL, "api", "10.0.0.1:80");
    (void)state;

    assert_ptr_equal(a1, a2); /* one state per upstream and address, for every pool */
    assert_ptr_not_equal(a1, b);
    assert_ptr_not_equal(a1, own);
    sl_health_failed(a1, &hc, 1000);
    sl_health_failed(a2, &hc, 1000); /* failures from two pools add up */
    assert_true(sl_health_is_ejected(a2, 1000));
    assert_false(sl_health_is_ejected(b, 1000));
    assert_false(sl_health_is_ejected(own, 1000));
    sl_health_unref(a1);
    sl_health_unref(a2);
    sl_health_unref(b);
    sl_health_unref(own);
    sl_health_free(h);
    event_base_free(base);
}

/* ---- active checks on a real loop ------------------------------------------ */

enum answer { ANSWER_STATUS, ANSWER_GARBAGE, ANSWER_ENDLESS, ANSWER_NOTHING };

static struct {
    struct event_base *base;
    int lfd;
    struct event *accept_ev;
    struct sl_sockaddr addr;
    enum answer answer;
    int status;
    char request[2048];
    size_t request_len;
    int conns[64];
    struct event *conn_evs[64];
    size_t nconns;
    struct sl_config cfg;
    struct sl_upstream_conf up;
    struct sl_health *h;
    struct sl_health_server *s; /* as a pool would hold it */
} f;

/* The request has come (the check writes it once connected): answer. */
static void
conn_cb(evutil_socket_t c, short what, void *arg)
{
    char big[4096];
    ssize_t n = read(c, f.request, sizeof(f.request) - 1);

    (void)what;
    (void)arg;
    f.request_len = n > 0 ? (size_t)n : 0;
    f.request[f.request_len] = '\0';
    switch (f.answer) {
    case ANSWER_STATUS:
        n = snprintf(big, sizeof(big), "HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\nhello",
                     f.status);
        (void)!write(c, big, (size_t)n);
        break;
    case ANSWER_GARBAGE:
        (void)!write(c, "hello there\r\n\r\n", 15);
        break;
    case ANSWER_ENDLESS:
        (void)!write(c, "HTTP/1.1 200 OK\r\n", 17);
        memset(big, 'a', sizeof(big));
        for (int i = 0; i < 4; i++) {
            (void)!write(c, "X-Long: ", 8);
            (void)!write(c, big, sizeof(big));
            (void)!write(c, "\r\n", 2);
        }
        break;
    case ANSWER_NOTHING:
        break;
    }
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
    int c = accept(fd, NULL, NULL);
    struct event *ev;

    (void)what;
    (void)arg;
    if (c < 0)
        return;
    assert_true(f.nconns < 64);
    ev = event_new(f.base, c, EV_READ, conn_cb, NULL);
    event_add(ev, NULL);
    f.conn_evs[f.nconns] = ev;
    f.conns[f.nconns++] = c;
}

static int
setup(void **state)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t len = sizeof(sin);
    char text[64];

    (void)state;
    memset(&f, 0, sizeof(f));
    f.base = event_base_new();
    f.lfd = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(f.lfd, 16), 0);
    getsockname(f.lfd, (struct sockaddr *)&sin, &len);
    snprintf(text, sizeof(text), "127.0.0.1:%u", ntohs(sin.sin_port));
    assert_int_equal(sl_sockaddr_parse(text, &f.addr), 0);
    f.accept_ev = event_new(f.base, f.lfd, EV_READ | EV_PERSIST, accept_cb, NULL);
    event_add(f.accept_ev, NULL);
    f.answer = ANSWER_STATUS;
    f.status = 200;

    f.up.name = (char *)(uintptr_t)"api";
    f.up.servers = &f.addr;
    f.up.nservers = 1;
    f.up.health = conf(2, 2);
    f.up.health.path = (char *)(uintptr_t)"/hz?deep=1";
    f.up.health.interval_ms = 100;
    f.up.health.timeout_ms = 80;
    f.cfg.upstreams = &f.up;
    f.cfg.nupstreams = 1;
    f.h = sl_health_new(f.base, NULL);
    f.s = sl_health_ref(f.h, "api", f.addr.text);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sl_health_unref(f.s);
    sl_health_free(f.h);
    for (size_t i = 0; i < f.nconns; i++) {
        event_free(f.conn_evs[i]);
        close(f.conns[i]);
    }
    event_free(f.accept_ev);
    close(f.lfd);
    event_base_free(f.base);
    return 0;
}

/* Runs the loop until the verdict is `down`, at most ms; true if it came. */
static bool
run_until_down(bool down, unsigned ms)
{
    for (unsigned waited = 0; waited < ms; waited += 10) {
        struct timeval tv = { 0, 10000 };
        if (sl_health_is_down(f.s) == down)
            return true;
        event_base_loopexit(f.base, &tv);
        event_base_dispatch(f.base);
    }
    return sl_health_is_down(f.s) == down;
}

static void
test_check_status(void **state)
{
    (void)state;
    sl_health_configure(f.h, &f.cfg);
    assert_false(run_until_down(true, 400)); /* 200: stays up */
    assert_non_null(strstr(f.request, "GET /hz?deep=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(f.request, "\r\nHost: 127.0.0.1:"));
    assert_non_null(strstr(f.request, "\r\nUser-Agent: sluice-health\r\n"));
    assert_non_null(strstr(f.request, "\r\nConnection: close\r\n"));

    f.status = 301; /* 3xx passes */
    assert_false(run_until_down(true, 300));
    f.status = 503;
    assert_true(run_until_down(true, 1000));
    f.status = 204;
    assert_true(run_until_down(false, 1000));
}

static void
test_check_failures(void **state)
{
    static const enum answer bad[] = { ANSWER_GARBAGE, ANSWER_ENDLESS, ANSWER_NOTHING };
    (void)state;

    sl_health_configure(f.h, &f.cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.answer = bad[i];
        if (!run_until_down(true, 1000))
            fail_msg("answer %zu does not mark the server down", i);
        f.answer = ANSWER_STATUS;
        assert_true(run_until_down(false, 1000));
    }
}

static void
test_check_refused(void **state)
{
    (void)state;
    event_del(f.accept_ev);
    close(f.lfd); /* nothing listens any more */
    f.lfd = socket(AF_INET, SOCK_STREAM, 0);
    sl_health_configure(f.h, &f.cfg);
    assert_true(run_until_down(true, 1000));
}

/* A reload keeps the verdict of a server it keeps; dropping the path resets it. */
static void
test_reconfigure(void **state)
{
    struct evbuffer *out = evbuffer_new();
    char text[1024];
    size_t n;
    (void)state;

    f.status = 500;
    sl_health_configure(f.h, &f.cfg);
    assert_true(run_until_down(true, 1000));
    sl_health_configure(f.h, &f.cfg);
    assert_true(sl_health_is_down(f.s));

    sl_health_render(f.h, out);
    n = evbuffer_copyout(out, text, sizeof(text) - 1);
    text[n] = '\0';
    {
        char want[256];
        snprintf(want, sizeof(want), "sluice_upstream_server_up{upstream=\"api\",server=\"%s\"} 0\n",
                 f.addr.text);
        if (strstr(text, want) == NULL)
            fail_msg("no %s in:\n%s", want, text);
    }
    evbuffer_free(out);

    f.up.health.path = NULL;
    sl_health_configure(f.h, &f.cfg);
    assert_false(sl_health_is_down(f.s));
    f.up.health.path = (char *)(uintptr_t)"/hz?deep=1";
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdict),
        cmocka_unit_test(test_passive_backoff),
        cmocka_unit_test(test_registry_shares),
        cmocka_unit_test_setup_teardown(test_check_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
