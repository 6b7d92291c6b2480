/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Fuzz driver: a conf file through the config loader (the sandboxed Lua run,
 * the C walk and validation, the statement scanner that finds lines), and
 * the same bytes as a string through the duration and size parsers. The
 * input is the whole file; it is written to one temporary file per process.
 * Checks: exactly one of config and errors comes back, every error line
 * names the file, and a config that loads is consistent (indexes in range,
 * strings terminated); leaks are LeakSanitizer's job.
 *
 * The conf sandbox stops a conf after 10 million Lua instructions (about
 * 0.3 s): endless loops are slow inputs, not hangs. Run libFuzzer with
 * -timeout above that (e.g. -timeout=10).
 *
 * The loader runs in this process (sl_conf_load_direct), not in the child
 * that sl_config_load forks to bound its time: a crash must crash the
 * fuzzer, and coverage must be seen. So a pattern that backtracks, or an
 * include() of a FIFO, is a libFuzzer timeout here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "fuzz_util.h"
#include "sluice/config.h"
#include "util/alloc.h"

static char conf_path[64];
static int conf_fd = -1;

static void
remove_conf(void)
{
    if (conf_fd >= 0)
        unlink(conf_path);
}

static void
write_conf(const uint8_t *data, size_t size)
{
    size_t done = 0;

    if (conf_fd < 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(conf_path, sizeof(conf_path), "%s/sl-fuzz-XXXXXX.conf",
                 tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
        conf_fd = mkstemps(conf_path, 5);
        SL_FUZZ_CHECK(conf_fd >= 0);
        atexit(remove_conf);
    }
    SL_FUZZ_CHECK(ftruncate(conf_fd, 0) == 0);
    while (done < size) {
        ssize_t n = pwrite(conf_fd, data + done, size - done, (off_t)done);
        SL_FUZZ_CHECK(n > 0);
        done += (size_t)n;
    }
}

static void
check_errors(const char *errors)
{
    size_t plen = strlen(conf_path);

    /* "file:line: message" or "file: message"; a message may run over
     * several lines (Lua quotes source text, newlines included) */
    SL_FUZZ_CHECK(strncmp(errors, conf_path, plen) == 0 && errors[plen] == ':');
    SL_FUZZ_CHECK(strlen(errors) > plen + 2);
}

static void
check_config(const struct sl_config *cfg)
{
    SL_FUZZ_CHECK(strcmp(cfg->path, conf_path) == 0);
    SL_FUZZ_CHECK(cfg->source != NULL && cfg->source[cfg->source_len] == '\0');
    SL_FUZZ_CHECK(cfg->nlisten >= 1 && cfg->listen != NULL);
    SL_FUZZ_CHECK(cfg->workers >= 1);
    SL_FUZZ_CHECK(cfg->nroutes >= 1);
    SL_FUZZ_CHECK(cfg->client.max_header_size > 0 && cfg->client.max_headers > 0);
    SL_FUZZ_CHECK(cfg->client.max_uri_size <= cfg->client.max_header_size);
    SL_FUZZ_CHECK(cfg->store.prefix != NULL && strlen(cfg->store.prefix) > 0);
    SL_FUZZ_CHECK(cfg->store.kind != SL_STORE_REDIS || cfg->store.url != NULL);
    SL_FUZZ_CHECK(cfg->access_log != NULL && cfg->error_log != NULL && cfg->log_level != NULL);
    if (cfg->pidfile != NULL)
        SL_FUZZ_CHECK(strlen(cfg->pidfile) > 0);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct sl_upstream_conf *u = &cfg->upstreams[i];
        SL_FUZZ_CHECK(u->name != NULL && strlen(u->name) > 0);
        SL_FUZZ_CHECK(u->nservers >= 1 && u->servers != NULL);
    }
    for (size_t i = 0; i < cfg->nlimits; i++) {
        const struct sl_limit_conf *l = &cfg->limits[i];
        SL_FUZZ_CHECK(l->name != NULL && strlen(l->name) > 0);
        SL_FUZZ_CHECK(l->nparts >= 1 && l->parts != NULL);
        SL_FUZZ_CHECK(l->rate > 0 && l->per_ms > 0 && l->burst >= 1);
        SL_FUZZ_CHECK(l->is_cost_function || (l->cost > 0 && l->cost <= l->burst));
        for (size_t j = 0; j < l->nparts; j++) {
            if (l->parts[j].name != NULL)
                SL_FUZZ_CHECK(strlen(l->parts[j].name) == l->parts[j].name_len);
        }
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route_conf *r = &cfg->routes[i];
        SL_FUZZ_CHECK(r->path != NULL && strlen(r->path) == r->path_len);
        SL_FUZZ_CHECK(r->upstream < cfg->nupstreams);
        if (r->host != NULL)
            SL_FUZZ_CHECK(strlen(r->host) > 0);
        for (size_t j = 0; j < r->nlimits; j++)
            SL_FUZZ_CHECK(r->limits[j] < cfg->nlimits);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_config *cfg;
    char *errors = NULL;
    char *text;
    uint64_t v;

    /* the value parsers take C strings: they see the input up to a NUL */
    text = sl_xstrndup((const char *)data, size);
    (void)sl_config_parse_duration(text, &v);
    (void)sl_config_parse_size(text, &v);
    free(text);

    write_conf(data, size);
    cfg = sl_conf_load_direct(conf_path, NULL, &errors);
    SL_FUZZ_CHECK((cfg == NULL) != (errors == NULL));
    if (cfg != NULL) {
        check_config(cfg);
        sl_fuzz_trace("config: loaded");
    } else {
        check_errors(errors);
        sl_fuzz_trace("config: %s", errors);
    }
    sl_config_free(cfg);
    free(errors);
    return 0;
}
