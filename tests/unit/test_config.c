/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Unit tests for the config loader: good files walked into structs with
 * their defaults, one bad fixture per kind of error with the exact
 * "file:line: message", the sandbox, and the duration and size parsers.
 * Fixtures live in tests/unit/conf/; they are found through SL_SOURCE_DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/config.h"

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

static char *
source_path(const char *rel)
{
    const char *top = getenv("SL_SOURCE_DIR");
    size_t n;
    char *path;

    if (top == NULL || *top == '\0')
        top = SL_SOURCE_DIR;
    n = strlen(top) + 1 + strlen(rel) + 1;
    path = malloc(n);
    assert_non_null(path);
    snprintf(path, n, "%s/%s", top, rel);
    return path;
}

static char *
fixture(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/unit/conf/%s", name);
    return source_path(rel);
}

static struct sl_config *
load_ok(const char *path)
{
    char *errors = (char *)"unset";
    struct sl_config *cfg = sl_config_load(path, &errors);

    if (cfg == NULL)
        fail_msg("%s should load, got:\n%s", path, errors ? errors : "(no errors)");
    assert_null(errors);
    return cfg;
}

static struct sl_config *
load_fixture(const char *name)
{
    char *path = fixture(name);
    struct sl_config *cfg = load_ok(path);
    free(path);
    return cfg;
}

static size_t
count_lines(const char *s)
{
    size_t n = 1;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* True when some line of `errors` is "<path>:<line>: ..." and contains `phrase`. */
static bool
has_error(const char *errors, const char *path, int line, const char *phrase)
{
    char prefix[PATH_MAX + 32];
    const char *p = errors;

    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len >= strlen(prefix) && strncmp(p, prefix, strlen(prefix)) == 0) {
            char *copy = strndup(p, len);
            bool found = strstr(copy, phrase) != NULL;
            free(copy);
            if (found)
                return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* Loads `path`, which must fail with exactly `nerrors` errors, one of them the given one. */
static void
expect_errors(const char *path, size_t nerrors, int line, const char *phrase)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_config_load(path, &errors);

    if (cfg != NULL) {
        sl_config_free(cfg);
        fail_msg("%s should not load", path);
    }
    assert_non_null(errors);
    if (!has_error(errors, path, line, phrase))
        fail_msg("%s: expected line %d with \"%s\", got:\n%s", path, line, phrase, errors);
    if (nerrors != 0 && count_lines(errors) != nerrors)
        fail_msg("%s: expected %zu errors, got:\n%s", path, nerrors, errors);
    free(errors);
}

/* ------------------------------------------------------------------------ */

/* full.conf sets every key; these read it back in three parts. */
static void
test_full_top(void **state)
{
    struct sl_config *cfg = load_fixture("full.conf");
    (void)state;

    assert_non_null(strstr(cfg->path, "tests/unit/conf/full.conf"));
    assert_int_equal(cfg->nlisten, 4);
    assert_string_equal(cfg->listen[0].text, "127.0.0.1:8080");
    assert_false(cfg->listen[0].is_proxy_protocol);
    assert_string_equal(cfg->listen[1].text, "[::1]:8081");
    assert_string_equal(cfg->listen[2].text, "127.0.0.1:8082");
    assert_true(cfg->listen[2].is_proxy_protocol);
    assert_false(cfg->listen[2].is_unix);
    assert_string_equal(cfg->listen[3].text, "unix:/run/sluice/sluice.sock");
    assert_true(cfg->listen[3].is_unix);
    assert_true(cfg->listen[3].has_mode);
    assert_int_equal(cfg->listen[3].mode, 0660);
    assert_int_equal(cfg->listen[3].ss.ss_family, AF_UNIX);
    assert_true(cfg->has_admin);
    assert_string_equal(cfg->admin.text, "127.0.0.1:9911");
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->ntrusted_proxies, 3);
    assert_int_equal(cfg->trusted_proxies[0].prefix, 8);
    assert_int_equal(cfg->trusted_proxies[1].prefix, 32);
    assert_int_equal(cfg->trusted_proxies[2].prefix, 8);
    assert_int_equal(cfg->shutdown_timeout_ms, 90000);
    assert_string_equal(cfg->access_log, "/var/log/sluice/access.log");
    assert_string_equal(cfg->error_log, "/var/log/sluice/error.log");
    assert_string_equal(cfg->log_level, "debug");
    assert_string_equal(cfg->pidfile, "/run/sluice.pid");

    assert_int_equal(cfg->client.header_timeout_ms, 5000);
    assert_int_equal(cfg->client.body_timeout_ms, 15000);
    assert_int_equal(cfg->client.idle_timeout_ms, 120000);
    assert_int_equal(cfg->client.max_header_size, 32768);
    assert_int_equal(cfg->client.max_uri_size, 4096);
    assert_int_equal(cfg->client.max_headers, 50);
    assert_int_equal(cfg->client.max_body_size, 10 << 20);
    assert_int_equal(cfg->client.max_connections, 500);

    assert_int_equal(cfg->store.kind, SL_STORE_REDIS);
    assert_string_equal(cfg->store.url, "redis://user:secret@10.1.2.3:6380/2");
    assert_int_equal(cfg->store.timeout_ms, 50);
    assert_int_equal(cfg->store.on_error, SL_ON_ERROR_DENY);
    assert_string_equal(cfg->store.prefix, "edge:prod");
    assert_int_equal(cfg->store.max_keys, 1000);
    assert_int_equal(cfg->store.lease_ttl_ms, 400);
    assert_true(cfg->store.lease_max_share == 0.25);
    assert_int_equal(cfg->store.idempotency_memory, 32u << 20);

    assert_int_equal(cfg->slow_request_ms, 750);
    assert_int_equal(cfg->nmetrics_buckets, 7);
    assert_non_null(cfg->metrics_buckets);
    assert_true(cfg->metrics_buckets[0] == 0.0005);
    assert_true(cfg->metrics_buckets[2] == 0.01);
    assert_true(cfg->metrics_buckets[6] == 60);

    sl_config_free(cfg);
}

static void
test_full_upstreams_limits(void **state)
{
    struct sl_config *cfg = load_fixture("full.conf");
    const struct sl_limit_conf *l;
    (void)state;

    /* upstreams sorted by name */
    assert_int_equal(cfg->nupstreams, 2);
    assert_string_equal(cfg->upstreams[0].name, "api");
    assert_string_equal(cfg->upstreams[1].name, "web");
    assert_int_equal(cfg->upstreams[0].nservers, 2);
    assert_string_equal(cfg->upstreams[0].servers[1].text, "127.0.0.1:9001");
    assert_int_equal(cfg->upstreams[0].keepalive, 8);
    assert_int_equal(cfg->upstreams[0].connect_timeout_ms, 250);
    assert_int_equal(cfg->upstreams[0].timeout_ms, 10000);
    assert_int_equal(cfg->upstreams[0].idle_timeout_ms, 30000);
    assert_int_equal(cfg->upstreams[0].max_inflight, 100);
    assert_int_equal(cfg->upstreams[0].queue, 0);
    assert_int_equal(cfg->upstreams[0].retry.retries, 2);
    assert_int_equal(cfg->upstreams[0].retry.on, SL_RETRY_ON_RESET | SL_RETRY_ON_503);
    assert_int_equal(cfg->upstreams[0].retry.budget_percent, 50);
    assert_int_equal(cfg->upstreams[0].retry.budget_min, 1);
    assert_int_equal(cfg->upstreams[0].line, 34);
    assert_int_equal(cfg->upstreams[1].line, 33);
    assert_ptr_equal(cfg->upstreams[0].file, cfg->path);

    /* limits sorted by name: combo everyone per_ip per_key tenant */
    assert_int_equal(cfg->nlimits, 5);
    assert_string_equal(cfg->limits[0].name, "combo");
    assert_string_equal(cfg->limits[1].name, "everyone");
    assert_string_equal(cfg->limits[2].name, "per_ip");
    assert_string_equal(cfg->limits[3].name, "per_key");
    assert_string_equal(cfg->limits[4].name, "tenant");

    l = &cfg->limits[0];
    assert_int_equal(l->nparts, 5);
    assert_int_equal(l->parts[0].kind, SL_KEY_IP);
    assert_null(l->parts[0].name);
    assert_int_equal(l->parts[1].kind, SL_KEY_METHOD);
    assert_int_equal(l->parts[2].kind, SL_KEY_PATH);
    assert_int_equal(l->parts[3].kind, SL_KEY_QUERY);
    assert_string_equal(l->parts[3].name, "token");
    assert_int_equal(l->parts[3].name_len, 5);
    assert_int_equal(l->parts[4].kind, SL_KEY_COOKIE);
    assert_string_equal(l->parts[4].name, "session");
    assert_true(l->rate == 5 && l->burst == 5 && l->cost == 1);
    assert_int_equal(l->per_ms, 1000);
    assert_int_equal(l->line, 48);

    l = &cfg->limits[1];
    assert_int_equal(l->parts[0].kind, SL_KEY_GLOBAL);
    assert_int_equal(l->per_ms, 3600000);
    assert_true(l->burst == 5000);

    l = &cfg->limits[3];
    assert_int_equal(l->nparts, 1);
    assert_int_equal(l->parts[0].kind, SL_KEY_HEADER);
    assert_string_equal(l->parts[0].name, "x-api-key"); /* lower-cased */
    assert_int_equal(l->parts[0].name_len, 9);
    assert_true(l->rate == 6000 && l->burst == 6000 && l->cost == 2);
    assert_int_equal(l->per_ms, 60000);
    assert_true(l->is_shadow);
    assert_false(l->is_cost_function);

    l = &cfg->limits[4];
    assert_int_equal(l->nparts, 1);
    assert_int_equal(l->parts[0].kind, SL_KEY_FUNCTION);
    assert_true(l->is_cost_function);
    assert_false(l->is_shadow);
    assert_int_equal(l->line, 50);

    sl_config_free(cfg);
}

