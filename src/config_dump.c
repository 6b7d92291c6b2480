/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * sluice -T: a loaded config written back as conf text, every key with its
 * value (defaults included), in the order of the option tables, so that an
 * operator sees what sluice will run and can load the text again. Written
 * from the C structs, not the file: what is printed is what was checked.
 *
 * Passwords in store.url are masked; of store.password_file only the name
 * is printed. Key and cost functions exist only in
 * Lua, so the conf runs once more in a sandbox (as a worker's would) and
 * each function is printed from its source text, wrapped in a closure that
 * gives back the locals it uses (its upvalues). A function that cannot be
 * printed that way becomes an error() naming its file:line: the text then
 * refuses to load rather than load as something else.
 */
#include "sluice/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "config_int.h"
#include "sluice/lua_rt.h"
#include "util/alloc.h"
#include "util/redis_url.h"
#include "util/datetime.h"

#define DUMP_MAX_DEPTH 8 /* of upvalues and tables inside a function's closure */

struct dumper {
    const struct sl_config *cfg;
    FILE *out;
    struct sl_lua_sandbox *sb; /* the conf run again, for its functions; NULL: none needed */
    lua_State *L;
    char *err;
    size_t err_size;
    int failures;
};

/* ---- values ------------------------------------------------------------- */

/* A Lua string literal that reads back as the same bytes. */
static void
put_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\%03u", c); /* not followed by a digit: always 3 digits */
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void
put_cstring(FILE *out, const char *s)
{
    put_string(out, s, strlen(s));
}

/* The shortest decimal that reads back as the same double. */
static void
put_number(FILE *out, double v)
{
    char buf[40];

    /* whole numbers without an exponent: rate = 100, not 1e+02 */
    if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(out, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

static void
put_duration(FILE *out, uint64_t ms)
{
    char buf[32];
    sl_conf_format_duration(ms, buf, sizeof(buf));
    fprintf(out, "\"%s\"", buf);
}

static void
put_size(FILE *out, uint64_t bytes)
{
    char buf[32];
    sl_conf_format_size(bytes, buf, sizeof(buf));
    fprintf(out, "\"%s\"", buf);
}

static bool
is_identifier(const char *s)
{
    static const char *const keywords[] = {
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    };

    if (!isalpha((unsigned char)*s) && *s != '_')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    }
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
        if (strcmp(s, keywords[i]) == 0)
            return false;
    }
    return true;
}

/* `name = ` or `["a-b"] = `: upstream and limit names may hold '-' and '.'. */
static void
put_key(FILE *out, const char *name)
{
    if (is_identifier(name)) {
        fprintf(out, "%s = ", name);
    } else {
        fputc('[', out);
        put_cstring(out, name);
        fputs("] = ", out);
    }
}

/* ---- functions ------------------------------------------------------------ */

static void put_lua_value(struct dumper *d, int idx, int depth, int indent);

static void
dump_fail(struct dumper *d, const char *where, const char *why)
{
    fputs("error(", d->out);
    {
        char msg[512];
        snprintf(msg, sizeof(msg), "sluice -T: cannot print the function at %s: %s", where,
                 why);
        put_cstring(d->out, msg);
        if (d->failures++ == 0)
            snprintf(d->err, d->err_size, "the function at %s cannot be printed: %s (the "
                     "text written refuses to load)", where, why);
    }
    fputc(')', d->out);
}

/* The text of the conf file whose chunk name is `source` ("@path"). */
static const char *
file_text(const struct sl_config *cfg, const char *source, size_t *len)
{
    if (source == NULL || source[0] != '@')
        return NULL;
    source++;
    if (cfg->path != NULL && strcmp(source, cfg->path) == 0) {
        *len = cfg->source_len;
        return cfg->source;
    }
    for (size_t i = 0; i < cfg->nfiles; i++) {
        if (strcmp(source, cfg->files[i].path) == 0) {
            *len = cfg->files[i].source_len;
            return cfg->files[i].source;
        }
    }
    return NULL;
}

/* A function of the sandbox's library (idx absolute), by the name the conf
 * would use: `pairs`, `string.lower`. */
static bool
put_library_function(struct dumper *d, int idx)
{
    lua_State *L = d->L;
    bool found = false;
    int lib;

    sl_lua_sandbox_push_library(d->sb);
    lib = lua_gettop(L);
    lua_pushnil(L);
    while (!found && lua_next(L, lib) != 0) {
        int value = lua_gettop(L);
        if (lua_rawequal(L, value, idx)) {
            fputs(lua_tostring(L, value - 1), d->out);
            found = true;
        } else if (lua_istable(L, value)) {
            lua_pushnil(L);
            while (!found && lua_next(L, value) != 0) {
                if (lua_rawequal(L, -1, idx) && lua_type(L, -2) == LUA_TSTRING) {
                    fprintf(d->out, "%s.%s", lua_tostring(L, value - 1), lua_tostring(L, -2));
                    found = true;
                }
                lua_pop(L, 1);
            }
        }
        lua_settop(L, value - 1); /* the key, for lua_next */
    }
    lua_settop(L, lib - 1);
    return found;
}

static void
put_indent(FILE *out, int indent)
{
    fprintf(out, "%*s", indent, "");
}

/* `local name = value` for each upvalue but the function itself, which is
 * only declared (*self_name then names it). false when a name is unknown. */
static bool
put_upvalues(struct dumper *d, int fn, int nups, int depth, int indent, const char **self_name)
{
    lua_State *L = d->L;

    *self_name = NULL;
    for (int i = 1; i <= nups; i++) {
        const char *name = lua_getupvalue(L, fn, i);
        if (name == NULL || !is_identifier(name)) {
            lua_pop(L, name != NULL);
            return false;
        }
        put_indent(d->out, indent + 2);
        if (lua_rawequal(L, -1, fn)) {
            fprintf(d->out, "local %s\n", name);
            *self_name = name;
        } else {
            fprintf(d->out, "local %s = ", name);
            put_lua_value(d, lua_gettop(L), depth + 1, indent + 2);
            fputc('\n', d->out);
        }
        lua_pop(L, 1);
    }
    return true;
}

/*
 * A Lua function of the conf at idx, as an expression: its source text,
 * inside `(function() local up = ... return function(...) end end)()` when
 * it uses locals of the conf.
 */
static void
put_function(struct dumper *d, int idx, int depth, int indent)
{
    lua_State *L = d->L;
    lua_Debug ar;
    char where[300];
    const char *text, *self_name;
    size_t len, kw, params, end;

    lua_pushvalue(L, idx);
    if (!lua_getinfo(L, ">Su", &ar)) {
        dump_fail(d, "?", "no debug information");
        return;
    }
    if (strcmp(ar.what, "C") == 0) {
        if (!put_library_function(d, idx))
            dump_fail(d, "?", "a C function that is not in the sandbox's library");
        return;
    }
    snprintf(where, sizeof(where), "%s:%d", ar.source[0] == '@' ? ar.source + 1 : ar.source,
             ar.linedefined);
    if (depth > DUMP_MAX_DEPTH) {
        dump_fail(d, where, "locals nested too deep");
        return;
    }
    text = file_text(d->cfg, ar.source, &len);
    if (text == NULL
        || !sl_conf_function_text(text, len, ar.linedefined, ar.lastlinedefined, &kw, &params,
                                  &end)) {
        dump_fail(d, where, "its text was not found (a method, or two functions on a line?)");
        return;
    }
    if (ar.nups == 0) {
        fprintf(d->out, "function%.*s", (int)(end - params), text + params);
        return;
    }
    fputs("(function()\n", d->out);
    if (!put_upvalues(d, idx, ar.nups, depth, indent, &self_name)) {
        put_indent(d->out, indent + 2);
        fputs("return ", d->out);
        dump_fail(d, where, "a local it uses has no name");
    } else {
        put_indent(d->out, indent + 2);
        if (self_name != NULL)
            fprintf(d->out, "%s = ", self_name);
        else
            fputs("return ", d->out);
        fprintf(d->out, "function%.*s\n", (int)(end - params), text + params);
        if (self_name != NULL) {
            put_indent(d->out, indent + 2);
            fprintf(d->out, "return %s\n", self_name);
        }
    }
    put_indent(d->out, indent);
    fputs("end)()", d->out);
}

static void
put_lua_table(struct dumper *d, int idx, int depth, int indent)
{
    lua_State *L = d->L;

    if (depth > DUMP_MAX_DEPTH) {
        dump_fail(d, "?", "a table nested too deep (a cycle?)");
        return;
    }
    fputs("{ ", d->out);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING && is_identifier(lua_tostring(L, -2))) {
            fprintf(d->out, "%s = ", lua_tostring(L, -2));
        } else {
            fputc('[', d->out);
            put_lua_value(d, lua_gettop(L) - 1, depth + 1, indent);
            fputs("] = ", d->out);
        }
        put_lua_value(d, lua_gettop(L), depth + 1, indent);
        fputs(", ", d->out);
        lua_pop(L, 1);
    }
    fputc('}', d->out);
}

