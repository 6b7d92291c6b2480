/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Host names of upstream servers, resolved on the main thread and read by
 * the workers. The resolver runs libevent's evdns on the daemon's main loop
 * (never a blocking lookup, and never on a worker): every name of the conf
 * is looked up (A and AAAA) at start and again when the shorter of
 * resolver.valid and the records' TTL has passed. A lookup that fails keeps
 * the last good addresses; the error log hears of it once per transition
 * (failing, then recovered).
 *
 * Threads. sl_resolver_new, _configure, _wait, _sweep and _free run on the
 * main thread only. A worker takes a name with sl_resolver_ref (under the
 * resolver's lock: the main thread may be adding names) and then reads it
 * with sl_resolved_version, an atomic load cheap enough for every request,
 * and sl_resolved_addresses only when the version moved. A name lives while
 * a conf names it or a worker holds a reference; sl_resolver_sweep frees the
 * others.
 */
#ifndef SL_RESOLVER_H
#define SL_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

struct event_base;
struct sl_config;
struct sl_resolver;
struct sl_resolved; /* one host name and its current addresses */

/* The most addresses one name contributes (A and AAAA together); the rest of
 * a larger answer is dropped (and logged). */
#define SL_RESOLVED_MAX 32

struct sl_resolver *sl_resolver_new(struct event_base *base);
/* Cancels nothing: pending lookups end with the evdns base. Every reference
 * taken with sl_resolver_ref must have been dropped. */
void sl_resolver_free(struct sl_resolver *r);

/*
 * Takes the name servers, timeout and validity of `cfg` and every upstream
 * host name it holds; new names are looked up at once. Names no longer in a
 * conf stop being refreshed. Returns how many names are new (lookups under
 * way), or -1 with err set (a bad name-server list).
 */
int sl_resolver_configure(struct sl_resolver *r, const struct sl_config *cfg, char *err,
                          size_t err_size);

typedef void sl_resolver_settled_cb(void *arg);
/* cb runs once, on the main loop, when every name has had its first answer
 * (an address or a failure) or after timeout_ms, whichever is first; at once
 * (before this returns) when nothing is pending. One wait at a time. */
void sl_resolver_wait(struct sl_resolver *r, uint64_t timeout_ms, sl_resolver_settled_cb *cb,
                      void *arg);
/* Whether any name is still waiting for its first answer. */
int sl_resolver_is_settled(const struct sl_resolver *r);
/* Frees the names that no conf names and no worker holds. */
void sl_resolver_sweep(struct sl_resolver *r);

/*
 * Whether `host` is a name for the resolver: not an IPv4 or IPv6 literal,
 * nor "localhost" (which /etc/hosts answers, as for upstream servers).
 */
bool sl_resolver_is_name(const char *host);

/* Any thread. The name `host` as configured; NULL if no conf named it. */
struct sl_resolved *sl_resolver_ref(struct sl_resolver *r, const char *host);
void sl_resolved_unref(struct sl_resolved *name);
/* Moves each time the set of addresses changes; 0 before the first answer. */
uint64_t sl_resolved_version(const struct sl_resolved *name);
/*
 * Copies up to max addresses (port 0; the caller sets its own) into out,
 * sorted, and the version they belong to into *version; returns how many.
 */
size_t sl_resolved_addresses(struct sl_resolved *name, struct sockaddr_storage *out, size_t max,
                             uint64_t *version);

#endif
