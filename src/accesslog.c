/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The JSON access log. Every line is a cJSON object printed straight into the
 * worker's 64 KiB buffer: the nodes live on the stack and point at the
 * entry's strings, so writing a line allocates nothing. Numbers are formatted
 * here and passed as raw JSON (see field_raw). cJSON escapes quotes,
 * backslashes and control bytes; it copies other bytes as they are, so every
 * string is first cut to a sane length and made valid UTF-8 here (a byte that
 * is not part of a valid sequence, and NUL, become U+FFFD).
 *
 * The buffer holds whole lines only and goes out with write(2) on an O_APPEND
 * descriptor when the next line does not fit, one second after the first
 * line that went in (a libevent timer on the worker's base), on reopen and on
 * free. Workers sharing one file therefore never interleave inside a line.
 * Field names and meanings: docs/logging.md.
 */
#include "sluice/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "sluice/log.h"
#include "util/alloc.h"
#include "util/text.h"
#include "util/clock.h"

#define BUFFER_SIZE (64 * 1024)
#define FLUSH_AFTER_S 1

/* Longest value kept per field, in input bytes; longer ones are cut. */
#define MAX_PATH 2048
#define MAX_METHOD 32
#define MAX_CLIENT 64
#define MAX_ID 200 /* request_id */
#define MAX_TRACE 64
#define MAX_NAME 256 /* route, upstream, limit, reason, lifecycle, consumer, idempotency */

/* Every string field at its worst (3 bytes per input byte, plus NUL), the time
 * stamp and six numbers fit. */
#define SCRATCH_SIZE                                                                             \
    (3 * (MAX_PATH + MAX_METHOD + 2 * MAX_CLIENT + MAX_ID + MAX_TRACE + 7 * MAX_NAME) + 16 + 48 + \
     6 * 32)

#define MAX_FIELDS 21

struct sl_accesslog {
    char *path;          /* NULL for stderr and off */
    int fd;              /* -1 when off */
    bool is_off;
    bool is_regular;     /* a regular file: one write(2) per flush is atomic enough */
    bool is_failing;     /* last flush failed; logged once per transition */
    bool is_timer_armed;
    struct event *timer; /* NULL without an event base */

    char *buf;
    size_t len;
    uint64_t dropped;    /* lines lost to write errors since the last success */

    time_t cached_sec;   /* the "YYYY-MM-DDTHH:MM:SS" of cached_sec */
    char cached_stamp[32];

    char scratch[SCRATCH_SIZE];
    size_t scratch_len;
};

/* ==== output ============================================================================ */

static size_t
count_lines(const char *p, size_t len)
{
    size_t n = 0;

    for (const char *q = p; (q = memchr(q, '\n', len - (size_t)(q - p))) != NULL; q++)
        n++;
    return n;
}

/*
 * A pipe only keeps writes of up to PIPE_BUF bytes whole when several writers
 * (our workers, other processes on the same stderr) share it, so there we
 * send at most PIPE_BUF bytes of whole lines at a time (a longer line goes
 * alone).
 */
static size_t
next_chunk(const struct sl_accesslog *log, size_t off)
{
    size_t left = log->len - off;
    const char *nl;

    if (log->is_regular || left <= PIPE_BUF)
        return left;
    nl = memrchr(log->buf + off, '\n', PIPE_BUF);
    if (nl != NULL)
        return (size_t)(nl - (log->buf + off)) + 1;
    nl = memchr(log->buf + off, '\n', left);
    return nl != NULL ? (size_t)(nl - (log->buf + off)) + 1 : left;
}

static void
flush(struct sl_accesslog *log)
{
    size_t off = 0;

    while (off < log->len) {
        ssize_t n = write(log->fd, log->buf + off, next_chunk(log, off));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            size_t lost = count_lines(log->buf + off, log->len - off);

            if (!log->is_failing)
                sl_log_warn("access log %s: write failed, dropping lines",
                            log->path != NULL ? log->path : "stderr");
            log->is_failing = true;
            log->dropped += lost;
            break;
        }
        off += (size_t)n;
    }
    if (off == log->len && log->is_failing) {
        sl_log_warnx("access log %s: writing again after dropping %llu lines",
                     log->path != NULL ? log->path : "stderr",
                     (unsigned long long)log->dropped);
        log->is_failing = false;
        log->dropped = 0;
    }
    log->len = 0;
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sl_accesslog *log = arg;

    (void)fd;
    (void)what;
    log->is_timer_armed = false;
    flush(log);
}

static int
open_file(const char *path, bool *is_regular)
{
    struct stat st;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0)
        return -1;
    *is_regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    return fd;
}

/* ==== lifecycle ========================================================================== */

/*
 * Returns NULL with errno set when the file cannot be opened. The writer is
 * used on the thread that runs `base` only (base may be NULL: then lines are
 * flushed only when the buffer fills, on reopen and on free).
 */
