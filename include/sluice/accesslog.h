/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The access log: one JSON object per line per request, written with cJSON.
 * Each worker owns a writer with its own buffer, flushed when it fills, once
 * a second, and on close, so the request path does no write(2) of its own.
 */
#ifndef SL_ACCESSLOG_H
#define SL_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sl_accesslog;

struct sl_access_entry {
    double time;             /* request start, seconds since the epoch */
    const char *client;      /* the client address after trust (rate-limit keys use it) */
    const char *peer;        /* the TCP peer's address text ("unix:" on a unix socket) */
    const char *method;
    size_t method_len;
    const char *path;        /* request-target */
    size_t path_len;
    int status;              /* 0: no response was sent */
    uint64_t bytes_in;       /* request bytes read, head and body */
    uint64_t bytes_out;      /* response bytes written */
    double duration_ms;      /* first byte of the request to last byte of the response */
    double upstream_ms;      /* < 0: no upstream was involved */
    double limiter_ms;       /* < 0: no limit was checked */
    const char *upstream;    /* "127.0.0.1:9000" or NULL */
    unsigned retries;        /* attempts made again after a failed one (0: none) */
    const char *request_id;
    size_t request_id_len;
    const char *trace_id;    /* the 32 hex digits of traceparent */
    size_t trace_id_len;
    const char *limit;       /* limiter outcome word, or NULL */
    const char *reason;      /* why the connection or request ended, or NULL */
    const char *route;       /* name of the matched route, NULL when none matched */
    const char *lifecycle;   /* a route that ends: "active", "deprecated", "brownout", "sunset" */
    const char *consumer;    /* ... and who called it, as the consumer metric label shows */
    const char *idempotency; /* what an Idempotency-Key came to: "stored", "replayed", ... */
};

/* path: a file (opened O_APPEND), "stderr", or "off" (returns a writer that drops).
 * NULL with errno set when the file cannot be opened. `base` (may be NULL) runs
 * the 1 s flush timer; the writer is only used on the thread running it.
 * Field names, absent values and length caps: docs/logging.md. */
struct sl_accesslog *sl_accesslog_new(const char *path, struct event_base *base);
void sl_accesslog_free(struct sl_accesslog *log);
void sl_accesslog_write(struct sl_accesslog *log, const struct sl_access_entry *entry);
/* False for "off" (and NULL): callers skip building entries nobody writes. */
bool sl_accesslog_is_on(const struct sl_accesslog *log);
/* Called on the owning worker's thread after SIGUSR1: flush, close, open again. */
int sl_accesslog_reopen(struct sl_accesslog *log);

#endif
