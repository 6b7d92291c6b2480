/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The config loader. Runs the Lua conf file once in a throwaway, sandboxed
 * LuaJIT state (no io, os, require, load...; bounded in instructions and
 * memory), walks the globals it assigned into the plain C structs of
 * sluice/config.h and validates them. Every problem becomes one
 * "file:line: message"; all of them are reported, then the load fails.
 * Files the conf includes are read and recorded in the config (errors name
 * them: each error carries its file). Nothing here logs: the caller (main's
 * -t, daemon's reload) decides. This
 * file runs the steps; config_int.h says which file does what.
 *
 * The conf runs in lua_rt's sandbox, the very one the workers run it in
 * again (same globals, same limits), so a conf that passes here behaves the
 * same there. Lua functions in the conf (limit key and cost functions) never
 * cross into C; they are only recorded, and each worker's runtime fetches
 * limits[name].key / limits[name].cost from its own run.
 */
#include "sluice/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "config_int.h"
#include "sluice/lua_rt.h"
#include "util/alloc.h"
#include "util/secret.h"

#define CONF_MAX_FILE_SIZE (4u << 20) /* a conf bigger than this is a mistake */

/* ------------------------------------------------------------------------ */
/* Running the conf (in lua_rt's sandbox)                                   */
/* ------------------------------------------------------------------------ */

/* Records a message of the sandbox ("path:line: text" or "path: text") as an
 * error of ours, in the conf or the included file it names. */
static void
add_lua_error(struct loader *ld, const char *msg)
{
    size_t file = 0, plen = 0;
    int line = 0;

    for (size_t i = 0; i <= ld->cfg->nfiles; i++) {
        const char *path = sl_conf_file_path(ld, i);
        size_t len = strlen(path);
        if (len > plen && strncmp(msg, path, len) == 0 && msg[len] == ':') {
            file = i;
            plen = len;
        }
    }
    if (plen > 0) {
        char *end;
        long l = strtol(msg + plen + 1, &end, 10);
        if (end != msg + plen + 1 && *end == ':' && l > 0 && l <= INT_MAX) {
            line = (int)l;
            msg = end + 1;
        } else {
            msg += plen + 1;
        }
        while (*msg == ' ')
            msg++;
    }
    sl_conf_add_error(ld, file, line, sl_xstrdup(msg));
}

/*
 * Runs cfg->source in a sandbox. On success leaves the sandbox in ld->sb and
 * the assigned globals at stack index ld->values; returns 0. On a syntax or
 * runtime error records it, returns -1.
 */
static int
run_conf(struct loader *ld, bool is_replay)
{
    struct sl_config *cfg = ld->cfg;
    char err[1024];
    int rc = -1;

    cfg->conf_names = sl_conf_top_names();
    ld->sb = sl_lua_sandbox_new(cfg->conf_names, err, sizeof(err));
    if (ld->sb != NULL && is_replay) {
        rc = sl_lua_sandbox_run_config(ld->sb, cfg, err, sizeof(err));
    } else if (ld->sb != NULL) {
        sl_lua_sandbox_record(ld->sb, cfg); /* include() reads the disk, for this load */
        rc = sl_lua_sandbox_run(ld->sb, cfg->source, cfg->source_len, cfg->path, err,
                                sizeof(err));
    }
    if (rc != 0) {
        add_lua_error(ld, err);
        return -1;
    }
    ld->L = sl_lua_sandbox_state(ld->sb);
    sl_lua_sandbox_push_assigned(ld->sb);
    ld->values = lua_gettop(ld->L);
    return 0;
}


static int
read_source(struct sl_config *cfg, char *err, size_t errsize)
{
    FILE *f = fopen(cfg->path, "rb");
    size_t cap = 0;

    if (f == NULL) {
        snprintf(err, errsize, "cannot open: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (cap - cfg->source_len < 4096) {
            cap = cap ? cap * 2 : 16384;
            cfg->source = sl_xrealloc(cfg->source, cap + 1);
        }
        got = fread(cfg->source + cfg->source_len, 1, cap - cfg->source_len, f);
        cfg->source_len += got;
        if (cfg->source_len > CONF_MAX_FILE_SIZE) {
            snprintf(err, errsize, "larger than %u MiB", CONF_MAX_FILE_SIZE >> 20);
            fclose(f);
            return -1;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errsize, "cannot read: %s", strerror(errno));
        fclose(f);
        return -1;
    }
    fclose(f);
    cfg->source[cfg->source_len] = '\0';
    return 0;
}

/* "file:line: message" lines, by file (the conf first, then included files
 * in the order included) and line; the order of discovery breaks ties. */
static char *
join_errors(struct loader *ld)
{
    size_t total = 0, o = 0;
    char *out;

    for (size_t i = 1; i < ld->nerrs; i++) {
        struct conf_error e = ld->errs[i];
        size_t j = i;
        while (j > 0 && (ld->errs[j - 1].file > e.file
                         || (ld->errs[j - 1].file == e.file && ld->errs[j - 1].line > e.line))) {
            ld->errs[j] = ld->errs[j - 1];
            j--;
        }
        ld->errs[j] = e;
    }
    for (size_t i = 0; i < ld->nerrs; i++)
        total += strlen(sl_conf_file_path(ld, ld->errs[i].file)) + strlen(ld->errs[i].text) + 16;
    out = sl_xmalloc(total + 1);
    out[0] = '\0';
    for (size_t i = 0; i < ld->nerrs; i++) {
        const struct conf_error *e = &ld->errs[i];
        const char *path = sl_conf_file_path(ld, e->file);
        int n;
        if (e->line > 0)
            n = snprintf(out + o, total + 1 - o, "%s%s:%d: %s", i ? "\n" : "", path, e->line,
                         e->text);
        else
            n = snprintf(out + o, total + 1 - o, "%s%s: %s", i ? "\n" : "", path, e->text);
        o += (size_t)n;
    }
    return out;
}

struct sl_config *
sl_config_load(const char *path, char **errors)
{
    return sl_config_load_within(path, SL_CONFIG_TIME_MAX_MS, errors);
}

struct sl_config *
sl_conf_load_direct(const char *path, struct sl_config *snapshot, char **errors)
{
    struct loader ld;
    struct sl_config *cfg = snapshot;
    char err[128];

    *errors = NULL;
    memset(&ld, 0, sizeof(ld));
    if (cfg == NULL) {
        cfg = sl_xcalloc(1, sizeof(*cfg));
        cfg->path = sl_xstrdup(path);
    }
    ld.cfg = cfg;
    sl_conf_set_defaults(cfg);

    if (snapshot == NULL && read_source(cfg, err, sizeof(err)) != 0) {
        sl_conf_add_error(&ld, 0, 0, sl_xstrdup(err));
        goto done;
    }
    if (run_conf(&ld, snapshot != NULL) != 0)
        goto done;
    sl_conf_walk_top(&ld);

done:
    sl_lua_sandbox_free(ld.sb);
    if (ld.nerrs > 0) {
        *errors = join_errors(&ld);
        sl_config_free(cfg);
        cfg = NULL;
    }
    for (size_t i = 0; i < ld.nerrs; i++)
        free(ld.errs[i].text);
    free(ld.errs);
    for (size_t i = 0; i < ld.nstmts; i++)
        sl_conf_stmts_free(ld.stmts[i]);
    free(ld.stmts);
    free(ld.upstream_used);
    return cfg;
}

void
sl_config_free(struct sl_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->source);
    free(cfg->listen);
    free(cfg->admin_token_file);
    free(cfg->resolver.servers);
    free(cfg->trusted_proxies);
    free(cfg->store.url);
    free(cfg->store.password_file);
    sl_secret_free(cfg->store.password);
    sl_conf_redis_tls_fini(&cfg->store.tls);
    sl_conf_redis_sentinel_fini(&cfg->store.sentinel);
    free(cfg->store.prefix);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        free(cfg->upstreams[i].name);
        free(cfg->upstreams[i].servers);
        sl_conf_balance_free(&cfg->upstreams[i]);
        for (size_t j = 0; j < cfg->upstreams[i].nnames; j++) {
            free(cfg->upstreams[i].names[j].host);
            free(cfg->upstreams[i].names[j].text);
        }
        free(cfg->upstreams[i].names);
        free(cfg->upstreams[i].health.path);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nlimits; i++) {
        for (size_t j = 0; j < cfg->limits[i].nparts; j++)
            free(cfg->limits[i].parts[j].name);
        free(cfg->limits[i].parts);
        free(cfg->limits[i].name);
    }
    free(cfg->limits);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].host);
        free(cfg->routes[i].path);
        free(cfg->routes[i].limits);
        sl_conf_free_route_lifecycle(&cfg->routes[i]);
        sl_conf_free_idempotency(cfg->routes[i].idempotency);
        free(cfg->routes[i].cache);
    }
    free(cfg->routes);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->log_level);
    free(cfg->pidfile);
    free(cfg->metrics_buckets);
    free(cfg->conf_names);
    for (size_t i = 0; i < cfg->nfiles; i++) {
        free(cfg->files[i].path);
        free(cfg->files[i].source);
    }
    free(cfg->files);
    for (size_t i = 0; i < cfg->nincludes; i++) {
        free(cfg->includes[i].pattern);
        free(cfg->includes[i].files);
    }
    free(cfg->includes);
    free(cfg);
}

bool
sl_limit_uses_lua(const struct sl_limit_conf *limit)
{
    if (limit->is_cost_function)
        return true;
    for (size_t j = 0; j < limit->nparts; j++) {
        if (limit->parts[j].kind == SL_KEY_FUNCTION)
            return true;
    }
    return false;
}
