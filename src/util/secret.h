/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Secrets kept in files of their own (store.password_file), so that a conf
 * can be shown, versioned and printed by `sluice -T` without them.
 */
#ifndef SL_UTIL_SECRET_H
#define SL_UTIL_SECRET_H

#include <stddef.h>
#include <sys/types.h>

#define SL_SECRET_MAX 4096 /* bytes of a secret */

/*
 * Reads the secret in the file at `path`: the whole content less its
 * trailing line end ("\n" or "\r\n", as `echo` and editors leave one).
 * Spaces are kept: they may be part of a password. Sets *out to a new
 * string the caller frees with sl_secret_free, and returns 0; -1 with the
 * reason in err (which never quotes the content) when the file cannot be
 * read, or is empty, longer than SL_SECRET_MAX, or holds a NUL byte or more
 * than one line. Never logs.
 */
int sl_secret_read(const char *path, char **out, char *err, size_t err_size);

/* Reads at most `size` bytes of the file at path into buf (no more, however
 * large the file: a secret file is small or a mistake); the bytes read, or
 * -1 with errno set. */
ssize_t sl_secret_read_bounded(const char *path, char *buf, size_t size);

/* Wipes and frees a secret; NULL is a no-op. */
void sl_secret_free(char *secret);

#endif