static void
put_lua_value(struct dumper *d, int idx, int depth, int indent)
{
    lua_State *L = d->L;
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        fputs("nil", d->out);
        break;
    case LUA_TBOOLEAN:
        fputs(lua_toboolean(L, idx) ? "true" : "false", d->out);
        break;
    case LUA_TNUMBER:
        put_number(d->out, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        put_string(d->out, s, len);
        break;
    case LUA_TTABLE:
        put_lua_table(d, idx, depth, indent);
        break;
    case LUA_TFUNCTION:
        put_function(d, idx, depth, indent);
        break;
    default:
        dump_fail(d, "?", "it uses a value that has no text form");
        break;
    }
}

/* limits[name].key (part < 0) or .key[part + 1], or .cost, from the rerun. */
static void
put_conf_function(struct dumper *d, const char *limit, const char *field, int part)
{
    lua_State *L = d->L;

    lua_settop(L, 0);
    sl_lua_sandbox_push_assigned(d->sb);
    lua_getfield(L, -1, "limits");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, limit);
    if (lua_istable(L, -1))
        lua_getfield(L, -1, field);
    if (part >= 0 && lua_istable(L, -1))
        lua_rawgeti(L, -1, part + 1);
    if (lua_isfunction(L, -1))
        put_function(d, lua_gettop(L), 0, 4);
    else
        dump_fail(d, limit, "the conf run again has no such function");
    lua_settop(L, 0);
}

