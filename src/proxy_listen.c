/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Unix socket listeners. A TCP address is bound by every worker on its own
 * (SO_REUSEPORT); a path can be bound only once, so the first worker that
 * asks binds it and every worker listens on a dup of that one socket (the
 * kernel hands each connection to one accept()). The socket file is made
 * here and removed when the last worker lets go of it, unless another
 * process has put a file of its own there meanwhile.
 *
 * What this file does not do: accept, or anything per connection (proxy.c).
 */
#include "proxy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/config.h"
#include "util/alloc.h"

struct unix_sock {
    struct unix_sock *next;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd;
    dev_t dev;
    ino_t ino;
    unsigned users; /* workers listening on a dup of fd */
};

/* Workers open their listeners from the main thread, but let go of them on
 * their own threads when they drain. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct unix_sock *socks;

/* A file left at path by a process that is gone: removed. A socket someone
 * still answers on, or a file that is not a socket, is left alone. */
static int
remove_stale(const struct sockaddr_un *sun, socklen_t len, char *err, size_t err_size)
{
    struct stat st;
    int fd, rc;

    if (lstat(sun->sun_path, &st) != 0)
        return errno == ENOENT ? 0 : (snprintf(err, err_size, "%s", strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, err_size, "%s exists and is not a socket", sun->sun_path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    rc = connect(fd, (const struct sockaddr *)sun, len);
    close(fd);
    if (rc == 0) {
        snprintf(err, err_size, "another process is listening on %s", sun->sun_path);
        return -1;
    }
    if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
        snprintf(err, err_size, "remove stale %s: %s", sun->sun_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Binds, gives the file its mode, then listens: nobody can connect before
 * the mode is right, since connect() is refused until listen(). */
static int
bind_unix(const struct sl_listen_conf *l, struct unix_sock *us, char *err, size_t err_size)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)&l->ss;
    struct stat st;
    int fd;

    if (remove_stale(sun, l->len, err, err_size) != 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (const struct sockaddr *)sun, l->len) != 0) {
        snprintf(err, err_size, "bind: %s", strerror(errno));
        goto fail;
    }
    if (l->has_mode && chmod(sun->sun_path, (mode_t)l->mode) != 0) {
        snprintf(err, err_size, "chmod %04o: %s", l->mode, strerror(errno));
        unlink(sun->sun_path);
        goto fail;
    }
    if (listen(fd, 511) != 0 || stat(sun->sun_path, &st) != 0) {
        snprintf(err, err_size, "listen: %s", strerror(errno));
        unlink(sun->sun_path);
        goto fail;
    }
    us->fd = fd;
    us->dev = st.st_dev;
    us->ino = st.st_ino;
    return 0;
fail:
    close(fd);
    return -1;
}

int
proxy_unix_open(const struct sl_listen_conf *l, char *err, size_t err_size)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)&l->ss;
    struct unix_sock *us;
    int fd = -1;

    pthread_mutex_lock(&lock);
    for (us = socks; us != NULL && strcmp(us->path, sun->sun_path) != 0; us = us->next)
        ;
    if (us == NULL) {
        us = sl_xcalloc(1, sizeof(*us));
        snprintf(us->path, sizeof(us->path), "%s", sun->sun_path);
        if (bind_unix(l, us, err, err_size) != 0) {
            free(us);
            goto out;
        }
        us->next = socks;
        socks = us;
    }
    fd = fcntl(us->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_size, "dup: %s", strerror(errno));
        goto out;
    }
    us->users++;
out:
    pthread_mutex_unlock(&lock);
    return fd;
}

void
proxy_unix_release(const char *path)
{
    struct unix_sock **p, *us;
    struct stat st;

    pthread_mutex_lock(&lock);
    for (p = &socks; *p != NULL && strcmp((*p)->path, path) != 0; p = &(*p)->next)
        ;
    us = *p;
    if (us != NULL && --us->users == 0) {
        *p = us->next;
        /* the file may have been replaced (a new instance started while this
         * one drains): only our own socket goes */
        if (lstat(us->path, &st) == 0 && st.st_dev == us->dev && st.st_ino == us->ino)
            unlink(us->path);
        close(us->fd);
        free(us);
    }
    pthread_mutex_unlock(&lock);
}