static void
test_full_routes(void **state)
{
    struct sl_config *cfg = load_fixture("full.conf");
    const struct sl_route_conf *r;
    const struct sl_idempotency_conf *ic;
    (void)state;

    /* routes in written order, indexes into the sorted arrays */
    assert_int_equal(cfg->nroutes, 4);
    r = &cfg->routes[0];
    assert_string_equal(r->host, "api.example.com");
    assert_string_equal(r->path, "/v1/");
    assert_int_equal(r->path_len, 4);
    assert_int_equal(r->upstream, 0);
    assert_int_equal(r->nlimits, 2);
    assert_int_equal(r->limits[0], 3); /* per_key, as written */
    assert_int_equal(r->limits[1], 2); /* per_ip */
    assert_false(r->has_ratelimit_headers);
    assert_true(r->has_server_timing);
    r = &cfg->routes[1];
    assert_null(r->host);
    assert_int_equal(r->nlimits, 1);
    assert_int_equal(r->limits[0], 4);
    assert_true(r->has_ratelimit_headers);
    assert_false(r->has_server_timing);
    assert_int_equal(r->nheaders, 0);
    assert_false(sl_route_has_lifecycle(r));
    r = &cfg->routes[2];
    /* headers sorted by lower-cased name; dates in UTC seconds */
    assert_int_equal(r->nheaders, 2);
    assert_string_equal(r->headers[0].name, "accept");
    assert_string_equal(r->headers[1].name, "api-version");
    assert_string_equal(r->headers[1].value, "2024-06-01");
    assert_true(r->lifecycle.has_deprecation && r->lifecycle.has_sunset);
    assert_int_equal(r->lifecycle.deprecation_s, 1772323200);
    assert_int_equal(r->lifecycle.sunset_s, 1788220800);
    assert_string_equal(r->lifecycle.link, "https://example.com/migrate");
    assert_int_equal(r->lifecycle.nbrownouts, 2);
    assert_true(r->lifecycle.brownouts[0].from_s < r->lifecycle.brownouts[1].from_s);
    assert_int_equal(r->lifecycle.consumer.kind, SL_KEY_HEADER);
    assert_string_equal(r->lifecycle.consumer.name, "x-client-id");
    assert_int_equal(r->lifecycle.consumer_top, 5);
    r = &cfg->routes[3];
    assert_string_equal(r->path, "/");
    assert_int_equal(r->upstream, 1);
    assert_int_equal(r->nlimits, 3);
    assert_int_equal(r->limits[0], 2);
    assert_int_equal(r->limits[1], 0);
    assert_int_equal(r->limits[2], 1);
    ic = r->idempotency;
    assert_non_null(ic);
    assert_int_equal(ic->nmethods, 2);
    assert_string_equal(ic->methods[1], "PUT");
    assert_true(ic->is_required);
    assert_int_equal(ic->ttl_ms, 3600000);
    assert_int_equal(ic->lock_ms, 120000);
    assert_int_equal(ic->max_response, 256 * 1024);
    assert_int_equal(ic->scope.kind, SL_KEY_HEADER);
    assert_string_equal(ic->scope.name, "authorization");
    assert_null(cfg->routes[0].idempotency);

    sl_config_free(cfg);
}

