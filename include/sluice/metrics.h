/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Prometheus metrics. Each worker thread owns a struct sl_metrics_worker and
 * bumps counters and histograms of its own: one writer per counter, relaxed
 * atomic load + store, no lock, no read-modify-write, no allocation. A scrape
 * (sl_metrics_render, any thread) sums the workers and writes Prometheus text
 * exposition format 0.0.4. Every metric is listed in docs/metrics.md.
 *
 * Label values come only from the conf (route, limit and upstream names,
 * registered with sl_metrics_slot) or from the fixed sets below: nothing a
 * client sends ever becomes a label value, but for the consumer of a route
 * that ends (sl_metrics_consumer), which is bounded and made safe first.
 *
 * Threads: sl_metrics_new/free on the main thread while no worker runs;
 * sl_metrics_slot, sl_metrics_render, sl_metrics_config_loaded and
 * sl_metrics_set_process_start on any thread (they lock or use atomics; never
 * on the request path); every function taking a struct sl_metrics_worker *
 * only on the thread that owns that worker. Worker functions accept a NULL
 * worker (and ignore it) and ignore slots that were never registered.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_metrics;
struct sl_metrics_worker;

#define SL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Distinct names per kind over the life of the process; past it, new names
 * share the slot labelled "(overflow)". */
#define SL_METRICS_MAX_NAMES 1024
/* Histogram bounds at most. */
#define SL_METRICS_MAX_BUCKETS 64
/* The route slot of requests that matched no route (label route="(none)"). */
#define SL_METRICS_ROUTE_NONE 0u

enum sl_metrics_kind {
    SL_METRICS_ROUTE,
    SL_METRICS_LIMIT,
    SL_METRICS_UPSTREAM,
};

/* The method label: this fixed set, anything else is "other". */
enum sl_metrics_method {
    SL_METRICS_GET,
    SL_METRICS_HEAD,
    SL_METRICS_POST,
    SL_METRICS_PUT,
    SL_METRICS_DELETE,
    SL_METRICS_PATCH,
    SL_METRICS_OPTIONS,
    SL_METRICS_OTHER,
};

/* One limit's outcome for one request (label result). */
enum sl_metrics_limit_result {
    SL_METRICS_ADMITTED,       /* its bucket had the tokens */
    SL_METRICS_LIMITED,        /* its bucket refused: the request got 429 */
    SL_METRICS_SHADOW_LIMITED, /* a shadow limit's bucket refused; not enforced */
    SL_METRICS_SKIPPED,        /* the key function returned nil or failed */
    SL_METRICS_STORE_ERROR,    /* the store gave no answer; on_error decided */
    SL_METRICS_DELAYED,        /* its bucket refused, the request waited (delay) */
};

enum sl_metrics_backend {
    SL_METRICS_BACKEND_REDIS,
    SL_METRICS_BACKEND_LOCAL,
};

enum sl_metrics_store_error {
    SL_METRICS_STORE_TIMEOUT,
    SL_METRICS_STORE_CONNECTION,
    SL_METRICS_STORE_REPLY,
};

/* What a worker's limiter is talking to right now (label state). */
enum sl_metrics_store_state {
    SL_METRICS_STATE_REDIS,          /* redis configured and answering */
    SL_METRICS_STATE_LOCAL,          /* the embedded store is configured */
    SL_METRICS_STATE_LOCAL_FALLBACK, /* redis failing, on_error = "local" */
    SL_METRICS_STATE_FAILING,        /* redis failing, on_error = "allow" or "deny" */
};

enum sl_metrics_upstream_error {
    SL_METRICS_UPSTREAM_CONNECT_ERROR,    /* refused, unreachable, reset while connecting */
    SL_METRICS_UPSTREAM_CONNECT_TIMEOUT,  /* connect_timeout expired */
    SL_METRICS_UPSTREAM_RESPONSE_TIMEOUT, /* timeout waiting for the response (504) */
    SL_METRICS_UPSTREAM_BROKEN,           /* closed or reset before the response was complete */
};

/* Why a request was sent again (sluice_upstream_retries_total's reason). */
enum sl_metrics_retry_reason {
    SL_METRICS_RETRY_CONNECT_FAILURE, /* the connect failed or timed out */
    SL_METRICS_RETRY_RESET,           /* closed or reset before any byte of a response */
    SL_METRICS_RETRY_502,             /* the upstream answered 502 */
    SL_METRICS_RETRY_503,             /* the upstream answered 503 */
};

