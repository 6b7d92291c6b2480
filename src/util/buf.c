/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/* The bounded growable buffer; see buf.h for the contract. */
#include "util/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define BUF_MIN_CAP 64

void
sl_buf_init(struct sl_buf *b, size_t max)
{
    /* max + 1 (the NUL) must not wrap */
    *b = (struct sl_buf){ .max = max < SIZE_MAX ? max : SIZE_MAX - 1 };
}

void
sl_buf_fini(struct sl_buf *b)
{
    free(b->data);
    *b = (struct sl_buf){ .max = b->max };
}

/* Room for len more bytes and the NUL: 0, or -1 past the maximum. */
static int
reserve(struct sl_buf *b, size_t len)
{
    size_t need, cap;

    if (len > b->max - b->len)
        return -1;
    need = b->len + len + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* no more than the maximum can ever use */
    if (cap > b->max + 1)
        cap = b->max + 1;
    b->data = sl_xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int
sl_buf_append(struct sl_buf *b, const void *data, size_t len)
{
    if (reserve(b, len) == -1)
        return -1;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int
sl_buf_vprintf(struct sl_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    /* a first try into the room there is, then once more with enough */
    if (reserve(b, 0) == -1)
        return -1;
    va_copy(again, ap);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n >= 0 && (size_t)n >= b->cap - b->len) {
        if (reserve(b, (size_t)n) == -1)
            n = -1;
        else
            vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    if (n < 0) {
        b->data[b->len] = '\0'; /* a cut first try wrote past it */
        return -1;
    }
    b->len += (size_t)n;
    return 0;
}

int
sl_buf_printf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = sl_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void
sl_buf_truncate(struct sl_buf *b, size_t len)
{
    if (len >= b->len)
        return;
    b->len = len;
    b->data[len] = '\0';
}

void
sl_buf_reset(struct sl_buf *b, size_t keep)
{
    if (b->cap > keep) {
        sl_buf_fini(b);
        return;
    }
    sl_buf_truncate(b, 0);
}

char *
sl_buf_take(struct sl_buf *b, size_t *len)
{
    char *s = b->data != NULL ? b->data : sl_xstrdup("");

    if (len != NULL)
        *len = b->len;
    *b = (struct sl_buf){ .max = b->max };
    return s;
}
