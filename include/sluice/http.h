/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The parsed request as the rest of sluice sees it. Every pointer is borrowed
 * from the connection's input buffer and stays valid until the response to
 * this request has been completely sent.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct sl_header {
    const char *name; /* as sent; compare case-insensitively */
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

struct sl_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent */
    size_t target_len;
    const char *path;   /* target up to '?' */
    size_t path_len;
    const char *query;  /* after '?', NULL when there is none */
    size_t query_len;
    const char *host;   /* Host header without port; NULL when absent */
    size_t host_len;
    const struct sl_header *headers;
    size_t nheaders;
    const char *client_ip; /* the address rate-limit keys use, see sl_client_address */
    size_t client_ip_len;
    unsigned http_minor;   /* 0 or 1 (HTTP/1.x) */
};

/* First header of that name (case-insensitive), or NULL. */
const struct sl_header *sl_request_header(const struct sl_request *req, const char *name,
                                          size_t name_len);

/* Case-insensitive ASCII comparison of two byte strings of known length. */
bool sl_http_token_eq(const char *a, size_t a_len, const char *b, size_t b_len);

#endif