enum sl_metrics_upstream_gauge {
    SL_METRICS_UPSTREAM_IDLE,   /* keep-alive connections parked in the pool */
    SL_METRICS_UPSTREAM_ACTIVE, /* connections carrying a request */
    SL_METRICS_UPSTREAM_QUEUED, /* requests waiting for a connection slot */
};

/* ---- lifecycle (main thread) ---------------------------------------------------- */

/*
 * `buckets_s`: histogram upper bounds in seconds, strictly increasing, each at
 * least 1 µs and at most 1 day, distinct at µs resolution; NULL uses the
 * defaults (100 µs ... 10 s, see docs/metrics.md). Returns NULL and fills err
 * when they are not acceptable. Route slot 0 ("(none)") is registered already.
 */
struct sl_metrics *sl_metrics_new(unsigned nworkers, const double *buckets_s, size_t nbuckets,
                                  char *err, size_t err_size);
/* After every worker has stopped. NULL is a no-op. */
void sl_metrics_free(struct sl_metrics *m);
/* The same checks sl_metrics_new makes, for the conf validator. 0 or -1 + err. */
int sl_metrics_check_buckets(const double *buckets_s, size_t nbuckets, char *err,
                             size_t err_size);
/* The worker's handle, 0 <= worker < nworkers; lives as long as `m`. */
struct sl_metrics_worker *sl_metrics_worker(struct sl_metrics *m, unsigned worker);

/* ---- names (any thread, at load and reload; locks and may allocate) -------------- */

/*
 * The slot of a route, limit or upstream name, registering it on first sight.
 * Slots never move or go away, so a reload that keeps a name keeps its
 * counters; a name that leaves the conf keeps being reported with its last
 * values. Bytes that are not UTF-8 are shown as U+FFFD; backslash, quote and
 * newline are escaped on output.
 */
unsigned sl_metrics_slot(struct sl_metrics *m, enum sl_metrics_kind kind, const char *name);

/*
 * Counts who calls route slot `route` (sl_metrics_consumer) and shows the
 * `top` biggest callers by name, the rest as consumer="other". Called at
 * every load for each route with a deprecation or sunset; a larger `top`
 * later keeps the counts so far.
 */
void sl_metrics_route_consumers(struct sl_metrics *m, unsigned route, unsigned top);

/* GET, HEAD, ... (case-sensitive, RFC 9110 §9.1); anything else SL_METRICS_OTHER. */
enum sl_metrics_method sl_metrics_method(const char *method, size_t len);

/* ---- per request (owning worker's thread only) ------------------------------------ */

/* A request head has been read: requests in flight +1. */
void sl_metrics_request_start(struct sl_metrics_worker *w);
/*
 * A request started with sl_metrics_request_start is finished (response sent
 * or connection gone): in flight -1, requests by route/method/status class,
 * bytes, and the total latency histogram. status 0: no response was sent.
 */
void sl_metrics_request(struct sl_metrics_worker *w, unsigned route, enum sl_metrics_method method,
                        int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t duration_us);
/*
 * One request of `route` by `consumer`, a label value the caller made safe
 * to show (no secret, at most 64 bytes: longer is cut). The exception to
 * "labels come from the conf": bounded by Space-Saving, top N shown. Takes a
 * lock that only this worker and a scrape share. Ignored for a route
 * sl_metrics_route_consumers did not name.
 */
void sl_metrics_consumer(struct sl_metrics_worker *w, unsigned route, const char *consumer,
                         size_t len);
/* Time the limiter took to decide for a request of `route` (key functions and store). */
void sl_metrics_limiter(struct sl_metrics_worker *w, unsigned route, uint64_t duration_us);
/* One limit's outcome for one request; once per limit that applied or was skipped. */
void sl_metrics_limit(struct sl_metrics_worker *w, unsigned limit,
                      enum sl_metrics_limit_result result);
/* A key or cost function raised an error (also report the limit as SKIPPED). */
void sl_metrics_limit_key_error(struct sl_metrics_worker *w, unsigned limit);

/* ---- store (owning worker's thread only) ---------------------------------------- */

/* One script call, whatever its outcome (a timeout counts its full wait). */
void sl_metrics_store_call(struct sl_metrics_worker *w, enum sl_metrics_backend backend,
                           uint64_t duration_us);
void sl_metrics_store_error(struct sl_metrics_worker *w, enum sl_metrics_store_error kind);
/* A reconnection attempt to redis succeeded. */
void sl_metrics_store_reconnect(struct sl_metrics_worker *w);
/* Leases (limits with lease = true): blocks asked for, milli-tokens taken and
 * given back, requests admitted from a block. */
