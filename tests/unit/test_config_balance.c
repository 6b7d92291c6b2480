/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * An upstream's servers with weights and its balance (src/config_balance.c):
 * the forms that load and what they give, every refusal with its file:line,
 * and `sluice -T` printing them in a form that loads back to the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/config.h"

static char dir[] = "/tmp/sluice-test-balance-XXXXXX";
static char path[sizeof(dir) + 16];

static const char head[] = "listen = \"127.0.0.1:8080\"\n";

static void
write_conf(const char *upstreams, const char *routes)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fprintf(f, "%supstreams = {\n%s}\nroutes = {\n%s}\n", head, upstreams, routes);
    fclose(f);
}

static struct sl_config *
load(const char *upstreams, const char *routes, char **errors)
{
    write_conf(upstreams, routes);
    *errors = NULL;
    return sl_config_load(path, errors);
}

static void
test_forms(void **state)
{
    char *errors;
    struct sl_config *cfg;
    const struct sl_upstream_conf *u;
    (void)state;

    cfg = load("  api = { servers = { { address = \"10.0.0.1:80\", weight = 3 }, \"10.0.0.2:80\",\n"
               "          { address = \"api.internal:8080\", weight = 2 } },\n"
               "          balance = \"hash:header:X-Tenant\" },\n"
               "  b = { servers = { address = \"10.0.0.1:80\", weight = 256 },\n"
               "        balance = \"least_conn\" },\n"
               "  c = { servers = \"10.0.0.1:80\", balance = \"random2\" },\n"
               "  d = { servers = \"10.0.0.1:80\" },\n"
               "  e = { servers = \"10.0.0.1:80\", balance = \"hash:cookie:sid\" },\n",
               "{ path = \"/\", upstream = \"api\" }, { path = \"/b\", upstream = \"b\" },\n"
               "{ path = \"/c\", upstream = \"c\" }, { path = \"/d\", upstream = \"d\" },\n"
               "{ path = \"/e\", upstream = \"e\" },\n",
               &errors);
    if (cfg == NULL)
        fail_msg("%s", errors);
    u = &cfg->upstreams[0]; /* sorted by name: api b c d e */
    assert_string_equal(u->name, "api");
    assert_int_equal(u->nservers, 2);
    assert_int_equal(u->weights[0], 3);
    assert_int_equal(u->weights[1], 1);
    assert_int_equal(u->nnames, 1);
    assert_string_equal(u->names[0].text, "api.internal:8080");
    assert_int_equal(u->names[0].weight, 2);
    assert_int_equal(u->balance, SL_BALANCE_HASH);
    assert_non_null(u->hash_key);
    assert_int_equal(u->hash_key->kind, SL_KEY_HEADER);
    assert_string_equal(u->hash_key->name, "x-tenant"); /* matched case-insensitively */
    assert_int_equal(cfg->upstreams[1].balance, SL_BALANCE_LEAST_CONN);
    assert_int_equal(cfg->upstreams[1].nservers, 1);
    assert_int_equal(cfg->upstreams[1].weights[0], 256);
    assert_int_equal(cfg->upstreams[2].balance, SL_BALANCE_RANDOM2);
    assert_int_equal(cfg->upstreams[3].balance, SL_BALANCE_ROUND_ROBIN);
    assert_null(cfg->upstreams[3].hash_key);
    assert_int_equal(cfg->upstreams[3].weights[0], 1);
    assert_int_equal(cfg->upstreams[4].hash_key->kind, SL_KEY_COOKIE);
    assert_string_equal(cfg->upstreams[4].hash_key->name, "sid");
    sl_config_free(cfg);
}

/* True when some line of errors starts "<path>:<line>: " and holds phrase. */
static bool
has_error(const char *errors, int line, const char *phrase)
{
    char prefix[sizeof(path) + 32];

    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    for (const char *p = errors; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char *copy = strndup(p, len);
        bool is_found = strncmp(copy, prefix, strlen(prefix)) == 0 && strstr(copy, phrase);
        free(copy);
        if (is_found)
            return true;
        p = eol != NULL ? eol + 1 : NULL;
    }
    return false;
}

