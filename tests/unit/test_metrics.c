/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Metrics: histogram bucketing on and around bounds, merging of counters
 * written by several worker threads, label escaping, the name registry, and
 * the whole exposition text against tests/unit/golden/metrics.prom (set
 * SL_UPDATE_GOLDEN=1 to rewrite it after an intended change).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/http.h"
#include "sluice/metrics.h"
#include "sluice/store.h"
#include "store_redis_nodes.h"

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

static const double small_buckets[] = { 0.001, 0.01, 0.1 };

static struct sl_metrics *
new_metrics(unsigned nworkers, const double *buckets, size_t nbuckets)
{
    char err[256];
    struct sl_metrics *m = sl_metrics_new(nworkers, buckets, nbuckets, err, sizeof(err));

    if (m == NULL)
        fail_msg("sl_metrics_new: %s", err);
    return m;
}

/* The value of the sample line that starts with `series` (name and labels
 * exactly as rendered); fails the test when there is no such line. */
static double
sample(const char *text, const char *series)
{
    size_t len = strlen(series);

    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');

        if (strncmp(p, series, len) == 0 && p[len] == ' ')
            return strtod(p + len + 1, NULL);
        p = end != NULL ? end + 1 : NULL;
    }
    fail_msg("no sample %s in:\n%s", series, text);
    return NAN;
}

static bool
has_line_prefix(const char *text, const char *prefix)
{
    size_t len = strlen(prefix);

    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, len) == 0)
            return true;
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return false;
}

static char *
render(struct sl_metrics *m)
{
    size_t len = 0;
    char *text = sl_metrics_render(m, &len);

    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* ==== redis nodes ====================================================================== */

/* Runs before anything makes a node: a sluice without a redis store shows no node family. */
static void
test_no_redis_node_families_without_nodes(void **state)
{
    struct sl_metrics *m = new_metrics(1, NULL, 0);
    char *text = render(m);

    (void)state;
    assert_int_equal(sl_redis_nodes_count(), 0);
    assert_null(strstr(text, "sluice_redis_node"));
    free(text);
    sl_metrics_free(m);
}

/* ==== histograms ======================================================================= */

static void
test_bucket_bounds_are_inclusive(void **state)
{
    struct sl_metrics *m = new_metrics(1, small_buckets, 3);
    struct sl_metrics_worker *w = sl_metrics_worker(m, 0);
    unsigned r = sl_metrics_slot(m, SL_METRICS_ROUTE, "r");
    const char *h = "sluice_http_request_duration_seconds";
    char series[256], *text;

    (void)state;
    /* 0, exactly on each bound, one µs above each bound */
    const uint64_t values[] = { 0, 1000, 1001, 10000, 10001, 100000, 100001, 60000000 };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        sl_metrics_request_start(w);
        sl_metrics_request(w, r, SL_METRICS_GET, 200, 0, 0, values[i]);
    }
    text = render(m);
    snprintf(series, sizeof(series), "%s_bucket{route=\"r\",le=\"0.001\"}", h);
    assert_int_equal(sample(text, series), 2); /* 0 and 1000 */
    snprintf(series, sizeof(series), "%s_bucket{route=\"r\",le=\"0.01\"}", h);
    assert_int_equal(sample(text, series), 4); /* + 1001, 10000 */
    snprintf(series, sizeof(series), "%s_bucket{route=\"r\",le=\"0.1\"}", h);
    assert_int_equal(sample(text, series), 6); /* + 10001, 100000 */
    snprintf(series, sizeof(series), "%s_bucket{route=\"r\",le=\"+Inf\"}", h);
    assert_int_equal(sample(text, series), 8);
    snprintf(series, sizeof(series), "%s_count{route=\"r\"}", h);
    assert_int_equal(sample(text, series), 8);
    snprintf(series, sizeof(series), "%s_sum{route=\"r\"}", h);
    assert_float_equal(sample(text, series), 60.222003, 1e-9);
    /* the request counter saw all eight */
    assert_int_equal(
        sample(text, "sluice_http_requests_total{route=\"r\",method=\"GET\",status_class=\"2xx\"}"),
        8);
    free(text);
    sl_metrics_free(m);
}

