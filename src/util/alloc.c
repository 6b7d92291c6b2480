/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
#include "util/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/log.h"

static void *
checked(void *ptr, size_t size)
{
    if (ptr == NULL && size != 0)
        sl_fatalx("out of memory allocating %zu bytes", size);
    return ptr;
}

void *
sl_xmalloc(size_t size)
{
    return checked(malloc(size), size);
}

void *
sl_xcalloc(size_t n, size_t size)
{
    return checked(calloc(n, size), n * size);
}

void *
sl_xrealloc(void *ptr, size_t size)
{
    return checked(realloc(ptr, size), size);
}

char *
sl_xstrdup(const char *s)
{
    return sl_xstrndup(s, strlen(s));
}

char *
sl_xstrndup(const char *s, size_t len)
{
    char *copy = sl_xmalloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}
