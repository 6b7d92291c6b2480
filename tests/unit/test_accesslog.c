/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Access log: the JSON of one line (fields, absent values, rounding), hostile
 * input (quotes, control bytes, NUL, invalid UTF-8, huge values) that must
 * still give one valid UTF-8 JSON object per line, buffering and the three
 * flush triggers (full buffer, timer, free), several writers on one file,
 * reopen after rename, "stderr" and "off".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "sluice/accesslog.h"

static char dir[] = "/tmp/sl-accesslog-XXXXXX";

static int
setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *
path_of(const char *name)
{
    static char path[2][256];
    static int which;

    which ^= 1;
    snprintf(path[which], sizeof(path[which]), "%s/%s", dir, name);
    return path[which];
}

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long size;

    if (f == NULL) {
        *len = 0;
        return calloc(1, 1);
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)size + 1);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return text;
}

static off_t
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Strict UTF-8 (RFC 3629), independent of the code under test. */
static bool
is_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        unsigned long cp;

        if (len == 0 || i + len > n)
            return false;
        cp = len == 1 ? c : c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Checks that text is lines of valid JSON objects, returns them parsed. */
static size_t
parse_lines(const char *text, size_t len, cJSON **out, size_t max)
{
    size_t n = 0;
    const char *p = text;

    assert_true(len == 0 || text[len - 1] == '\n');
    assert_true(is_utf8((const unsigned char *)text, len));
    while (p < text + len) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        cJSON *obj;

        assert_non_null(nl);
        for (const char *q = p; q < nl; q++)
            assert_true((unsigned char)*q >= 0x20); /* no raw control byte inside a line */
        obj = cJSON_ParseWithLength(p, (size_t)(nl - p));
        if (obj == NULL || !cJSON_IsObject(obj))
            fail_msg("not a JSON object: %.*s", (int)(nl - p), p);
        if (n < max)
            out[n] = obj;
        else
            cJSON_Delete(obj);
        n++;
        p = nl + 1;
    }
    return n;
}

static struct sl_access_entry
sample_entry(void)
{
    static const char method[] = "GET", path[] = "/v1/items?id=7";
    static const char rid[] = "req-1", tid[] = "4bf92f3577b34da6a3ce929d0e0e4736";

    return (struct sl_access_entry){
        .time = 1767323045.678,
        .client = "192.0.2.7",
        .peer = "10.0.0.9",
        .method = method,
        .method_len = 3,
        .path = path,
        .path_len = sizeof(path) - 1,
        .status = 200,
        .bytes_in = 120,
        .bytes_out = 5000000000ull,
        .duration_ms = 12.3456,
        .upstream_ms = 10.5,
        .limiter_ms = 0.25,
        .upstream = "127.0.0.1:9000",
        .retries = 2,
        .request_id = rid,
        .request_id_len = sizeof(rid) - 1,
        .trace_id = tid,
        .trace_id_len = sizeof(tid) - 1,
        .limit = "admitted",
        .reason = NULL,
        .route = "/v1/",
    };
}