static void
test_minimal_defaults(void **state)
{
    struct sl_config *cfg = load_fixture("minimal.conf");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    (void)state;

    assert_int_equal(cfg->nlisten, 1);
    assert_true(cfg->has_admin);
    assert_string_equal(cfg->admin.text, "127.0.0.1:9901");
    assert_int_equal(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_int_equal(cfg->ntrusted_proxies, 0);
    assert_int_equal(cfg->shutdown_timeout_ms, 30000);
    assert_string_equal(cfg->access_log, "stderr");
    assert_string_equal(cfg->error_log, "stderr");
    assert_string_equal(cfg->log_level, "info");
    assert_null(cfg->pidfile);

    assert_int_equal(cfg->client.header_timeout_ms, 10000);
    assert_int_equal(cfg->client.body_timeout_ms, 30000);
    assert_int_equal(cfg->client.idle_timeout_ms, 60000);
    assert_int_equal(cfg->client.max_header_size, 16384);
    assert_int_equal(cfg->client.max_uri_size, 8192);
    assert_int_equal(cfg->client.max_headers, 100);
    assert_int_equal(cfg->client.max_body_size, 0);
    assert_int_equal(cfg->client.max_connections, 10000);
    assert_int_equal(cfg->client.request_timeout_ms, 0); /* off */

    assert_int_equal(cfg->store.kind, SL_STORE_LOCAL);
    assert_null(cfg->store.url);
    assert_int_equal(cfg->store.timeout_ms, 20);
    assert_int_equal(cfg->store.on_error, SL_ON_ERROR_ALLOW);
    assert_string_equal(cfg->store.prefix, "sluice");
    assert_int_equal(cfg->store.max_keys, 2000000);
    assert_int_equal(cfg->store.lease_ttl_ms, 250);
    assert_true(cfg->store.lease_max_share == 0.1);

    assert_int_equal(cfg->nupstreams, 1);
    assert_int_equal(cfg->upstreams[0].keepalive, 64);
    assert_int_equal(cfg->upstreams[0].connect_timeout_ms, 1000);
    assert_int_equal(cfg->upstreams[0].timeout_ms, 30000);
    assert_int_equal(cfg->upstreams[0].idle_timeout_ms, 60000);
    assert_int_equal(cfg->upstreams[0].max_inflight, 1024);
    assert_int_equal(cfg->upstreams[0].queue, 4096);
    assert_int_equal(cfg->upstreams[0].tunnel_idle_timeout_ms, 3600000);

    assert_int_equal(cfg->nlimits, 1);
    assert_true(cfg->limits[0].rate == 10);
    assert_true(cfg->limits[0].burst == 10); /* burst defaults to rate */
    assert_true(cfg->limits[0].cost == 1);
    assert_int_equal(cfg->limits[0].per_ms, 1000);
    assert_false(cfg->limits[0].is_shadow);
    assert_false(cfg->limits[0].is_cost_function);

    assert_int_equal(cfg->nroutes, 1);
    assert_null(cfg->routes[0].host);
    assert_true(cfg->routes[0].has_ratelimit_headers);
    assert_false(cfg->routes[0].has_server_timing);
    assert_true(cfg->routes[0].has_websocket);

    assert_int_equal(cfg->slow_request_ms, 0);
    assert_int_equal(cfg->path_encoded_slash, SL_PATH_SLASH_KEEP);
    assert_int_equal(cfg->path_forward, SL_PATH_FORWARD_NORMALIZED);
    assert_int_equal(cfg->lua_max_value_size, 1024);
    assert_null(cfg->metrics_buckets);
    assert_int_equal(cfg->nmetrics_buckets, 0);
    sl_config_free(cfg);
}

static void
test_program(void **state)
{
    struct sl_config *cfg = load_fixture("program.conf");
    (void)state;

    assert_false(cfg->has_admin);
    assert_int_equal(cfg->upstreams[0].nservers, 3);
    assert_string_equal(cfg->upstreams[0].servers[2].text, "127.0.0.1:9002");
    assert_int_equal(cfg->nroutes, 4);
    assert_string_equal(cfg->routes[0].path, "/a/");
    assert_string_equal(cfg->routes[3].path, "/");
    assert_string_equal(cfg->limits[0].name, "big");
    assert_true(cfg->limits[0].burst == 200);
    assert_int_equal(cfg->routes[3].limits[0], 0);
    sl_config_free(cfg);
}

/* The text is kept byte for byte, so lua_rt loads exactly what was checked. */
static void
test_source_kept(void **state)
{
    char *path = fixture("full.conf");
    struct sl_config *cfg = load_ok(path);
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n;
    (void)state;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(cfg->source_len, n);
    assert_memory_equal(cfg->source, buf, n);
    assert_int_equal(cfg->source[n], '\0');
    assert_string_equal(cfg->path, path);
    sl_config_free(cfg);
    free(path);
}

static void
test_shipped_confs(void **state)
{
    char *path = source_path("conf/sluice.conf");
    struct sl_config *cfg = load_ok(path);
    (void)state;

    assert_string_equal(cfg->listen[0].text, "127.0.0.1:8080");
    assert_string_equal(cfg->admin.text, "127.0.0.1:9901");
    assert_int_equal(cfg->store.kind, SL_STORE_LOCAL);
    assert_int_equal(cfg->nroutes, 1);
    assert_string_equal(cfg->routes[0].path, "/");
    assert_string_equal(cfg->upstreams[cfg->routes[0].upstream].name, "demo");
    assert_string_equal(cfg->upstreams[0].servers[0].text, "127.0.0.1:9000");
    assert_int_equal(cfg->routes[0].nlimits, 1);
    /* small enough that 20 quick requests see 429s */
    assert_true(cfg->limits[cfg->routes[0].limits[0]].burst < 20);
    sl_config_free(cfg);
    free(path);

    path = source_path("conf/redis.conf");
    cfg = load_ok(path);
    assert_int_equal(cfg->store.kind, SL_STORE_REDIS);
    assert_string_equal(cfg->store.url, "redis://127.0.0.1:6379/0");
    assert_int_equal(cfg->store.on_error, SL_ON_ERROR_LOCAL);
    assert_true(cfg->nroutes >= 2);
    {
        bool has_function = false;
        for (size_t i = 0; i < cfg->nlimits; i++)
            has_function = has_function || cfg->limits[i].parts[0].kind == SL_KEY_FUNCTION;
        assert_true(has_function);
    }
    sl_config_free(cfg);
    free(path);
}

/* ------------------------------------------------------------------------ */
/* One fixture per kind of error                                            */
/* ------------------------------------------------------------------------ */

struct bad_case {
    const char *file;
    size_t nerrors; /* 0: don't check */
    int line;
    const char *phrase;
};

static const struct bad_case bad_cases[] = {
    { "bad_syntax.conf", 1, 5, "'}' expected (to close '{' at line 3) near '{'" },
    { "bad_runtime.conf", 1, 3, "attempt to index local 'ports' (a nil value)" },
    { "bad_error_call.conf", 1, 5, "refusing to load on purpose" },
    { "bad_loop.conf", 1, 5, "conf still running after 10 million Lua instructions" },
    { "bad_pcall_loop.conf", 1, 4, "conf still running after" },
    { "bad_memory.conf", 1, 2, "conf uses more than 64 MiB of memory" },
    { "bad_sandbox.conf", 1, 4, "undefined variable \"os\"" },
    { "bad_undefined.conf", 1, 4, "undefined variable \"tennant_key\"" },
    { "bad_unknown_top.conf", 1, 4, "unknown key \"tiemout\"" },
    /* the conf's bytes come back escaped, the message one line */
    { "bad_unknown_bytes.conf", 1, 4, "unknown key \"\\xff\\xfex\\x0a\" in store" },
    { "bad_unknown_key.conf", 1, 5, "unknown key \"tiemout\" in upstream \"api\"" },
    { "bad_unknown_keys.conf", 4, 2, "unknown key \"max_body\" in client" },
    { "bad_unknown_keys.conf", 4, 5, "unknown key \"ttl\" in store" },
    { "bad_unknown_keys.conf", 4, 10, "unknown key \"brust\" in limit \"per_ip\"" },
    { "bad_unknown_keys.conf", 4, 14, "unknown key \"ratelimit_header\" in route 1" },
    { "bad_type.conf", 1, 4, "limit \"api\": rate: expected a number, got string \"5\"" },
    { "bad_duration.conf", 1, 7,
      "limit \"api\": per \"10x\": bad duration (use ms, s, m, h)" },
    { "bad_size.conf", 1, 3, "client: max_header_size \"16q\": bad size" },
    { "bad_range.conf", 1, 2, "client: max_headers 0: must be between 1 and 10000" },
    { "bad_uri_size.conf", 1, 4, "client: max_uri_size 8k is larger than max_header_size 4k" },
    { "bad_address.conf", 1, 3, "listen[2] \"localhost:http\": bad address" },
    { "bad_server.conf", 1, 4, "upstream \"api\": servers[2] \"10.0.0.1:99999\": bad address" },
    { "bad_server_name.conf", 2, 4, "upstream \"api\": servers[2] \"api.default.svc:8080\": listed twice" },
    { "bad_server_name.conf", 2, 5, "upstream \"web\": servers \"web_app.local:80\": bad address" },
    { "bad_resolver.conf", 3, 3, "resolver: servers[1] \"dns.local:53\": bad address" },
    { "bad_resolver.conf", 3, 3, "resolver: valid \"10ms\": must be between 1s and 24h" },
    { "bad_resolver.conf", 3, 4, "resolver: timeout \"2m\": must be between 100ms and 1m" },
    { "bad_cidr.conf", 1, 2, "trusted_proxies[2] \"10.0.0.0/33\": bad address or CIDR" },
    { "bad_rate.conf", 1, 4, "limit \"per_ip\": rate 0: must be more than 0" },
    { "bad_cache.conf", 4, 4, "route 1: max_object is more than 1/64 of max_memory" },
    { "bad_cache.conf", 4, 5, "unknown key \"tll\" in route 2" },
    { "bad_cache.conf", 4, 5, "ttl \"soon\"" },
    { "bad_cache.conf", 4, 6, "cache: expected a table" },
    { "bad_delay.conf", 2, 2, "max_delayed 2000000: must be between 0 and 1000000" },
    { "bad_delay.conf", 2, 4, "limit \"per_ip\": delay \"2m\": must be between 0s and 1m" },
    { "bad_lease.conf", 4, 2, "ttl \"5ms\": must be between 10ms and 10s" },
    { "bad_lease.conf", 4, 2, "max_share 1.5: must be" },
    { "bad_lease.conf", 4, 2, "size" },
    { "bad_lease.conf", 4, 4, "limit \"per_ip\": lease" },
    { "bad_burst.conf", 1, 4, "limit \"per_ip\": burst 0.5: must be at least 1" },
    { "bad_burst_default.conf", 1, 4, "limit \"slow\": rate 0.5: burst defaults to rate" },
    { "bad_cost.conf", 1, 4, "limit \"per_ip\": cost 0: must be more than 0" },
    { "bad_cost_burst.conf", 1, 5, "limit \"upload\": cost 20 is more than burst 10" },
    { "bad_selector.conf", 1, 4,
      "limit \"per_key\": key \"hdr:X-API-Key\": unknown key selector" },
    { "bad_composite.conf", 1, 5, "key[2]: a key function cannot be part of a composite key" },
    { "bad_no_key.conf", 1, 4, "limit \"nokey\": no key" },
    { "bad_route_upstream.conf", 1, 5, "route 2: upstream \"api2\": no such upstream" },
    { "bad_route_limit.conf", 1, 6, "route 1: limits[2] \"per_ipp\": no such limit" },
    { "bad_route_no_path.conf", 1, 5, "route 2: no path" },
    { "bad_route_path.conf", 1, 4, "route 1: path \"v1/\": must start with /" },
    { "bad_route_path_normal.conf", 3, 4, "route 1: path \"/v1//\": not a normalized path "
                                          "(requests are matched after normalization; "
                                          "write \"/v1/\")" },
    { "bad_path_options.conf", 2, 2, "path_encoded_slash \"drop\": unknown action (use "
                                     "\"keep\" or \"reject\")" },
    { "bad_route_dup.conf", 1, 7, "route 4: path \"/v1/\" on host \"a.example\": same host "
                                  "and path as route 1" },
    { "bad_no_routes.conf", 1, 3, "no routes" },
    { "bad_no_listen.conf", 1, 1, "no listen address" },
    { "bad_redis_no_url.conf", 1, 3, "store: kind \"redis\" needs a url" },
    { "bad_redis_url.conf", 1, 3, "store: url \"redis:/127.0.0.1:6379\": bad url" },
    { "bad_redis_cluster.conf", 1, 3, "store: url \"redis-cluster://:********@10.0.0.1:7000,"
                                      "10.0.0.2:7001/3\": database 3: Redis Cluster has only "
                                      "db 0" },
    { "bad_on_error.conf", 1, 2, "store: on_error \"retry\": unknown policy" },
    { "bad_no_servers.conf", 1, 3, "upstream \"api\": no servers" },
    { "bad_unused_upstream.conf", 1, 4, "upstream \"old\" is not used by any route" },
    { "bad_workers.conf", 1, 2, "workers \"many\": use \"auto\" or a whole number from 1 to 256" },
    { "bad_admin.conf", 1, 2,
      "admin: expected \"host:port\", { listen = \"host:port\", token_file = ... } or false, "
      "got boolean true" },
    { "bad_admin_same.conf", 1, 1, "listen \"127.0.0.1:9901\": same address as the default admin" },
    { "bad_admin_wildcard.conf", 1, 2,
      "admin \"127.0.0.1:8080\": same port as, and overlapping with, listen \"0.0.0.0:8080\"" },
    { "bad_admin_token.conf", 1, 3,
      "admin: token_file \"/nonexistent/sluice-admin.token\": cannot read it" },
    { "bad_log_level.conf", 1, 2, "log_level \"verbose\": unknown log level" },
    { "bad_list.conf", 1, 5, "routes: unexpected key \"default\"" },
    { "bad_slow_request.conf", 1, 4, "slow_request \"500\": bad duration (use ms, s, m, h)" },
    { "bad_buckets_order.conf", 1, 8,
      "metrics: buckets[4]: histogram bucket 0.0005: bounds must increase" },
    { "bad_buckets_type.conf", 1, 5,
      "metrics: buckets[2]: expected a number of seconds, got string \"250us\"" },
    { "bad_metrics_key.conf", 1, 5, "unknown key \"bucket\" in metrics" },
    /* every error of a file is reported, in line order */
    { "bad_many.conf", 6, 2, "listen \"127.0.0.1:80800\": bad address" },
    { "bad_many.conf", 6, 3, "workers 0" },
    { "bad_many.conf", 6, 5, "upstream \"api\": timeout \"30\": bad duration" },
    { "bad_many.conf", 6, 8, "limit \"a\": rate -1: must be more than 0" },
    { "bad_many.conf", 6, 9, "limit \"b\": per \"1 s\": bad duration" },
    { "bad_many.conf", 6, 12, "route 1: limits[3] \"c\": no such limit" },
};

static void
test_bad_fixture(void **state)
{
    const struct bad_case *c = *state;
    char *path = fixture(c->file);

    expect_errors(path, c->nerrors, c->line, c->phrase);
    free(path);
}

static void
test_errors_in_line_order(void **state)
{
    char *path = fixture("bad_many.conf");
    char *errors = NULL;
    int last = 0;
    (void)state;

    assert_null(sl_config_load(path, &errors));
    assert_non_null(errors);
    for (const char *p = errors; p != NULL; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        int line;
        assert_int_equal(strncmp(p, path, strlen(path)), 0);
        line = (int)strtol(p + strlen(path) + 1, NULL, 10);
        assert_true(line >= last);
        last = line;
    }
    assert_int_equal(errors[strlen(errors) - 1] != '\n', 1);
    free(errors);
    free(path);
}

static void
test_missing_file(void **state)
{
    char *errors = NULL;
    (void)state;

    assert_null(sl_config_load("/nonexistent/sluice.conf", &errors));
    assert_string_equal(errors, "/nonexistent/sluice.conf: cannot open: No such file or directory");
    free(errors);
}

/* ------------------------------------------------------------------------ */
/* Inline confs written to a scratch directory                              */
/* ------------------------------------------------------------------------ */

static char scratch[PATH_MAX];

static int
make_scratch(void **state)
{
    /* a long directory name: LuaJIT abbreviates chunk names past 60 bytes,
     * and our messages must still carry the full path */
    (void)state;
    snprintf(scratch, sizeof(scratch), "/tmp/sluice-test-config-XXXXXX");
    if (mkdtemp(scratch) == NULL)
        return -1;
    strncat(scratch, "/a-rather-long-directory-name-to-exceed-sixty-bytes",
            sizeof(scratch) - strlen(scratch) - 1);
    return mkdir(scratch, 0700);
}

static int
remove_scratch(void **state)
{
    char path[PATH_MAX + 16];
    (void)state;
    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    unlink(path);
    rmdir(scratch);
    *strrchr(scratch, '/') = '\0';
    rmdir(scratch);
    return 0;
}

static const char base_conf[] = "listen = \"127.0.0.1:8080\"\n"
                                "upstreams = { api = { servers = { \"127.0.0.1:9000\" } } }\n"
                                "routes = { { path = \"/\", upstream = \"api\" } }\n";

/* Writes base_conf followed by `extra` and loads it; returns the errors or NULL. */
static char *
load_inline(const char *extra, struct sl_config **out)
{
    char path[PATH_MAX + 16];
    char *errors = NULL;
    struct sl_config *cfg;
    FILE *f;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(base_conf, f);
    fputs(extra, f);
    fclose(f);
    cfg = sl_config_load(path, &errors);
    if (out != NULL)
        *out = cfg;
    else
        sl_config_free(cfg);
    return errors;
}

static void
test_sandbox(void **state)
{
    static const char *const forbidden[] = {
        "io", "os", "require", "package", "debug", "dofile", "loadfile", "load", "loadstring",
        "print", "getmetatable", "setmetatable", "rawget", "rawset", "setfenv", "getfenv",
        "_G", "coroutine", "collectgarbage", "module", "jit", "ffi", "newproxy", "xpcall",
    };
    static const char *const allowed[] = {
        "string.format(\"%d\", 1)", "table.concat({\"a\"}, \",\")", "math.floor(1.5)",
        "pairs({})", "ipairs({})", "type(1)", "tostring(1)", "tonumber(\"1\")",
        "pcall(error, \"x\")", "select(\"#\", 1, 2)", "next({})", "unpack({1})", "assert(true)",
        "(\"x\"):rep(3)",
    };
    char path[PATH_MAX + 16];
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
        char line[128], phrase[64];
        char *errors;
        snprintf(line, sizeof(line), "local x = %s\n", forbidden[i]);
        snprintf(phrase, sizeof(phrase), "undefined variable \"%s\"", forbidden[i]);
        errors = load_inline(line, NULL);
        assert_non_null(errors);
        if (!has_error(errors, path, 4, phrase))
            fail_msg("%s: got %s", forbidden[i], errors);
        free(errors);
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        char line[128];
        char *errors;
        snprintf(line, sizeof(line), "local x = %s\n", allowed[i]);
        errors = load_inline(line, NULL);
        if (errors != NULL)
            fail_msg("%s: got %s", allowed[i], errors);
    }
}

