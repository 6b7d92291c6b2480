/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * log tests: the line format ("YYYY-MM-DDTHH:MM:SS.mmmZ level message", one
 * line per call, also for messages longer than the line buffer and from
 * several threads at once), level filtering, strerror(errno) on warn and
 * fatal only, errno left as it was, opening a file, a failed open keeping
 * the old one, reopening after rotation by rename, and standard error;
 * switching files in two steps (a reload), and the copy to stderr of
 * warnings and errors while the daemon starts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/log.h"

#define LINE_MAX_BYTES 2048

static char dir[64];
static char path[128];
static char rotated[128];
static regex_t line_re;

/* ---- helpers ------------------------------------------------------------------- */

/* The whole file as a NUL-terminated string (caller frees). */
static char *
slurp(const char *file)
{
    FILE *fp = fopen(file, "rb");
    char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static size_t
count_lines(const char *text)
{
    size_t n = 0;

    for (const char *p = text; *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

/* Line i (0-based) of text without its newline, in a static buffer. */
static const char *
line_at(const char *text, size_t i)
{
    static char buf[LINE_MAX_BYTES + 1];
    const char *p = text, *end;

    for (; i > 0; i--) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    end = strchr(p, '\n');
    assert_non_null(end);
    assert_true((size_t)(end - p) <= LINE_MAX_BYTES);
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    return buf;
}

/* Checks the timestamp and level of a line and returns its message. */
static const char *
message_of(const char *line, const char *level)
{
    regmatch_t m[3];
    struct tm tm;
    struct timespec ts;
    time_t stamp, now;
    const char *rest;

    /* the clock the log reads: time() is the coarse one and can still be a
     * second behind a stamp taken just before */
    clock_gettime(CLOCK_REALTIME, &ts);
    now = ts.tv_sec;

    if (regexec(&line_re, line, 3, m, 0) != 0)
        fail_msg("line does not have the log format: \"%s\"", line);
    assert_int_equal(m[2].rm_eo - m[2].rm_so, (regoff_t)strlen(level));
    assert_memory_equal(line + m[2].rm_so, level, strlen(level));
    memset(&tm, 0, sizeof(tm));
    rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    stamp = timegm(&tm);
    /* UTC, and the time of the call */
    assert_true(stamp <= now && now - stamp <= 5);
    return line + m[0].rm_eo;
}

static void
expect_line(const char *text, size_t i, const char *level, const char *message)
{
    assert_string_equal(message_of(line_at(text, i), level), message);
}

/* ---- fixture ---------------------------------------------------------------------- */

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sl-test-log-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/error.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/error.log.1", dir);
    sl_log_set_level(SL_LOG_DEBUG);
    assert_int_equal(sl_log_open(path), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sl_log_close();
    sl_log_set_level(SL_LOG_INFO);
    unlink(path);
    unlink(rotated);
    rmdir(dir);
    return 0;
}

/* ---- tests -------------------------------------------------------------------------- */

static void
test_format(void **state)
{
    char *text;

    (void)state;
    sl_log_info("listening on %s with %d workers", "127.0.0.1:8080", 4);
    sl_log_debug("debug %u", 1u);
    sl_log_error("error");
    sl_log_warnx("multi word message with \"quotes\"");
    text = slurp(path);
    assert_int_equal(count_lines(text), 4);
    assert_int_equal(text[strlen(text) - 1], '\n');
    expect_line(text, 0, "info", "listening on 127.0.0.1:8080 with 4 workers");
    expect_line(text, 1, "debug", "debug 1");
    expect_line(text, 2, "error", "error");
    expect_line(text, 3, "warn", "multi word message with \"quotes\"");
    free(text);
}

static void
test_level_filter(void **state)
{
    static const struct {
        enum sl_log_level level;
        const char *expected;
    } cases[] = {
        { SL_LOG_DEBUG, "debug info warn warnx error " },
        { SL_LOG_INFO, "info warn warnx error " },
        { SL_LOG_WARN, "warn warnx error " },
        { SL_LOG_ERROR, "error " },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char got[128] = "";
        size_t used = 0;
        char *text;
        size_t n;

        assert_int_equal(truncate(path, 0), 0);
        sl_log_set_level(cases[i].level);
        errno = 0;
        sl_log_debug("debug");
        sl_log_info("info");
        sl_log_warn("warn");
        sl_log_warnx("warnx");
        sl_log_error("error");
        text = slurp(path);
        n = count_lines(text);
        for (size_t j = 0; j < n; j++) {
            const char *line = line_at(text, j);
            const char *msg = strrchr(line, ' ') + 1;
            used += (size_t)snprintf(got + used, sizeof(got) - used, "%s ", msg);
            assert_true(used < sizeof(got));
        }
        assert_string_equal(got, cases[i].expected);
        free(text);
    }
}

static void
test_parse_level(void **state)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    enum sl_log_level level;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(sl_log_parse_level(names[i], &level), 0);
        assert_int_equal(level, (enum sl_log_level)i);
    }
    level = SL_LOG_WARN;
    assert_int_equal(sl_log_parse_level("warning", &level), -1);
    assert_int_equal(sl_log_parse_level("INFO", &level), -1);
    assert_int_equal(sl_log_parse_level("", &level), -1);
    assert_int_equal(level, SL_LOG_WARN);
}

static void
test_errno(void **state)
{
    char expected[256];
    char *text;

    (void)state;
    errno = ENOENT;
    sl_log_warn("open %s", "/nonexistent");
    assert_int_equal(errno, ENOENT);
    errno = ECONNREFUSED;
    sl_log_warnx("connect %s", "127.0.0.1:1");
    assert_int_equal(errno, ECONNREFUSED);
    sl_log_error("error without errno");
    sl_log_info("info without errno");
    errno = 0;
    sl_log_warn("warn with errno 0");

    text = slurp(path);
    assert_int_equal(count_lines(text), 5);
    snprintf(expected, sizeof(expected), "open /nonexistent: %s", strerror(ENOENT));
    expect_line(text, 0, "warn", expected);
    expect_line(text, 1, "warn", "connect 127.0.0.1:1");
    expect_line(text, 2, "error", "error without errno");
    expect_line(text, 3, "info", "info without errno");
    expect_line(text, 4, "warn", "warn with errno 0");
    free(text);
}

static void
test_long_message(void **state)
{
    char *big = malloc(5000);
    char suffix[128];
    const char *line;
    char *text;

    (void)state;
    memset(big, 'x', 4999);
    big[4999] = '\0';
    sl_log_warnx("%s", big);
    errno = EACCES;
    sl_log_warn("%s", big);
    sl_log_info("after");
    text = slurp(path);
    /* cut short, but still one whole line each and nothing lost after them */
    assert_int_equal(count_lines(text), 3);
    line = line_at(text, 0);
    assert_true(strlen(line) < LINE_MAX_BYTES);
    assert_non_null(strstr(message_of(line, "warn"), "xxxxxxxxxx"));
    line = line_at(text, 1);
    snprintf(suffix, sizeof(suffix), "x: %s", strerror(EACCES));
    assert_string_equal(line + strlen(line) - strlen(suffix), suffix);
    expect_line(text, 2, "info", "after");
    free(text);
    free(big);
}

static void
test_reopen_after_rename(void **state)
{
    char *old, *cur;

    (void)state;
    sl_log_info("one");
    assert_int_equal(rename(path, rotated), 0);
    /* until the reopen, lines follow the open file to its new name */
    sl_log_info("two");
    assert_int_equal(sl_log_reopen(), 0);
    sl_log_info("three");
    sl_log_warnx("four");

    old = slurp(rotated);
    cur = slurp(path);
    assert_int_equal(count_lines(old), 2);
    expect_line(old, 0, "info", "one");
    expect_line(old, 1, "info", "two");
    assert_int_equal(count_lines(cur), 2);
    expect_line(cur, 0, "info", "three");
    expect_line(cur, 1, "warn", "four");
    free(old);
    free(cur);

    /* reopening without a rotation appends to the same file */
    assert_int_equal(sl_log_reopen(), 0);
    sl_log_info("five");
    cur = slurp(path);
    assert_int_equal(count_lines(cur), 3);
    expect_line(cur, 2, "info", "five");
    free(cur);
}

static void
test_open_appends_and_failure_keeps_old(void **state)
{
    char missing[160];
    char *text;

    (void)state;
    sl_log_info("first");
    sl_log_close();
    assert_int_equal(sl_log_open(path), 0);
    sl_log_info("second");

    snprintf(missing, sizeof(missing), "%s/no/such/dir/error.log", dir);
    assert_int_equal(sl_log_open(missing), -1);
    sl_log_info("third");

    text = slurp(path);
    assert_int_equal(count_lines(text), 3);
    expect_line(text, 0, "info", "first");
    expect_line(text, 1, "info", "second");
    expect_line(text, 2, "info", "third");
    free(text);
}

/* Runs fn with stderr sent to a file; returns what it got (caller frees). */
static char *
capture_stderr(void (*fn)(void))
{
    char errpath[160];
    int saved, fd;
    char *text;

    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", dir);
    fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    text = slurp(errpath);
    unlink(errpath);
    return text;
}

static void
log_to_stderr_steps(void)
{
    assert_int_equal(sl_log_open("stderr"), 0);
    sl_log_info("to stderr");
    /* nothing to reopen for stderr; the call must not close it */
    assert_int_equal(sl_log_reopen(), 0);
    sl_log_close();
    sl_log_info("still stderr after close");
    assert_int_equal(sl_log_open(NULL), 0);
    sl_log_warnx("NULL means stderr");
}

static void
test_stderr(void **state)
{
    char *text;

    (void)state;
    text = capture_stderr(log_to_stderr_steps);
    assert_int_equal(count_lines(text), 3);
    expect_line(text, 0, "info", "to stderr");
    expect_line(text, 1, "info", "still stderr after close");
    expect_line(text, 2, "warn", "NULL means stderr");
    free(text);
}

static void
log_while_starting(void)
{
    sl_log_set_stderr_copy(true);
    sl_log_info("starting");
    sl_log_warnx("start warning");
    sl_log_error("start error");
    sl_log_set_stderr_copy(false);
    sl_log_error("serving error");
}

/* Until the daemon serves, warnings and errors reach stderr as well. */
static void
test_stderr_copy(void **state)
{
    char *text, *file;

    (void)state;
    text = capture_stderr(log_while_starting);
    assert_int_equal(count_lines(text), 2);
    expect_line(text, 0, "warn", "start warning");
    expect_line(text, 1, "error", "start error");
    free(text);
    file = slurp(path);
    assert_int_equal(count_lines(file), 4);
    free(file);
}

static void
copy_to_stderr_log(void)
{
    assert_int_equal(sl_log_open("stderr"), 0);
    sl_log_set_stderr_copy(true);
    sl_log_error("once");
    sl_log_set_stderr_copy(false);
}

/* The log is stderr already: one line, not two. */
static void
test_stderr_copy_of_stderr(void **state)
{
    char *text;

    (void)state;
    text = capture_stderr(copy_to_stderr_log);
    assert_int_equal(count_lines(text), 1);
    expect_line(text, 0, "error", "once");
    free(text);
}

static void
switch_files(void)
{
    int fd = sl_log_open_fd(rotated);

    assert_true(fd >= 0);
    sl_log_info("first");
    sl_log_use(rotated, fd);
    sl_log_info("second");
    sl_log_use("stderr", sl_log_open_fd("stderr"));
    sl_log_info("third");
    assert_int_equal(sl_log_reopen(), 0);
    sl_log_use(path, sl_log_open_fd(path));
    sl_log_info("fourth");
}

/* A reload that moves error_log: opened first, switched to later. */
static void
test_use(void **state)
{
    char *err, *first, *second;

    (void)state;
    assert_int_equal(sl_log_open_fd("/nonexistent-dir/error.log"), -1);
    err = capture_stderr(switch_files);
    first = slurp(path);
    second = slurp(rotated);
    assert_int_equal(count_lines(first), 2);
    expect_line(first, 0, "info", "first");
    expect_line(first, 1, "info", "fourth");
    assert_int_equal(count_lines(second), 1);
    expect_line(second, 0, "info", "second");
    assert_int_equal(count_lines(err), 1);
    expect_line(err, 0, "info", "third");
    free(first);
    free(second);
    free(err);
}

#define NTHREADS 4
#define PER_THREAD 300

static void *
writer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;

    for (unsigned i = 0; i < PER_THREAD; i++)
        sl_log_info("thread %u line %u %s", id, i,
                    "padding padding padding padding padding padding padding padding");
    return NULL;
}

