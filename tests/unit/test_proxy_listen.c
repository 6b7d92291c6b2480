/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Unix socket listeners (src/proxy_listen.c): the first open binds the path
 * with its mode, later opens get a dup of the same socket, the file goes
 * with the last release; a stale socket file is replaced, a file that is
 * not a socket or a socket another process accepts on is refused, and a
 * file put in our place meanwhile is not removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy_int.h"
#include "sluice/config.h"

static char dir[64];

static void
listen_conf(struct sl_listen_conf *l, const char *name, int mode)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)(void *)&l->ss;

    memset(l, 0, sizeof(*l));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", dir, name);
    l->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sun->sun_path) + 1);
    l->is_unix = true;
    snprintf(l->text, sizeof(l->text), "unix:%s", sun->sun_path);
    if (mode >= 0) {
        l->has_mode = true;
        l->mode = (unsigned)mode;
    }
}

static const char *
path_of(const struct sl_listen_conf *l)
{
    return ((const struct sockaddr_un *)(const void *)&l->ss)->sun_path;
}

/* A client connect to the path: 0 when something accepts there. */
static int
try_connect(const struct sl_listen_conf *l)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int rc = connect(fd, (const struct sockaddr *)&l->ss, l->len);

    close(fd);
    return rc;
}

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sl-test-listen-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

static void
test_shared_and_removed(void **state)
{
    struct sl_listen_conf l;
    struct stat st;
    char err[256];
    int a, b;
    (void)state;

    listen_conf(&l, "s.sock", 0600);
    a = proxy_unix_open(&l, err, sizeof(err));
    assert_true(a >= 0);
    b = proxy_unix_open(&l, err, sizeof(err));
    assert_true(b >= 0 && b != a);
    assert_int_equal(stat(path_of(&l), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(try_connect(&l), 0);
    close(a);
    proxy_unix_release(path_of(&l));
    /* one worker still listens: the file stays */
    assert_int_equal(try_connect(&l), 0);
    close(b);
    proxy_unix_release(path_of(&l));
    assert_int_equal(stat(path_of(&l), &st), -1);
}

static void
test_stale_replaced(void **state)
{
    struct sl_listen_conf l;
    char err[256];
    int stale, fd;
    (void)state;

    listen_conf(&l, "stale.sock", -1);
    stale = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(stale, (const struct sockaddr *)&l.ss, l.len), 0);
    close(stale); /* its file stays behind, nobody accepts on it */
    fd = proxy_unix_open(&l, err, sizeof(err));
    if (fd < 0)
        fail_msg("%s", err);
    assert_int_equal(try_connect(&l), 0);
    close(fd);
    proxy_unix_release(path_of(&l));
    assert_int_equal(access(path_of(&l), F_OK), -1);
}

static void
test_refused(void **state)
{
    struct sl_listen_conf l;
    char err[256];
    int other, fd;
    FILE *f;
    (void)state;

    /* a regular file: not ours to remove */
    listen_conf(&l, "file", -1);
    f = fopen(path_of(&l), "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(proxy_unix_open(&l, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exists and is not a socket"));
    assert_int_equal(access(path_of(&l), F_OK), 0);
    unlink(path_of(&l));

    /* a socket another process accepts on */
    listen_conf(&l, "busy.sock", -1);
    other = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(other, (const struct sockaddr *)&l.ss, l.len), 0);
    assert_int_equal(listen(other, 1), 0);
    assert_int_equal(proxy_unix_open(&l, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "another process is listening"));
    close(other);
    unlink(path_of(&l));

    /* our file replaced while we ran: the new one is left alone */
    listen_conf(&l, "replaced.sock", -1);
    fd = proxy_unix_open(&l, err, sizeof(err));
    assert_true(fd >= 0);
    unlink(path_of(&l));
    f = fopen(path_of(&l), "w");
    assert_non_null(f);
    fclose(f);
    close(fd);
    proxy_unix_release(path_of(&l));
    assert_int_equal(access(path_of(&l), F_OK), 0);
    unlink(path_of(&l));

    /* no such directory */
    listen_conf(&l, "no/such/dir.sock", -1);
    assert_int_equal(proxy_unix_open(&l, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bind"));
}

int
main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_and_removed),
        cmocka_unit_test(test_stale_replaced),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