static void
test_no_bytecode(void **state)
{
    char path[PATH_MAX + 16];
    char *errors = NULL;
    FILE *f;
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("\033LJ\002junk", f);
    fclose(f);
    assert_null(sl_config_load(path, &errors));
    assert_non_null(errors);
    assert_int_equal(strncmp(errors, path, strlen(path)), 0);
    assert_string_equal(errors + strlen(path), ": binary chunks are not accepted (the conf must "
                                               "be Lua source text)");
    free(errors);
}

static void
test_long_path(void **state)
{
    char path[PATH_MAX + 16];
    char *errors;
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    assert_true(strlen(path) > 60);
    errors = load_inline("error(\"late\")\n", NULL);
    assert_true(has_error(errors, path, 4, "late"));
    free(errors);
    errors = load_inline("x = {\n", NULL);
    assert_true(has_error(errors, path, 5, "unexpected symbol near '<eof>'"));
    free(errors);
}

/* Lines are found through table constructors, strings and comments. */
static void
test_nested_lines(void **state)
{
    char path[PATH_MAX + 16];
    char *errors;
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    errors = load_inline("-- limits = { x = { rate = 1 } }\n"                  /* 4 */
                         "--[[ limits = {\n ]]\n"                              /* 5 6 */
                         "limits = {\n"                                        /* 7 */
                         "  [\"a\"] = { key = function(r) local a, b = 1, 2\n" /* 8 */
                         "      return \"}, rate = 0\" end,\n"                 /* 9 */
                         "    rate = 1, per = [[\n"                            /* 10 */
                         "1x]] },\n"                                           /* 11 */
                         "  b = { key = { \"ip\",\n"                           /* 12 */
                         "                \"header:\" }, rate = 1 },\n"        /* 13 */
                         "}\n",
                         NULL);
    assert_non_null(errors);
    if (!has_error(errors, path, 10, "limit \"a\": per \"1x\": bad duration")
        || !has_error(errors, path, 13, "limit \"b\": key[2] \"header:\": missing name"))
        fail_msg("got:\n%s", errors);
    free(errors);

    /* a later `routes[2] = ...` is not in a constructor: the top statement is blamed */
    errors = load_inline("routes[2] = { path = \"/x\", upstream = \"api\", bogus = 1 }\n", NULL);
    assert_true(has_error(errors, path, 3, "unknown key \"bogus\" in route 2"));
    free(errors);

    /* the last assignment of a top-level key is the one that counts */
    errors = load_inline("workers = 2\nworkers = 0\n", NULL);
    assert_true(has_error(errors, path, 5, "workers 0"));
    free(errors);

    /* conditional assignments and multi-line statements */
    errors = load_inline("if true then\n  log_level =\n    \"loud\"\nend\n", NULL);
    assert_true(has_error(errors, path, 5, "log_level \"loud\""));
    free(errors);
}

