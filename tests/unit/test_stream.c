/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * util/stream over real loopback TCP pairs and a real event loop: reads into
 * the input buffer, a close queued behind data (one edge for both) reported
 * as EOF, reading paused and resumed with the close already there, writes in
 * one piece and in many.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "util/stream.h"

struct seen {
    int what;       /* every condition reported so far */
    int ncalls;
};

static void
record(struct sl_stream *s, int what, void *arg)
{
    struct seen *seen = arg;

    (void)s;
    seen->what |= what;
    seen->ncalls++;
}

/* A connected loopback TCP pair: *ours is handed to the stream. */
static void
tcp_pair(int *ours, int *peer)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    *peer = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*peer, (struct sockaddr *)&sa, len), 0);
    *ours = accept(l, NULL, NULL);
    assert_true(*ours >= 0);
    close(l);
}

/* The peer writes `data` and closes; returns when both sit in our receive
 * queue, before any stream looks at the socket. */
static void
peer_says_and_closes(int peer, const void *data, size_t len)
{
    assert_int_equal(write(peer, data, len), (ssize_t)len);
    close(peer);
    usleep(20000);
}

/* Runs the loop until `want` was reported or 200 passes without it. */
static void
loop_until(struct event_base *base, struct seen *seen, int want)
{
    for (int i = 0; i < 200 && (seen->what & want) != want; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if ((seen->what & want) != want)
            usleep(1000);
    }
}

static void
test_reads_data(void **state)
{
    struct event_base *base = event_base_new();
    struct sl_stream s;
    struct seen seen = { 0 };
    int ours, peer;

    (void)state;
    tcp_pair(&ours, &peer);
    sl_stream_init(&s, base, ours, 0, record, &seen);
    assert_int_equal(write(peer, "hello", 5), 5);
    loop_until(base, &seen, SL_STREAM_READ);
    assert_true(seen.what & SL_STREAM_READ);
    assert_false(seen.what & SL_STREAM_EOF);
    assert_int_equal(evbuffer_get_length(s.in), 5);
    assert_memory_equal(evbuffer_pullup(s.in, 5), "hello", 5);
    close(peer);
    loop_until(base, &seen, SL_STREAM_EOF);
    assert_true(seen.what & SL_STREAM_EOF);
    sl_stream_fini(&s);
    event_base_free(base);
}

/* Data and FIN already queued before the first dispatch: one edge for both. */
static void
test_close_behind_data_is_seen(void **state)
{
    struct event_base *base = event_base_new();
    struct sl_stream s;
    struct seen seen = { 0 };
    int ours, peer;

    (void)state;
    tcp_pair(&ours, &peer);
    peer_says_and_closes(peer, "last words", 10);
    sl_stream_init(&s, base, ours, 0, record, &seen);
    loop_until(base, &seen, SL_STREAM_READ | SL_STREAM_EOF);
    assert_int_equal(seen.what & (SL_STREAM_READ | SL_STREAM_EOF),
                     SL_STREAM_READ | SL_STREAM_EOF);
    assert_int_equal(evbuffer_get_length(s.in), 10);
    sl_stream_fini(&s);
    event_base_free(base);
}

/* Reading off while data and FIN arrive; turned on again, both come out. */
static void
test_close_seen_after_resume(void **state)
{
    struct event_base *base = event_base_new();
    struct sl_stream s;
    struct seen seen = { 0 };
    int ours, peer;

    (void)state;
    tcp_pair(&ours, &peer);
    sl_stream_init(&s, base, ours, 0, record, &seen);
    sl_stream_set_reading(&s, false);
    peer_says_and_closes(peer, "later", 5);
    loop_until(base, &seen, SL_STREAM_EOF); /* nothing is read while off */
    assert_int_equal(seen.what & (SL_STREAM_READ | SL_STREAM_EOF), 0);
    sl_stream_set_reading(&s, true);
    loop_until(base, &seen, SL_STREAM_READ | SL_STREAM_EOF);
    assert_int_equal(seen.what & (SL_STREAM_READ | SL_STREAM_EOF),
                     SL_STREAM_READ | SL_STREAM_EOF);
    assert_int_equal(evbuffer_get_length(s.in), 5);
    sl_stream_fini(&s);
    event_base_free(base);
}

/* in_max stops reading with the close still queued; consuming resumes it. */
static void
test_input_limit_then_close(void **state)
{
    struct event_base *base = event_base_new();
    struct sl_stream s;
    struct seen seen = { 0 };
    char data[300];
    int ours, peer;

    (void)state;
    memset(data, 'x', sizeof(data));
    tcp_pair(&ours, &peer);
    peer_says_and_closes(peer, data, sizeof(data));
    sl_stream_init(&s, base, ours, 100, record, &seen);
    loop_until(base, &seen, SL_STREAM_READ);
    assert_int_equal(evbuffer_get_length(s.in), 100);
    assert_false(seen.what & SL_STREAM_EOF);
    for (int i = 0; i < 3 && !(seen.what & SL_STREAM_EOF); i++) {
        evbuffer_drain(s.in, evbuffer_get_length(s.in));
        sl_stream_rearm(&s);
        loop_until(base, &seen, SL_STREAM_EOF);
    }
    assert_true(seen.what & SL_STREAM_EOF);
    sl_stream_fini(&s);
    event_base_free(base);
}

static size_t
read_all(int fd, char *buf, size_t want)
{
    size_t got = 0;

    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* One piece (send) and several chains (writev) both arrive whole and in order. */
static void
test_writes(void **state)
{
    struct event_base *base = event_base_new();
    struct evbuffer *other = evbuffer_new();
    struct sl_stream s;
    struct seen seen = { 0 };
    static char big[200000];
    static char got[sizeof(big) + 16];
    int ours, peer;

    (void)state;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    tcp_pair(&ours, &peer);
    sl_stream_init(&s, base, ours, 0, record, &seen);

    evbuffer_add(s.out, "one piece", 9);
    sl_stream_flush(&s);
    assert_int_equal(evbuffer_get_length(s.out), 0);
    assert_int_equal(read_all(peer, got, 9), 9);
    assert_memory_equal(got, "one piece", 9);

    /* head + a chain moved in from another buffer + more: several pieces */
    evbuffer_add(other, big + 3, 5000);
    evbuffer_add(s.out, big, 3);
    evbuffer_add_buffer(s.out, other);
    evbuffer_add(s.out, big + 5003, sizeof(big) - 5003);
    sl_stream_flush(&s);
    /* the rest goes out on writable edges while the peer reads */
    size_t n = 0;
    while (n < sizeof(big)) {
        ssize_t r = read(peer, got + n, sizeof(big) - n);
        assert_true(r > 0);
        n += (size_t)r;
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    assert_memory_equal(got, big, sizeof(big));
    assert_int_equal(evbuffer_get_length(s.out), 0);
    close(peer);
    evbuffer_free(other);
    sl_stream_fini(&s);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_data),
        cmocka_unit_test(test_close_behind_data_is_seen),
        cmocka_unit_test(test_close_seen_after_resume),
        cmocka_unit_test(test_input_limit_then_close),
        cmocka_unit_test(test_writes),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
