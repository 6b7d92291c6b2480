/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Route selection, part of the proxy module: among the routes whose host
 * matches (routes without a host match any), the longest path prefix wins;
 * on a tie a route naming the host beats one that does not.
 */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <stddef.h>

struct sl_config;
struct sl_route_conf;

/* NULL when no route matches (the caller answers 404). */
const struct sl_route_conf *sl_route_match(const struct sl_config *cfg, const char *host,
                                           size_t host_len, const char *path, size_t path_len);

#endif