/* ---- sections --------------------------------------------------------------- */

/* Before item i of a list written `{ a, b }` (`{}` when empty). */
static void
put_sep(FILE *out, size_t i)
{
    fputs(i == 0 ? "{ " : ", ", out);
}

/* After a list of n items. */
static void
put_close(FILE *out, size_t n)
{
    fputs(n == 0 ? "{}" : " }", out);
}

static void
put_addresses(FILE *out, const struct sl_sockaddr *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        put_sep(out, i);
        put_cstring(out, a[i].text);
    }
    put_close(out, n);
}

/* The string form when it says everything, else the table form. */
static void
put_listeners(FILE *out, const struct sl_listen_conf *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        put_sep(out, i);
        if (!l[i].is_proxy_protocol && !l[i].has_mode) {
            put_cstring(out, l[i].text);
            continue;
        }
        fputs("{ address = ", out);
        put_cstring(out, l[i].text);
        if (!l[i].is_unix)
            fprintf(out, ", proxy_protocol = %s", l[i].is_proxy_protocol ? "true" : "false");
        if (l[i].has_mode)
            fprintf(out, ", mode = \"%04o\"", l[i].mode);
        fputs(" }", out);
    }
    put_close(out, n);
}

static void
put_cidr(FILE *out, const struct sl_cidr *c)
{
    char text[INET6_ADDRSTRLEN];

    if (inet_ntop(c->family, c->addr, text, sizeof(text)) == NULL)
        snprintf(text, sizeof(text), "?");
    fprintf(out, "\"%s/%u\"", text, c->prefix);
}

/* The token file's name, never the digest of what it holds. */
static void
put_admin(FILE *out, const struct sl_config *cfg)
{
    if (!cfg->has_admin) {
        fputs("false", out);
    } else if (cfg->admin_token_file == NULL) {
        put_cstring(out, cfg->admin.text);
    } else {
        fputs("{ listen = ", out);
        put_cstring(out, cfg->admin.text);
        fputs(", token_file = ", out);
        put_cstring(out, cfg->admin_token_file);
        fputs(" }", out);
    }
}

