/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The diagnostic (error) log: one line per event, "time level message".
 * sl_log_warn and sl_fatal append strerror(errno); the x variants do not.
 * Thread-safe: each line is written with a single write(2).
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

/* Opens `path` ("stderr" or NULL: standard error) for appending; -1 on failure. */
int sl_log_open(const char *path);
/* sl_log_open in two steps, so a reload can open the new file before it
 * decides: the descriptor for `path` (STDERR_FILENO for "stderr" or NULL),
 * -1 with errno on failure; then sl_log_use switches to it and owns it. */
int sl_log_open_fd(const char *path);
void sl_log_use(const char *path, int fd);
/* While on and the log is a file, warnings and errors go to stderr as well:
 * the daemon's start, whose failures must reach the service manager. */
void sl_log_set_stderr_copy(bool is_on);
/* Reopens the same path (SIGUSR1 after rotation). */
int sl_log_reopen(void);
void sl_log_close(void);
void sl_log_set_level(enum sl_log_level level);
int sl_log_parse_level(const char *name, enum sl_log_level *level);

void sl_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sl_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void sl_fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* At most one line per interval for an event that can recur on every
 * request; the occurrences in between are counted. Zero-initialised. */
struct sl_log_gate {
    uint64_t last_us; /* when a line last went through; 0: never */
    uint64_t held;    /* occurrences not logged since */
};

/* True when a line may be written at now_us; *held is then how many were
 * not logged since the last one (and the count starts again). */
bool sl_log_gate_pass(struct sl_log_gate *gate, uint64_t now_us, uint64_t interval_us,
                      uint64_t *held);

#endif
