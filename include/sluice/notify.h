/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Talking to the service manager: the sd_notify(3) datagram protocol, spoken
 * directly (one AF_UNIX SOCK_DGRAM datagram of "KEY=value\n" lines to the
 * socket named by $NOTIFY_SOCKET), so sluice needs no libsystemd. Every call
 * is a no-op returning 0 when $NOTIFY_SOCKET is unset: a daemon started by
 * hand, by a test or by another supervisor behaves exactly as before.
 *
 * Each call opens, sends on and closes its own socket, keeps no state and is
 * safe from any thread. A send never blocks (the datagram is queued or
 * refused at once).
 *
 * daemon.c sends READY=1 once every listener is open and the pidfile is
 * written; RELOADING=1 then READY=1 around each reload, taken or refused
 * (the old conf still serves), with STATUS= saying which; STOPPING=1 when
 * the drain starts. With WatchdogSec= it pings WATCHDOG=1 at half the
 * interval from the main loop, and only while every worker's tick stamp is
 * fresh: a ping from one loop would prove only that that loop turns.
 *
 * Return values, as sd_notify(3): 1 the datagram was sent, 0 nothing to do
 * ($NOTIFY_SOCKET unset or empty), -1 failure with errno set (EAFNOSUPPORT:
 * the address is neither an absolute path nor an '@' abstract name;
 * ENAMETOOLONG: it does not fit sockaddr_un; else the socket(2) or sendto(2)
 * error). Callers log a failure once; it is never fatal.
 */
#ifndef SL_NOTIFY_H
#define SL_NOTIFY_H

#include <stdint.h>

/* "READY=1": startup (or a reload) is complete. */
int sl_notify_ready(void);
/* "RELOADING=1" with "MONOTONIC_USEC=" the CLOCK_MONOTONIC time now, as
 * Type=notify-reload requires; follow with sl_notify_ready(). */
int sl_notify_reloading(void);
/* "STOPPING=1": the drain has begun. */
int sl_notify_stopping(void);
/* "WATCHDOG=1": a keep-alive ping. */
int sl_notify_watchdog(void);
/* "STATUS=" a printf-formatted one-line text. A newline in the result is
 * sent as a space so the text cannot add fields; it is cut at 1 KiB. */
int sl_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval the manager expects pings within, in microseconds:
 * $WATCHDOG_USEC when it is a positive number and $WATCHDOG_PID is unset or
 * this process's pid; else 0 (no watchdog). Ping at half of it. */
uint64_t sl_notify_watchdog_interval_us(void);

/* Sends `state` (newline-separated KEY=value assignments) as one datagram.
 * The functions above are made of it; exported for tests and rare fields
 * (e.g. "EXTEND_TIMEOUT_USEC=..."). */
int sl_notify_send(const char *state);

#endif