static void
dump_top(struct dumper *d)
{
    const struct sl_config *cfg = d->cfg;
    FILE *out = d->out;

    fputs("listen = ", out);
    put_listeners(out, cfg->listen, cfg->nlisten);
    fputs("\nadmin = ", out);
    put_admin(out, cfg);
    if (cfg->is_workers_auto)
        fprintf(out, "\nworkers = \"auto\" -- %u here\n", cfg->workers);
    else
        fprintf(out, "\nworkers = %u\n", cfg->workers);
    fputs("trusted_proxies = ", out);
    for (size_t i = 0; i < cfg->ntrusted_proxies; i++) {
        put_sep(out, i);
        put_cidr(out, &cfg->trusted_proxies[i]);
    }
    put_close(out, cfg->ntrusted_proxies);
    fputs("\nshutdown_timeout = ", out);
    put_duration(out, cfg->shutdown_timeout_ms);
    fputs("\naccess_log = ", out);
    put_cstring(out, cfg->access_log);
    fputs("\nerror_log = ", out);
    put_cstring(out, cfg->error_log);
    fputs("\nlog_level = ", out);
    put_cstring(out, cfg->log_level);
    if (cfg->pidfile != NULL) {
        fputs("\npidfile = ", out);
        put_cstring(out, cfg->pidfile);
    } else {
        fputs("\n-- pidfile: none", out);
    }
    fputs("\nslow_request = ", out);
    if (cfg->slow_request_ms == 0)
        fputs("\"0\"", out);
    else
        put_duration(out, cfg->slow_request_ms);
    fprintf(out, "\npath_encoded_slash = \"%s\"\npath_forward = \"%s\"\nlua_max_value_size = ",
            cfg->path_encoded_slash == SL_PATH_SLASH_REJECT ? "reject" : "keep",
            cfg->path_forward == SL_PATH_FORWARD_ORIGINAL ? "original" : "normalized");
    put_size(out, cfg->lua_max_value_size);
    fprintf(out, "\nmax_delayed = %u\n", cfg->max_delayed);
}

/* A tls key: its value, or a comment saying what none means. */
static void
put_tls_key(FILE *out, const char *key, const char *value, const char *none)
{
    if (value == NULL) {
        fprintf(out, "    -- %s: none (%s)\n", key, none);
        return;
    }
    fprintf(out, "    %s = ", key);
    put_cstring(out, value);
    fputs(",\n", out);
}

/* store.tls: written out for a rediss:// url (every key, defaults as
 * comments), a comment otherwise. */
static void
dump_store_tls(FILE *out, const struct sl_store_conf *s)
{
    const struct sl_redis_tls_conf *tls = &s->tls;

    if (tls->ssl_ctx == NULL && !tls->is_set) {
        fputs("  -- tls: none (a rediss:// url turns it on)\n", out);
        return;
    }
    fputs("  tls = {\n", out);
    put_tls_key(out, "ca_file", tls->ca_file, "the system's trust store");
    put_tls_key(out, "cert_file", tls->cert_file, "no client certificate");
    put_tls_key(out, "key_file", tls->key_file, "no client certificate");
    put_tls_key(out, "server_name", tls->server_name,
                strncmp(s->url, "rediss-cluster://", 17) == 0
                    ? "each node's address, as the slot map gives it"
                    : "the url's host");
    fprintf(out, "    verify = %s,\n  },\n", tls->is_verify ? "true" : "false");
}

/* store.sentinel: written out for a redis-sentinel:// url (the file's name,
 * never the password), a comment otherwise. */
static void
dump_store_sentinel(FILE *out, const struct sl_store_conf *s)
{
    const struct sl_redis_sentinel_conf *sc = &s->sentinel;

    if (!sc->is_set && (s->url == NULL || strncmp(s->url, "redis-sentinel://", 17) != 0)) {
        fputs("  -- sentinel: none (a redis-sentinel:// url uses it)\n", out);
        return;
    }
    fputs("  sentinel = {\n", out);
    put_tls_key(out, "user", sc->user, "AUTH with the password alone");
    put_tls_key(out, "password_file", sc->password_file, "the sentinels take no AUTH");
    fputs("  },\n", out);
}