static void
test_errors(void **state)
{
    static const struct {
        int line;
        const char *phrase;
    } want[] = {
        { 3, "upstream \"api\": servers[1]: weight 0: must be between 1 and 256" },
        { 4, "upstream \"api\": servers[3]: weight 257: must be between 1 and 256" },
        { 5, "upstream \"api\": servers[4]: no address" },
        { 5, "unknown key \"wieght\" in upstream \"api\": servers[5]" },
        { 6, "servers[6]: address: expected \"host:port\" or \"unix:/path\", got number 5" },
        { 6, "servers[7]: expected \"host:port\" or { address = \"host:port\", weight = N }" },
        { 6, "servers[8]: address \"10.0.0.2:80\": listed twice" },
        { 6, "servers[9]: weight 1.5: must be a whole number" },
        { 7, "upstream \"api\": balance \"fastest\": unknown balance (use round_robin, "
             "least_conn, random2 or hash:SELECTOR" },
        { 8, "upstream \"b\": balance \"hash:hdr:X\": unknown key selector" },
        { 9, "upstream \"c\": balance \"hash:global\": hash:global would send every request "
             "to one server" },
        { 10, "upstream \"d\": balance \"hash:header:\": missing name after the colon" },
        { 11, "upstream \"e\": balance: expected a string, got number 3" },
        { 12, "upstream \"f\": balance \"hash:\": missing key selector" },
    };
    char *errors;
    struct sl_config *cfg;
    size_t nlines = 0;
    (void)state;

    cfg = load("  api = { servers = { { address = \"10.0.0.1:80\", weight = 0 }, \"10.0.0.2:80\",\n"
               "            { address = \"10.0.0.3:80\", weight = 257 },\n"
               "            { weight = 2 }, { address = \"10.0.0.4:80\", wieght = 2 },\n"
               "            { address = 5 }, 7, { address = \"10.0.0.2:80\" }, "
               "{ address = \"10.0.0.5:80\", weight = 1.5 } },\n"
               "          balance = \"fastest\" },\n"
               "  b = { servers = \"10.0.0.1:80\", balance = \"hash:hdr:X\" },\n"
               "  c = { servers = \"10.0.0.1:80\", balance = \"hash:global\" },\n"
               "  d = { servers = \"10.0.0.1:80\", balance = \"hash:header:\" },\n"
               "  e = { servers = \"10.0.0.1:80\", balance = 3 },\n"
               "  f = { servers = \"10.0.0.1:80\", balance = \"hash:\" },\n",
               "{ path = \"/\", upstream = \"api\" }, { path = \"/b\", upstream = \"b\" },\n"
               "{ path = \"/c\", upstream = \"c\" }, { path = \"/d\", upstream = \"d\" },\n"
               "{ path = \"/e\", upstream = \"e\" }, { path = \"/f\", upstream = \"f\" },\n",
               &errors);
    assert_null(cfg);
    assert_non_null(errors);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!has_error(errors, want[i].line, want[i].phrase))
            fail_msg("no line %d \"%s\" in:\n%s", want[i].line, want[i].phrase, errors);
    }
    for (const char *p = errors; *p != '\0'; p++)
        nlines += *p == '\n';
    if (nlines + (errors[strlen(errors) - 1] != '\n') != sizeof(want) / sizeof(want[0]))
        fail_msg("expected %zu errors, got:\n%s", sizeof(want) / sizeof(want[0]), errors);
    free(errors);
}

/* -T prints weights and balance, and what it prints loads to the same. */
static void
test_dump_round_trip(void **state)
{
    char *errors, *first = NULL, *second = NULL, err[256];
    size_t len;
    struct sl_config *cfg, *again;
    FILE *f;
    (void)state;

    cfg = load("  api = { servers = { { address = \"10.0.0.1:80\", weight = 3 }, \"10.0.0.2:80\",\n"
               "          { address = \"api.internal:8080\", weight = 2 } },\n"
               "          balance = \"hash:query:tenant\" },\n"
               "  b = { servers = \"10.0.0.1:80\", balance = \"least_conn\" },\n",
               "{ path = \"/\", upstream = \"api\" }, { path = \"/b\", upstream = \"b\" },\n",
               &errors);
    if (cfg == NULL)
        fail_msg("%s", errors);
    f = open_memstream(&first, &len);
    assert_int_equal(sl_config_dump(cfg, f, err, sizeof(err)), 0);
    fclose(f);
    assert_non_null(strstr(first, "servers = { { address = \"10.0.0.1:80\", weight = 3 }, "
                                  "\"10.0.0.2:80\", { address = \"api.internal:8080\", "
                                  "weight = 2 } },\n    balance = \"hash:query:tenant\","));
    assert_non_null(strstr(first, "balance = \"least_conn\""));
    f = fopen(path, "w");
    fputs(first, f);
    fclose(f);
    again = sl_config_load(path, &errors);
    if (again == NULL)
        fail_msg("%s", errors);
    f = open_memstream(&second, &len);
    assert_int_equal(sl_config_dump(again, f, err, sizeof(err)), 0);
    fclose(f);
    assert_string_equal(first, second);
    free(first);
    free(second);
    sl_config_free(cfg);
    sl_config_free(again);
}

/* The default is printed too. */
static void
test_dump_default(void **state)
{
    char *errors, *text = NULL, err[256];
    size_t len;
    struct sl_config *cfg;
    FILE *f;
    (void)state;

    cfg = load("  api = { servers = \"10.0.0.1:80\" },\n", "{ path = \"/\", upstream = \"api\" },\n",
               &errors);
    if (cfg == NULL)
        fail_msg("%s", errors);
    f = open_memstream(&text, &len);
    assert_int_equal(sl_config_dump(cfg, f, err, sizeof(err)), 0);
    fclose(f);
    assert_non_null(strstr(text, "servers = { \"10.0.0.1:80\" },\n    balance = \"round_robin\","));
    free(text);
    sl_config_free(cfg);
}

static int
setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_dump_default),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
