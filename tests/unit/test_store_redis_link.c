/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * store_redis_link: the connection under the redis store, against a peer
 * played by the test on a unix socket in a temporary directory. Commands go
 * out byte for byte and in order; replies split anywhere, or several in one
 * read, reach their callbacks in command order, each exactly once; freeing
 * the link inside a callback hands the rest NULL replies afterwards; a
 * closed connection or a reply nobody asked for brings the link down once;
 * a refused connection and a full output buffer fail at once. (TLS takes
 * the same paths above io_read/io_write: r_redis_tls.py covers it against
 * a real redis-server.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "store_redis_link.h"

struct got {
    int ncalls;
    int type;        /* -1: a NULL reply */
    long long integer;
    char str[64];
};

struct fixture {
    char dir[64];
    char path[96];
    int lfd;                 /* listening */
    int peer;                /* the accepted connection: the test's end */
    struct event_base *base;
    struct sl_redis_link *link;
    int ndown;
    char down_why[256];
    bool is_free_in_down;
    struct got got[4];
    int order[4];
    int norder;
    int free_at;             /* free the link in the callback of this command; -1: never */
};

static struct fixture *F;

static void
on_down(struct sl_redis_link *link, void *arg, const char *why)
{
    struct fixture *f = arg;

    assert_ptr_equal(link, f->link);
    f->ndown++;
    snprintf(f->down_why, sizeof(f->down_why), "%s", why);
    if (f->is_free_in_down) {
        sl_redis_link_free(link);
        f->link = NULL;
    }
}

static void
on_reply(struct sl_redis_link *link, void *r, void *privdata)
{
    int i = (int)(intptr_t)privdata;
    struct got *g = &F->got[i];
    redisReply *reply = r;

    g->ncalls++;
    F->order[F->norder++] = i;
    g->type = reply == NULL ? -1 : reply->type;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        g->integer = reply->integer;
    if (reply != NULL && reply->str != NULL)
        snprintf(g->str, sizeof(g->str), "%s", reply->str);
    if (F->free_at == i) {
        sl_redis_link_free(link);
        F->link = NULL;
    }
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    char err[256];

    snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-test-link-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/r.sock", f->dir);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    f->base = event_base_new();
    f->free_at = -1;
    F = f;
    f->link = sl_redis_link_new(f->base, &(struct sl_redis_target){ .path = f->path }, NULL,
                                NULL, 1024, on_down, f, err, sizeof(err));
    assert_non_null(f->link);
    f->peer = accept(f->lfd, NULL, NULL);
    assert_true(f->peer >= 0);
    fcntl(f->peer, F_SETFL, O_NONBLOCK);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    sl_redis_link_free(f->link);
    close(f->peer);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void
spin(struct fixture *f)
{
    for (int i = 0; i < 20; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* What the link wrote so far. */
static size_t
peer_read(struct fixture *f, char *buf, size_t size)
{
    size_t got = 0;
    ssize_t n;

    spin(f);
    while (got < size - 1 && (n = read(f->peer, buf + got, size - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    return got;
}

static void
peer_write(struct fixture *f, const char *text)
{
    assert_int_equal(write(f->peer, text, strlen(text)), (ssize_t)strlen(text));
    spin(f);
}

static void
send_three(struct fixture *f)
{
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    const char *argv[2] = { "GET", "k\r\n" };
    size_t lens[2] = { 3, 3 };
    char buf[256];

    assert_int_equal(sl_redis_link_send_argv(f->link, 2, argv, lens, on_reply, (void *)0), 0);
    assert_int_equal(sl_redis_link_send(f->link, ping, sizeof(ping) - 1, on_reply, (void *)1), 0);
    assert_int_equal(sl_redis_link_send(f->link, ping, sizeof(ping) - 1, on_reply, (void *)2), 0);
    assert_int_equal(sl_redis_link_pending(f->link), 3);
    /* byte for byte, in order, binary-safe */
    peer_read(f, buf, sizeof(buf));
    assert_string_equal(buf, "*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n"
                             "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n");
}

static void
test_replies_in_order(void **state)
{
    struct fixture *f = *state;

    send_three(f);
    /* split inside a reply, then the rest with two whole ones */
    peer_write(f, "$5\r\nhel");
    assert_int_equal(f->got[0].ncalls, 0);
    peer_write(f, "lo\r\n:42\r\n+OK\r\n");
    assert_int_equal(f->norder, 3);
    assert_int_equal(f->order[0], 0);
    assert_int_equal(f->order[1], 1);
    assert_int_equal(f->order[2], 2);
    assert_int_equal(f->got[0].type, REDIS_REPLY_STRING);
    assert_string_equal(f->got[0].str, "hello");
    assert_int_equal(f->got[1].integer, 42);
    assert_string_equal(f->got[2].str, "OK");
    assert_int_equal(sl_redis_link_pending(f->link), 0);
    assert_int_equal(f->ndown, 0);
}

/* Freed in the first callback: the others get NULL after it returns, once. */
static void
test_free_inside_callback(void **state)
{
    struct fixture *f = *state;

    send_three(f);
    f->free_at = 0;
    peer_write(f, "+A\r\n+B\r\n+C\r\n");
    assert_int_equal(f->norder, 3);
    assert_int_equal(f->got[0].type, REDIS_REPLY_STATUS);
    assert_int_equal(f->got[1].type, -1);
    assert_int_equal(f->got[2].type, -1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->got[i].ncalls, 1);
    assert_int_equal(f->ndown, 0);
}

static void
test_server_closes(void **state)
{
    struct fixture *f = *state;

    send_three(f);
    f->is_free_in_down = true;
    peer_write(f, ":1\r\n");
    close(f->peer);
    f->peer = -1;
    spin(f);
    assert_int_equal(f->ndown, 1);
    assert_string_equal(f->down_why, "connection closed by the server");
    assert_int_equal(f->got[0].integer, 1);
    assert_int_equal(f->got[1].type, -1);
    assert_int_equal(f->got[2].type, -1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->got[i].ncalls, 1);
}

static void
test_reply_nobody_asked_for(void **state)
{
    struct fixture *f = *state;

    peer_write(f, "+surprise\r\n");
    assert_int_equal(f->ndown, 1);
    assert_non_null(strstr(f->down_why, "protocol error"));
    /* down: nothing more is taken */
    assert_int_equal(sl_redis_link_send(f->link, "x", 1, on_reply, (void *)0), -1);
}

static void
test_bad_protocol(void **state)
{
    struct fixture *f = *state;

    send_three(f);
    peer_write(f, "?junk\r\n");
    assert_int_equal(f->ndown, 1);
    assert_non_null(strstr(f->down_why, "protocol error"));
    assert_int_equal(f->norder, 0); /* the NULL replies come with the free */
}

static void
test_out_max(void **state)
{
    struct fixture *f = *state;
    char big[2048];

    memset(big, 'x', sizeof(big));
    assert_int_equal(sl_redis_link_send(f->link, big, sizeof(big), on_reply, (void *)0), -1);
    assert_int_equal(sl_redis_link_pending(f->link), 0);
    assert_int_equal(f->norder, 0);
}

static void
test_refused(void **state)
{
    struct event_base *base = event_base_new();
    char err[256];

    (void)state;
    assert_null(sl_redis_link_new(base, &(struct sl_redis_target){ .path = "/nonexistent/r.sock" },
                                  NULL, NULL, 1024, on_down, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "connect: No such file"));
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replies_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_nobody_asked_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_max, setup, teardown),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
