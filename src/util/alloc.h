/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Allocation that never returns NULL: running out of memory logs and aborts,
 * written once here so callers carry no OOM branches. Tests may install a
 * failure hook to exercise that path.
 */
#ifndef SL_UTIL_ALLOC_H
#define SL_UTIL_ALLOC_H

#include <stddef.h>

void *sl_xmalloc(size_t size);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *ptr, size_t size);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t len);

#endif
