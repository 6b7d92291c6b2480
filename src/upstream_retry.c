/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * When a request may be sent upstream again: the decisions alone, with no
 * state, so that they can be read and tested on their own. The pool
 * (upstream.c) applies the count and the budget; the proxy
 * (proxy_upstream.c) knows what of a request went out and whether its body
 * is still at hand.
 */
#include "sluice/upstream.h"

#include <string.h>

bool
sl_upstream_method_is_idempotent(const char *method, size_t len)
{
    static const char *const idempotent[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE" };

    /* methods are case-sensitive (RFC 9110 section 9.1): "get" is another one */
    for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++) {
        if (len == strlen(idempotent[i]) && memcmp(method, idempotent[i], len) == 0)
            return true;
    }
    return false;
}

bool
sl_upstream_is_resendable(bool is_idempotent, bool is_body_kept, uint64_t bytes_written)
{
    if (bytes_written == 0)
        return true; /* the upstream cannot have seen any of it */
    return is_idempotent && is_body_kept;
}

bool
sl_upstream_retry_budget_ok(unsigned percent, unsigned min, unsigned in_flight, unsigned retrying)
{
    uint64_t allowed = (uint64_t)in_flight * percent / 100;

    if (allowed < min)
        allowed = min;
    return retrying < allowed;
}