/* Route keys of API versions and their end (src/config_lifecycle.c): each
 * error names the line of the key at fault. Lines 1-3 are base_conf's, 4 is
 * blank, routes = is on line 5. */
static const struct {
    const char *conf;
    int line;
    const char *phrase;
} lifecycle_cases[] = {
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  deprecation = \"2026-03-01\" } }\n",
      6, "deprecation \"2026-03-01\": a date without a time" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  sunset = \"2026-03-01T00:00:00\" } }\n",
      6, "sunset \"2026-03-01T00:00:00\": no time zone" },
    { "routes = { { path = \"/\", upstream = \"api\", deprecation = \"2026-03-01T00:00:00Z\",\n"
      "  sunset = \"2026-02-01T00:00:00+01:00\" } }\n",
      6, "sunset: must come after the deprecation" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  link = \"https://x.example/\" } }\n",
      6, "link: only a route with a deprecation or a sunset takes it" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  link = \"https://x.example/a b\" } }\n",
      6, "not a URI" },
    { "routes = { { path = \"/\", upstream = \"api\", deprecation = \"2026-03-01T00:00:00Z\",\n"
      "  brownouts = { { from = \"2026-04-01T00:00:00Z\", to = \"2026-04-01T01:00:00Z\" } } } }\n",
      6, "brownouts rehearse a sunset: the route has no sunset" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  brownouts = { { from = \"2026-08-01T00:00:00Z\", to = \"2026-09-02T00:00:00Z\" } } } }\n",
      6, "the window from 2026-08-01T00:00:00Z ends after the sunset" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  deprecation = \"2026-03-01T00:00:00Z\", brownouts = {\n"
      "  { from = \"2026-02-01T00:00:00Z\", to = \"2026-02-01T01:00:00Z\" } } } }\n",
      6, "starts before the deprecation" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  brownouts = {\n"
      "  { from = \"2026-08-01T01:00:00Z\", to = \"2026-08-01T00:00:00Z\" } } } }\n",
      7, "brownout: to must be after from" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  brownouts = { { from = \"2026-08-01T01:00:00Z\" } } } }\n",
      6, "brownout: needs both from and to" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  consumer = \"global\" } }\n",
      6, "consumer \"global\": names no caller" },
    { "routes = { { path = \"/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\",\n"
      "  consumer_top = 0 } }\n",
      6, "consumer_top 0: must be a whole number from 1 to 100" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { [\"API-Version\"] = 2 } } }\n",
      6, "expected a string" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { \"API-Version\" } } }\n",
      6, "headers: expected [\"Header-Name\"] = \"value\", got a list entry" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { [\"API Version\"] = \"1\" } } }\n",
      6, "is not a header name" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { [\"a\"] = \"1\", A = \"2\" } } }\n",
      6, "is written twice" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { Host = \"x\" } } }\n",
      6, "the host has its own key" },
    { "routes = { { path = \"/\", upstream = \"api\",\n"
      "  headers = { v = \" 1\" } } }\n",
      6, "has blanks around it" },
    { "routes = { { path = \"/\", upstream = \"api\", headers = { v = \"1\" } },\n"
      "  { path = \"/\", upstream = \"api\", headers = { V = \"1\" } } }\n",
      6, "same host and path as route 1" },
};

static void
test_lifecycle_errors(void **state)
{
    char path[PATH_MAX + 16];
    struct sl_config *cfg;
    char *errors;
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    for (size_t i = 0; i < sizeof(lifecycle_cases) / sizeof(lifecycle_cases[0]); i++) {
        char conf[1024];
        /* after base_conf's three lines, a blank one: routes = on line 5 */
        snprintf(conf, sizeof(conf), "\n%s", lifecycle_cases[i].conf);
        errors = load_inline(conf, NULL);
        if (!has_error(errors, path, lifecycle_cases[i].line, lifecycle_cases[i].phrase))
            fail_msg("case %zu: want line %d \"%s\", got:\n%s", i, lifecycle_cases[i].line,
                     lifecycle_cases[i].phrase, errors ? errors : "(no error)");
        free(errors);
    }

    /* the same path with other header values is another route; the defaults */
    errors = load_inline("\nroutes = { { path = \"/\", upstream = \"api\", headers = { v = \"1\" } },\n"
                         "  { path = \"/\", upstream = \"api\", headers = { v = \"2\" } },\n"
                         "  { path = \"/old/\", upstream = \"api\", sunset = \"2026-09-01T00:00:00Z\" } }\n",
                         &cfg);
    assert_null(errors);
    assert_int_equal(cfg->nroutes, 3);
    assert_int_equal(cfg->routes[2].lifecycle.consumer.kind, SL_KEY_IP);
    assert_int_equal(cfg->routes[2].lifecycle.consumer_top, 10);
    assert_false(cfg->routes[2].lifecycle.has_deprecation);
    sl_config_free(cfg);
}

static void
test_values(void **state)
{
    struct sl_config *cfg;
    char *errors;
    (void)state;

    errors = load_inline("workers = 3\nadmin = \"[::1]:9901\"\nclient = { max_body_size = 1048576,"
                         " max_header_size = \"1M\" }\nstore = { kind = \"redis\","
                         " url = \"unix:/run/redis.sock?db=3\" }\nshutdown_timeout = \"0s\"\n",
                         &cfg);
    assert_null(errors);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->admin.text, "[::1]:9901");
    assert_int_equal(cfg->client.max_body_size, 1048576);
    assert_int_equal(cfg->client.max_header_size, 1048576);
    assert_string_equal(cfg->store.url, "unix:/run/redis.sock?db=3");
    assert_int_equal(cfg->shutdown_timeout_ms, 0);
    sl_config_free(cfg);

    errors = load_inline("access_log = \"off\"\ntrusted_proxies = \"::1\"\n", &cfg);
    assert_null(errors);
    assert_string_equal(cfg->access_log, "off");
    assert_int_equal(cfg->ntrusted_proxies, 1);
    sl_config_free(cfg);

    errors = load_inline("error_log = \"off\"\n", NULL);
    assert_true(strstr(errors, "error log cannot be turned off") != NULL);
    free(errors);
    errors = load_inline("workers = 1.5\n", NULL);
    assert_true(strstr(errors, "workers 1.5: use \"auto\"") != NULL);
    free(errors);
    errors = load_inline("client = { max_body_size = -1 }\n", NULL);
    assert_true(strstr(errors, "max_body_size -1: must be a whole number of bytes") != NULL);
    free(errors);
    errors = load_inline("client = { header_timeout = 10 }\n", NULL);
    assert_true(strstr(errors, "header_timeout: expected a duration such as \"10s\", got number 10")
                != NULL);
    free(errors);
    errors = load_inline("client = \"big\"\n", NULL);
    assert_true(strstr(errors, "client: expected a table") != NULL);
    free(errors);
    errors = load_inline("limits = { { key = \"ip\", rate = 1 } }\n", NULL);
    assert_true(strstr(errors, "entry [1] has no name") != NULL);
    free(errors);
    errors = load_inline("limits = { [\"bad name\"] = { key = \"ip\", rate = 1 } }\n", NULL);
    assert_true(strstr(errors, "limit name \"bad name\"") != NULL);
    free(errors);
    errors = load_inline("limits = { a = { key = { \"ip\", \"ip\" }, rate = 1 } }\n", NULL);
    assert_true(strstr(errors, "key[2] \"ip\": listed twice in the key") != NULL);
    free(errors);
    errors = load_inline("limits = { a = { key = { \"ip\", \"global\" }, rate = 1 } }\n", NULL);
    assert_true(strstr(errors, "global cannot be combined") != NULL);
    free(errors);
    errors = load_inline("routes[2] = { path = \"/x\", host = \"a.example:80\",\n"
                         "              upstream = \"api\" }\n",
                         NULL);
    assert_true(strstr(errors, "host \"a.example:80\": write the host without a port") != NULL);
    free(errors);
    /* a misspelt upstream is one error, not also "api is not used" */
    errors = load_inline("routes = { { path = \"/\", upstream = \"apii\" } }\n", NULL);
    assert_int_equal(count_lines(errors), 1);
    assert_true(strstr(errors, "upstream \"apii\": no such upstream") != NULL);
    free(errors);
    errors = load_inline("store = { kind = \"redis\", url = \"redis://h:0\" }\n", NULL);
    assert_true(strstr(errors, "store: url \"redis://h:0\": bad port \"0\" (use 1 to 65535)")
                != NULL);
    free(errors);
}

static void
test_slow_request(void **state)
{
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {
        { "\"0\"", 0 }, { "0", 0 }, { "\"0s\"", 0 }, { "\"0ms\"", 0 }, { "\"1ms\"", 1 },
        { "\"500ms\"", 500 }, { "\"2s\"", 2000 }, { "\"1m30s\"", 90000 }, { "\"1h\"", 3600000 },
    };
    static const struct {
        const char *text;
        const char *phrase;
    } bad[] = {
        { "\"1h1ms\"", "slow_request \"1h1ms\": must be between 0s and 1h" },
        { "\"2h\"", "slow_request \"2h\": must be between 0s and 1h" },
        { "500", "slow_request: expected a duration such as \"10s\", got number 500" },
        { "\"500\"", "slow_request \"500\": bad duration" },
        { "\"off\"", "slow_request \"off\": bad duration" },
        { "\"\"", "slow_request \"\": bad duration" },
        { "true", "slow_request: expected a duration such as \"10s\", got boolean true" },
        { "{}", "slow_request: expected a duration such as \"10s\", got a table" },
    };
    char path[PATH_MAX + 16];
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char line[128];
        struct sl_config *cfg;
        char *errors;
        snprintf(line, sizeof(line), "slow_request = %s\n", good[i].text);
        errors = load_inline(line, &cfg);
        if (errors != NULL)
            fail_msg("%s: got %s", good[i].text, errors);
        assert_int_equal(cfg->slow_request_ms, good[i].ms);
        sl_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char line[128];
        char *errors;
        snprintf(line, sizeof(line), "slow_request = %s\n", bad[i].text);
        errors = load_inline(line, NULL);
        if (errors == NULL)
            fail_msg("%s should be refused", bad[i].text);
        if (count_lines(errors) != 1 || !has_error(errors, path, 4, bad[i].phrase))
            fail_msg("%s: expected \"%s\" at line 4, got:\n%s", bad[i].text, bad[i].phrase,
                     errors);
        free(errors);
    }
}

/* tunnel_idle_timeout (upstream), websocket (route), client.request_timeout */
static void
test_upgrade_and_request_options(void **state)
{
    static const char *const bad[] = {
        "client = { request_timeout = \"soon\" }\n",
        "client = { request_timeout = 30 }\n",
        "client = { request_timeout = \"25h\" }\n",
        "upstreams = { api = { servers = { \"127.0.0.1:9000\" }, tunnel_idle_timeout = \"0s\" } }\n",
        "upstreams = { api = { servers = { \"127.0.0.1:9000\" }, tunnel_idle_timeout = 5 } }\n",
        "routes = { { path = \"/\", upstream = \"api\", websocket = \"no\" } }\n",
    };
    struct sl_config *cfg;
    char *errors;

    (void)state;
    errors = load_inline(
        "client = { request_timeout = \"30s\" }\n"
        "upstreams = { api = { servers = { \"127.0.0.1:9000\" }, tunnel_idle_timeout = \"5m\" } }\n"
        "routes = { { path = \"/\", upstream = \"api\", websocket = false } }\n",
        &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_int_equal(cfg->client.request_timeout_ms, 30000);
    assert_int_equal(cfg->upstreams[0].tunnel_idle_timeout_ms, 300000);
    assert_false(cfg->routes[0].has_websocket);
    sl_config_free(cfg);
    errors = load_inline("client = { request_timeout = 0 }\n", &cfg);
    assert_null(errors);
    assert_int_equal(cfg->client.request_timeout_ms, 0);
    sl_config_free(cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errors = load_inline(bad[i], NULL);
        if (errors == NULL)
            fail_msg("should be refused: %s", bad[i]);
        free(errors);
    }
}

/* retries, retry_on, retry_budget (config_retry.c) */
static void
test_retry_options(void **state)
{
    static const struct {
        const char *conf;
        const char *error;
    } bad[] = {
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retries = 11 } }\n",
          ":4: upstream \"api\": retries 11: must be between 0 and 10" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retry_on = \"504\" } }\n",
          ":4: upstream \"api\": retry_on \"504\": unknown retry condition" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\",\n"
          "  retry_on = { \"reset\", 503, \"reset\" } } }\n",
          ":5: upstream \"api\": retry_on[3] \"reset\": listed twice" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retry_on = true } }\n",
          "retry_on: expected a condition or a list of them, got boolean true" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retry_on = { 500 } } }\n",
          "retry_on[1] 500: unknown retry condition" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\",\n"
          "  retry_budget = { percent = 120 } } }\n",
          ":5: upstream \"api\": percent 120: must be between 0 and 100" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retry_budget = { max = 3 } } }\n",
          "unknown key \"max\" in upstream \"api\"" },
        { "upstreams = { api = { servers = \"127.0.0.1:9000\", retry_budget = 20 } }\n",
          "retry_budget: expected a table { percent = 20, min = 3 }" },
    };
    struct sl_config *cfg;
    char *errors;

    (void)state;
    errors = load_inline("", &cfg);
    assert_null(errors);
    assert_int_equal(cfg->upstreams[0].retry.retries, 1);
    assert_int_equal(cfg->upstreams[0].retry.on, SL_RETRY_ON_CONNECT_FAILURE | SL_RETRY_ON_RESET);
    assert_int_equal(cfg->upstreams[0].retry.budget_percent, 20);
    assert_int_equal(cfg->upstreams[0].retry.budget_min, 3);
    sl_config_free(cfg);

    errors = load_inline("upstreams = { api = { servers = \"127.0.0.1:9000\", retries = 3,\n"
                         "  retry_on = { \"502\", 503, \"connect_failure\" },\n"
                         "  retry_budget = { percent = 50, min = 0 } },\n"
                         "  b = { servers = \"127.0.0.1:9001\", retry_on = {} },\n"
                         "  c = { servers = \"127.0.0.1:9002\", retry_on = \"reset\" } }\n"
                         "routes = { { path = \"/\", upstream = \"api\" },\n"
                         "  { path = \"/b\", upstream = \"b\" }, { path = \"/c\", upstream = \"c\" } }\n",
                         &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_int_equal(cfg->upstreams[0].retry.retries, 3);
    assert_int_equal(cfg->upstreams[0].retry.on,
                     SL_RETRY_ON_502 | SL_RETRY_ON_503 | SL_RETRY_ON_CONNECT_FAILURE);
    assert_int_equal(cfg->upstreams[0].retry.budget_percent, 50);
    assert_int_equal(cfg->upstreams[0].retry.budget_min, 0);
    assert_int_equal(cfg->upstreams[1].retry.on, 0);
    assert_int_equal(cfg->upstreams[1].retry.retries, 1);
    assert_int_equal(cfg->upstreams[2].retry.on, SL_RETRY_ON_RESET);
    sl_config_free(cfg);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errors = load_inline(bad[i].conf, NULL);
        if (errors == NULL)
            fail_msg("should be refused: %s", bad[i].conf);
        if (strstr(errors, bad[i].error) == NULL)
            fail_msg("case %zu: want \"%s\" in:\n%s", i, bad[i].error, errors);
        free(errors);
    }
}

static void
test_metrics_buckets(void **state)
{
    static const struct {
        const char *text;
        int line;
        const char *phrase;
    } bad[] = {
        { "metrics = { buckets = {} }\n", 4, "metrics: buckets: histogram buckets: need 1 to 64" },
        { "metrics = { buckets = 0.5 }\n", 4,
          "metrics: buckets: expected a list of numbers in seconds" },
        { "metrics = \"on\"\n", 4, "metrics: expected a table { buckets = { ... } }" },
        { "metrics = { 0.1 }\n", 4, "metrics: unexpected list entry [1]" },
        { "metrics = { buckets = { 0.1, 0.1 } }\n", 4,
          "metrics: buckets[2]: histogram bucket 0.1: bounds must increase" },
        { "metrics = { buckets = { 0.001, 0.0010004 } }\n", 4,
          "buckets[2]: histogram bucket 0.0010004: bounds must increase (by 1us at least)" },
        { "metrics = { buckets = { 0, 1 } }\n", 4,
          "metrics: buckets[1]: histogram bucket 0: must be between 1us and 1 day" },
        { "metrics = { buckets = { -1 } }\n", 4, "buckets[1]: histogram bucket -1: must be" },
        { "metrics = { buckets = { 0.0000001 } }\n", 4, "histogram bucket 1e-07: must be" },
        { "metrics = { buckets = { 1, 86401 } }\n", 4,
          "buckets[2]: histogram bucket 86401: must be between 1us and 1 day" },
        { "metrics = { buckets = { 1, math.huge } }\n", 4, "buckets[2]: histogram bucket inf" },
        { "metrics = { buckets = { 1, 0/0 } }\n", 4, "buckets[2]: histogram bucket" },
        { "metrics = { buckets = { 0.1, true } }\n", 4,
          "buckets[2]: expected a number of seconds, got boolean true" },
        { "metrics = { buckets = { 0.1, { 1 } } }\n", 4,
          "buckets[2]: expected a number of seconds, got a table" },
        { "metrics = { buckets = { 0.1, per = 1 } }\n", 4, "unexpected key \"per\"" },
        { "metrics = { buckets = { [1] = 0.1, [3] = 1 } }\n", 4, "must be a list" },
        /* the line of the bad entry, not of the statement */
        { "metrics = {\n  buckets = {\n    1,\n    2,\n    1.5,\n  },\n}\n", 8,
          "buckets[3]: histogram bucket 1.5: bounds must increase" },
        { "metrics = {\n  buckets = { 1 },\n  bukets = { 2 },\n}\n", 6,
          "unknown key \"bukets\" in metrics" },
    };
    char path[PATH_MAX + 16], conf[2048];
    struct sl_config *cfg;
    char *errors;
    size_t o;
    (void)state;

    snprintf(path, sizeof(path), "%s/t.conf", scratch);

    /* empty table: the defaults */
    errors = load_inline("metrics = {}\n", &cfg);
    assert_null(errors);
    assert_null(cfg->metrics_buckets);
    assert_int_equal(cfg->nmetrics_buckets, 0);
    sl_config_free(cfg);

    errors = load_inline("metrics = { buckets = { 0.0001, 0.00025, 1, 2.5, 86400 } }\n", &cfg);
    assert_null(errors);
    assert_int_equal(cfg->nmetrics_buckets, 5);
    assert_true(cfg->metrics_buckets[0] == 0.0001);
    assert_true(cfg->metrics_buckets[1] == 0.00025);
    assert_true(cfg->metrics_buckets[4] == 86400);
    sl_config_free(cfg);

    /* one bound, and a list built by code */
    errors = load_inline("metrics = { buckets = { 0.000001 } }\n", &cfg);
    assert_null(errors);
    assert_int_equal(cfg->nmetrics_buckets, 1);
    sl_config_free(cfg);
    errors = load_inline("local b = {}\nfor i = 1, 64 do b[i] = i / 1000 end\n"
                         "metrics = { buckets = b }\n",
                         &cfg);
    assert_null(errors);
    assert_int_equal(cfg->nmetrics_buckets, 64);
    assert_true(cfg->metrics_buckets[63] == 0.064);
    sl_config_free(cfg);

    /* one too many */
    errors = load_inline("local b = {}\nfor i = 1, 65 do b[i] = i / 1000 end\n"
                         "metrics = { buckets = b }\n",
                         NULL);
    if (count_lines(errors) != 1
        || !has_error(errors, path, 6, "metrics: buckets: histogram buckets: need 1 to 64 "
                                       "bounds, got 65"))
        fail_msg("got:\n%s", errors);
    free(errors);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errors = load_inline(bad[i].text, NULL);
        if (errors == NULL)
            fail_msg("%s should be refused", bad[i].text);
        if (count_lines(errors) != 1 || !has_error(errors, path, bad[i].line, bad[i].phrase))
            fail_msg("%s: expected \"%s\" at line %d, got:\n%s", bad[i].text, bad[i].phrase,
                     bad[i].line, errors);
        free(errors);
    }

    /* both bad: every error is reported */
    o = (size_t)snprintf(conf, sizeof(conf), "slow_request = \"3h\"\n");
    snprintf(conf + o, sizeof(conf) - o, "metrics = { buckets = { 2, 1 } }\n");
    errors = load_inline(conf, NULL);
    if (count_lines(errors) != 2 || !has_error(errors, path, 4, "slow_request \"3h\"")
        || !has_error(errors, path, 5, "buckets[2]: histogram bucket 1: bounds must increase"))
        fail_msg("got:\n%s", errors);
    free(errors);
}

/* Typed rows: numbers with their bounds, enums with their words. */
/* listen: strings and tables mixed, unix paths with a mode, PROXY protocol;
 * each mistake named at its line (4: the first line after base_conf). */
static void
test_listen_forms(void **state)
{
    static const struct {
        const char *conf, *want;
    } bad[] = {
        { "listen = { \"127.0.0.1:8080\",\n"
          " { address = \"127.0.0.1:8081\", proxy_protocol = 1 } }\n",
          "t.conf:5: listen[2]: proxy_protocol: expected true or false" },
        { "listen = { { proxy_protocol = true } }\n", "t.conf:4: listen[1]: no address" },
        { "listen = { address = \"127.0.0.1:8081\", mode = \"0660\" }\n",
          "mode is for unix: addresses only" },
        { "listen = { address = \"unix:/tmp/s.sock\", mode = 660 }\n",
          "mode: expected a string of octal digits" },
        { "listen = { address = \"unix:/tmp/s.sock\", mode = \"0980\" }\n",
          "not an octal file mode" },
        { "listen = { address = \"unix:/tmp/s.sock\", proxy_protocol = true }\n",
          "proxy_protocol needs a TCP listener" },
        { "listen = \"unix:relative.sock\"\n", "needs an absolute path" },
        { "listen = { \"unix:/tmp/a\", { address = \"unix:/tmp/a\" } }\n",
          "listen \"unix:/tmp/a\": listed twice" },
        { "listen = { { address = \"127.0.0.1:1\", porxy_protocol = true } }\n",
          "unknown key \"porxy_protocol\" in listen[1]" },
        { "limits = { a = { key = \"header:x\", rate = 1, ipv6_prefix = 64 } }\n",
          "limit \"a\": ipv6_prefix: the key has no \"ip\" part" },
        { "limits = { a = { key = \"ip\", rate = 1, ipv6_prefix = 129 } }\n",
          "limit \"a\": ipv6_prefix 129: must be between 1 and 128" },
    };
    struct sl_config *cfg;
    char *errors;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errors = load_inline(bad[i].conf, NULL);
        if (errors == NULL || strstr(errors, bad[i].want) == NULL)
            fail_msg("%s: got %s", bad[i].conf, errors ? errors : "(accepted)");
        free(errors);
    }
    errors = load_inline("listen = { \"127.0.0.1:8080\",\n"
                         "  { address = \"[::1]:8081\", proxy_protocol = true },\n"
                         "  { address = \"unix:/tmp/sluice-test.sock\", mode = \"0600\" },\n"
                         "  \"unix:/tmp/other.sock\" }\n"
                         "limits = { a = { key = { \"ip\", \"path\" }, rate = 1,\n"
                         "                 ipv6_prefix = 56 } }\n",
                         &cfg);
    if (errors != NULL)
        fail_msg("%s", errors);
    assert_int_equal(cfg->nlisten, 4);
    assert_false(cfg->listen[0].is_proxy_protocol);
    assert_true(cfg->listen[1].is_proxy_protocol);
    assert_string_equal(cfg->listen[1].text, "[::1]:8081");
    assert_true(cfg->listen[2].is_unix && cfg->listen[2].has_mode);
    assert_int_equal(cfg->listen[2].mode, 0600);
    assert_true(cfg->listen[3].is_unix && !cfg->listen[3].has_mode);
    assert_string_equal(cfg->listen[3].text, "unix:/tmp/other.sock");
    assert_int_equal(cfg->limits[0].ipv6_prefix, 56);
    sl_config_free(cfg);
    /* the default: the whole address */
    errors = load_inline("limits = { a = { key = \"ip\", rate = 1 } }\n", &cfg);
    assert_null(errors);
    assert_int_equal(cfg->limits[0].ipv6_prefix, 128);
    sl_config_free(cfg);
}