static void
dump_client_store(struct dumper *d)
{
    const struct sl_client_conf *c = &d->cfg->client;
    const struct sl_store_conf *s = &d->cfg->store;
    FILE *out = d->out;

    fputs("\nclient = {\n  header_timeout = ", out);
    put_duration(out, c->header_timeout_ms);
    fputs(",\n  body_timeout = ", out);
    put_duration(out, c->body_timeout_ms);
    fputs(",\n  idle_timeout = ", out);
    put_duration(out, c->idle_timeout_ms);
    fputs(",\n  max_header_size = ", out);
    put_size(out, c->max_header_size);
    fputs(",\n  max_uri_size = ", out);
    put_size(out, c->max_uri_size);
    fprintf(out, ",\n  max_headers = %u,\n  max_body_size = ", c->max_headers);
    put_size(out, c->max_body_size);
    fprintf(out, ",\n  max_connections = %u,\n  request_timeout = ", c->max_connections);
    put_duration(out, c->request_timeout_ms);
    fputs(",\n}\n", out);

    fprintf(out, "\nstore = {\n  kind = \"%s\",\n",
            s->kind == SL_STORE_REDIS ? "redis" : "local");
    if (s->url != NULL) {
        char *masked = sl_redis_url_mask(s->url);
        fputs("  url = ", out);
        put_cstring(out, masked);
        fputs(",\n", out);
        free(masked);
    }
    fputs("  timeout = ", out);
    put_duration(out, s->timeout_ms);
    fprintf(out, ",\n  on_error = \"%s\",\n  prefix = ",
            s->on_error == SL_ON_ERROR_DENY    ? "deny"
            : s->on_error == SL_ON_ERROR_LOCAL ? "local"
                                               : "allow");
    put_cstring(out, s->prefix);
    fprintf(out, ",\n  max_keys = %zu,\n  lease = { ttl = ", s->max_keys);
    put_duration(out, s->lease_ttl_ms);
    fputs(", max_share = ", out);
    put_number(out, s->lease_max_share);
    fputs(" },\n  idempotency_memory = ", out);
    put_size(out, s->idempotency_memory);
    fputs(",\n", out);
    if (s->password_file != NULL) {
        /* the file's name, never its content */
        fputs("  password_file = ", out);
        put_cstring(out, s->password_file);
        fputs(",\n", out);
    } else {
        fputs("  -- password_file: none\n", out);
    }
    dump_store_tls(out, s);
    dump_store_sentinel(out, s);
    fputs("}\n", out);
}

/* A weighted server in the table form, the others as plain strings. */
static void
put_server(FILE *out, const char *text, unsigned weight)
{
    if (weight <= 1) {
        put_cstring(out, text);
        return;
    }
    fputs("{ address = ", out);
    put_cstring(out, text);
    fprintf(out, ", weight = %u }", weight);
}

/* Numeric servers first, then those given by host name. */
static void
put_servers(FILE *out, const struct sl_upstream_conf *u)
{
    for (size_t i = 0; i < u->nservers; i++) {
        put_sep(out, i);
        put_server(out, u->servers[i].text, u->weights != NULL ? u->weights[i] : 1);
    }
    for (size_t i = 0; i < u->nnames; i++) {
        put_sep(out, u->nservers + i);
        put_server(out, u->names[i].text, u->names[i].weight);
    }
    put_close(out, u->nservers + u->nnames);
}

static void
dump_resolver(struct dumper *d)
{
    const struct sl_resolver_conf *rc = &d->cfg->resolver;
    FILE *out = d->out;

    if (rc->nservers == 0) {
        fputs("\nresolver = {\n  -- servers: those of /etc/resolv.conf\n  valid = ", out);
    } else {
        fputs("\nresolver = {\n  servers = ", out);
        put_addresses(out, rc->servers, rc->nservers);
        fputs(",\n  valid = ", out);
    }
    put_duration(out, rc->valid_ms);
    fputs(",\n  timeout = ", out);
    put_duration(out, rc->timeout_ms);
    fputs(",\n}\n", out);
}

static void put_balance(FILE *out, const struct sl_upstream_conf *u);

