/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Route matching. A linear scan: route tables are a handful of entries and
 * the scan touches no memory but the table itself.
 */
#include "sluice/route.h"

#include <string.h>
#include <strings.h>

#include "sluice/config.h"

const struct sl_route_conf *
sl_route_match(const struct sl_config *cfg, const char *host, size_t host_len, const char *path,
               size_t path_len)
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
        if (best == NULL || r->path_len > best->path_len
            || (r->path_len == best->path_len && r->host != NULL && best->host == NULL))
            best = r;
    }
    return best;
}