static void
test_threads_whole_lines(void **state)
{
    pthread_t th[NTHREADS];
    unsigned seen[NTHREADS] = { 0 };
    char *text;

    (void)state;
    for (unsigned i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    text = slurp(path);
    assert_int_equal(count_lines(text), NTHREADS * PER_THREAD);
    for (size_t i = 0; i < NTHREADS * PER_THREAD; i++) {
        const char *msg = message_of(line_at(text, i), "info");
        unsigned id, n;
        assert_int_equal(sscanf(msg, "thread %u line %u", &id, &n), 2);
        assert_true(id < NTHREADS);
        /* each thread's lines in its own order */
        assert_int_equal(n, seen[id]);
        seen[id]++;
    }
    free(text);
}

static void
test_fatal(void **state)
{
    char expected[128];
    int status;
    pid_t pid;
    char *text;

    (void)state;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        errno = EPIPE;
        sl_fatal("cannot go on");
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        errno = EPIPE;
        sl_fatalx("bad config");
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);

    text = slurp(path);
    assert_int_equal(count_lines(text), 2);
    snprintf(expected, sizeof(expected), "cannot go on: %s", strerror(EPIPE));
    expect_line(text, 0, "error", expected);
    expect_line(text, 1, "error", "bad config");
    free(text);
}

