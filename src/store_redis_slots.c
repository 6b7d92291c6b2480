/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * CLUSTER SLOTS replies into a slot map (the contract is in
 * store_redis_slots.h). The reply comes from the network: every element's
 * type is checked before it is read, and a reason names the entry, never
 * more than a few bytes of what the server sent.
 */
#include "store_redis_slots.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "util/alloc.h"

#define HOST_MAX 255

/* An address or a host name, nothing that could confuse a log line. */
static bool
host_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!isalnum(c) && memchr(".-_:%", c, 5) == NULL)
            return false;
    }
    return true;
}

/* The endpoint of a node: its host, or `asked_host` when the cluster does
 * not know it ("" on a node alone, nil behind a load balancer, "?" for a
 * hostname endpoint with no hostname set). NULL when it is no host. */
static const char *
endpoint_of(const redisReply *ip, const char *asked_host)
{
    if (ip->type == REDIS_REPLY_NIL)
        return asked_host;
    if (ip->type != REDIS_REPLY_STRING)
        return NULL;
    if (ip->len == 0 || (ip->len == 1 && ip->str[0] == '?'))
        return asked_host;
    return ip->len <= HOST_MAX && host_ok(ip->str, ip->len) ? ip->str : NULL;
}

/* The master node of entry i, [endpoint, port, id, ...], into *r. */
static int
parse_master(const redisReply *node, size_t i, const char *asked_host,
             struct sl_redis_slot_range *r, char *err, size_t err_size)
{
    const char *host;

    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2) {
        snprintf(err, err_size, "entry %zu: the master is not an array [ip, port, ...]", i);
        return -1;
    }
    host = endpoint_of(node->element[0], asked_host);
    if (host == NULL) {
        snprintf(err, err_size, "entry %zu: the master's ip is not a host", i);
        return -1;
    }
    if (node->element[1]->type != REDIS_REPLY_INTEGER || node->element[1]->integer < 1
        || node->element[1]->integer > 65535) {
        snprintf(err, err_size, "entry %zu: the master's port is not 1 to 65535", i);
        return -1;
    }
    if (node->elements > 2 && node->element[2]->type != REDIS_REPLY_STRING) {
        snprintf(err, err_size, "entry %zu: the master's id is not a string", i);
        return -1;
    }
    r->host = sl_xstrdup(host);
    r->port = (int)node->element[1]->integer;
    return 0;
}

/* Entry i, [first, last, master, replica...], into *r. */
static int
parse_entry(const redisReply *e, size_t i, const char *asked_host, struct sl_redis_slot_range *r,
            char *err, size_t err_size)
{
    long long first, last;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
        snprintf(err, err_size, "entry %zu: not an array [first, last, master, ...]", i);
        return -1;
    }
    if (e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER) {
        snprintf(err, err_size, "entry %zu: the slots are not integers", i);
        return -1;
    }
    first = e->element[0]->integer;
    last = e->element[1]->integer;
    if (first < 0 || last < 0 || first >= SL_REDIS_SLOTS || last >= SL_REDIS_SLOTS) {
        snprintf(err, err_size, "entry %zu: slots %lld..%lld outside 0..%d", i, first, last,
                 SL_REDIS_SLOTS - 1);
        return -1;
    }
    if (first > last) {
        snprintf(err, err_size, "entry %zu: slots %lld..%lld end before they start", i, first,
                 last);
        return -1;
    }
    r->first = (unsigned)first;
    r->last = (unsigned)last;
    return parse_master(e->element[2], i, asked_host, r, err, err_size);
}

static int
by_first(const void *a, const void *b)
{
    const struct sl_redis_slot_range *x = a, *y = b;

    return (x->first > y->first) - (x->first < y->first);
}

/* The shape of the reply as a whole: an array of at most one entry per slot. */
static int
check_reply(const redisReply *reply, char *err, size_t err_size)
{
    if (reply == NULL) {
        snprintf(err, err_size, "no reply");
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "error reply \"%.80s\"", reply->str);
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "not an array (type %d)", reply->type);
        return -1;
    }
    /* ranges that do not overlap are at most one per slot */
    if (reply->elements > SL_REDIS_SLOTS) {
        snprintf(err, err_size, "%zu entries, more than there are slots", reply->elements);
        return -1;
    }
    return 0;
}

int
sl_redis_slot_map_parse(const struct redisReply *reply, const char *asked_host,
                        struct sl_redis_slot_map *out, char *err, size_t err_size)
{
    *out = (struct sl_redis_slot_map){ 0 };
    if (check_reply(reply, err, err_size) == -1)
        return -1;
    if (reply->elements == 0)
        return 0;
    out->ranges = sl_xcalloc(reply->elements, sizeof(*out->ranges));
    for (size_t i = 0; i < reply->elements; i++) {
        if (parse_entry(reply->element[i], i, asked_host, &out->ranges[i], err, err_size))
            goto fail;
        out->n++;
    }
    qsort(out->ranges, out->n, sizeof(*out->ranges), by_first);
    for (size_t i = 1; i < out->n; i++) {
        const struct sl_redis_slot_range *a = &out->ranges[i - 1], *b = &out->ranges[i];

        if (b->first <= a->last) {
            snprintf(err, err_size, "slots %u..%u and %u..%u overlap", a->first, a->last, b->first,
                     b->last);
            goto fail;
        }
    }
    return 0;
fail:
    sl_redis_slot_map_fini(out);
    return -1;
}

void
sl_redis_slot_map_fini(struct sl_redis_slot_map *map)
{
    for (size_t i = 0; i < map->n; i++)
        free(map->ranges[i].host);
    free(map->ranges);
    *map = (struct sl_redis_slot_map){ 0 };
}
