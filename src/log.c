/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The diagnostic log. Each line is formatted into a stack buffer and written
 * with one write(2) so lines from several threads never interleave.
 *
 * Other threads write while the main thread switches files (a reopen, or a
 * reload that moves error_log): once the log is a file its descriptor number
 * stays the same and the new file is dup2'd onto it, so a writer that read
 * the number a moment before never writes to a closed or reused descriptor.
 */
#include "sluice/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_fd = STDERR_FILENO;
static char *log_path;         /* the file's path; NULL: standard error */
static atomic_bool is_to_file; /* log_path != NULL, for the writers */
static atomic_bool is_stderr_copy;
static enum sl_log_level min_level = SL_LOG_INFO;
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

static int
open_path(const char *path)
{
    if (path == NULL || strcmp(path, "stderr") == 0)
        return STDERR_FILENO;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int
sl_log_open_fd(const char *path)
{
    return open_path(path);
}

void
sl_log_use(const char *path, int fd)
{
    int cur;

    pthread_mutex_lock(&reopen_lock);
    cur = atomic_load(&log_fd);
    if (cur == STDERR_FILENO) {
        atomic_store(&log_fd, fd);
    } else if (fd != cur) {
        /* back to stderr too: the number then stands for a copy of it */
        dup2(fd, cur);
        if (fd != STDERR_FILENO)
            close(fd);
    }
    free(log_path);
    log_path = (path != NULL && strcmp(path, "stderr") != 0) ? strdup(path) : NULL;
    atomic_store(&is_to_file, log_path != NULL);
    pthread_mutex_unlock(&reopen_lock);
}

int
sl_log_open(const char *path)
{
    int fd = open_path(path);

    if (fd < 0)
        return -1;
    sl_log_use(path, fd);
    return 0;
}

void
sl_log_set_stderr_copy(bool is_on)
{
    atomic_store(&is_stderr_copy, is_on);
}

int
sl_log_reopen(void)
{
    int fd, status = 0;

    pthread_mutex_lock(&reopen_lock);
    if (log_path != NULL) {
        fd = open_path(log_path);
        if (fd < 0) {
            status = -1;
        } else {
            /* dup2 swaps atomically, so a concurrent writer never sees a closed fd */
            dup2(fd, atomic_load(&log_fd));
            close(fd);
        }
    }
    pthread_mutex_unlock(&reopen_lock);
    return status;
}

void
sl_log_close(void)
{
    pthread_mutex_lock(&reopen_lock);
    if (atomic_load(&log_fd) != STDERR_FILENO)
        close(atomic_load(&log_fd));
    atomic_store(&log_fd, STDERR_FILENO);
    free(log_path);
    log_path = NULL;
    atomic_store(&is_to_file, false);
    pthread_mutex_unlock(&reopen_lock);
}

void
sl_log_set_level(enum sl_log_level level)
{
    min_level = level;
}

int
sl_log_parse_level(const char *name, enum sl_log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum sl_log_level)i;
            return 0;
        }
    }
    return -1;
}

static void
emit(enum sl_log_level level, int errnum, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t len;
    int n;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                 level_names[level]);
    len += (size_t)n;
    n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    len = n < 0 ? len : len + (size_t)n;
    if (len > sizeof(line) - 80)
        len = sizeof(line) - 80;
    if (errnum != 0) {
        n = snprintf(line + len, sizeof(line) - len, ": %s", strerror(errnum));
        len += (size_t)n;
    }
    line[len++] = '\n';
    (void)!write(atomic_load(&log_fd), line, len);
    if (level >= SL_LOG_WARN && atomic_load(&is_stderr_copy) && atomic_load(&is_to_file))
        (void)!write(STDERR_FILENO, line, len);
}

#define SL_LOG_FN(fn, level, with_errno)                                                        \
    void fn(const char *fmt, ...)                                                               \
    {                                                                                           \
        int saved = errno;                                                                      \
        va_list ap;                                                                             \
        va_start(ap, fmt);                                                                      \
        emit(level, with_errno ? saved : 0, fmt, ap);                                           \
        va_end(ap);                                                                             \
        errno = saved;                                                                          \
    }

SL_LOG_FN(sl_log_debug, SL_LOG_DEBUG, 0)
SL_LOG_FN(sl_log_info, SL_LOG_INFO, 0)
SL_LOG_FN(sl_log_warn, SL_LOG_WARN, 1)
SL_LOG_FN(sl_log_warnx, SL_LOG_WARN, 0)
SL_LOG_FN(sl_log_error, SL_LOG_ERROR, 0)

void
sl_fatal(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    emit(SL_LOG_ERROR, saved, fmt, ap);
    va_end(ap);
    abort();
}

void
sl_fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(SL_LOG_ERROR, 0, fmt, ap);
    va_end(ap);
    abort();
}

bool
sl_log_gate_pass(struct sl_log_gate *gate, uint64_t now_us, uint64_t interval_us,
                 uint64_t *held)
{
    if (gate->last_us != 0 && now_us - gate->last_us < interval_us) {
        gate->held++;
        return false;
    }
    *held = gate->held;
    gate->held = 0;
    gate->last_us = now_us != 0 ? now_us : 1;
    return true;
}
