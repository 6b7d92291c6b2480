/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The sd_notify(3) datagram protocol without libsystemd: resolve
 * $NOTIFY_SOCKET to a sockaddr_un (an absolute path, or '@' for the Linux
 * abstract namespace), send one datagram, close. No state, no logging: the
 * caller decides what a failure is worth. The vsock addresses of systemd
 * 254+ are not supported (a service manager inside a VM guest talking to its
 * host is not a case for a proxy daemon).
 */
#include "sluice/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fills *sa from $NOTIFY_SOCKET; returns its length, 0 when unset, -1. */
static int
notify_addr(struct sockaddr_un *sa, socklen_t *len)
{
    const char *name = getenv("NOTIFY_SOCKET");
    size_t n;

    if (name == NULL || name[0] == '\0')
        return 0;
    if (name[0] != '/' && name[0] != '@') {
        errno = EAFNOSUPPORT;
        return -1;
    }
    n = strlen(name);
    /* A path needs its terminating NUL inside sun_path; an abstract name
     * (leading NUL, then the bytes after '@') does not have one. */
    if (n >= sizeof(sa->sun_path) + (name[0] == '@')) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@') {
        /* The abstract name is exactly n bytes long, NUL included: its
         * length is in the address length, not in a terminator. */
        sa->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 1;
}

int
sl_notify_send(const char *state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    size_t n = strlen(state);
    ssize_t sent;
    int fd, rc, saved;

    rc = notify_addr(&sa, &len);
    if (rc <= 0)
        return rc;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* One datagram: the manager reads it whole or not at all. A full
     * receive queue fails at once (EAGAIN) rather than stalling a worker. */
    sent = sendto(fd, state, n, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, len);
    saved = errno;
    close(fd);
    if (sent < 0) {
        errno = saved;
        return -1;
    }
    if ((size_t)sent != n) {
        errno = EMSGSIZE;
        return -1;
    }
    return 1;
}

int
sl_notify_ready(void)
{
    return sl_notify_send("READY=1");
}

int
sl_notify_reloading(void)
{
    struct timespec ts;
    char buf[64];

    /* systemd matches MONOTONIC_USEC against its own CLOCK_MONOTONIC to tell
     * this reload from an older one: the real clock, never sl_clock's fake. */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return -1;
    snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    return sl_notify_send(buf);
}

int
sl_notify_stopping(void)
{
    return sl_notify_send("STOPPING=1");
}

int
sl_notify_watchdog(void)
{
    return sl_notify_send("WATCHDOG=1");
}

int
sl_notify_status(const char *fmt, ...)
{
    char buf[7 + 1024 + 1] = "STATUS=";
    va_list ap;

    if (getenv("NOTIFY_SOCKET") == NULL)
        return 0;
    va_start(ap, fmt);
    vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
    va_end(ap);
    for (char *p = buf + 7; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    return sl_notify_send(buf);
}

uint64_t
sl_notify_watchdog_interval_us(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    unsigned long long v;
    char *end;

    if (pid != NULL && pid[0] != '\0') {
        long long p;

        errno = 0;
        p = strtoll(pid, &end, 10);
        /* The variables were meant for another process (a parent that
         * exec'd us without clearing them): not our watchdog. */
        if (errno != 0 || *end != '\0' || end == pid || p != (long long)getpid())
            return 0;
    }
    if (usec == NULL || usec[0] < '0' || usec[0] > '9')
        return 0;
    errno = 0;
    v = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return 0;
    return (uint64_t)v;
}