static const char *
str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (item == NULL)
        fail_msg("no field %s", key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static double
num(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (item == NULL || !cJSON_IsNumber(item))
        fail_msg("field %s is not a number", key);
    return item->valuedouble;
}

static bool
is_null(const cJSON *obj, const char *key)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* Writes the entries through a fresh writer and returns the parsed lines. */
static size_t
roundtrip(const char *name, const struct sl_access_entry *entries, size_t n, cJSON **out,
          size_t max)
{
    const char *path = path_of(name);
    struct sl_accesslog *log = sl_accesslog_new(path, NULL);
    size_t len, count;
    char *text;

    assert_non_null(log);
    assert_true(sl_accesslog_is_on(log));
    for (size_t i = 0; i < n; i++)
        sl_accesslog_write(log, &entries[i]);
    sl_accesslog_free(log);
    text = slurp(path, &len);
    count = parse_lines(text, len, out, max);
    free(text);
    return count;
}

/* ==== content ============================================================================ */

static void
test_fields(void **state)
{
    struct sl_access_entry e = sample_entry();
    cJSON *line;

    (void)state;
    assert_int_equal(roundtrip("fields.log", &e, 1, &line, 1), 1);
    assert_string_equal(str(line, "time"), "2026-01-02T03:04:05.678Z");
    assert_string_equal(str(line, "client"), "192.0.2.7");
    assert_string_equal(str(line, "method"), "GET");
    assert_string_equal(str(line, "path"), "/v1/items?id=7");
    assert_int_equal(num(line, "status"), 200);
    assert_int_equal(num(line, "bytes_in"), 120);
    assert_true(num(line, "bytes_out") == 5000000000.0);
    assert_true(num(line, "duration_ms") == 12.346); /* whole microseconds */
    assert_true(num(line, "upstream_ms") == 10.5);
    assert_true(num(line, "limiter_ms") == 0.25);
    assert_string_equal(str(line, "route"), "/v1/");
    assert_string_equal(str(line, "upstream"), "127.0.0.1:9000");
    assert_int_equal(num(line, "retries"), 2);
    assert_string_equal(str(line, "limit"), "admitted");
    assert_string_equal(str(line, "request_id"), "req-1");
    assert_string_equal(str(line, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_true(is_null(line, "reason"));
    assert_string_equal(str(line, "peer"), "10.0.0.9");
    assert_true(is_null(line, "lifecycle"));
    assert_true(is_null(line, "consumer"));
    assert_true(is_null(line, "idempotency"));
    assert_int_equal(cJSON_GetArraySize(line), 21);
    cJSON_Delete(line);

    /* a route that ends: where it stands and who called */
    e.lifecycle = "deprecated";
    e.consumer = "sha256:0123456789abcdef";
    assert_int_equal(roundtrip("lifecycle.log", &e, 1, &line, 1), 1);
    assert_string_equal(str(line, "lifecycle"), "deprecated");
    assert_string_equal(str(line, "consumer"), "sha256:0123456789abcdef");
    cJSON_Delete(line);

    e.idempotency = "replayed";
    assert_int_equal(roundtrip("idempotency.log", &e, 1, &line, 1), 1);
    assert_string_equal(str(line, "idempotency"), "replayed");
    cJSON_Delete(line);
}

static void
test_absent_fields_are_null(void **state)
{
    struct sl_access_entry e = { .time = 1767323045.0, .duration_ms = 0.5, .upstream_ms = -1,
                                 .limiter_ms = -1 };
    const char *nulls[] = { "client", "method", "path", "status", "upstream_ms", "limiter_ms",
                            "route", "upstream", "limit", "request_id", "trace_id", "reason",
                            "lifecycle", "consumer", "idempotency" };
    cJSON *line;

    (void)state;
    assert_int_equal(roundtrip("absent.log", &e, 1, &line, 1), 1);
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (!is_null(line, nulls[i]))
            fail_msg("%s should be null", nulls[i]);
    assert_string_equal(str(line, "time"), "2026-01-02T03:04:05.000Z");
    assert_int_equal(num(line, "bytes_in"), 0);
    assert_int_equal(num(line, "retries"), 0);
    assert_true(num(line, "duration_ms") == 0.5);
    cJSON_Delete(line);
}

static void
test_number_format(void **state)
{
    const char *path = path_of("numbers.log");
    struct sl_accesslog *log = sl_accesslog_new(path, NULL);
    struct sl_access_entry e = sample_entry();
    size_t len;
    char *text;

    (void)state;
    assert_non_null(log);
    e.bytes_in = UINT64_MAX;
    e.bytes_out = 0;
    e.duration_ms = 2.0;
    e.upstream_ms = 0.001;
    e.limiter_ms = 1234.5678;
    sl_accesslog_write(log, &e);
    e.duration_ms = -5; /* clock went backwards: 0, never negative */
    e.upstream_ms = 0;
    e.limiter_ms = 0.0004; /* below a microsecond */
    sl_accesslog_write(log, &e);
    sl_accesslog_free(log);
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), 2);
    assert_non_null(strstr(text, "\"bytes_in\":18446744073709551615,\"bytes_out\":0,"
                                 "\"duration_ms\":2,\"upstream_ms\":0.001,"
                                 "\"limiter_ms\":1234.568,"));
    assert_non_null(strstr(text, "\"duration_ms\":0,\"upstream_ms\":0,\"limiter_ms\":0,"));
    free(text);
}

static void
test_hostile_input(void **state)
{
    /* quote, backslash, every control byte, DEL, NUL, and broken UTF-8:
     * lone continuation, overlong '/', a surrogate, past U+10FFFF, cut short */
    static const char path[] = "/a\"b\\c\x01\x02\x1f\x7f\n\r\t\0"
                               "d\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xff"
                               "caf\xc3\xa9\xe2\x82";
    static const char method[] = "G\"ET\n";
    static const char rid[] = "\"},{\"evil\":1";
    struct sl_access_entry e = sample_entry();
    cJSON *line;
    char ctl[64];

    (void)state;
    e.path = path;
    e.path_len = sizeof(path) - 1;
    e.method = method;
    e.method_len = sizeof(method) - 1;
    e.request_id = rid;
    e.request_id_len = sizeof(rid) - 1;
    e.client = "\xff\xfe";
    e.reason = "client sent \"bad\" bytes\x01";
    assert_int_equal(roundtrip("hostile.log", &e, 1, &line, 1), 1);
    snprintf(ctl, sizeof(ctl), "/a\"b\\c\x01\x02\x1f\x7f\n\r\t");
    assert_memory_equal(str(line, "path"), ctl, strlen(ctl));
    assert_string_equal(str(line, "path") + strlen(ctl),
                        "\xef\xbf\xbd"                                     /* NUL */
                        "d"
                        "\xef\xbf\xbd"                                     /* 80 */
                        "\xef\xbf\xbd\xef\xbf\xbd"                         /* c0 af */
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"             /* ed a0 80 */
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" /* f4 90 80 80 */
                        "\xef\xbf\xbd"                                     /* ff */
                        "caf\xc3\xa9"
                        "\xef\xbf\xbd\xef\xbf\xbd"); /* e2 82 */
    assert_string_equal(str(line, "method"), "G\"ET\n");
    assert_string_equal(str(line, "request_id"), "\"},{\"evil\":1");
    assert_null(cJSON_GetObjectItemCaseSensitive(line, "evil"));
    assert_string_equal(str(line, "client"), "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(str(line, "reason"), "client sent \"bad\" bytes\x01");
    cJSON_Delete(line);
}

static void
test_long_values_are_cut(void **state)
{
    static char path[10000], rid[1000];
    struct sl_access_entry e = sample_entry();
    cJSON *line;
    const char *got;

    (void)state;
    /* '/' then two-byte characters: byte 2048 is the middle of one */
    path[0] = '/';
    for (size_t i = 1; i + 1 < sizeof(path); i += 2)
        memcpy(path + i, "\xc3\xa9", 2);
    memset(rid, 'r', sizeof(rid));
    e.path = path;
    e.path_len = sizeof(path) - 1;
    e.request_id = rid;
    e.request_id_len = sizeof(rid);
    assert_int_equal(roundtrip("long.log", &e, 1, &line, 1), 1);
    got = str(line, "path");
    assert_int_equal(strlen(got), 2047);
    assert_memory_equal(got, path, 2047);
    assert_int_equal(strlen(str(line, "request_id")), 200);
    cJSON_Delete(line);
}

/* ==== buffering ============================================================================ */

static void
test_buffer_flushes_when_full(void **state)
{
    const char *path = path_of("full.log");
    struct sl_accesslog *log = sl_accesslog_new(path, NULL);
    struct sl_access_entry e = sample_entry();
    size_t len, lines = 0;
    char *text;

    (void)state;
    assert_non_null(log);
    sl_accesslog_write(log, &e);
    assert_int_equal(file_size(path), 0); /* buffered */
    /* a ~400-byte line: 64 KiB hold about 160 of them */
    while (file_size(path) == 0) {
        sl_accesslog_write(log, &e);
        lines++;
        assert_true(lines < 1000);
    }
    assert_true(lines > 100);
    text = slurp(path, &len);
    assert_true(len <= 64 * 1024);
    assert_int_equal(parse_lines(text, len, NULL, 0), lines); /* whole lines, all but the last */
    free(text);
    sl_accesslog_free(log); /* flushes the rest */
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), lines + 1);
    free(text);
}