static void
test_default_buckets(void **state)
{
    struct sl_metrics *m = new_metrics(1, NULL, 0);
    struct sl_metrics_worker *w = sl_metrics_worker(m, 0);
    const char *les[] = { "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                          "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                          "1",      "2.5",     "5",      "10",    "+Inf" };
    char series[256], *text;

    (void)state;
    sl_metrics_store_call(w, SL_METRICS_BACKEND_REDIS, 100);    /* on the first bound */
    sl_metrics_store_call(w, SL_METRICS_BACKEND_REDIS, 250);    /* on the second */
    sl_metrics_store_call(w, SL_METRICS_BACKEND_REDIS, 10000001); /* past the last */
    text = render(m);
    for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        snprintf(series, sizeof(series),
                 "sluice_store_call_duration_seconds_bucket{backend=\"redis\",le=\"%s\"}", les[i]);
        assert_int_equal(sample(text, series), i == 0 ? 1 : i < 16 ? 2 : 3);
    }
    assert_float_equal(sample(text, "sluice_store_call_duration_seconds_sum{backend=\"redis\"}"),
                       10.000351, 1e-9);
    assert_int_equal(sample(text, "sluice_store_call_duration_seconds_count{backend=\"local\"}"),
                     0);
    free(text);
    sl_metrics_free(m);
}

