/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Loading a conf within a wall-clock bound (issue 12). The sandbox counts
 * Lua instructions, but a string-library call runs inside C: one
 * `s:find(("a*"):rep(10) .. "c")` backtracks for tens of seconds without a
 * single instruction, and no hook can stop it. A process can be stopped, so
 * the conf is first checked in a child process (the same binary, in the
 * same environment), which the parent kills at the deadline.
 *
 * The child sends back its verdict: the errors, or the bytes it read (the
 * conf and every included file, with the include patterns). The parent then
 * loads those bytes itself, never the disk: the same bytes in the same
 * environment do the same work, which just finished within the bound, and a
 * file edited in between cannot slip an unchecked conf in.
 *
 * Fork in a threaded daemon: a lock another thread held at the fork stays
 * held in the child for good. glibc's malloc resets its own, but not every
 * allocator does (ASan's deadlocks the child), nor every library. So the
 * forked child execs sluice again (its binary, SL_CONF_CHECK_ARG), a
 * fresh process without the daemon's threads; only if that exec fails does
 * it check the conf as forked. It writes to a pipe and leaves with _exit; it
 * never logs and never touches the daemon's state.
 */
#include "sluice/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_int.h"
#include "sluice/lua_rt.h"
#include "util/alloc.h"
#include "util/clock.h"

/* the conf, 256 included files of 4 MiB and some: a child that sends more
 * than this is not one of ours */
#define SNAPSHOT_MAX (1100u << 20)

struct wbuf {
    char *p;
    size_t len, cap;
};

static void
put(struct wbuf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        while (b->cap - b->len < n)
            b->cap = b->cap ? b->cap * 2 : 65536;
        b->p = sl_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void
put_u64(struct wbuf *b, uint64_t v)
{
    put(b, &v, sizeof(v));
}

static void
put_str(struct wbuf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

/* What the child sends: "E" errors, or "K" source files includes. */
static void
serialize(struct wbuf *b, const struct sl_config *cfg, const char *errors)
{
    if (cfg == NULL) {
        put(b, "E", 1);
        put_str(b, errors != NULL ? errors : "", errors != NULL ? strlen(errors) : 0);
        return;
    }
    put(b, "K", 1);
    put_str(b, cfg->source, cfg->source_len);
    put_u64(b, cfg->nfiles);
    for (size_t i = 0; i < cfg->nfiles; i++) {
        put_str(b, cfg->files[i].path, strlen(cfg->files[i].path));
        put_str(b, cfg->files[i].source, cfg->files[i].source_len);
    }
    put_u64(b, cfg->nincludes);
    for (size_t i = 0; i < cfg->nincludes; i++) {
        put_str(b, cfg->includes[i].pattern, strlen(cfg->includes[i].pattern));
        put_u64(b, cfg->includes[i].nfiles);
        for (size_t j = 0; j < cfg->includes[i].nfiles; j++)
            put_u64(b, cfg->includes[i].files[j]);
    }
}

struct rbuf {
    const char *p;
    size_t left;
    bool is_bad;
};

static uint64_t
get_u64(struct rbuf *r)
{
    uint64_t v = 0;

    if (r->left < sizeof(v)) {
        r->is_bad = true;
        return 0;
    }
    memcpy(&v, r->p, sizeof(v));
    r->p += sizeof(v);
    r->left -= sizeof(v);
    return v;
}

/* A new NUL-terminated copy of the next string; its length in *len. */
static char *
get_str(struct rbuf *r, size_t *len)
{
    uint64_t n = get_u64(r);
    char *s;

    if (r->is_bad || n > r->left) {
        r->is_bad = true;
        n = 0;
    }
    s = sl_xmalloc(n + 1);
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    r->left -= n;
    if (len != NULL)
        *len = n;
    return s;
}

/* The snapshot as a config to load (path, source, files, includes), or NULL
 * when it is malformed. */
static struct sl_config *
deserialize(const char *path, struct rbuf *r)
{
    struct sl_config *cfg = sl_xcalloc(1, sizeof(*cfg));
    uint64_t n;

    cfg->path = sl_xstrdup(path);
    cfg->source = get_str(r, &cfg->source_len);
    n = get_u64(r);
    if (n > SL_LUA_INCLUDE_FILES)
        r->is_bad = true;
    cfg->files = sl_xcalloc(r->is_bad ? 1 : n + 1, sizeof(*cfg->files));
    for (uint64_t i = 0; !r->is_bad && i < n; i++, cfg->nfiles++) {
        cfg->files[i].path = get_str(r, NULL);
        cfg->files[i].source = get_str(r, &cfg->files[i].source_len);
    }
    n = get_u64(r);
    if (n > r->left)
        r->is_bad = true;
    cfg->includes = sl_xcalloc(r->is_bad ? 1 : n + 1, sizeof(*cfg->includes));
    for (uint64_t i = 0; !r->is_bad && i < n; i++, cfg->nincludes++) {
        struct sl_conf_include *inc = &cfg->includes[i];
        uint64_t m;
        inc->pattern = get_str(r, NULL);
        m = get_u64(r);
        if (m > cfg->nfiles)
            r->is_bad = true;
        inc->files = sl_xcalloc(r->is_bad ? 1 : m + 1, sizeof(*inc->files));
        for (uint64_t j = 0; !r->is_bad && j < m; j++, inc->nfiles++) {
            inc->files[j] = (size_t)get_u64(r);
            r->is_bad = r->is_bad || inc->files[j] >= cfg->nfiles;
        }
    }
    if (r->is_bad || r->left != 0) {
        sl_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static bool
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The child: load, send, leave without running the parent's exit handlers. */
static void __attribute__((noreturn))
child_main(int fd, const char *path, uint64_t time_max_ms)
{
    struct wbuf b = { 0 };
    struct sl_config *cfg;
    char *errors = NULL;
    sigset_t all;
    bool ok;

    /* killed with the parent; and by itself, should the parent not kill it */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigemptyset(&all);
    (void)sigprocmask(SIG_SETMASK, &all, NULL);
    (void)signal(SIGALRM, SIG_DFL);
    alarm((unsigned)(time_max_ms / 1000 + 2));
    cfg = sl_conf_load_direct(path, NULL, &errors);
    serialize(&b, cfg, errors);
    ok = write_all(fd, b.p, b.len);
    free(b.p);
    free(errors);
    sl_config_free(cfg);
    _exit(ok ? 0 : 3);
}

/* The sluice binary, as main found it, which a check execs; "": none (not
 * sluice, e.g. a test). Read at start: under valgrind /proc/self/exe itself
 * is valgrind's, the link's target is sluice. */
static char sluice_exe[PATH_MAX];

int
sl_config_check_child(int argc, char **argv)
{
    char *end;
    long fd;
    unsigned long long ms;

    ssize_t n = readlink("/proc/self/exe", sluice_exe, sizeof(sluice_exe) - 1);

    sluice_exe[n > 0 ? n : 0] = '\0';
    if (argc != 5 || strcmp(argv[1], SL_CONF_CHECK_ARG) != 0)
        return -1;
    fd = strtol(argv[2], &end, 10);
    if (*end != '\0' || fd < 0 || fd > 65535)
        return -1;
    ms = strtoull(argv[4], &end, 10);
    if (*end != '\0')
        return -1;
    child_main((int)fd, argv[3], ms);
}

/* The forked child: exec a fresh sluice to do the check (see the top). */
static void __attribute__((noreturn))
child_exec(int fd, const char *path, uint64_t time_max_ms, char *const *argv)
{
    /* the pipe end must survive the exec; nothing before it but syscalls */
    if (sluice_exe[0] != '\0' && fcntl(fd, F_SETFD, 0) == 0)
        execv(sluice_exe, argv);
    child_main(fd, path, time_max_ms);
}

/* Reads the child's pipe to its end or the deadline; -1 with *is_late set
 * when the deadline came first, -1 on a read error or an oversized reply. */
static int
read_until(int fd, uint64_t deadline_us, struct wbuf *b, bool *is_late)
{
    char chunk[65536];

    *is_late = false;
    for (;;) {
        uint64_t now = sl_clock_now_us();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;
        int rc;

        if (now >= deadline_us) {
            *is_late = true;
            return -1;
        }
        rc = poll(&pfd, 1, (int)((deadline_us - now + 999) / 1000));
        if (rc < 0 && errno == EINTR)
            continue; /* a signal for the daemon: it waits for this to return */
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue; /* the deadline is checked above */
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (b->len + (size_t)n > SNAPSHOT_MAX)
            return -1;
        put(b, chunk, (size_t)n);
    }
}

static char *xformat(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "path: message", malloc'd. */
static char *
xformat(const char *path, const char *fmt, ...)
{
    char msg[512], *out;
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = strlen(path) + strlen(msg) + 3;
    out = sl_xmalloc(n);
    snprintf(out, n, "%s: %s", path, msg);
    return out;
}

/* Waits for the child; its exit status, or -1. Killed first when late. */
static int
reap(pid_t pid, bool is_late)
{
    int status = 0;

    if (is_late)
        (void)kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1; /* e.g. SIGCHLD ignored: reaped already */
    }
    return status;
}

/* The child's verdict into a config or errors. */
static struct sl_config *
take_reply(const char *path, const struct wbuf *b, char **errors)
{
    struct rbuf r = { b->p, b->len, false };
    struct sl_config *snapshot;

    if (b->len > 0 && b->p[0] == 'E') {
        r.p++;
        r.left--;
        *errors = get_str(&r, NULL);
        return NULL;
    }
    if (b->len == 0 || b->p[0] != 'K') {
        *errors = xformat(path, "the conf check ended without a result");
        return NULL;
    }
    r.p++;
    r.left--;
    snapshot = deserialize(path, &r);
    if (snapshot == NULL) {
        *errors = xformat(path, "the conf check returned a malformed result");
        return NULL;
    }
    return sl_conf_load_direct(path, snapshot, errors);
}

struct sl_config *
sl_config_load_within(const char *path, uint64_t time_max_ms, char **errors)
{
    uint64_t deadline_us = sl_clock_now_us() + time_max_ms * 1000;
    struct wbuf b = { 0 };
    struct sl_config *cfg = NULL;
    bool is_late = false;
    int fds[2], status, rc;
    char arg0[] = "sluice", arg1[] = SL_CONF_CHECK_ARG, fd_text[16], ms_text[24];
    char *argv[] = { arg0, arg1, fd_text, NULL, ms_text, NULL };
    pid_t pid;

    *errors = NULL;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        *errors = xformat(path, "cannot check the conf: pipe: %s", strerror(errno));
        return NULL;
    }
    /* formatted before the fork: the child may only make system calls */
    snprintf(fd_text, sizeof(fd_text), "%d", fds[1]);
    snprintf(ms_text, sizeof(ms_text), "%llu", (unsigned long long)time_max_ms);
    argv[3] = sl_xstrdup(path);
    pid = fork();
    if (pid != 0)
        free(argv[3]);
    if (pid < 0) {
        *errors = xformat(path, "cannot check the conf: fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        child_exec(fds[1], path, time_max_ms, argv);
    }
    close(fds[1]);
    rc = read_until(fds[0], deadline_us, &b, &is_late);
    close(fds[0]);
    status = reap(pid, is_late || rc != 0);
    if (is_late)
        *errors = xformat(path, "conf still running after %llu ms, refused (a string pattern "
                                "that backtracks, or a loop of slow string calls?)",
                          (unsigned long long)time_max_ms);
    else if (status != -1 && WIFSIGNALED(status))
        *errors = xformat(path, "the conf check died on signal %d", WTERMSIG(status));
    else if (rc != 0)
        *errors = xformat(path, "the conf check failed to report");
    else
        cfg = take_reply(path, &b, errors);
    free(b.p);
    return cfg;
}