static void
put_retry(FILE *out, const struct sl_retry_conf *r)
{
    size_t n = 0;

    fprintf(out, ",\n    retries = %u,\n    retry_on = ", r->retries);
    for (unsigned bit = 1; bit != 0 && bit <= r->on; bit <<= 1) {
        if (r->on & bit) {
            put_sep(out, n++);
            put_cstring(out, sl_conf_retry_word(bit));
        }
    }
    put_close(out, n);
    fprintf(out, ",\n    retry_budget = { percent = %u, min = %u }", r->budget_percent,
            r->budget_min);
}

/* Without a path only the passive keys load back: the others are refused. */
static void
put_health(FILE *out, const struct sl_health_conf *hc)
{
    fputs(",\n    health = {\n", out);
    if (hc->path == NULL) {
        fputs("      -- no active checks (no path)\n", out);
    } else {
        fputs("      path = ", out);
        put_cstring(out, hc->path);
        fputs(",\n      interval = ", out);
        put_duration(out, hc->interval_ms);
        fputs(",\n      timeout = ", out);
        put_duration(out, hc->timeout_ms);
        fprintf(out, ",\n      fails = %u,\n      passes = %u,\n", hc->fails, hc->passes);
    }
    fprintf(out, "      max_fails = %u,\n      fail_timeout = ", hc->max_fails);
    put_duration(out, hc->fail_timeout_ms);
    fputs(",\n      max_fail_timeout = ", out);
    put_duration(out, hc->max_fail_timeout_ms);
    fprintf(out, ",\n      passive_5xx = %s,\n    }", hc->is_passive_5xx ? "true" : "false");
}

static void
dump_upstreams(struct dumper *d)
{
    FILE *out = d->out;

    fputs("\nupstreams = {\n", out);
    for (size_t i = 0; i < d->cfg->nupstreams; i++) {
        const struct sl_upstream_conf *u = &d->cfg->upstreams[i];
        fputs("  ", out);
        put_key(out, u->name);
        fputs("{\n    servers = ", out);
        put_servers(out, u);
        fputs(",\n    balance = ", out);
        put_balance(out, u);
        fprintf(out, ",\n    keepalive = %u,\n    connect_timeout = ", u->keepalive);
        put_duration(out, u->connect_timeout_ms);
        fputs(",\n    timeout = ", out);
        put_duration(out, u->timeout_ms);
        fputs(",\n    idle_timeout = ", out);
        put_duration(out, u->idle_timeout_ms);
        fprintf(out, ",\n    max_inflight = %u,\n    queue = %u,\n    tunnel_idle_timeout = ",
                u->max_inflight, u->queue);
        put_duration(out, u->tunnel_idle_timeout_ms);
        put_retry(out, &u->retry);
        put_health(out, &u->health);
        fputs(",\n  },\n", out);
    }
    fputs("}\n", out);
}

/* "hash:" for a balance, "" for a limit's key */
static void
put_selector_as(FILE *out, const char *prefix, const struct sl_key_part *p)
{
    static const char *const words[] = {
        [SL_KEY_IP] = "ip", [SL_KEY_HEADER] = "header:", [SL_KEY_QUERY] = "query:",
        [SL_KEY_COOKIE] = "cookie:", [SL_KEY_PATH] = "path", [SL_KEY_METHOD] = "method",
        [SL_KEY_GLOBAL] = "global",
    };
    char buf[CONF_MAX_NAME + 512];

    snprintf(buf, sizeof(buf), "%s%s%.*s", prefix, words[p->kind], (int)p->name_len,
             p->name != NULL ? p->name : "");
    put_cstring(out, buf);
}

static void
put_selector(FILE *out, const struct sl_key_part *p)
{
    put_selector_as(out, "", p);
}

static void
put_balance(FILE *out, const struct sl_upstream_conf *u)
{
    static const char *const words[] = {
        [SL_BALANCE_ROUND_ROBIN] = "\"round_robin\"", [SL_BALANCE_LEAST_CONN] = "\"least_conn\"",
        [SL_BALANCE_RANDOM2] = "\"random2\"",
    };

    if (u->balance != SL_BALANCE_HASH || u->hash_key == NULL) {
        fputs(words[u->balance], out);
        return;
    }
    put_selector_as(out, "hash:", u->hash_key);
}