static void
test_typed_options(void **state)
{
    static const struct {
        const char *conf, *want;
    } bad[] = {
        { "limits = { a = { key = \"ip\", rate = 1e10 } }\n",
          "limit \"a\": rate 10000000000: must be at most 1000000000" },
        { "limits = { a = { key = \"ip\", rate = math.huge } }\n",
          "limit \"a\": rate inf: must be a finite number" },
        { "limits = { a = { key = \"ip\", rate = 1, burst = 2e12 } }\n",
          "limit \"a\": burst 2000000000000: must be at most 1000000000000" },
        { "limits = { a = { key = \"ip\", rate = 1, cost = -2 } }\n",
          "limit \"a\": cost -2: must be more than 0" },
        { "limits = { a = { key = \"ip\", rate = 1, cost = 'x' } }\n",
          "limit \"a\": cost: expected a number or a function, got string \"x\"" },
        { "store = { kind = \"memcached\" }\n",
          "store: kind \"memcached\": unknown store kind (use \"local\" or \"redis\")" },
        { "store = { on_error = 1 }\n", "store: on_error: expected a string, got number 1" },
        { "log_level = \"\"\n", "log_level \"\": must be a non-empty string" },
    };
    struct sl_config *cfg;
    char *errors;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errors = load_inline(bad[i].conf, NULL);
        if (errors == NULL || strstr(errors, bad[i].want) == NULL)
            fail_msg("%s: got %s", bad[i].conf, errors ? errors : "(accepted)");
        free(errors);
    }
    errors = load_inline("limits = { a = { key = \"ip\", rate = 1e9, burst = 1e12, cost = 0.5 } }\n"
                         "store = { on_error = \"deny\" }\nlog_level = \"warn\"\n",
                         &cfg);
    assert_null(errors);
    assert_true(cfg->limits[0].rate == 1e9 && cfg->limits[0].burst == 1e12);
    assert_true(cfg->limits[0].cost == 0.5);
    assert_int_equal(cfg->store.kind, SL_STORE_LOCAL);
    assert_int_equal(cfg->store.on_error, SL_ON_ERROR_DENY);
    assert_string_equal(cfg->log_level, "warn");
    sl_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Parsers                                                                  */
