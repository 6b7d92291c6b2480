/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Upstream server health: the active checks and the state the workers'
 * pools read when they choose a server.
 *
 * A server, that is an upstream name and one address, has a single
 * struct sl_health_server in the process, whatever the number of workers
 * and config generations: the verdict of the active check and the passive
 * ejection live there, in atomics, so every worker sees the same state and
 * a reload that keeps the upstream and the address keeps its state.
 *
 * Active checks run once per process, on the main loop: every interval, for
 * each address of an upstream with health.path (numeric servers and the
 * current addresses of its host names), a GET of the path with
 * "Connection: close", bounded by health.timeout; a 2xx or 3xx status passes.
 * health.fails failures in a row mark the server down, health.passes
 * passes in a row mark it up again. Servers start up.
 *
 * Passive ejection: after health.max_fails failures in a row seen by the
 * proxy, in any worker (connect errors and timeouts; 5xx responses too with
 * passive_5xx), the server is ejected for fail_timeout, doubled at each
 * ejection that follows without a success in between, up to
 * max_fail_timeout.
 *
 * Threads. sl_health_new, _configure, _render and _free on the main thread.
 * sl_health_ref takes the registry's lock (call it when a pool is built or
 * its addresses move, not per request); _unref and the functions of one
 * server are lock-free, on any thread.
 */
#ifndef SL_HEALTH_H
#define SL_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct event_base;
struct sl_config;
struct sl_health;
struct sl_health_conf;
struct sl_health_server;
struct sl_resolver;

/* The checks run on base; host names' addresses come from resolver (may be
 * NULL: only numeric servers are checked). */
struct sl_health *sl_health_new(struct event_base *base, struct sl_resolver *resolver);
/* Every reference taken with sl_health_ref must have been dropped. */
void sl_health_free(struct sl_health *h);
/*
 * Takes the upstreams of cfg (copied: cfg may go before the next call).
 * Checks of upstreams that keep their name go on with the state their
 * servers had; an upstream that loses its path has its servers' verdicts
 * reset to up. Checks start at once.
 */
void sl_health_configure(struct sl_health *h, const struct sl_config *cfg);
/* Appends sluice_upstream_server_up and sluice_upstream_server_ejections_total
 * (Prometheus text) for every server a pool or a check holds. */
void sl_health_render(struct sl_health *h, struct evbuffer *out);

/*
 * The state of server `address` of upstream `upstream`, made on first sight
 * (up, not ejected). With h NULL (tests, tools) a state of its own, shared
 * with nobody. Drop it with sl_health_unref.
 */
struct sl_health_server *sl_health_ref(struct sl_health *h, const char *upstream,
                                       const char *address);
void sl_health_unref(struct sl_health_server *s);

/* The active check's verdict (false while no check ran or none is configured). */
bool sl_health_is_down(const struct sl_health_server *s);
/* Passively ejected until after now_us. */
bool sl_health_is_ejected(const struct sl_health_server *s, uint64_t now_us);
/* The proxy saw a failure of the server (connect error or timeout, or a 5xx
 * when hc->is_passive_5xx); may eject it from now_us. */
void sl_health_failed(struct sl_health_server *s, const struct sl_health_conf *hc,
                      uint64_t now_us);
/* The proxy saw the server work: the run of failures and the back-off end. */
void sl_health_succeeded(struct sl_health_server *s);

/* The active check's state machine (main thread), exposed for tests. */
struct sl_health_verdict {
    bool is_down;
    unsigned nfails;  /* failed checks in a row */
    unsigned npasses; /* passed checks in a row */
};
/* Records one check; returns true when is_down changed. */
bool sl_health_verdict_record(struct sl_health_verdict *v, const struct sl_health_conf *hc,
                              bool is_ok);

#endif