static void
test_bucket_checks(void **state)
{
    char err[256];
    const double not_increasing[] = { 0.1, 0.1 };
    const double zero[] = { 0, 1 };
    const double sub_us[] = { 0.0000011, 0.0000012 }; /* both 1 µs */
    const double nan_bound[] = { 0.1, NAN };
    double many[SL_METRICS_MAX_BUCKETS + 1];

    (void)state;
    for (size_t i = 0; i < SL_METRICS_MAX_BUCKETS + 1; i++)
        many[i] = 0.001 * (double)(i + 1);
    assert_int_equal(sl_metrics_check_buckets(NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(sl_metrics_check_buckets(small_buckets, 3, err, sizeof(err)), 0);
    assert_int_equal(sl_metrics_check_buckets(not_increasing, 2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "increase"));
    assert_int_equal(sl_metrics_check_buckets(zero, 2, err, sizeof(err)), -1);
    assert_int_equal(sl_metrics_check_buckets(sub_us, 2, err, sizeof(err)), -1);
    assert_int_equal(sl_metrics_check_buckets(nan_bound, 2, err, sizeof(err)), -1);
    assert_int_equal(sl_metrics_check_buckets(many, SL_METRICS_MAX_BUCKETS, err, sizeof(err)), 0);
    assert_int_equal(
        sl_metrics_check_buckets(many, SL_METRICS_MAX_BUCKETS + 1, err, sizeof(err)), -1);
    assert_int_equal(sl_metrics_check_buckets(small_buckets, 0, err, sizeof(err)), -1);
    assert_null(sl_metrics_new(2, not_increasing, 2, err, sizeof(err)));
    assert_null(sl_metrics_new(0, NULL, 0, err, sizeof(err)));
}

/* ==== merging ============================================================================ */

#define NTHREADS 4
#define PER_THREAD 200000

struct worker_arg {
    struct sl_metrics *m;
    unsigned index;
    unsigned route, limit, upstream;
};

static void *
hammer(void *p)
{
    struct worker_arg *a = p;
    struct sl_metrics_worker *w = sl_metrics_worker(a->m, a->index);

    sl_metrics_client_open(w);
    for (unsigned i = 0; i < PER_THREAD; i++) {
        sl_metrics_request_start(w);
        sl_metrics_limit(w, a->limit, i % 10 == 0 ? SL_METRICS_LIMITED : SL_METRICS_ADMITTED);
        sl_metrics_upstream_gauge(w, a->upstream, SL_METRICS_UPSTREAM_ACTIVE, 1);
        sl_metrics_upstream_response(w, a->upstream, 200, 500);
        sl_metrics_upstream_gauge(w, a->upstream, SL_METRICS_UPSTREAM_ACTIVE, -1);
        sl_metrics_request(w, a->route, SL_METRICS_POST, i % 10 == 0 ? 429 : 200, 10, 100,
                           (uint64_t)(i % 3) * 1000);
    }
    sl_metrics_store_state(w, a->index == 0 ? SL_METRICS_STATE_FAILING : SL_METRICS_STATE_REDIS);
    return NULL;
}

static void
test_merge_workers(void **state)
{
    struct sl_metrics *m = new_metrics(NTHREADS, small_buckets, 3);
    struct worker_arg args[NTHREADS];
    pthread_t threads[NTHREADS];
    unsigned route = sl_metrics_slot(m, SL_METRICS_ROUTE, "api");
    unsigned limit = sl_metrics_slot(m, SL_METRICS_LIMIT, "per_ip");
    unsigned upstream = sl_metrics_slot(m, SL_METRICS_UPSTREAM, "pool");
    double last = 0;
    char *text;

    (void)state;
    for (unsigned i = 0; i < NTHREADS; i++) {
        args[i] = (struct worker_arg){ m, i, route, limit, upstream };
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
    }
    /* scrape while they run: counters never go backwards */
    for (int i = 0; i < 50; i++) {
        double v;

        text = render(m);
        v = sample(text, "sluice_http_received_bytes_total{route=\"api\"}");
        assert_true(v >= last);
        last = v;
        free(text);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(threads[i], NULL);

    text = render(m);
    assert_int_equal(sample(text, "sluice_http_requests_total{route=\"api\",method=\"POST\","
                                  "status_class=\"2xx\"}"),
                     NTHREADS * PER_THREAD / 10 * 9);
    assert_int_equal(sample(text, "sluice_http_requests_total{route=\"api\",method=\"POST\","
                                  "status_class=\"4xx\"}"),
                     NTHREADS * PER_THREAD / 10);
    assert_int_equal(sample(text, "sluice_http_received_bytes_total{route=\"api\"}"),
                     NTHREADS * PER_THREAD * 10.0);
    assert_int_equal(sample(text, "sluice_http_sent_bytes_total{route=\"api\"}"),
                     NTHREADS * PER_THREAD * 100.0);
    assert_int_equal(sample(text, "sluice_ratelimit_decisions_total{limit=\"per_ip\","
                                  "result=\"limited\"}"),
                     NTHREADS * PER_THREAD / 10);
    assert_int_equal(sample(text, "sluice_ratelimit_decisions_total{limit=\"per_ip\","
                                  "result=\"admitted\"}"),
                     NTHREADS * PER_THREAD / 10 * 9);
    assert_int_equal(sample(text, "sluice_upstream_ttfb_seconds_count{upstream=\"pool\"}"),
                     NTHREADS * PER_THREAD);
    assert_int_equal(
        sample(text, "sluice_upstream_connections{upstream=\"pool\",state=\"active\"}"), 0);
    assert_int_equal(sample(text, "sluice_requests_in_flight"), 0);
    assert_int_equal(sample(text, "sluice_client_connections"), NTHREADS);
    assert_int_equal(sample(text, "sluice_client_connections_accepted_total"), NTHREADS);
    assert_int_equal(sample(text, "sluice_store_state{state=\"failing\"}"), 1);
    assert_int_equal(sample(text, "sluice_store_state{state=\"redis\"}"), NTHREADS - 1);
    assert_int_equal(sample(text, "sluice_store_state{state=\"local\"}"), 0);
    /* the three durations 0, 1000, 2000 µs: thirds (PER_THREAD % 3 == 2) */
    assert_int_equal(sample(text, "sluice_http_request_duration_seconds_bucket{route=\"api\","
                                  "le=\"0.001\"}"),
                     NTHREADS * (PER_THREAD / 3 * 2 + 2));
    free(text);
    sl_metrics_free(m);
}

static void
test_gauges_sum_across_workers(void **state)
{
    struct sl_metrics *m = new_metrics(3, small_buckets, 3);
    unsigned u = sl_metrics_slot(m, SL_METRICS_UPSTREAM, "u");
    char *text;

    (void)state;
    sl_metrics_upstream_gauge(sl_metrics_worker(m, 0), u, SL_METRICS_UPSTREAM_IDLE, 5);
    sl_metrics_upstream_gauge(sl_metrics_worker(m, 1), u, SL_METRICS_UPSTREAM_IDLE, 2);
    sl_metrics_upstream_gauge(sl_metrics_worker(m, 1), u, SL_METRICS_UPSTREAM_IDLE, -3);
    sl_metrics_upstream_gauge(sl_metrics_worker(m, 2), u, SL_METRICS_UPSTREAM_QUEUED, 7);
    sl_metrics_client_open(sl_metrics_worker(m, 2));
    sl_metrics_client_open(sl_metrics_worker(m, 2));
    sl_metrics_client_close(sl_metrics_worker(m, 2));
    sl_metrics_tunnel(sl_metrics_worker(m, 0), 1);
    sl_metrics_tunnel(sl_metrics_worker(m, 1), 1);
    sl_metrics_tunnel(sl_metrics_worker(m, 1), 1);
    sl_metrics_tunnel(sl_metrics_worker(m, 0), -1);
    text = render(m);
    assert_int_equal(sample(text, "sluice_upstream_connections{upstream=\"u\",state=\"idle\"}"),
                     4);
    assert_int_equal(sample(text, "sluice_upstream_queued_requests{upstream=\"u\"}"), 7);
    assert_int_equal(sample(text, "sluice_client_connections"), 1);
    assert_int_equal(sample(text, "sluice_client_connections_accepted_total"), 2);
    /* the workers' gauges add up, whichever worker a tunnel was on */
    assert_int_equal(sample(text, "sluice_tunnels"), 2);
    free(text);
    sl_metrics_free(m);
}

/* ==== names and labels ===================================================================== */

static void
test_label_escaping(void **state)
{
    struct sl_metrics *m = new_metrics(1, small_buckets, 3);
    struct sl_metrics_worker *w = sl_metrics_worker(m, 0);
    unsigned a = sl_metrics_slot(m, SL_METRICS_LIMIT, "back\\slash \"quoted\"\nnext");
    unsigned b = sl_metrics_slot(m, SL_METRICS_LIMIT, "bad \xff\xc0\xaf utf8 \xe2\x82");
    unsigned c = sl_metrics_slot(m, SL_METRICS_LIMIT, "caf\xc3\xa9 \xe2\x82\xac ok");
    char *text;

    (void)state;
    sl_metrics_limit(w, a, SL_METRICS_SKIPPED);
    sl_metrics_limit(w, b, SL_METRICS_SHADOW_LIMITED);
    sl_metrics_limit(w, c, SL_METRICS_STORE_ERROR);
    text = render(m);
    assert_int_equal(sample(text, "sluice_ratelimit_decisions_total{limit=\"back\\\\slash "
                                  "\\\"quoted\\\"\\nnext\",result=\"skipped\"}"),
                     1);
    assert_int_equal(sample(text, "sluice_ratelimit_decisions_total{limit=\"bad "
                                  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd utf8 "
                                  "\xef\xbf\xbd\xef\xbf\xbd\",result=\"shadow_limited\"}"),
                     1);
    assert_int_equal(sample(text, "sluice_ratelimit_decisions_total{limit=\"caf\xc3\xa9 "
                                  "\xe2\x82\xac ok\",result=\"store_error\"}"),
                     1);
    /* no raw newline inside any sample line */
    assert_null(strstr(text, "quoted\\\"\nnext"));
    free(text);
    sl_metrics_free(m);
}

static void
test_long_names_are_cut(void **state)
{
    struct sl_metrics *m = new_metrics(1, small_buckets, 3);
    char name[1000], series[1200], *text;

    (void)state;
    /* 'a' then two-byte characters: byte 256 falls inside one */
    name[0] = 'a';
    for (size_t i = 1; i + 2 < sizeof(name); i += 2)
        memcpy(name + i, "\xc3\xa9", 2);
    name[sizeof(name) - 1] = '\0';
    sl_metrics_slot(m, SL_METRICS_UPSTREAM, name);
    text = render(m);
    memcpy(series, "sluice_requests_shed_total{upstream=\"", 37);
    memcpy(series + 37, name, 255); /* 'a' + 127 whole characters */
    memcpy(series + 37 + 255, "\"}", 3);
    assert_int_equal(sample(text, series), 0);
    free(text);
    sl_metrics_free(m);
}

static void
test_slots(void **state)
{
    struct sl_metrics *m = new_metrics(2, small_buckets, 3);
    struct sl_metrics_worker *w = sl_metrics_worker(m, 1);
    unsigned first, again, other, overflow = 0;
    char name[32], *text;

    (void)state;
    assert_null(sl_metrics_worker(m, 2));
    first = sl_metrics_slot(m, SL_METRICS_ROUTE, "/v1/");
    assert_int_not_equal(first, SL_METRICS_ROUTE_NONE);
    assert_int_equal(sl_metrics_slot(m, SL_METRICS_ROUTE, "(none)"), SL_METRICS_ROUTE_NONE);
    sl_metrics_request_start(w);
    sl_metrics_request(w, first, SL_METRICS_GET, 200, 1, 2, 3);
    /* a "reload": the same name keeps its slot and its counts */
    again = sl_metrics_slot(m, SL_METRICS_ROUTE, "/v1/");
    assert_int_equal(again, first);
    /* each kind has its own names */
    other = sl_metrics_slot(m, SL_METRICS_LIMIT, "/v1/");
    assert_int_equal(other, 0);

    /* fill the route table: past the cap every new name shares "(overflow)" */
    for (unsigned i = 0; i < SL_METRICS_MAX_NAMES + 10; i++) {
        snprintf(name, sizeof(name), "route-%u", i);
        overflow = sl_metrics_slot(m, SL_METRICS_ROUTE, name);
        assert_true(overflow < SL_METRICS_MAX_NAMES);
    }
    assert_int_equal(overflow, SL_METRICS_MAX_NAMES - 1);
    assert_int_equal(sl_metrics_slot(m, SL_METRICS_ROUTE, "yet another"), overflow);
    assert_int_equal(sl_metrics_slot(m, SL_METRICS_ROUTE, "/v1/"), first);
    sl_metrics_request_start(w);
    sl_metrics_request(w, overflow, SL_METRICS_GET, 200, 1, 2, 3);

    /* slots never registered, bad enums and a NULL worker are ignored */
    sl_metrics_limit(w, 5, SL_METRICS_LIMITED);
    sl_metrics_upstream_response(w, 0, 200, 1);
    sl_metrics_upstream_error(NULL, 0, SL_METRICS_UPSTREAM_BROKEN);
    sl_metrics_upstream_retry(w, 0, (enum sl_metrics_retry_reason)99);
    sl_metrics_upstream_retry_refused(NULL, 0);
    sl_metrics_request(NULL, first, SL_METRICS_GET, 200, 1, 2, 3);
    sl_metrics_limit(w, other, (enum sl_metrics_limit_result)99);
    sl_metrics_store_state(w, (enum sl_metrics_store_state)99);

    text = render(m);
    assert_int_equal(sample(text, "sluice_http_requests_total{route=\"/v1/\",method=\"GET\","
                                  "status_class=\"2xx\"}"),
                     1);
    assert_int_equal(sample(text, "sluice_http_requests_total{route=\"(overflow)\",method=\"GET\","
                                  "status_class=\"2xx\"}"),
                     1);
    assert_false(has_line_prefix(text, "sluice_upstream_ttfb_seconds_bucket"));
    free(text);
    sl_metrics_free(m);
}

static void
test_methods_and_classes(void **state)
{
    struct sl_metrics *m = new_metrics(1, small_buckets, 3);
    struct sl_metrics_worker *w = sl_metrics_worker(m, 0);
    char *text;

    (void)state;
    assert_int_equal(sl_metrics_method("GET", 3), SL_METRICS_GET);
    assert_int_equal(sl_metrics_method("OPTIONS", 7), SL_METRICS_OPTIONS);
    assert_int_equal(sl_metrics_method("get", 3), SL_METRICS_OTHER);     /* case-sensitive */
    assert_int_equal(sl_metrics_method("GETX", 4), SL_METRICS_OTHER);
    assert_int_equal(sl_metrics_method("GE", 2), SL_METRICS_OTHER);
    assert_int_equal(sl_metrics_method("PROPFIND", 8), SL_METRICS_OTHER);

    const int statuses[] = { 0, 101, 204, 304, 429, 503, 600, 99 };
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        sl_metrics_request_start(w);
        sl_metrics_request(w, SL_METRICS_ROUTE_NONE, SL_METRICS_OTHER, statuses[i], 0, 0, 0);
    }
    text = render(m);
    const char *prefix =
        "sluice_http_requests_total{route=\"(none)\",method=\"other\",status_class=";
    const struct {
        const char *cls;
        int n;
    } want[] = { { "none", 1 }, { "1xx", 1 }, { "2xx", 1 }, { "3xx", 1 },
                 { "4xx", 1 },  { "5xx", 1 }, { "other", 2 } };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char series[256];

        snprintf(series, sizeof(series), "%s\"%s\"}", prefix, want[i].cls);
        assert_int_equal(sample(text, series), want[i].n);
    }
    free(text);
    sl_metrics_free(m);
}

static void
test_config_loads(void **state)
{
    struct sl_metrics *m = new_metrics(1, small_buckets, 3);
    char *text;

    (void)state;
    sl_metrics_config_loaded(m, false, true, 1500);
    text = render(m);
    assert_int_equal(sample(text, "sluice_config_last_reload_successful"), 1);
    assert_true(sample(text, "sluice_config_load_timestamp_seconds") > 1.7e9);
    assert_float_equal(sample(text, "sluice_config_load_duration_seconds"), 0.0015, 1e-12);
    assert_int_equal(sample(text, "sluice_config_reloads_total{result=\"success\"}"), 0);
    free(text);

    sl_metrics_config_loaded(m, true, false, 99);
    text = render(m);
    assert_int_equal(sample(text, "sluice_config_last_reload_successful"), 0);
    assert_int_equal(sample(text, "sluice_config_reloads_total{result=\"failure\"}"), 1);
    assert_float_equal(sample(text, "sluice_config_load_duration_seconds"), 0.0015, 1e-12);
    free(text);

    sl_metrics_config_loaded(m, true, true, 2000000);
    text = render(m);
    assert_int_equal(sample(text, "sluice_config_last_reload_successful"), 1);
    assert_int_equal(sample(text, "sluice_config_reloads_total{result=\"success\"}"), 1);
    assert_int_equal(sample(text, "sluice_config_load_duration_seconds"), 2);
    free(text);
    sl_metrics_free(m);
}

/* ==== the whole text ========================================================================= */

static char *
golden_path(void)
{
    const char *dir = getenv("SL_SOURCE_DIR");
    char *path;
    size_t size;

#ifdef SL_SOURCE_DIR
    if (dir == NULL)
        dir = SL_SOURCE_DIR;
#endif
    if (dir == NULL)
        dir = ".";
    size = strlen(dir) + 64;
    path = malloc(size);
    snprintf(path, size, "%s/tests/unit/golden/metrics.prom", dir);
    return path;
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long size;

    if (f == NULL)
        fail_msg("cannot open %s (set SL_SOURCE_DIR to the repository root)", path);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)size + 1);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}

