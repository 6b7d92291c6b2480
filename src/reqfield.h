/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Lookups into a parsed request that the limiter's key selectors and the Lua
 * request object share: one query parameter, one cookie. Values are returned
 * as sent (no percent-decoding, no unquoting) and borrowed from the request.
 */
#ifndef SL_REQFIELD_H
#define SL_REQFIELD_H

#include <stdbool.h>
#include <stddef.h>

struct sl_key_part;
struct sl_request;

/*
 * The value one key selector ("ip", "header:NAME", "query:NAME",
 * "cookie:NAME", "path", "method", "global") picks from the request, as
 * sent: the one reading of selectors that limits, balance = "hash:...",
 * route consumers and idempotency scopes share. "ip" is the client address
 * after trust (an IPv6 prefix is the limiter's to apply); "global" is the
 * empty string. False when the request lacks it, and for a key function,
 * which is the limiter's.
 */
bool sl_reqfield_selector(const struct sl_request *req, const struct sl_key_part *part,
                          const char **value, size_t *len);

/*
 * The first parameter of the query string ("a=1&b=2") whose name equals
 * `name` byte for byte. A parameter without '=' has an empty value. False
 * when the request has no query or no such parameter.
 */
bool sl_reqfield_query(const struct sl_request *req, const char *name, size_t name_len,
                       const char **value, size_t *value_len);

/*
 * The first cookie named `name` (case-sensitive, RFC 6265 section 5.4) in the
 * request's Cookie header fields, read in order; pairs are separated by ';'
 * and blanks around names and values are dropped.
 */
bool sl_reqfield_cookie(const struct sl_request *req, const char *name, size_t name_len,
                        const char **value, size_t *value_len);

#endif
