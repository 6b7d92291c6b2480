/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Command line: -c FILE, -t (check the conf and exit), -T (check it and print
 * it with every default filled in, as nginx -T), -s SIGNAL (signal the
 * running daemon, as nginx -s), -v, -V, -h. Exit codes: 0 success, 1 bad conf
 * or runtime failure (for -s: no pidfile, no such process), 2 bad usage.
 *
 * -s finds the daemon through the `pidfile` key of the conf given with -c
 * (or the default conf), so the conf must load; the daemon itself is never
 * asked anything, a signal is all it gets.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <http_parser.h>
#include <luajit.h>

#include "sluice/config.h"
#include "sluice/daemon.h"
#include "util/clock.h"

/* Set by cmake/buildinfo.cmake for the sluice binary; defaults for other
 * builds of this file (tests/unit/test_main.c). */
#ifndef SL_DEFAULT_CONF
#define SL_DEFAULT_CONF "conf/sluice.conf"
#endif
#ifndef SL_BUILD_TYPE
#define SL_BUILD_TYPE "unknown"
#endif
#ifndef SL_BUILD_SANITIZE
#define SL_BUILD_SANITIZE ""
#endif

struct opts {
    const char *conf_path;
    const char *signal_name; /* -s; NULL: run or check */
    bool is_check_only;
    bool is_dump; /* -T: and print the conf as loaded */
};

/* -s names, nginx's words. The daemon drains on SIGTERM and SIGINT alike and
 * does not catch SIGQUIT (its default action would dump core), so "quit",
 * nginx's graceful stop, is SIGTERM as well: every stop is graceful. */
static const struct {
    const char *name;
    int sig;
} control_signals[] = {
    { "reload", SIGHUP },
    { "reopen", SIGUSR1 },
    { "stop", SIGTERM },
    { "quit", SIGTERM },
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-t | -T] [-c FILE]\n"
            "       sluice -s reload|reopen|stop|quit [-c FILE]\n"
            "       sluice -v | -V | -h\n"
            "\n"
            "  -c FILE    configuration file (default %s)\n"
            "  -t         check the configuration file and exit\n"
            "  -T         check it, print it with every default filled in (passwords\n"
            "             masked) and exit\n"
            "  -s SIGNAL  signal the daemon whose pid is in the conf's pidfile:\n"
            "             reload (SIGHUP), reopen (SIGUSR1, logs), stop and quit (SIGTERM,\n"
            "             graceful drain)\n"
            "  -v         print the version and exit\n"
            "  -V         print the version, build options and library versions and exit\n"
            "  -h         print this help and exit\n"
            "\n"
            "signals: SIGHUP reloads the configuration, SIGTERM/SIGINT drain and stop,\n"
            "SIGUSR1 reopens the log files\n",
            SL_DEFAULT_CONF);
}

static const char *
compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

/* -V: what an operator pastes into a bug report. Versions the binary was
 * compiled against, and, where the library can tell, the one it runs with. */