/* Replaces the version placeholder so the golden file fits any build. */
static char *
with_version(const char *golden)
{
    const char *at = strstr(golden, "@VERSION@");
    size_t size = strlen(golden) + strlen(SL_VERSION) + 1;
    char *out = malloc(size);

    assert_non_null(at);
    snprintf(out, size, "%.*s%s%s", (int)(at - golden), golden, SL_VERSION, at + 9);
    return out;
}

/*
 * The redis node table is the process's, not m's, and never forgets: it is
 * filled once (golden_scenario runs twice), after m gave it its bounds.
 */
static void
redis_nodes_scenario(void)
{
    static bool is_done;
    struct sl_redis_node *a, *b;

    if (is_done)
        return;
    is_done = true;
    a = sl_redis_node_get("127.0.0.1:7000");
    b = sl_redis_node_get("unix:/tmp/r \"1\"\\.sock");
    sl_redis_node_conn(a, 1);
    sl_redis_node_conn(a, 1);
    sl_redis_node_conn(b, 1);
    sl_redis_node_conn(b, -1);
    sl_redis_node_call(a, 300);
    sl_redis_node_call(a, 5000);
    sl_redis_node_call(a, 800000);
    sl_redis_node_call(b, 40);
    sl_redis_node_error(a, SL_STORE_TIMEOUT, 1);
    sl_redis_node_error(b, SL_STORE_CONNECTION, 3);
    sl_redis_node_error(b, SL_STORE_REPLY, 1);
    sl_redis_node_redirect(a, false);
    sl_redis_node_redirect(a, true);
    sl_redis_node_redirect(a, true);
}

