/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Route matching. A linear scan: route tables are a handful of entries and
 * the scan touches no memory but the table itself.
 */
#include "sluice/route.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "util/alloc.h"

static bool
has_field(const struct sl_route_header *want, const struct sl_header *headers, size_t nheaders)
{
    for (size_t i = 0; i < nheaders; i++) {
        const struct sl_header *h = &headers[i];
        if (h->value_len == want->value_len
            && sl_http_token_eq(h->name, h->name_len, want->name, want->name_len)
            && memcmp(h->value, want->value, want->value_len) == 0)
            return true;
    }
    return false;
}

static bool
headers_match(const struct sl_route_conf *r, const struct sl_header *headers, size_t nheaders)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!has_field(&r->headers[i], headers, nheaders))
            return false;
    }
    return true;
}

/* Is r a better match than best (both candidates)? The order of route.h. */
static bool
beats(const struct sl_route_conf *r, const struct sl_route_conf *best)
{
    if (r->path_len != best->path_len)
        return r->path_len > best->path_len;
    if (r->nheaders != best->nheaders)
        return r->nheaders > best->nheaders;
    return r->host != NULL && best->host == NULL;
}

const struct sl_route_conf *
sl_route_match(const struct sl_config *cfg, const char *host, size_t host_len, const char *path,
               size_t path_len, const struct sl_header *headers, size_t nheaders)
{
    const struct sl_route_conf *best = NULL;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route_conf *r = &cfg->routes[i];
        if (r->path_len > path_len || memcmp(r->path, path, r->path_len) != 0)
            continue;
        if (r->host != NULL) {
            if (host == NULL || strlen(r->host) != host_len
                || strncasecmp(r->host, host, host_len) != 0)
                continue;
        }
        if (!headers_match(r, headers, nheaders))
            continue;
        if (best == NULL || beats(r, best))
            best = r;
    }
    return best;
}

char *
sl_route_name(const struct sl_route_conf *r)
{
    size_t host_len = r->host ? strlen(r->host) : 0;
    size_t len = host_len + r->path_len, at;
    char *name;

    for (size_t i = 0; i < r->nheaders; i++)
        len += 2 + r->headers[i].name_len + r->headers[i].value_len;
    name = sl_xmalloc(len + 1);
    memcpy(name, r->host ? r->host : "", host_len);
    memcpy(name + host_len, r->path, r->path_len);
    at = host_len + r->path_len;
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct sl_route_header *h = &r->headers[i];
        name[at++] = ';';
        memcpy(name + at, h->name, h->name_len);
        at += h->name_len;
        name[at++] = '=';
        memcpy(name + at, h->value, h->value_len);
        at += h->value_len;
    }
    name[at] = '\0';
    return name;
}
