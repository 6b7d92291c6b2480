/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Rate-limit policy: which limits of a route apply to a request, their keys
 * and cost, one atomic check against the configured store, and the response
 * header lines that describe the outcome. One limiter per worker thread and
 * config generation; it is only ever used from that worker's event loop.
 */
#ifndef SL_LIMITER_H
#define SL_LIMITER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct sl_config;
struct sl_route_conf;
struct sl_request;
struct sl_limiter;
struct sl_limiter_shared;

enum sl_verdict {
    SL_VERDICT_ALLOW,       /* forward it (also: shadow-only refusals, fail-open) */
    SL_VERDICT_DENY,        /* 429 */
    SL_VERDICT_UNAVAILABLE, /* store failed and on_error = "deny": 503 */
};

struct sl_decision {
    enum sl_verdict verdict;
    unsigned retry_after_s; /* DENY and UNAVAILABLE: >= 1 */
    /* Complete header lines ("Name: value\r\n" ...) to add to the response,
     * whatever the verdict; may be empty. */
    const char *headers;
    size_t headers_len;
    /* DENY: the RFC 9457 problem+json body naming the violated policies. */
    const char *problem;
    size_t problem_len;
    double limiter_ms; /* time spent deciding, store round trip included */
    const char *outcome; /* short word for the access log: "admitted", "limited",
                            "shadow_limited", "store_error", "none" */
};

/* Valid until the callback returns. Called exactly once per sl_limiter_check,
 * possibly before sl_limiter_check returns (embedded store). */
typedef void sl_limiter_cb(void *arg, const struct sl_decision *decision);

/* Process-wide state every worker's limiter shares (the embedded store's
 * table). Lives for the life of the process, across reloads, so buckets survive
 * a reload. Thread-safe. */
struct sl_limiter_shared *sl_limiter_shared_new(void);
void sl_limiter_shared_free(struct sl_limiter_shared *shared);

/*
 * A worker's limiter for one config generation. `cfg` must outlive it. Redis
 * connections it opens run on `base`. Returns NULL and fills err on failure
 * (e.g. a key function that does not load).
 */
struct sl_limiter *sl_limiter_new(const struct sl_config *cfg, struct event_base *base,
                                  struct sl_limiter_shared *shared, char *err, size_t err_size);
/* Pending checks complete (as store errors) before this returns. */
void sl_limiter_free(struct sl_limiter *limiter);

void sl_limiter_check(struct sl_limiter *limiter, const struct sl_route_conf *route,
                      const struct sl_request *req, sl_limiter_cb *cb, void *arg);

/* True when the store answers, or when on_error lets requests through anyway. */
bool sl_limiter_is_ready(const struct sl_limiter *limiter);

#endif