static struct sl_metrics *
golden_scenario(void)
{
    const double buckets[] = { 0.0005, 0.005, 0.05, 0.5 };
    struct sl_metrics *m = new_metrics(2, buckets, 4);
    struct sl_metrics_worker *w0 = sl_metrics_worker(m, 0), *w1 = sl_metrics_worker(m, 1);
    unsigned v1 = sl_metrics_slot(m, SL_METRICS_ROUTE, "/v1/");
    unsigned odd = sl_metrics_slot(m, SL_METRICS_ROUTE, "tenant \"a\\b\"\n");
    unsigned per_ip = sl_metrics_slot(m, SL_METRICS_LIMIT, "per_ip");
    unsigned per_key = sl_metrics_slot(m, SL_METRICS_LIMIT, "per_key");
    unsigned api = sl_metrics_slot(m, SL_METRICS_UPSTREAM, "api");

    sl_metrics_set_process_start(m, 1767323045.678);
    sl_metrics_config_loaded(m, true, false, 0);

    sl_metrics_client_open(w0);
    sl_metrics_client_open(w1);
    sl_metrics_client_open(w1);
    sl_metrics_client_close(w1);
    sl_metrics_request_start(w1); /* still in flight */

    sl_metrics_request_start(w0);
    sl_metrics_limiter(w0, v1, 300);
    sl_metrics_limit(w0, per_ip, SL_METRICS_ADMITTED);
    sl_metrics_limit(w0, per_key, SL_METRICS_SKIPPED);
    sl_metrics_limit_key_error(w0, per_key);
    sl_metrics_store_call(w0, SL_METRICS_BACKEND_REDIS, 250);
    sl_metrics_upstream_response(w0, api, 200, 4000);
    sl_metrics_request(w0, v1, SL_METRICS_GET, 200, 120, 5120, 4800);

    sl_metrics_request_start(w1);
    sl_metrics_limiter(w1, v1, 21000);
    sl_metrics_limit(w1, per_ip, SL_METRICS_LIMITED);
    sl_metrics_store_call(w1, SL_METRICS_BACKEND_REDIS, 20000);
    sl_metrics_store_error(w1, SL_METRICS_STORE_TIMEOUT);
    sl_metrics_request(w1, v1, SL_METRICS_POST, 429, 300, 250, 21500);

    sl_metrics_request_start(w1);
    sl_metrics_upstream_error(w1, api, SL_METRICS_UPSTREAM_CONNECT_ERROR);
    sl_metrics_upstream_response(w1, api, 502, 500);
    sl_metrics_request(w1, odd, SL_METRICS_DELETE, 502, 80, 200, 500);

    sl_metrics_request_start(w0);
    sl_metrics_request(w0, SL_METRICS_ROUTE_NONE, SL_METRICS_OTHER, 404, 60, 180, 2000000);

    /* who calls /v1/: two shown by name, summed over the workers, the rest "other" */
    sl_metrics_route_consumers(m, v1, 2);
    sl_metrics_consumer(w0, v1, SL_LIT("alice"));
    sl_metrics_consumer(w1, v1, SL_LIT("alice"));
    sl_metrics_consumer(w1, v1, SL_LIT("bob \"b\""));
    sl_metrics_consumer(w1, v1, SL_LIT("bob \"b\""));
    sl_metrics_consumer(w0, v1, SL_LIT("bob \"b\""));
    sl_metrics_consumer(w0, v1, SL_LIT("carol"));
    sl_metrics_consumer(w0, odd, SL_LIT("ignored: not a counted route"));

    sl_metrics_store_reconnect(w1);
    sl_metrics_store_noscript(w1);
    sl_metrics_local_store_evictions(w0, 2);
    sl_metrics_local_store_evictions(w1, 3);
    sl_metrics_store_state(w0, SL_METRICS_STATE_REDIS);
    sl_metrics_store_state(w1, SL_METRICS_STATE_LOCAL_FALLBACK);
    sl_metrics_upstream_gauge(w0, api, SL_METRICS_UPSTREAM_IDLE, 3);
    sl_metrics_upstream_gauge(w1, api, SL_METRICS_UPSTREAM_ACTIVE, 1);
    sl_metrics_upstream_gauge(w1, api, SL_METRICS_UPSTREAM_QUEUED, 2);
    sl_metrics_shed(w1, api);
    sl_metrics_upstream_retry(w0, api, SL_METRICS_RETRY_RESET);
    sl_metrics_upstream_retry(w1, api, SL_METRICS_RETRY_RESET);
    sl_metrics_upstream_retry(w1, api, SL_METRICS_RETRY_503);
    sl_metrics_upstream_retry_refused(w1, api);
    redis_nodes_scenario();
    return m;
}

