/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * notify: the sd_notify datagram protocol against a real AF_UNIX datagram
 * socket bound by the test (a path in a temp dir, and an abstract name), the
 * no-op without $NOTIFY_SOCKET, refused addresses, and the watchdog
 * variables.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/notify.h"

struct peer {
    char dir[64];
    char path[128];
    int fd;
};

/* Binds a datagram socket at a path in a fresh temp dir, or, when
 * is_abstract, at an abstract name; points $NOTIFY_SOCKET at it. */
static void
peer_open(struct peer *p, int is_abstract)
{
    struct sockaddr_un sa;
    socklen_t len;

    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(p->fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (is_abstract) {
        int n = snprintf(p->path, sizeof(p->path), "@sl-test-notify-%ld", (long)getpid());
        memcpy(sa.sun_path + 1, p->path + 1, (size_t)n - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
    } else {
        snprintf(p->dir, sizeof(p->dir), "/tmp/sl-notify-XXXXXX");
        assert_non_null(mkdtemp(p->dir));
        snprintf(p->path, sizeof(p->path), "%s/notify", p->dir);
        assert_true(strlen(p->path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, p->path, strlen(p->path) + 1);
        len = sizeof(sa);
    }
    assert_int_equal(bind(p->fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", p->path, 1), 0);
}

static void
peer_close(struct peer *p)
{
    close(p->fd);
    if (p->dir[0] != '\0') {
        unlink(p->path);
        rmdir(p->dir);
    }
    unsetenv("NOTIFY_SOCKET");
}

/* The next datagram, as a string; fails the test when none is queued (a
 * datagram sent on a Unix socket is queued before sendto returns). */
static const char *
peer_read(struct peer *p)
{
    static char buf[2048];
    ssize_t n = recv(p->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

static void
assert_nothing_queued(struct peer *p)
{
    char c;

    assert_int_equal(recv(p->fd, &c, 1, MSG_DONTWAIT), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void
test_noop_without_socket(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sl_notify_ready(), 0);
    assert_int_equal(sl_notify_reloading(), 0);
    assert_int_equal(sl_notify_stopping(), 0);
    assert_int_equal(sl_notify_watchdog(), 0);
    assert_int_equal(sl_notify_status("x %d", 1), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sl_notify_ready(), 0);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_messages_on_path_socket(void **state)
{
    struct peer p;

    (void)state;
    peer_open(&p, 0);
    assert_int_equal(sl_notify_ready(), 1);
    assert_string_equal(peer_read(&p), "READY=1");
    assert_int_equal(sl_notify_stopping(), 1);
    assert_string_equal(peer_read(&p), "STOPPING=1");
    assert_int_equal(sl_notify_watchdog(), 1);
    assert_string_equal(peer_read(&p), "WATCHDOG=1");
    assert_int_equal(sl_notify_status("serving: %u workers", 4u), 1);
    assert_string_equal(peer_read(&p), "STATUS=serving: 4 workers");
    assert_nothing_queued(&p);
    peer_close(&p);
}

static void
test_messages_on_abstract_socket(void **state)
{
    struct peer p;

    (void)state;
    peer_open(&p, 1);
    assert_int_equal(sl_notify_ready(), 1);
    assert_string_equal(peer_read(&p), "READY=1");
    assert_nothing_queued(&p);
    peer_close(&p);
}

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
test_reloading_carries_monotonic_time(void **state)
{
    struct peer p;
    const char *msg;
    unsigned long long usec;
    uint64_t before, after;
    char *end;

    (void)state;
    peer_open(&p, 0);
    before = mono_us();
    assert_int_equal(sl_notify_reloading(), 1);
    after = mono_us();
    msg = peer_read(&p);
    assert_true(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    usec = strtoull(msg + 27, &end, 10);
    assert_true(*end == '\0');
    assert_true(usec >= before && usec <= after);
    peer_close(&p);
}

static void
test_status_cannot_add_fields(void **state)
{
    struct peer p;
    char long_text[3000];

    (void)state;
    peer_open(&p, 0);
    assert_int_equal(sl_notify_status("a\nREADY=1\r\nb"), 1);
    assert_string_equal(peer_read(&p), "STATUS=a READY=1  b");
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    assert_int_equal(sl_notify_status("%s", long_text), 1);
    assert_int_equal(strlen(peer_read(&p)), 7 + 1024);
    peer_close(&p);
}

static void
test_bad_addresses(void **state)
{
    char longpath[200];

    (void)state;
    setenv("NOTIFY_SOCKET", "relative/socket", 1);
    errno = 0;
    assert_int_equal(sl_notify_ready(), -1);
    assert_int_equal(errno, EAFNOSUPPORT);

    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(sl_notify_ready(), -1);
    assert_int_equal(errno, ENAMETOOLONG);

    /* nobody listens there: sendto's own error comes back */
    setenv("NOTIFY_SOCKET", "/nonexistent/sl-notify.sock", 1);
    assert_int_equal(sl_notify_watchdog(), -1);
    assert_int_equal(errno, ENOENT);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_watchdog_interval(void **state)
{
    char pid[32];

    (void)state;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);

    setenv("WATCHDOG_USEC", "20000000", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 20000000);

    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 20000000);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    setenv("WATCHDOG_PID", "12x", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    unsetenv("WATCHDOG_PID");

    setenv("WATCHDOG_USEC", "0", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    setenv("WATCHDOG_USEC", "5s", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    setenv("WATCHDOG_USEC", "99999999999999999999999", 1);
    assert_int_equal(sl_notify_watchdog_interval_us(), 0);
    unsetenv("WATCHDOG_USEC");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noop_without_socket),
        cmocka_unit_test(test_messages_on_path_socket),
        cmocka_unit_test(test_messages_on_abstract_socket),
        cmocka_unit_test(test_reloading_carries_monotonic_time),
        cmocka_unit_test(test_status_cannot_add_fields),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_watchdog_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