static void
print_build_info(void)
{
    unsigned long hp = http_parser_version();

    printf("sluice %s\n", SL_VERSION);
    printf("built by %s, build type %s, sanitizers %s\n", compiler(), SL_BUILD_TYPE,
           SL_BUILD_SANITIZE[0] != '\0' ? SL_BUILD_SANITIZE : "none");
    printf("default conf: %s\n", SL_DEFAULT_CONF);
    printf("libraries (compiled against, running with):\n");
    printf("  libevent %s, %s\n", LIBEVENT_VERSION, event_get_version());
    printf("  hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    /* luajit_version_* is a link-time symbol: the two cannot differ. */
    printf("  %s\n", LUAJIT_VERSION);
    printf("  cJSON %d.%d.%d, %s\n", CJSON_VERSION_MAJOR, CJSON_VERSION_MINOR,
           CJSON_VERSION_PATCH, cJSON_Version());
    printf("  http-parser %d.%d.%d, %lu.%lu.%lu\n", HTTP_PARSER_VERSION_MAJOR,
           HTTP_PARSER_VERSION_MINOR, HTTP_PARSER_VERSION_PATCH, (hp >> 16) & 255,
           (hp >> 8) & 255, hp & 255);
    /* Redis over TLS (rediss://) */
    printf("  %s, %s\n", OPENSSL_VERSION_TEXT, OpenSSL_version(OPENSSL_VERSION));
}

/* Returns -1 to go on, else the exit code. */
static int
parse_args(int argc, char **argv, struct opts *o)
{
    int ch;

    memset(o, 0, sizeof(*o));
    o->conf_path = SL_DEFAULT_CONF;
    while ((ch = getopt(argc, argv, "c:s:tThvV")) != -1) {
        switch (ch) {
        case 'c':
            o->conf_path = optarg;
            break;
        case 's':
            o->signal_name = optarg;
            break;
        case 't':
            o->is_check_only = true;
            break;
        case 'T':
            o->is_check_only = true;
            o->is_dump = true;
            break;
        case 'v':
            printf("sluice %s\n", SL_VERSION);
            return 0;
        case 'V':
            print_build_info();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (o->signal_name != NULL && o->is_check_only)) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The conf at path, or NULL after printing its errors on stderr. */
static struct sl_config *
load_conf(const char *path)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_config_load(path, &errors);

    if (cfg == NULL) {
        fputs(errors ? errors : "configuration failed\n", stderr);
        if (errors != NULL && errors[0] != '\0' && errors[strlen(errors) - 1] != '\n')
            fputc('\n', stderr);
    }
    free(errors);
    return cfg;
}

/* ---- -s: signalling the running daemon ----------------------------------- */

/* The signal for a -s name, or 0. */
static int
control_signal(const char *name)
{
    for (size_t i = 0; i < sizeof(control_signals) / sizeof(control_signals[0]); i++) {
        if (strcmp(control_signals[i].name, name) == 0)
            return control_signals[i].sig;
    }
    return 0;
}

/* Reads the pid the daemon wrote ("%ld\n"). Anything else, a pid of 0 or
 * below included (kill(2) would take those for a process group or every
 * process), fails with a message in err. */
static int
read_pidfile(const char *path, pid_t *pid, char *err, size_t errlen)
{
    char buf[32];
    ssize_t n;
    long v;
    char *end;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "pidfile %s: %s%s", path, strerror(errno),
                 errno == ENOENT ? " (is sluice running?)" : "");
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    errno = 0;
    v = strtol(buf, &end, 10);
    if (end == buf || errno != 0 || (*end != '\0' && strcmp(end, "\n") != 0) || v <= 0
        || (long)(pid_t)v != v) {
        snprintf(err, errlen, "pidfile %s: not a pid: \"%.*s\"", path, (int)strcspn(buf, "\n"),
                 buf);
        return -1;
    }
    *pid = (pid_t)v;
    return 0;
}

/* sluice -s NAME: exit code 0 when the signal went out, 1 when it could
 * not (the conf does not load or names no pidfile, no pidfile, stale pid). */
static int
control(const char *conf_path, const char *name, int sig)
{
    struct sl_config *cfg;
    char err[512];
    pid_t pid;
    int rc = 1;

    cfg = load_conf(conf_path);
    if (cfg == NULL)
        return 1;
    if (cfg->pidfile == NULL) {
        fprintf(stderr, "sluice: -s %s: %s sets no pidfile, so the daemon cannot be found\n",
                name, conf_path);
        goto done;
    }
    if (read_pidfile(cfg->pidfile, &pid, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: -s %s: %s\n", name, err);
        goto done;
    }
    if (kill(pid, sig) != 0) {
        fprintf(stderr, "sluice: -s %s: pid %ld from %s: %s%s\n", name, (long)pid, cfg->pidfile,
                errno == ESRCH ? "no such process" : strerror(errno),
                errno == ESRCH ? " (stale pidfile?)" : "");
        goto done;
    }
    rc = 0;
done:
    sl_config_free(cfg);
    return rc;
}

/* ---- -T -------------------------------------------------------------------- */

/* sluice -T: the conf on stdout, as conf text that loads again; the verdict
 * on stderr, so that the output can be saved and checked with -t. A function
 * that cannot be printed is a warning: the conf itself is good (exit 0), and
 * the text says where it stops being loadable. */
static int
dump_conf(const char *path, struct sl_config *cfg)
{
    char err[512];
    int rc = sl_config_dump(cfg, stdout, err, sizeof(err));

    sl_config_free(cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sluice: -T: cannot write the configuration: %s\n", strerror(errno));
        return 1;
    }
    if (rc != 0)
        fprintf(stderr, "sluice: -T: %s: %s\n", path, err);
    fprintf(stderr, "%s: configuration OK\n", path);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    struct opts o;
    struct sl_config *cfg;
    uint64_t load_start_us;
    int rc, sig;

    (void)sl_config_check_child(argc, argv);
    rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.signal_name != NULL) {
        sig = control_signal(o.signal_name);
        if (sig == 0) {
            fprintf(stderr, "sluice: -s %s: unknown signal (use reload, reopen, stop or quit)\n",
                    o.signal_name);
            return 2;
        }
        return control(o.conf_path, o.signal_name, sig);
    }
    if (!o.is_check_only)
        sl_daemon_block_signals();
    load_start_us = sl_clock_now_us();
    cfg = load_conf(o.conf_path);
    if (cfg == NULL)
        return 1;
    if (o.is_dump)
        return dump_conf(o.conf_path, cfg);
    if (o.is_check_only) {
        printf("%s: configuration OK\n", o.conf_path);
        sl_config_free(cfg);
        return 0;
    }
    return sl_daemon_run(o.conf_path, cfg, sl_clock_now_us() - load_start_us);
}
