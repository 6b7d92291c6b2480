/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Command line: -c FILE, -t (check the conf and exit), -v, -h. Exit codes:
 * 0 success, 1 bad conf or runtime failure, 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/daemon.h"
#include "util/clock.h"

#define DEFAULT_CONF "conf/sluice.conf"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-t] [-c FILE]\n"
            "       sluice -v | -h\n"
            "\n"
            "  -c FILE  configuration file (default %s)\n"
            "  -t       check the configuration file and exit\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n"
            "\n"
            "signals: SIGHUP reloads the configuration, SIGTERM/SIGINT drain and stop,\n"
            "SIGUSR1 reopens the log files\n",
            DEFAULT_CONF);
}

int
main(int argc, char **argv)
{
    const char *conf_path = DEFAULT_CONF;
    int is_check_only = 0;
    char *errors = NULL;
    struct sl_config *cfg;
    uint64_t load_start_us;
    int ch;

    while ((ch = getopt(argc, argv, "c:thv")) != -1) {
        switch (ch) {
        case 'c':
            conf_path = optarg;
            break;
        case 't':
            is_check_only = 1;
            break;
        case 'v':
            printf("sluice %s\n", SL_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    load_start_us = sl_clock_now_us();
    cfg = sl_config_load(conf_path, &errors);
    if (cfg == NULL) {
        fputs(errors ? errors : "configuration failed\n", stderr);
        if (errors != NULL && errors[0] != '\0' && errors[strlen(errors) - 1] != '\n')
            fputc('\n', stderr);
        free(errors);
        return 1;
    }
    if (is_check_only) {
        printf("%s: configuration OK\n", conf_path);
        sl_config_free(cfg);
        return 0;
    }
    return sl_daemon_run(conf_path, cfg, sl_clock_now_us() - load_start_us);
}