static int
find_timer(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    *(const struct event **)arg = ev;
    return 1;
}

static void
test_timer_flushes(void **state)
{
    const char *path = path_of("timer.log");
    struct event_base *base = event_base_new();
    struct sl_accesslog *log = sl_accesslog_new(path, base);
    struct sl_access_entry e = sample_entry();
    const struct event *timer = NULL;
    struct timeval tv;
    size_t len;
    char *text;

    (void)state;
    assert_non_null(log);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    sl_accesslog_write(log, &e);
    sl_accesslog_write(log, &e);
    assert_int_equal(file_size(path), 0);
    /* the first line armed a one-second timer; fire it instead of waiting */
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 1);
    event_base_foreach_event(base, find_timer, &timer);
    assert_non_null(timer);
    assert_true(event_pending(timer, EV_TIMEOUT, &tv));
    event_active((struct event *)(uintptr_t)timer, EV_TIMEOUT, 1);
    assert_true(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), 2);
    free(text);
    sl_accesslog_free(log);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

static void
test_writers_share_a_file(void **state)
{
    const char *path = path_of("shared.log");
    struct sl_accesslog *a = sl_accesslog_new(path, NULL), *b = sl_accesslog_new(path, NULL);
    struct sl_access_entry e = sample_entry();
    size_t len;
    char *text;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    /* both fill their buffers several times over, flushes interleave */
    for (int i = 0; i < 1000; i++) {
        e.status = 200;
        sl_accesslog_write(a, &e);
        e.status = 500;
        sl_accesslog_write(b, &e);
    }
    sl_accesslog_free(a);
    sl_accesslog_free(b);
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), 2000);
    free(text);
}

/* ==== reopen, stderr, off ================================================================ */