static void
dump_limit(struct dumper *d, const struct sl_limit_conf *l)
{
    FILE *out = d->out;

    fputs("  ", out);
    put_key(out, l->name);
    fputs("{\n    key = ", out);
    if (l->nparts == 1 && l->parts[0].kind == SL_KEY_FUNCTION) {
        put_conf_function(d, l->name, "key", -1);
    } else if (l->nparts == 1) {
        put_selector(out, &l->parts[0]);
    } else {
        for (size_t j = 0; j < l->nparts; j++) {
            put_sep(out, j);
            put_selector(out, &l->parts[j]);
        }
        put_close(out, l->nparts);
    }
    fputs(",\n    rate = ", out);
    put_number(out, l->rate);
    fputs(",\n    per = ", out);
    put_duration(out, l->per_ms);
    fputs(",\n    burst = ", out);
    put_number(out, l->burst);
    fputs(",\n    cost = ", out);
    if (l->is_cost_function)
        put_conf_function(d, l->name, "cost", -1);
    else
        put_number(out, l->cost);
    fprintf(out, ",\n    shadow = %s,\n    delay = ", l->is_shadow ? "true" : "false");
    put_duration(out, l->delay_ms);
    fprintf(out, ",\n    cache_hits = %s,\n    lease = %s,\n", l->is_cache_hits ? "true" : "false",
            l->is_leased ? "true" : "false");
    /* only beside an ip part: on any other key the conf check refuses it */
    for (size_t j = 0; j < l->nparts; j++) {
        if (l->parts[j].kind == SL_KEY_IP) {
            fprintf(out, "    ipv6_prefix = %u,\n", l->ipv6_prefix);
            break;
        }
    }
    fputs("  },\n", out);
}

static void
put_date(FILE *out, const char *key, int64_t epoch_s)
{
    char text[SL_RFC3339_SIZE];

    sl_datetime_format_rfc3339(epoch_s, text);
    fprintf(out, "%s = \"%s\"", key, text);
}

/* headers on every route; the rest only where a date makes them mean
 * something (the conf check refuses them elsewhere) */
static void
dump_route_lifecycle(FILE *out, const struct sl_route_conf *r)
{
    const struct sl_lifecycle_conf *lc = &r->lifecycle;

    fputs(",\n    headers = ", out);
    for (size_t j = 0; j < r->nheaders; j++) {
        put_sep(out, j);
        put_key(out, r->headers[j].name);
        put_string(out, r->headers[j].value, r->headers[j].value_len);
    }
    put_close(out, r->nheaders);
    if (!sl_route_has_lifecycle(r))
        return;
    fputs(",\n    ", out);
    if (lc->has_deprecation)
        put_date(out, "deprecation", lc->deprecation_s);
    if (lc->has_sunset) {
        fputs(lc->has_deprecation ? ", " : "", out);
        put_date(out, "sunset", lc->sunset_s);
    }
    if (lc->link != NULL) {
        fputs(", link = ", out);
        put_cstring(out, lc->link);
    }
    fputs(",\n    brownouts = ", out);
    for (size_t j = 0; j < lc->nbrownouts; j++) {
        put_sep(out, j);
        fputs("{ ", out);
        put_date(out, "from", lc->brownouts[j].from_s);
        fputs(", ", out);
        put_date(out, "to", lc->brownouts[j].to_s);
        fputs(" }", out);
    }
    put_close(out, lc->nbrownouts);
    fputs(",\n    consumer = ", out);
    put_selector(out, &lc->consumer);
    fprintf(out, ", consumer_top = %u", lc->consumer_top);
}

static void
dump_route_idempotency(FILE *out, const struct sl_idempotency_conf *ic)
{
    if (ic == NULL)
        return;
    fputs(",\n    idempotency = { methods = ", out);
    for (size_t i = 0; i < ic->nmethods; i++) {
        put_sep(out, i);
        put_cstring(out, ic->methods[i]);
    }
    put_close(out, ic->nmethods);
    fprintf(out, ", required = %s, ttl = ", ic->is_required ? "true" : "false");
    put_duration(out, ic->ttl_ms);
    fputs(", lock = ", out);
    put_duration(out, ic->lock_ms);
    fputs(",\n      max_response = ", out);
    put_size(out, ic->max_response);
    fputs(", scope = ", out);
    put_selector(out, &ic->scope);
    fputs(" }", out);
}

