/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A growable byte buffer with a maximum set at init (STYLE.md section 3,
 * after curl's dynbuf): it grows by doubling as bytes are appended and
 * refuses, cleanly, to hold more than its maximum. An append that would
 * pass the maximum changes nothing and returns -1; the caller decides what
 * that means (a check refused, a text cut short), the buffer never does.
 *
 * The bytes are always followed by a NUL once anything was allocated, so a
 * buffer of text can be handed out as a C string. Allocation failure aborts
 * (util/alloc.h), so -1 only ever means "past the maximum".
 */
#ifndef SL_UTIL_BUF_H
#define SL_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct sl_buf {
    char *data;  /* NULL until the first append; NUL-terminated after it */
    size_t len;  /* bytes held, the NUL not counted */
    size_t cap;  /* bytes allocated, room for the NUL included */
    size_t max;  /* most bytes it may ever hold, the NUL not counted */
};

/* An empty buffer that will hold at most max bytes (max >= 1). */
void sl_buf_init(struct sl_buf *b, size_t max);
/* Frees the bytes; b is then empty, with the same maximum. */
void sl_buf_fini(struct sl_buf *b);

/* Appends len bytes: 0, or -1 (b unchanged) when b would pass its maximum. */
int sl_buf_append(struct sl_buf *b, const void *data, size_t len);
/* The same for printf output. */
int sl_buf_printf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_buf_vprintf(struct sl_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Forgets the bytes from len on (len <= b->len); the memory stays. */
void sl_buf_truncate(struct sl_buf *b, size_t len);
/* Empties b, and frees its memory when it had grown past keep bytes: a
 * buffer reused for many short contents does not keep one peak forever. */
void sl_buf_reset(struct sl_buf *b, size_t keep);

/* Hands the bytes over as a NUL-terminated string the caller frees ("" when
 * empty) and its length in *len (may be NULL); b is then empty. */
char *sl_buf_take(struct sl_buf *b, size_t *len);

#endif
