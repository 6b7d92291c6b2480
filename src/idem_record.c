/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * What an idempotency record holds, as bytes: the key taken from the
 * request's field and the response kept for replay. The same bytes go to
 * the embedded table and to Redis, so a record written by one sluice
 * instance is replayed by any other.
 */
#include "sluice/idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/http.h"
#include "util/buf.h"

size_t
sl_idem_parse_key(const char *value, size_t len, const char **key)
{
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
        value++;
        len -= 2;
    }
    if (len == 0 || len > SL_IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        /* an sf-string may hold spaces; quotes and backslashes only escaped */
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    *key = value;
    return len;
}

/* Framing is the proxy's to write; Date stays, as a cache keeps it. */
static bool
is_kept(const struct sl_header *headers, size_t n, const struct sl_header *h)
{
    if (sl_http_is_hop_by_hop(headers, n, h))
        return false;
    return !(h->name_len == 14 && strncasecmp(h->name, "Content-Length", 14) == 0);
}

int
sl_idem_response_begin(struct sl_buf *out, int status, const struct sl_header *headers,
                       size_t nheaders)
{
    size_t at, block = 0;
    char head[32];
    int n;

    for (size_t i = 0; i < nheaders; i++) {
        if (is_kept(headers, nheaders, &headers[i]))
            block += headers[i].name_len + 2 + headers[i].value_len + 2;
    }
    n = snprintf(head, sizeof(head), "%03d %zu\n", status, block);
    if (sl_buf_append(out, head, (size_t)n) != 0)
        return -1;
    at = out->len;
    for (size_t i = 0; i < nheaders; i++) {
        const struct sl_header *h = &headers[i];
        if (!is_kept(headers, nheaders, h))
            continue;
        if (sl_buf_append(out, h->name, h->name_len) != 0 || sl_buf_append(out, ": ", 2) != 0
            || sl_buf_append(out, h->value, h->value_len) != 0
            || sl_buf_append(out, "\r\n", 2) != 0)
            return -1;
    }
    return out->len - at == block ? 0 : -1;
}

bool
sl_idem_response_parse(const char *data, size_t len, struct sl_idem_response *out)
{
    const char *nl = memchr(data, '\n', len < 32 ? len : 32);
    unsigned long long block = 0;
    size_t head;

    if (nl == NULL || nl - data < 5 || data[3] != ' ')
        return false;
    for (int i = 0; i < 3; i++) {
        if (data[i] < '0' || data[i] > '9')
            return false;
    }
    for (const char *p = data + 4; p < nl; p++) {
        if (*p < '0' || *p > '9' || block > len)
            return false;
        block = block * 10 + (unsigned)(*p - '0');
    }
    head = (size_t)(nl - data) + 1;
    if (block > len - head)
        return false;
    out->status = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');
    if (out->status < 200 || out->status > 599)
        return false;
    out->headers = data + head;
    out->headers_len = (size_t)block;
    out->body = data + head + block;
    out->body_len = len - head - (size_t)block;
    return true;
}