static void
dump_cache(FILE *out, const struct sl_cache_conf *c)
{
    fputs(",\n    cache = { ttl = ", out);
    put_duration(out, c->ttl_ms);
    fputs(", max_memory = ", out);
    put_size(out, c->max_memory);
    fputs(", max_object = ", out);
    put_size(out, c->max_object);
    fputs(",\n              stale_while_revalidate = ", out);
    put_duration(out, c->stale_while_revalidate_ms);
    fputs(", stale_if_error = ", out);
    put_duration(out, c->stale_if_error_ms);
    fputs(", lock_timeout = ", out);
    put_duration(out, c->lock_timeout_ms);
    fputs(" }", out);
}

static void
dump_limits_routes(struct dumper *d)
{
    const struct sl_config *cfg = d->cfg;
    FILE *out = d->out;

    fputs("\nlimits = {\n", out);
    for (size_t i = 0; i < cfg->nlimits; i++)
        dump_limit(d, &cfg->limits[i]);
    fputs("}\n\nroutes = {\n", out);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route_conf *r = &cfg->routes[i];
        fputs("  { path = ", out);
        put_string(out, r->path, r->path_len);
        if (r->host != NULL) {
            fputs(", host = ", out);
            put_cstring(out, r->host);
        }
        fputs(", upstream = ", out);
        put_cstring(out, cfg->upstreams[r->upstream].name);
        dump_route_lifecycle(out, r);
        dump_route_idempotency(out, r->idempotency);
        fputs(",\n    limits = ", out);
        for (size_t j = 0; j < r->nlimits; j++) {
            put_sep(out, j);
            put_cstring(out, cfg->limits[r->limits[j]].name);
        }
        put_close(out, r->nlimits);
        fprintf(out, ", ratelimit_headers = %s, server_timing = %s, websocket = %s",
                r->has_ratelimit_headers ? "true" : "false",
                r->has_server_timing ? "true" : "false", r->has_websocket ? "true" : "false");
        if (r->cache != NULL)
            dump_cache(out, r->cache);
        fputs(" },\n", out);
    }
    fputs("}\n", out);
}

static void
dump_metrics(struct dumper *d)
{
    FILE *out = d->out;

    if (d->cfg->metrics_buckets == NULL) {
        fputs("\nmetrics = {} -- buckets: the built-in bounds, 100 µs to 10 s (see "
              "docs/metrics.md)\n", out);
        return;
    }
    fputs("\nmetrics = { buckets = ", out);
    for (size_t i = 0; i < d->cfg->nmetrics_buckets; i++) {
        put_sep(out, i);
        put_number(out, d->cfg->metrics_buckets[i]);
    }
    put_close(out, d->cfg->nmetrics_buckets);
    fputs(" }\n", out);
}

static bool
needs_functions(const struct sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nlimits; i++) {
        if (cfg->limits[i].is_cost_function)
            return true;
        for (size_t j = 0; j < cfg->limits[i].nparts; j++) {
            if (cfg->limits[i].parts[j].kind == SL_KEY_FUNCTION)
                return true;
        }
    }
    return false;
}

int
sl_config_dump(const struct sl_config *cfg, FILE *out, char *err, size_t err_size)
{
    struct dumper d = { .cfg = cfg, .out = out, .err = err, .err_size = err_size };

    err[0] = '\0';
    if (needs_functions(cfg)) {
        d.sb = sl_lua_sandbox_new(cfg->conf_names, err, err_size);
        if (d.sb == NULL || sl_lua_sandbox_run_config(d.sb, cfg, err, err_size) != 0) {
            sl_lua_sandbox_free(d.sb);
            return -1;
        }
        d.L = sl_lua_sandbox_state(d.sb);
    }
    fputs("-- sluice -T: ", out);
    fputs(cfg->path, out);
    fputs(" as loaded, every key with its value (defaults included);\n"
          "-- includes and env() are resolved, passwords masked\n\n", out);
    dump_top(&d);
    dump_client_store(&d);
    dump_upstreams(&d);
    dump_resolver(&d);
    dump_limits_routes(&d);
    dump_metrics(&d);
    sl_lua_sandbox_free(d.sb);
    return d.failures > 0 ? -1 : 0;
}
