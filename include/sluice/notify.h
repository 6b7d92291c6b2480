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
 * Intended wiring in daemon.c (TODO(#16): done by the daemon's owner):
 *
 *   - sl_notify_ready() once every worker's listeners are bound and the admin
 *     listener is up, right after the pidfile is written: with Type=notify,
 *     systemd orders dependent units and `systemctl start` returns on it.
 *   - SIGHUP: sl_notify_reloading() before the new conf is loaded, then
 *     sl_notify_ready() when the reload is over, whether the new conf was
 *     taken or refused (the old one keeps serving: still ready). Between the
 *     two, `systemctl reload` waits (Type=notify-reload, systemd >= 253).
 *     sl_notify_status("reload failed: %s", ...) can say why it was refused.
 *   - start of the drain (SIGTERM/SIGINT): sl_notify_stopping().
 *   - watchdog: when sl_notify_watchdog_interval_us() is not 0 at start
 *     (WatchdogSec= in the unit), each worker's loop arms a timer at half
 *     that interval which calls sl_notify_watchdog(), so a wedged worker
 *     stops the pings and systemd restarts the service. (A ping proves only
 *     that the pinging loop turns; to make all workers count, have workers
 *     stamp a per-worker "last turn" time and ping from the main loop only
 *     when every stamp is fresh.)
 *   - sl_notify_status() for human-readable state in `systemctl status`,
 *     e.g. "serving: 4 workers, conf loaded 12:01:03".
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
