/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Secrets read from files: see secret.h. The buffers that held a secret
 * are wiped before they are given back.
 */
#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"

ssize_t
sl_secret_read_bounded(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t got = 0;
    int saved;

    if (fd < 0)
        return -1;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return (ssize_t)got;
}

/* Whether [s, s+len) is one line without NUL bytes: fills err if not. */
static int
check_content(const char *s, size_t len, char *err, size_t err_size)
{
    if (len == 0) {
        snprintf(err, err_size, "the file is empty");
        return -1;
    }
    if (len > SL_SECRET_MAX) {
        snprintf(err, err_size, "the file holds more than %d bytes", SL_SECRET_MAX);
        return -1;
    }
    if (memchr(s, '\0', len) != NULL) {
        snprintf(err, err_size, "the file holds a NUL byte");
        return -1;
    }
    if (memchr(s, '\n', len) != NULL || memchr(s, '\r', len) != NULL) {
        snprintf(err, err_size, "the file holds more than one line (write the password "
                 "alone on one line)");
        return -1;
    }
    return 0;
}

int
sl_secret_read(const char *path, char **out, char *err, size_t err_size)
{
    /* room for the secret, its line end, and one byte to see it is too long */
    char buf[SL_SECRET_MAX + 2 + 1];
    ssize_t n = sl_secret_read_bounded(path, buf, sizeof(buf));
    size_t len;
    int rc = -1;

    *out = NULL;
    if (n < 0) {
        snprintf(err, err_size, "cannot read it: %s", strerror(errno));
        return -1;
    }
    len = (size_t)n;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r' && len < (size_t)n)
        len--;
    if (check_content(buf, len, err, err_size) == 0) {
        *out = sl_xmalloc(len + 1);
        memcpy(*out, buf, len);
        (*out)[len] = '\0';
        rc = 0;
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

void
sl_secret_free(char *secret)
{
    if (secret == NULL)
        return;
    explicit_bzero(secret, strlen(secret));
    free(secret);
}