static void
test_golden_exposition(void **state)
{
    struct sl_metrics *m = golden_scenario();
    char *path = golden_path(), *text = render(m);

    (void)state;
    if (getenv("SL_UPDATE_GOLDEN") != NULL) {
        const char *at = strstr(text, SL_VERSION "\"}");
        FILE *f = fopen(path, "wb");

        assert_non_null(f);
        assert_non_null(at);
        fprintf(f, "%.*s@VERSION@%s", (int)(at - text), text, at + strlen(SL_VERSION));
        fclose(f);
    }
    char *golden = read_file(path), *expected = with_version(golden);
    if (strcmp(expected, text) != 0) {
        fprintf(stderr, "--- rendered:\n%s", text);
        fail_msg("exposition differs from %s", path);
    }
    free(expected);
    free(golden);
    free(text);
    free(path);
    sl_metrics_free(m);
}

/* promtool ships with the prometheus package; the README's test command installs it. */
static void
test_promtool_accepts(void **state)
{
    struct sl_metrics *m = golden_scenario();
    char file[] = "/tmp/sl-metrics-XXXXXX", cmd[128];
    size_t len;
    char *text = sl_metrics_render(m, &len);
    int fd = mkstemp(file), status;

    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        fail_msg("promtool not found: apt-get install prometheus");
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", file);
    status = system(cmd);
    unlink(file);
    assert_int_equal(status, 0);
    free(text);
    sl_metrics_free(m);
}