/* ------------------------------------------------------------------------ */

static void
test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        int rc;
        uint64_t ms;
    } cases[] = {
        { "250ms", 0, 250 }, { "10s", 0, 10000 }, { "1m", 0, 60000 }, { "2h", 0, 7200000 },
        { "0s", 0, 0 }, { "0ms", 0, 0 }, { "1m30s", 0, 90000 }, { "1h0m5s250ms", 0, 3605250 },
        { "20ms", 0, 20 }, { "8760h", 0, 31536000000ull },
        { "", -1, 0 }, { "10", -1, 0 }, { "s", -1, 0 }, { "10x", -1, 0 }, { "10 s", -1, 0 },
        { " 10s", -1, 0 }, { "10s ", -1, 0 }, { "-1s", -1, 0 }, { "+1s", -1, 0 },
        { "1.5s", -1, 0 }, { "10S", -1, 0 }, { "1d", -1, 0 }, { "1s1m", -1, 0 },
        { "1s1s", -1, 0 }, { "10ms5", -1, 0 }, { "99999999999999999999ms", -1, 0 },
        { "18446744073709551615h", -1, 0 }, { "18446744073709551615ms", 0, UINT64_MAX },
        { "18446744073709551616ms", -1, 0 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int rc = sl_config_parse_duration(cases[i].text, &ms);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
        if (rc == 0 && ms != cases[i].ms)
            fail_msg("\"%s\": %llu ms, want %llu", cases[i].text, (unsigned long long)ms,
                     (unsigned long long)cases[i].ms);
    }
}

