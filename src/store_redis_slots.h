/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The slot map of a Redis Cluster, read from a CLUSTER SLOTS reply, for the
 * redis store (redis-cluster:// urls) and nothing else: which master owns
 * which slots. Replicas are skipped (the store writes to masters only).
 * It checks the reply's shape and builds plain C data; it connects to
 * nothing and keeps no state between calls.
 */
#ifndef SL_STORE_REDIS_SLOTS_H
#define SL_STORE_REDIS_SLOTS_H

#include <stddef.h>

#include "util/redis_slot.h" /* SL_REDIS_SLOTS */

struct redisReply;

/* The master of the slots first..last (both included, first <= last). */
struct sl_redis_slot_range {
    unsigned first, last;
    char *host; /* as the cluster announced it: an address or a host name */
    int port;   /* 1..65535 */
};

/* Ranges sorted by first, none overlapping; slots in none have no master
 * (an incomplete cluster). */
struct sl_redis_slot_map {
    struct sl_redis_slot_range *ranges;
    size_t n;
};

/*
 * Parses a CLUSTER SLOTS reply (Redis 3.0 to 7.x, RESP2) into *out, owned by
 * the caller (release with sl_redis_slot_map_fini). Each entry is [first,
 * last, master, replica...], a node [endpoint, port, id, metadata...]: the
 * first three of an entry and the endpoint and port of its master are
 * checked, the rest is ignored (an id, if given, must be a string). A
 * master whose endpoint is "", "?" or nil is at `asked_host`, the node that
 * answered (copied), as the CLUSTER SLOTS documentation says. An empty
 * reply (no slot assigned yet) is a map of no ranges.
 *
 * Returns 0, or -1 with *out zeroed and a short reason in err (a malformed
 * entry by its position, a slot outside 0..16383, overlapping ranges, an
 * error reply quoted).
 */
int sl_redis_slot_map_parse(const struct redisReply *reply, const char *asked_host,
                            struct sl_redis_slot_map *out, char *err, size_t err_size);

/* Frees what *map holds and zeroes it; a zeroed map is fine. */
void sl_redis_slot_map_fini(struct sl_redis_slot_map *map);

#endif