/* Runs after the golden scenario: the nodes' families, summed, escaped, bucketed. */
static void
test_redis_node_families(void **state)
{
    struct sl_metrics *m = golden_scenario();
    const char *odd = "node=\"unix:/tmp/r \\\"1\\\"\\\\.sock\"";
    char series[256], *text = render(m);

    (void)state;
    assert_int_equal(sample(text, "sluice_redis_node_up{node=\"127.0.0.1:7000\"}"), 2);
    assert_int_equal(sample(text, "sluice_redis_node_calls_total{node=\"127.0.0.1:7000\"}"), 3);
    assert_int_equal(sample(text, "sluice_redis_node_redirects_total{node=\"127.0.0.1:7000\","
                                  "kind=\"ask\"}"),
                     2);
    /* the bounds of the metrics that were made before the first node */
    assert_int_equal(sample(text, "sluice_redis_node_call_duration_seconds_bucket{node=\""
                                  "127.0.0.1:7000\",le=\"0.005\"}"),
                     2);
    assert_int_equal(sample(text, "sluice_redis_node_call_duration_seconds_count{node=\""
                                  "127.0.0.1:7000\"}"),
                     3);
    assert_float_equal(sample(text, "sluice_redis_node_call_duration_seconds_sum{node=\""
                                    "127.0.0.1:7000\"}"),
                       0.8053, 1e-9);
    snprintf(series, sizeof(series), "sluice_redis_node_up{%s}", odd);
    assert_int_equal(sample(text, series), 0);
    snprintf(series, sizeof(series), "sluice_redis_node_errors_total{%s,kind=\"connection\"}",
             odd);
    assert_int_equal(sample(text, series), 3);
    free(text);
    sl_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_redis_node_families_without_nodes),
        cmocka_unit_test(test_bucket_bounds_are_inclusive),
        cmocka_unit_test(test_default_buckets),
        cmocka_unit_test(test_bucket_checks),
        cmocka_unit_test(test_merge_workers),
        cmocka_unit_test(test_gauges_sum_across_workers),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_long_names_are_cut),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_methods_and_classes),
        cmocka_unit_test(test_config_loads),
        cmocka_unit_test(test_golden_exposition),
        cmocka_unit_test(test_promtool_accepts),
        cmocka_unit_test(test_redis_node_families),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