static void
test_reopen_after_rename(void **state)
{
    char old_path[256], new_path[256];
    struct sl_accesslog *log;
    struct sl_access_entry e = sample_entry();
    cJSON *lines[4];
    size_t len;
    char *text;

    (void)state;
    snprintf(new_path, sizeof(new_path), "%s", path_of("rotate.log"));
    snprintf(old_path, sizeof(old_path), "%s", path_of("rotate.log.1"));
    log = sl_accesslog_new(new_path, NULL);
    assert_non_null(log);
    e.status = 201;
    sl_accesslog_write(log, &e);
    assert_int_equal(rename(new_path, old_path), 0); /* logrotate */
    e.status = 202;
    sl_accesslog_write(log, &e);                     /* written before the signal */
    assert_int_equal(sl_accesslog_reopen(log), 0);
    e.status = 203;
    sl_accesslog_write(log, &e);
    sl_accesslog_free(log);

    text = slurp(old_path, &len);
    assert_int_equal(parse_lines(text, len, lines, 4), 2);
    assert_int_equal(num(lines[0], "status"), 201);
    assert_int_equal(num(lines[1], "status"), 202);
    cJSON_Delete(lines[0]);
    cJSON_Delete(lines[1]);
    free(text);
    text = slurp(new_path, &len);
    assert_int_equal(parse_lines(text, len, lines, 4), 1);
    assert_int_equal(num(lines[0], "status"), 203);
    cJSON_Delete(lines[0]);
    free(text);
}

static void
test_reopen_failure_keeps_old_file(void **state)
{
    char sub[256], path[300];
    struct sl_accesslog *log;
    struct sl_access_entry e = sample_entry();
    size_t len;
    char *text;

    (void)state;
    snprintf(sub, sizeof(sub), "%s", path_of("gone"));
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/a.log", sub);
    log = sl_accesslog_new(path, NULL);
    assert_non_null(log);
    sl_accesslog_write(log, &e);
    assert_int_equal(sl_accesslog_reopen(log), 0);
    /* the directory disappears: reopen fails, lines keep going to the open file */
    assert_int_equal(rename(sub, path_of("moved")), 0);
    assert_int_equal(sl_accesslog_reopen(log), -1);
    sl_accesslog_write(log, &e);
    sl_accesslog_free(log);
    snprintf(path, sizeof(path), "%s/a.log", path_of("moved"));
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), 2);
    free(text);
}

static void
test_stderr_and_off(void **state)
{
    const char *path = path_of("stderr.log");
    struct sl_access_entry e = sample_entry();
    struct sl_accesslog *log;
    int saved = dup(STDERR_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t len;
    char *text;

    (void)state;
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    log = sl_accesslog_new("stderr", NULL);
    assert_non_null(log);
    sl_accesslog_write(log, &e);
    assert_int_equal(sl_accesslog_reopen(log), 0); /* flushes, keeps fd 2 */
    sl_accesslog_write(log, &e);
    sl_accesslog_free(log);
    assert_true(fcntl(STDERR_FILENO, F_GETFD) >= 0); /* not closed */
    dup2(saved, STDERR_FILENO);
    close(saved);
    text = slurp(path, &len);
    assert_int_equal(parse_lines(text, len, NULL, 0), 2);
    free(text);

    log = sl_accesslog_new("off", NULL);
    assert_non_null(log);
    assert_false(sl_accesslog_is_on(log));
    assert_false(sl_accesslog_is_on(NULL));
    sl_accesslog_write(log, &e);
    assert_int_equal(sl_accesslog_reopen(log), 0);
    sl_accesslog_free(log);
    sl_accesslog_free(NULL);
}

/* A device that refuses every write: lines are dropped, nothing loops or leaks. */
static void
test_write_errors_drop_lines(void **state)
{
    struct sl_accesslog *log = sl_accesslog_new("/dev/full", NULL);
    struct sl_access_entry e = sample_entry();

    (void)state;
    if (log == NULL)
        skip();
    for (int i = 0; i < 1000; i++)
        sl_accesslog_write(log, &e);
    assert_int_equal(sl_accesslog_reopen(log), 0);
    sl_accesslog_write(log, &e);
    sl_accesslog_free(log);
}

static void
test_open_failure(void **state)
{
    (void)state;
    errno = 0;
    assert_null(sl_accesslog_new(path_of("no/such/dir/x.log"), NULL));
    assert_int_equal(errno, ENOENT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_absent_fields_are_null),
        cmocka_unit_test(test_number_format),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_long_values_are_cut),
        cmocka_unit_test(test_buffer_flushes_when_full),
        cmocka_unit_test(test_timer_flushes),
        cmocka_unit_test(test_writers_share_a_file),
        cmocka_unit_test(test_reopen_after_rename),
        cmocka_unit_test(test_reopen_failure_keeps_old_file),
        cmocka_unit_test(test_stderr_and_off),
        cmocka_unit_test(test_write_errors_drop_lines),
        cmocka_unit_test(test_open_failure),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