struct sl_accesslog *
sl_accesslog_new(const char *path, struct event_base *base)
{
    struct sl_accesslog *log = sl_xcalloc(1, sizeof(*log));
    struct stat st;

    log->fd = -1;
    log->cached_sec = -1;
    if (path == NULL || strcmp(path, "off") == 0) {
        log->is_off = true;
        return log;
    }
    if (strcmp(path, "stderr") == 0) {
        log->fd = STDERR_FILENO;
        log->is_regular = fstat(log->fd, &st) == 0 && S_ISREG(st.st_mode);
    } else {
        log->fd = open_file(path, &log->is_regular);
        if (log->fd < 0) {
            int saved = errno;

            free(log);
            errno = saved;
            return NULL;
        }
        log->path = sl_xstrdup(path);
    }
    log->buf = sl_xmalloc(BUFFER_SIZE);
    if (base != NULL) {
        log->timer = evtimer_new(base, on_timer, log);
        if (log->timer == NULL)
            sl_fatalx("access log: cannot create the flush timer");
    }
    return log;
}

void
sl_accesslog_free(struct sl_accesslog *log)
{
    if (log == NULL)
        return;
    if (!log->is_off)
        flush(log);
    if (log->timer != NULL)
        event_free(log->timer);
    if (log->path != NULL)
        close(log->fd);
    free(log->path);
    free(log->buf);
    free(log);
}

int
sl_accesslog_reopen(struct sl_accesslog *log)
{
    bool is_regular;
    int fd;

    if (log == NULL || log->is_off)
        return 0;
    flush(log);
    if (log->path == NULL)
        return 0;
    /* open first: if that fails, the old file keeps getting lines */
    fd = open_file(log->path, &is_regular);
    if (fd < 0)
        return -1;
    close(log->fd);
    log->fd = fd;
    log->is_regular = is_regular;
    return 0;
}

/* ==== one line ============================================================================ */

/*
 * Copies at most `max` of the `len` bytes at s into the scratch area as valid
 * UTF-8 and returns the NUL-terminated copy; NULL when s is NULL. When s is
 * longer than `max`, it is cut before a character, not inside one.
 */
