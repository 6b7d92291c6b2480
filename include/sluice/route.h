/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Route selection, part of the proxy module. A route is a candidate when its
 * path is a prefix of the request's, its host (if any) is the request's, and
 * each of its header conditions (if any) is met by some field of that name
 * whose whole value is exactly the one written. Among candidates, in order:
 *   1. the longest path prefix wins;
 *   2. then the route with more header conditions;
 *   3. then a route naming the host beats one that does not;
 *   4. then the one written first.
 * So version routing by header sits next to routing by path: on the same
 * prefix the route that asks for API-Version beats the one that does not.
 */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <stddef.h>

struct sl_config;
struct sl_header;
struct sl_route_conf;

/* NULL when no route matches (the caller answers 404). */
const struct sl_route_conf *sl_route_match(const struct sl_config *cfg, const char *host,
                                           size_t host_len, const char *path, size_t path_len,
                                           const struct sl_header *headers, size_t nheaders);

/*
 * The route's name in metrics and the access log, malloc'd: [host]path, then
 * ";name=value" for each header condition, by name ("/v1/;api-version=2").
 */
char *sl_route_name(const struct sl_route_conf *r);

#endif
