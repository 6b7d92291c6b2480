/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Query parameter and cookie lookups for key selectors and the Lua request
 * object. They scan the request each time: a route has a handful of limits,
 * and scanning a query string is cheaper than building an index for it.
 */
#include "reqfield.h"

#include <string.h>

#include "sluice/config.h"
#include "sluice/http.h"

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

bool
sl_reqfield_query(const struct sl_request *req, const char *name, size_t name_len,
                  const char **value, size_t *value_len)
{
    const char *p = req->query, *end;

    if (p == NULL)
        return false;
    end = p + req->query_len;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq != NULL ? eq : stop;

        if ((size_t)(name_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            *value = eq != NULL ? eq + 1 : stop;
            *value_len = (size_t)(stop - *value);
            return true;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return false;
}

static bool
cookie_in(const char *p, const char *end, const char *name, size_t name_len, const char **value,
          size_t *value_len)
{
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi != NULL ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));

        if (eq != NULL) {
            const char *n = p, *n_end = eq, *v = eq + 1, *v_end = stop;
            while (n < n_end && is_blank(*n))
                n++;
            while (n_end > n && is_blank(n_end[-1]))
                n_end--;
            while (v < v_end && is_blank(*v))
                v++;
            while (v_end > v && is_blank(v_end[-1]))
                v_end--;
            if ((size_t)(n_end - n) == name_len && memcmp(n, name, name_len) == 0) {
                *value = v;
                *value_len = (size_t)(v_end - v);
                return true;
            }
        }
        if (semi == NULL)
            break;
        p = semi + 1;
    }
    return false;
}

bool
sl_reqfield_cookie(const struct sl_request *req, const char *name, size_t name_len,
                   const char **value, size_t *value_len)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sl_header *h = &req->headers[i];
        if (!sl_http_token_eq(h->name, h->name_len, SL_LIT("cookie")))
            continue;
        if (cookie_in(h->value, h->value + h->value_len, name, name_len, value, value_len))
            return true;
    }
    return false;
}

bool
sl_reqfield_selector(const struct sl_request *req, const struct sl_key_part *part,
                     const char **value, size_t *len)
{
    const struct sl_header *h;

    switch (part->kind) {
    case SL_KEY_IP:
        *value = req->client_ip;
        *len = req->client_ip_len;
        return req->client_ip != NULL && req->client_ip_len > 0;
    case SL_KEY_HEADER:
        if ((h = sl_request_header(req, part->name, part->name_len)) == NULL)
            return false;
        *value = h->value;
        *len = h->value_len;
        return true;
    case SL_KEY_QUERY:
        return sl_reqfield_query(req, part->name, part->name_len, value, len);
    case SL_KEY_COOKIE:
        return sl_reqfield_cookie(req, part->name, part->name_len, value, len);
    case SL_KEY_PATH:
        *value = req->path;
        *len = req->path_len;
        return req->path != NULL;
    case SL_KEY_METHOD:
        *value = req->method;
        *len = req->method_len;
        return req->method != NULL;
    case SL_KEY_GLOBAL:
        *value = "";
        *len = 0;
        return true;
    default:
        return false;
    }
}