static const char *
clean(struct sl_accesslog *log, const char *s, size_t len, size_t max)
{
    const unsigned char *in = (const unsigned char *)s;
    char *out;
    size_t o = 0;

    if (s == NULL)
        return NULL;
    if (len > max) {
        len = max;
        for (int k = 0; k < 3 && (in[len] & 0xC0) == 0x80; k++)
            len--;
    }
    out = log->scratch + log->scratch_len;
    for (size_t i = 0; i < len;) {
        size_t n;

        if (in[i] >= 0x01 && in[i] < 0x80) {
            /* ASCII runs, the usual case, go in one copy */
            for (n = 1; i + n < len && in[i + n] >= 0x01 && in[i + n] < 0x80; n++)
                ;
            memcpy(out + o, in + i, n);
            o += n;
            i += n;
            continue;
        }
        n = sl_utf8_len(in + i, len - i);
        if (n == 0 || in[i] == '\0') {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, in + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    log->scratch_len += o + 1;
    return out;
}

static const char *
clean_str(struct sl_accesslog *log, const char *s, size_t max)
{
    return s == NULL ? NULL : clean(log, s, strnlen(s, max + 1), max);
}

/* "2026-01-02T03:04:05.678Z"; the seconds part is cached per writer. */
static const char *
timestamp(struct sl_accesslog *log, double t)
{
    char *out = log->scratch + log->scratch_len;
    uint64_t ms;
    time_t sec;
    struct tm tm;
    size_t n;

    if (!(t > 0) || !isfinite(t))
        t = sl_clock_wall();
    ms = (uint64_t)llround(t * 1000.0);
    sec = (time_t)(ms / 1000);
    if (sec != log->cached_sec) {
        gmtime_r(&sec, &tm);
        strftime(log->cached_stamp, sizeof(log->cached_stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        log->cached_sec = sec;
    }
    n = strlen(log->cached_stamp);
    memcpy(out, log->cached_stamp, n);
    out[n++] = '.';
    out[n++] = (char)('0' + ms % 1000 / 100);
    out[n++] = (char)('0' + ms % 100 / 10);
    out[n++] = (char)('0' + ms % 10);
    out[n++] = 'Z';
    out[n] = '\0';
    log->scratch_len += n + 1;
    return out;
}

struct fields {
    cJSON root;
    cJSON node[MAX_FIELDS];
    size_t n;
};

static cJSON *
field(struct fields *f, const char *key, int type)
{
    cJSON *item = &f->node[f->n];

    memset(item, 0, sizeof(*item));
    item->type = type | cJSON_StringIsConst;
    item->string = (char *)(uintptr_t)key; /* cJSON never writes through it: StringIsConst */
    if (f->n == 0) {
        f->root.child = item;
    } else {
        f->node[f->n - 1].next = item;
        item->prev = &f->node[f->n - 1];
    }
    f->root.child->prev = item; /* cJSON keeps the last child in the first one's prev */
    f->n++;
    return item;
}

static void
field_string(struct fields *f, const char *key, const char *value)
{
    cJSON *item;

    if (value == NULL) {
        field(f, key, cJSON_NULL);
        return;
    }
    item = field(f, key, cJSON_String | cJSON_IsReference);
    item->valuestring = (char *)(uintptr_t)value; /* printed only, never freed */
}

/* Decimal digits of v at out; returns their count. */
static size_t
put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/*
 * Numbers are formatted here and handed to cJSON as raw JSON: cJSON's own
 * number printer (printf %g then sscanf to check the round trip) cost more
 * than the rest of the line together. Only digits and one '.' ever come out.
 */
static void
field_raw(struct fields *f, struct sl_accesslog *log, const char *key, uint64_t whole,
          uint64_t thousandths, bool has_fraction)
{
    char *out = log->scratch + log->scratch_len;
    size_t n = put_u64(out, whole);
    cJSON *item;

    if (has_fraction && thousandths != 0) {
        out[n++] = '.';
        out[n++] = (char)('0' + thousandths / 100);
        out[n++] = (char)('0' + thousandths / 10 % 10);
        out[n++] = (char)('0' + thousandths % 10);
        while (out[n - 1] == '0')
            n--;
    }
    out[n] = '\0';
    log->scratch_len += n + 1;
    item = field(f, key, cJSON_Raw | cJSON_IsReference);
    item->valuestring = out;
}

static void
field_u64(struct fields *f, struct sl_accesslog *log, const char *key, uint64_t value)
{
    field_raw(f, log, key, value, 0, false);
}

/* Milliseconds to three decimals (whole microseconds); negative: absent (null). */
static void
field_ms(struct fields *f, struct sl_accesslog *log, const char *key, double ms)
{
    uint64_t us;

    if (!(ms >= 0) || !isfinite(ms) || ms > 1e15) {
        field(f, key, cJSON_NULL);
        return;
    }
    us = (uint64_t)llround(ms * 1000.0);
    field_raw(f, log, key, us / 1000, us % 1000, true);
}

bool
sl_accesslog_is_on(const struct sl_accesslog *log)
{
    return log != NULL && !log->is_off;
}

void
sl_accesslog_write(struct sl_accesslog *log, const struct sl_access_entry *e)
{
    struct fields f;

    if (log == NULL || log->is_off)
        return;

    memset(&f.root, 0, sizeof(f.root));
    f.root.type = cJSON_Object;
    f.n = 0;
    log->scratch_len = 0;

    field_string(&f, "time", timestamp(log, e->time));
    field_string(&f, "client", clean_str(log, e->client, MAX_CLIENT));
    field_string(&f, "peer", clean_str(log, e->peer, MAX_CLIENT));
    field_string(&f, "method", clean(log, e->method, e->method_len, MAX_METHOD));
    field_string(&f, "path", clean(log, e->path, e->path_len, MAX_PATH));
    if (e->status > 0)
        field_u64(&f, log, "status", (uint64_t)e->status);
    else
        field(&f, "status", cJSON_NULL);
    field_u64(&f, log, "bytes_in", e->bytes_in);
    field_u64(&f, log, "bytes_out", e->bytes_out);
    field_ms(&f, log, "duration_ms", e->duration_ms < 0 ? 0 : e->duration_ms);
    field_ms(&f, log, "upstream_ms", e->upstream_ms);
    field_ms(&f, log, "limiter_ms", e->limiter_ms);
    field_string(&f, "route", clean_str(log, e->route, MAX_NAME));
    field_string(&f, "upstream", clean_str(log, e->upstream, MAX_NAME));
    field_u64(&f, log, "retries", e->retries);
    field_string(&f, "limit", clean_str(log, e->limit, MAX_NAME));
    field_string(&f, "request_id", clean(log, e->request_id, e->request_id_len, MAX_ID));
    field_string(&f, "trace_id", clean(log, e->trace_id, e->trace_id_len, MAX_TRACE));
    field_string(&f, "reason", clean_str(log, e->reason, MAX_NAME));
    field_string(&f, "lifecycle", clean_str(log, e->lifecycle, MAX_NAME));
    field_string(&f, "consumer", clean_str(log, e->consumer, MAX_NAME));
    field_string(&f, "idempotency", clean_str(log, e->idempotency, MAX_NAME));

    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = BUFFER_SIZE - log->len;

        /* the terminating NUL cJSON writes becomes the line's '\n' */
        if (cJSON_PrintPreallocated(&f.root, log->buf + log->len, (int)room, 0)) {
            size_t n = strlen(log->buf + log->len);

            log->buf[log->len + n] = '\n';
            log->len += n + 1;
            if (log->timer != NULL && !log->is_timer_armed) {
                struct timeval tv = { FLUSH_AFTER_S, 0 };

                evtimer_add(log->timer, &tv);
                log->is_timer_armed = true;
            }
            return;
        }
        if (log->len == 0)
            break;
        flush(log);
    }
    /* cannot happen with the caps above: a line is far below BUFFER_SIZE */
    log->dropped++;
}