static void
test_parse_size(void **state)
{
    static const struct {
        const char *text;
        int rc;
        uint64_t bytes;
    } cases[] = {
        { "0", 0, 0 }, { "512", 0, 512 }, { "16k", 0, 16384 }, { "16K", 0, 16384 },
        { "8m", 0, 8u << 20 }, { "8M", 0, 8u << 20 }, { "1g", 0, 1u << 30 },
        { "1G", 0, 1u << 30 }, { "18446744073709551615", 0, UINT64_MAX },
        { "17179869183g", 0, 17179869183ull << 30 },
        { "", -1, 0 }, { "k", -1, 0 }, { "16q", -1, 0 }, { "16kb", -1, 0 }, { "1.5k", -1, 0 },
        { "-1", -1, 0 }, { " 1", -1, 0 }, { "1 ", -1, 0 }, { "18446744073709551616", -1, 0 },
        { "17179869184g", -1, 0 }, { "1t", -1, 0 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 12345;
        int rc = sl_config_parse_size(cases[i].text, &bytes);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", cases[i].text, rc, cases[i].rc);
        if (rc == 0 && bytes != cases[i].bytes)
            fail_msg("\"%s\": %llu bytes, want %llu", cases[i].text, (unsigned long long)bytes,
                     (unsigned long long)cases[i].bytes);
    }
}

static void
test_free_null(void **state)
{
    (void)state;
    sl_config_free(NULL);
}

int
main(void)
{
    struct CMUnitTest tests[sizeof(bad_cases) / sizeof(bad_cases[0]) + 32];
    size_t n = 0;
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_full_top),
        cmocka_unit_test(test_full_upstreams_limits),
        cmocka_unit_test(test_full_routes),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_program),
        cmocka_unit_test(test_source_kept),
        cmocka_unit_test(test_shipped_confs),
        cmocka_unit_test(test_errors_in_line_order),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_no_bytecode),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_nested_lines),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_lifecycle_errors),
        cmocka_unit_test(test_slow_request),
        cmocka_unit_test(test_upgrade_and_request_options),
        cmocka_unit_test(test_metrics_buckets),
        cmocka_unit_test(test_retry_options),
        cmocka_unit_test(test_typed_options),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_free_null),
    };

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_bad_fixture, NULL);
        t.name = bad_cases[i].file;
        t.initial_state = (void *)(uintptr_t)&bad_cases[i];
        tests[n++] = t;
    }
    return _cmocka_run_group_tests("config", tests, n, make_scratch, remove_scratch);
}