enum sl_metrics_lease {
    SL_METRICS_LEASE_TAKES,
    SL_METRICS_LEASE_TAKEN_MILLI,
    SL_METRICS_LEASE_RETURNED_MILLI,
    SL_METRICS_LEASE_ADMITTED,
    SL_METRICS_LEASE_COUNT
};
void sl_metrics_lease(struct sl_metrics_worker *w, enum sl_metrics_lease what, uint64_t n);

/* EVALSHA got NOSCRIPT and the script was loaded again. */
void sl_metrics_store_noscript(struct sl_metrics_worker *w);
/* n live buckets were evicted from the embedded store's table to stay within
 * max_keys, by checks this worker made (the workers' counts add up to the
 * table's). */
void sl_metrics_local_store_evictions(struct sl_metrics_worker *w, uint64_t n);
/* Set on start and on every transition. */
void sl_metrics_store_state(struct sl_metrics_worker *w, enum sl_metrics_store_state state);

/* ---- upstreams (owning worker's thread only) ------------------------------------ */

/* A response head arrived from `upstream`; ttfb: request sent to first byte back. */
void sl_metrics_upstream_response(struct sl_metrics_worker *w, unsigned upstream, int status,
                                  uint64_t ttfb_us);
void sl_metrics_upstream_error(struct sl_metrics_worker *w, unsigned upstream,
                               enum sl_metrics_upstream_error kind);
/* Moves one of the worker's upstream gauges by delta (+1 / -1). */
void sl_metrics_upstream_gauge(struct sl_metrics_worker *w, unsigned upstream,
                               enum sl_metrics_upstream_gauge gauge, int delta);
/* A request refused with 503 because the upstream's in-flight cap and queue were full. */
void sl_metrics_shed(struct sl_metrics_worker *w, unsigned upstream);
/* Another attempt at a request began. */
void sl_metrics_upstream_retry(struct sl_metrics_worker *w, unsigned upstream,
                               enum sl_metrics_retry_reason reason);
/* A retry the request was due was not made: the retry budget was spent. */
void sl_metrics_upstream_retry_refused(struct sl_metrics_worker *w, unsigned upstream);

/* ---- client connections (owning worker's thread only) ---------------------------- */

/* Accepted: open connections +1, accepted +1. */
void sl_metrics_client_open(struct sl_metrics_worker *w);
/* Closed, for whatever reason: open connections -1. */
void sl_metrics_client_close(struct sl_metrics_worker *w);
/* An upgraded connection (a tunnel after 101) began (+1) or ended (-1). */
void sl_metrics_tunnel(struct sl_metrics_worker *w, int delta);

/* ---- idempotency keys (any thread) ----------------------------------------------- */

enum sl_metrics_idem {
    SL_METRICS_IDEM_STORED,      /* a response kept under its key */
    SL_METRICS_IDEM_REPLAYED,    /* a kept response sent again */
    SL_METRICS_IDEM_CONFLICT,    /* 409: the key's first request still in flight */
    SL_METRICS_IDEM_MISMATCH,    /* 422: the key came with another request */
    SL_METRICS_IDEM_RELEASED,    /* a claim dropped so the client may retry */
    SL_METRICS_IDEM_MISSING,     /* 400: no key where required, or an invalid one */
    SL_METRICS_IDEM_UNAVAILABLE, /* 503: the store could not claim */
    SL_METRICS_IDEM_N
};
/* One more of `ev`; w may be NULL. */
void sl_metrics_idem(struct sl_metrics_worker *w, enum sl_metrics_idem ev);

/* ---- process (any thread) --------------------------------------------------------- */

/*
 * A conf was loaded (is_reload false: at start) or reloaded. A reload counts
 * as success or failure; a success also sets the load timestamp and how long
 * loading took (`duration_us`).
 */
void sl_metrics_config_loaded(struct sl_metrics *m, bool is_reload, bool is_ok,
                              uint64_t duration_us);
/* Defaults to the time sl_metrics_new ran; seconds since the epoch. */
void sl_metrics_set_process_start(struct sl_metrics *m, double epoch_s);

/* ---- scrape (any thread) ----------------------------------------------------------- */

/* The exposition text, NUL-terminated, length in *len; the caller frees it. */
char *sl_metrics_render(struct sl_metrics *m, size_t *len);

#endif
