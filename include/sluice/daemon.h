/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Process lifecycle: runs the workers until SIGTERM/SIGINT has drained them.
 */
#ifndef SL_DAEMON_H
#define SL_DAEMON_H

#include <stdint.h>

struct sl_config;

/* Blocks SIGHUP, SIGUSR1, SIGTERM and SIGINT, whose default action would
 * end a daemon that is still starting; sl_daemon_run handles and unblocks
 * them once its main loop is in place. Called first thing when the process
 * is to be the daemon, before the conf is read; a child it forks clears the
 * mask itself (sl_config_load's check). */
void sl_daemon_block_signals(void);

/* Takes ownership of cfg (loaded in load_us microseconds). Returns the
 * process exit status. SIGHUP reloads conf_path; SIGUSR1 reopens the logs. */
int sl_daemon_run(const char *conf_path, struct sl_config *cfg, uint64_t load_us);

#endif
