/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The request flow of one worker thread: accept, parse, route, limit, forward,
 * respond, log. Everything here runs on that worker's event loop; the daemon
 * talks to it only through these calls, made on the worker's own thread.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sl_config;
struct sl_limiter_shared;
struct sl_resolver;
struct sl_health;
struct sl_metrics;
struct sl_proxy;
struct sl_proxy_gen;

/* A config shared by every worker, freed when the last one lets go. */
struct sl_shared_config {
    atomic_uint refs;
    struct sl_config *cfg;
};

struct sl_shared_config *sl_shared_config_new(struct sl_config *cfg);
void sl_shared_config_ref(struct sl_shared_config *shared);
void sl_shared_config_unref(struct sl_shared_config *shared);

typedef void sl_proxy_drained_cb(void *arg);

/* metrics may be NULL; worker `index` of it is this proxy's. */
struct sl_proxy *sl_proxy_new(struct event_base *base, unsigned index, unsigned nworkers,
                              struct sl_limiter_shared *limiter_shared,
                              struct sl_metrics *metrics);
void sl_proxy_free(struct sl_proxy *proxy);
/* Where upstream host names get their addresses; before the first config. */
void sl_proxy_set_resolver(struct sl_proxy *proxy, struct sl_resolver *resolver);
/* The process's upstream server states (health.h); before the first config. */
void sl_proxy_set_health(struct sl_proxy *proxy, struct sl_health *health);

/* Opens this worker's SO_REUSEPORT listeners on every `listen` address. */
int sl_proxy_listen(struct sl_proxy *proxy, const struct sl_config *cfg, char *err,
                    size_t err_size);
/*
 * A reload in two phases, so that every worker has built the new config
 * before any of them switches (the daemon's all-or-nothing reload):
 *
 * sl_proxy_prepare builds what this worker needs to run `shared`: the
 * limiter (its Lua runtime and store connection), the upstream pools and,
 * when the access log path changed, the new access log writer. Requests keep
 * running on the current config meanwhile. Returns the prepared generation,
 * owned by the caller, who hands it exactly once to sl_proxy_commit or
 * sl_proxy_abort; or NULL with a message in err (e.g. "access log
 * \"/x/a.log\": No such file or directory", or a key function's
 * file:line error) and nothing changed. Takes its own reference to `shared`.
 * At most one prepared generation per proxy at a time.
 *
 * sl_proxy_commit makes the prepared generation the config for requests
 * that start from now on and frees `gen`; requests in flight finish on the
 * one they started with. It cannot fail. sl_proxy_abort frees `gen` without
 * touching the running config (NULL is a no-op).
 *
 * All three run on the proxy's own thread, synchronously, or on any thread
 * once that thread's loop no longer runs (sl_proxy_abort at shutdown).
 */
struct sl_proxy_gen *sl_proxy_prepare(struct sl_proxy *proxy, struct sl_shared_config *shared,
                                      char *err, size_t err_size);
void sl_proxy_commit(struct sl_proxy *proxy, struct sl_proxy_gen *gen);
void sl_proxy_abort(struct sl_proxy *proxy, struct sl_proxy_gen *gen);
/* Prepare and commit in one step (startup): 0, or -1 with err filled and the
 * current config kept. */
int sl_proxy_set_config(struct sl_proxy *proxy, struct sl_shared_config *shared, char *err,
                        size_t err_size);
/* Stops accepting, closes idle connections, lets requests in flight finish;
 * calls cb (on this worker's thread) once no connection is left. */
void sl_proxy_drain(struct sl_proxy *proxy, sl_proxy_drained_cb *cb, void *arg);
/* Gives the current limiter's leased tokens back (sl_limiter_return_leases);
 * cb runs when done, within about a second, the loop running meanwhile. */
void sl_proxy_return_leases(struct sl_proxy *proxy, sl_proxy_drained_cb *cb, void *arg);
/* Closes every remaining connection now (drain timed out). */
void sl_proxy_close_all(struct sl_proxy *proxy);
void sl_proxy_reopen_logs(struct sl_proxy *proxy);
/* Readiness of this worker: store usable and every route's upstream reachable.
 * Writes what is missing into why. */
bool sl_proxy_is_ready(struct sl_proxy *proxy, char *why, size_t why_size);

/*
 * Process-wide, for the main thread at start and after a reload: the
 * descriptors a process running cfg with nworkers may need at once
 * (client.max_connections, upstream connections, a margin), and
 * RLIMIT_NOFILE fitted to them. The soft limit is raised up to the hard
 * limit; if that is not enough, a warning gives the numbers.
 */
uint64_t sl_proxy_nofile_needed(const struct sl_config *cfg, unsigned nworkers);
void sl_proxy_fit_nofile(const struct sl_config *cfg, unsigned nworkers);

#endif