/* One line per interval; the occurrences in between are counted and handed
 * to the next line. */
static void
test_gate(void **state)
{
    struct sl_log_gate gate = { 0 };
    uint64_t held = 99;

    (void)state;
    assert_true(sl_log_gate_pass(&gate, 0, 1000, &held)); /* a clock at 0 still counts */
    assert_int_equal(held, 0);
    for (int i = 0; i < 5; i++)
        assert_false(sl_log_gate_pass(&gate, 500, 1000, &held));
    assert_false(sl_log_gate_pass(&gate, 999, 1000, &held));
    assert_true(sl_log_gate_pass(&gate, 1001, 1000, &held));
    assert_int_equal(held, 6);
    assert_false(sl_log_gate_pass(&gate, 1500, 1000, &held));
    assert_true(sl_log_gate_pass(&gate, 5000, 1000, &held));
    assert_int_equal(held, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test_setup_teardown(test_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_appends_and_failure_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_copy_of_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal, setup, teardown),
        cmocka_unit_test(test_gate),
    };
    int status;

    assert_int_equal(regcomp(&line_re,
                             "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z) "
                             "(debug|info|warn|error) ",
                             REG_EXTENDED),
                     0);
    status = cmocka_run_group_tests(tests, NULL, NULL);
    regfree(&line_re);
    return status;
}
