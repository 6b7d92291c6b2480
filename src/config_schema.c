/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * What the conf may say: the option table of every section (top level,
 * client, store, upstreams, limits, routes, metrics), the parsers of values
 * that are more than a type with bounds (addresses, key selectors, route
 * paths), and the checks that span options or sections. A new option is a
 * row in its table; config_walk.c does the reading.
 */
#include "config_int.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "sluice/http.h"
#include "sluice/metrics.h"
#include "util/alloc.h"
#include "util/path.h"
#include "util/redis_url.h"
#include "util/token.h"

_Static_assert(sizeof(((struct sl_config *)0)->admin_token_sha256) == SL_SHA256_LEN,
               "the admin token's digest is a SHA-256");

#define CONF_MAX_WORKERS 256

/* The words of enum options, in the order of their C enums. */
static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const store_kinds[] = { "local", "redis", NULL };          /* sl_store_kind */
/* sl_path_encoded_slash, sl_path_forward */
static const char *const encoded_slash_actions[] = { "keep", "reject", NULL };
static const char *const path_forwards[] = { "normalized", "original", NULL };
static const char *const on_error_policies[] = { "allow", "deny", "local", NULL }; /* sl_on_error */
_Static_assert(sizeof(enum sl_store_kind) == sizeof(int) && sizeof(enum sl_on_error) == sizeof(int),
               "OPT_ENUM writes its field as an int");
_Static_assert(sizeof(enum sl_path_encoded_slash) == sizeof(int)
                   && sizeof(enum sl_path_forward) == sizeof(int),
               "OPT_ENUM writes its field as an int");

/* ------------------------------------------------------------------------ */
/* Top level: addresses, workers, logs                                      */
/* ------------------------------------------------------------------------ */

static const char *const address_help =
    "bad address (use host:port with a numeric host, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")";

static bool
parse_one_address(struct loader *ld, int idx, struct sl_sockaddr *addr)
{
    const char *s = sl_conf_get_string(ld, idx, NULL);

    if (s == NULL)
        return false;
    if (sl_sockaddr_parse(s, addr) != 0) {
        sl_conf_fail_value(ld, idx, "%s", address_help);
        return false;
    }
    return true;
}

/* "host:port" or a list of them into a new array; duplicates are errors. */
static bool
parse_addresses(struct loader *ld, int idx, struct sl_sockaddr **out, size_t *nout)
{
    bool is_single, ok = true;
    size_t n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "\"host:port\" or a list of them", false,
                           &is_single);

    free(*out);
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return false;
    *out = sl_xcalloc(n, sizeof(**out));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        struct sl_sockaddr *a = &(*out)[*nout];
        if (parse_one_address(ld, v, a)) {
            bool is_dup = false;
            for (size_t j = 0; j < *nout; j++)
                is_dup = is_dup || strcmp((*out)[j].text, a->text) == 0;
            if (is_dup) {
                sl_conf_fail_value(ld, v, "listed twice");
                ok = false;
            } else {
                (*nout)++;
            }
        } else {
            ok = false;
        }
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static bool
set_admin_listen(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;

    cfg->has_admin = parse_one_address(ld, idx, &cfg->admin);
    return cfg->has_admin;
}

/* Read now, at every load: a reload picks up a new token, and a token file
 * that cannot be used is an error of the conf, at the line that names it. */
static bool
set_admin_token_file(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    const char *path = sl_conf_get_string(ld, idx, NULL);
    char why[160];

    if (path == NULL)
        return false;
    if (sl_token_read(path, cfg->admin_token_sha256, why, sizeof(why)) == -1) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    free(cfg->admin_token_file);
    cfg->admin_token_file = sl_xstrdup(path);
    return true;
}

static const struct opt admin_opts[] = {
    ROW_CUSTOM("listen", set_admin_listen),
    ROW_CUSTOM("token_file", set_admin_token_file),
};

static bool
set_admin(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct walk w;

    if (lua_type(ld->L, idx) == LUA_TBOOLEAN && !lua_toboolean(ld->L, idx)) {
        cfg->has_admin = false;
        return true;
    }
    if (lua_type(ld->L, idx) == LUA_TSTRING)
        return set_admin_listen(ld, obj, idx);
    if (lua_type(ld->L, idx) != LUA_TTABLE) {
        sl_conf_fail_type(ld, idx, "\"host:port\", { listen = \"host:port\", token_file = ... } "
                                   "or false");
        return false;
    }
    ld->ctx = "admin";
    w = sl_conf_walk(ld, idx, admin_opts, NOPTS(admin_opts), cfg);
    if (!(w.seen & sl_conf_opt_bit(admin_opts, NOPTS(admin_opts), "listen"))) {
        fail(ld, "no listen address (admin = { listen = \"host:port\", ... })");
        w.bad |= 1;
    }
    ld->ctx = NULL;
    return w.bad == 0;
}

static unsigned
online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > CONF_MAX_WORKERS ? CONF_MAX_WORKERS : (unsigned)n;
}

static bool
set_workers(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    uint64_t n;

    if (lua_type(ld->L, idx) == LUA_TSTRING && strcmp(lua_tostring(ld->L, idx), "auto") == 0) {
        cfg->workers = online_cpus();
        cfg->is_workers_auto = true;
        return true;
    }
    if (lua_type(ld->L, idx) != LUA_TSTRING && lua_type(ld->L, idx) != LUA_TNUMBER) {
        sl_conf_fail_type(ld, idx, "\"auto\" or a number");
        return false;
    }
    if (lua_type(ld->L, idx) != LUA_TNUMBER || !sl_conf_to_u64(ld->L, idx, &n) || n < 1
        || n > CONF_MAX_WORKERS) {
        sl_conf_fail_value(ld, idx, "use \"auto\" or a whole number from 1 to %d",
                           CONF_MAX_WORKERS);
        return false;
    }
    cfg->workers = (unsigned)n;
    cfg->is_workers_auto = false;
    return true;
}

static bool
set_trusted_proxies(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    bool is_single, ok = true;
    size_t n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "an address/CIDR or a list of them", true,
                           &is_single);

    free(cfg->trusted_proxies);
    cfg->trusted_proxies = NULL;
    cfg->ntrusted_proxies = 0;
    if (n == 0)
        return lua_type(ld->L, idx) == LUA_TTABLE;
    cfg->trusted_proxies = sl_xcalloc(n, sizeof(*cfg->trusted_proxies));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        const char *s = sl_conf_get_string(ld, v, NULL);
        if (s == NULL) {
            ok = false;
        } else if (sl_cidr_parse(s, &cfg->trusted_proxies[cfg->ntrusted_proxies]) != 0) {
            sl_conf_fail_value(ld, v, "bad address or CIDR (use e.g. \"10.0.0.0/8\" or \"::1\")");
            ok = false;
        } else {
            cfg->ntrusted_proxies++;
        }
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static bool
set_error_log(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    const char *s = sl_conf_get_string(ld, idx, NULL);

    if (s == NULL)
        return false;
    if (strcmp(s, "off") == 0) {
        sl_conf_fail_value(ld, idx,
                           "the error log cannot be turned off (use a path or \"stderr\")");
        return false;
    }
    free(cfg->error_log);
    cfg->error_log = sl_xstrdup(s);
    return true;
}

/* ------------------------------------------------------------------------ */
/* client and store                                                         */
/* ------------------------------------------------------------------------ */

static const struct opt request_timeout_opt = ROW_DURATION(
    "request_timeout", "0s", 0, 24 * MS_HOUR, struct sl_client_conf, request_timeout_ms);

/* A duration, or 0 (off, the default): as slow_request, "0" and 0 are taken
 * for zero although durations otherwise need a unit. */
static bool
set_request_timeout(struct loader *ld, void *obj, int idx)
{
    struct sl_client_conf *c = obj;
    int type = lua_type(ld->L, idx);

    if ((type == LUA_TSTRING && strcmp(lua_tostring(ld->L, idx), "0") == 0)
        || (type == LUA_TNUMBER && lua_tonumber(ld->L, idx) == 0)) {
        c->request_timeout_ms = 0;
        return true;
    }
    return sl_conf_set_option(ld, &request_timeout_opt, c, idx);
}

static const struct opt client_opts[] = {
    ROW_DURATION("header_timeout", "10s", 1, 24 * MS_HOUR, struct sl_client_conf,
                 header_timeout_ms),
    ROW_DURATION("body_timeout", "30s", 1, 24 * MS_HOUR, struct sl_client_conf, body_timeout_ms),
    ROW_DURATION("idle_timeout", "60s", 1, 24 * MS_HOUR, struct sl_client_conf, idle_timeout_ms),
    ROW_SIZE("max_header_size", "16k", 1024, 1u << 20, struct sl_client_conf, max_header_size),
    ROW_SIZE("max_uri_size", "8k", 64, 1u << 20, struct sl_client_conf, max_uri_size),
    ROW_UNSIGNED("max_headers", "100", 1, 10000, struct sl_client_conf, max_headers),
    ROW_SIZE64("max_body_size", "0", 0, UINT64_MAX, struct sl_client_conf, max_body_size),
    ROW_UNSIGNED("max_connections", "10000", 1, 10000000, struct sl_client_conf, max_connections),
    ROW_CUSTOM("request_timeout", set_request_timeout),
};

static bool
set_client(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct sl_client_conf *c = &cfg->client;
    uint32_t uri = sl_conf_opt_bit(client_opts, NOPTS(client_opts), "max_uri_size");
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { header_timeout = ..., ... }"))
        return false;
    ld->ctx = "client";
    w = sl_conf_walk(ld, idx, client_opts, NOPTS(client_opts), c);
    if (c->max_uri_size > c->max_header_size && !(w.bad & uri)) {
        char a[32], b[32];
        sl_conf_format_size(c->max_uri_size, a, sizeof(a));
        sl_conf_format_size(c->max_header_size, b, sizeof(b));
        sl_conf_push_key(ld, (w.seen & uri) ? "max_uri_size" : "max_header_size");
        fail(ld, "max_uri_size %s is larger than max_header_size %s", a, b);
        sl_conf_pop_key(ld);
        w.bad |= 1;
    }
    ld->ctx = NULL;
    return w.bad == 0;
}

static bool
set_store_url(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    const char *url = sl_conf_get_string(ld, idx, NULL);
    struct sl_redis_url parsed;
    char why[200];

    if (url == NULL)
        return false;
    if (sl_redis_url_parse_flags(url, SL_REDIS_URL_PASSWORD_LATER, &parsed, why, sizeof(why))) {
        char *masked = sl_redis_url_mask(url); /* never the password in an error */
        fail(ld, "url \"%.60s\": %s", masked, why);
        free(masked);
        return false;
    }
    sl_redis_url_fini(&parsed);
    free(s->url);
    s->url = sl_xstrdup(url);
    return true;
}

static bool
set_store_prefix(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    size_t len;
    const char *p = sl_conf_get_string(ld, idx, &len);

    if (p == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '{' || c == '}') {
            sl_conf_fail_value(ld, idx, "must not contain spaces, control characters or braces");
            return false;
        }
    }
    if (len > 64) {
        sl_conf_fail_value(ld, idx, "longer than 64 bytes");
        return false;
    }
    free(s->prefix);
    s->prefix = sl_xstrdup(p);
    return true;
}

static const struct opt store_opts[] = {
    ROW_ENUM("kind", "local", store_kinds, "unknown store kind (use \"local\" or \"redis\")",
             struct sl_store_conf, kind),
    ROW_CUSTOM("url", set_store_url),
    ROW_DURATION("timeout", "20ms", 1, 10 * MS_SECOND, struct sl_store_conf, timeout_ms),
    ROW_ENUM("on_error", "allow", on_error_policies,
             "unknown policy (use \"allow\", \"deny\" or \"local\")", struct sl_store_conf,
             on_error),
    ROW_CUSTOM("prefix", set_store_prefix),
    ROW_COUNT("max_keys", "2000000", 1, 1000000000, struct sl_store_conf, max_keys),
    ROW_SIZE("idempotency_memory", "64m", 64 * 1024, (size_t)1 << 40, struct sl_store_conf,
             idempotency_memory),
    ROW_CUSTOM("password_file", sl_conf_set_store_password_file),
    ROW_CUSTOM("tls", sl_conf_set_store_tls),
    ROW_CUSTOM("sentinel", sl_conf_set_store_sentinel),
    ROW_CUSTOM("lease", sl_conf_set_store_lease),
};

static bool
set_store(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { kind = \"local\" | \"redis\", ... }"))
        return false;
    ld->ctx = "store";
    w = sl_conf_walk(ld, idx, store_opts, NOPTS(store_opts), &cfg->store);
    if (cfg->store.kind == SL_STORE_REDIS && cfg->store.url == NULL
        && !(w.bad & sl_conf_opt_bit(store_opts, NOPTS(store_opts), "url"))) {
        sl_conf_push_key(ld, "kind");
        fail(ld, "kind \"redis\" needs a url (url = \"redis://host:port\" or \"unix:/path\")");
        sl_conf_pop_key(ld);
        w.bad |= 1;
    }
    if (!sl_conf_check_store_redis(ld, &cfg->store))
        w.bad |= 1;
    ld->ctx = NULL;
    return w.bad == 0;
}

/* ------------------------------------------------------------------------ */
/* upstreams and limits: tables of name = { ... }                           */
/* ------------------------------------------------------------------------ */

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The names of the map at idx, sorted, as new strings; entries without a
 * name are reported. `what` is "upstream" or "limit".
 */
static char **
map_names(struct loader *ld, int idx, const char *what, size_t *n)
{
    char **names = NULL;
    size_t cap = 0;

    *n = 0;
    lua_pushnil(ld->L);
    while (lua_next(ld->L, idx) != 0) {
        if (lua_type(ld->L, -2) == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(ld->L, -2, &len);
            if (*n == cap) {
                cap = cap ? cap * 2 : 8;
                names = sl_xrealloc(names, cap * sizeof(*names));
            }
            names[(*n)++] = sl_xstrndup(s, len);
        } else {
            char vbuf[96];
            sl_conf_push_index(
                ld, lua_type(ld->L, -2) == LUA_TNUMBER ? (long)lua_tonumber(ld->L, -2) : 0);
            fail(ld, "%ss: entry [%s] has no name (write name = { ... })", what,
                 sl_conf_describe(ld->L, -2, vbuf, sizeof(vbuf)));
            sl_conf_pop_key(ld);
        }
        lua_pop(ld->L, 1);
    }
    if (*n > 1)
        qsort(names, *n, sizeof(*names), cmp_names);
    return names;
}

/* Names of upstreams and limits show up in metrics labels and headers. */
static void
check_name(struct loader *ld, const char *name, const char *what)
{
    size_t len = strlen(name);
    bool ok = len > 0 && len <= CONF_MAX_NAME;

    for (size_t i = 0; ok && i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        ok = isalnum(c) || c == '_' || c == '-' || c == '.';
    }
    if (!ok)
        sl_conf_fail_at(ld, false, "%s name \"%s\": use 1 to %d letters, digits, '_', '-' or '.'",
                        what, name, CONF_MAX_NAME);
}

static const struct opt upstream_opts[] = {
    ROW_CUSTOM("servers", sl_conf_set_servers), /* config_balance.c */
    ROW_CUSTOM("balance", sl_conf_set_balance),
    ROW_UNSIGNED("keepalive", "64", 0, 100000, struct sl_upstream_conf, keepalive),
    ROW_DURATION("connect_timeout", "1s", 1, MS_HOUR, struct sl_upstream_conf, connect_timeout_ms),
    ROW_DURATION("timeout", "30s", 1, 24 * MS_HOUR, struct sl_upstream_conf, timeout_ms),
    ROW_DURATION("idle_timeout", "60s", 1, 24 * MS_HOUR, struct sl_upstream_conf, idle_timeout_ms),
    ROW_UNSIGNED("max_inflight", "1024", 1, 1000000, struct sl_upstream_conf, max_inflight),
    ROW_UNSIGNED("queue", "4096", 0, 10000000, struct sl_upstream_conf, queue),
    ROW_DURATION("tunnel_idle_timeout", "1h", 1, 7 * 24 * MS_HOUR, struct sl_upstream_conf,
                 tunnel_idle_timeout_ms),
    ROW_UNSIGNED("retries", "1", 0, 10, struct sl_upstream_conf, retry.retries),
    ROW_CUSTOM("retry_on", sl_conf_set_retry_on),
    ROW_CUSTOM("retry_budget", sl_conf_set_retry_budget),
    ROW_CUSTOM("health", sl_conf_set_health), /* config_health.c */
};

static bool
set_upstreams(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    char **names;
    size_t n;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a table of name = { servers = { ... } }"))
        return false;
    names = map_names(ld, idx, "upstream", &n);
    cfg->upstreams = sl_xcalloc(n ? n : 1, sizeof(*cfg->upstreams));
    cfg->nupstreams = n;
    ld->upstream_used = sl_xcalloc(n ? n : 1, sizeof(*ld->upstream_used));
    for (size_t i = 0; i < n; i++) {
        struct sl_upstream_conf *u = &cfg->upstreams[i];

        u->name = names[i];
        sl_conf_retry_defaults(&u->retry);
        sl_conf_defaults(upstream_opts, NOPTS(upstream_opts), u);
        sl_conf_health_defaults(&u->health);
        sl_conf_push_key(ld, u->name);
        {
            size_t file;
            u->line = sl_conf_where(ld, &file);
            u->file = sl_conf_file_path(ld, file);
        }
        check_name(ld, u->name, "upstream");
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "upstream \"%.*s\"", CONF_MAX_NAME, u->name);
        ld->ctx = ld->ctx_buf;
        lua_getfield(ld->L, idx, u->name);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { servers = { \"host:port\" } }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = sl_conf_walk(ld, -1, upstream_opts, NOPTS(upstream_opts), u);
            if (!(w.seen & sl_conf_opt_bit(upstream_opts, NOPTS(upstream_opts), "servers"))) {
                fail(ld, "no servers (servers = { \"host:port\", ... })");
                ok = false;
            }
            ok = ok && w.bad == 0;
        }
        lua_pop(ld->L, 1);
        ld->ctx = NULL;
        sl_conf_pop_key(ld);
    }
    free(names);
    return ok;
}

static const char *const selector_help =
    "unknown key selector (use ip, header:NAME, query:NAME, cookie:NAME, path, method or global)";

const char *
sl_conf_parse_selector(const char *s, size_t len, struct sl_key_part *part)
{
    static const struct {
        const char *word;
        enum sl_key_kind kind;
    } plain[] = {
        { "ip", SL_KEY_IP }, { "path", SL_KEY_PATH }, { "method", SL_KEY_METHOD },
        { "global", SL_KEY_GLOBAL },
    }, named[] = {
        { "header:", SL_KEY_HEADER }, { "query:", SL_KEY_QUERY }, { "cookie:", SL_KEY_COOKIE },
    };

    memset(part, 0, sizeof(*part));
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (len == strlen(plain[i].word) && memcmp(s, plain[i].word, len) == 0) {
            part->kind = plain[i].kind;
            return NULL;
        }
    }
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t plen = strlen(named[i].word);
        const char *name = s + plen;
        size_t nlen = len - plen;
        if (len < plen || memcmp(s, named[i].word, plen) != 0)
            continue;
        if (nlen == 0)
            return "missing name after the colon";
        for (size_t j = 0; j < nlen; j++) {
            unsigned char c = (unsigned char)name[j];
            bool ok = named[i].kind == SL_KEY_QUERY
                          ? (c > ' ' && c != 0x7f && c != '&' && c != '=' && c != '#')
                          : sl_http_is_tchar(c);
            if (!ok)
                return named[i].kind == SL_KEY_HEADER ? "bad header name"
                       : named[i].kind == SL_KEY_COOKIE ? "bad cookie name"
                                                        : "bad query parameter name";
        }
        part->kind = named[i].kind;
        part->name = sl_xstrndup(name, nlen);
        part->name_len = nlen;
        if (part->kind == SL_KEY_HEADER) {
            for (size_t j = 0; j < nlen; j++)
                part->name[j] = (char)tolower((unsigned char)part->name[j]);
        }
        return NULL;
    }
    return selector_help;
}

static bool
same_part(const struct sl_key_part *a, const struct sl_key_part *b)
{
    return a->kind == b->kind && a->name_len == b->name_len
           && (a->name_len == 0 || memcmp(a->name, b->name, a->name_len) == 0);
}

static bool
set_limit_key(struct loader *ld, void *obj, int idx)
{
    struct sl_limit_conf *l = obj;
    lua_State *L = ld->L;
    bool is_single, ok = true;
    size_t n;

    if (lua_type(L, idx) == LUA_TFUNCTION) {
        l->parts = sl_xcalloc(1, sizeof(*l->parts));
        l->parts[0].kind = SL_KEY_FUNCTION;
        l->nparts = 1;
        return true;
    }
    n = sl_conf_items_begin(ld, idx, LUA_TSTRING,
                    "a key selector (\"ip\", \"header:NAME\", ...), a list of them or a function",
                    false, &is_single);
    if (n == 0)
        return false;
    l->parts = sl_xcalloc(n, sizeof(*l->parts));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        struct sl_key_part *part = &l->parts[l->nparts];
        size_t len;
        const char *s, *why;

        if (lua_type(L, v) == LUA_TFUNCTION) {
            char lbuf[96];
            fail(ld, "%s: a key function cannot be part of a composite key",
                 sl_conf_label(ld, lbuf, sizeof(lbuf)));
            ok = false;
        } else if ((s = sl_conf_get_string(ld, v, &len)) == NULL) {
            ok = false;
        } else if ((why = sl_conf_parse_selector(s, len, part)) != NULL) {
            sl_conf_fail_value(ld, v, "%s", why);
            ok = false;
        } else {
            bool is_dup = false;
            for (size_t j = 0; j < l->nparts; j++)
                is_dup = is_dup || same_part(&l->parts[j], part);
            if (is_dup) {
                sl_conf_fail_value(ld, v, "listed twice in the key");
                free(part->name);
                ok = false;
            } else if (!is_single && n > 1 && part->kind == SL_KEY_GLOBAL) {
                sl_conf_fail_value(ld, v, "global cannot be combined with other key parts");
                ok = false;
            } else {
                l->nparts++;
            }
        }
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static bool
set_limit_cost(struct loader *ld, void *obj, int idx)
{
    static const struct opt cost_number = ROW_NUMBER("cost", 0, true, DBL_MAX, struct sl_limit_conf,
                                                     cost);
    struct sl_limit_conf *l = obj;

    if (lua_type(ld->L, idx) == LUA_TFUNCTION) {
        l->is_cost_function = true;
        return true;
    }
    if (lua_type(ld->L, idx) != LUA_TNUMBER) {
        sl_conf_fail_type(ld, idx, "a number or a function");
        return false;
    }
    return sl_conf_set_option(ld, &cost_number, obj, idx);
}

static const struct opt limit_opts[] = {
    ROW_CUSTOM("key", set_limit_key),
    ROW_NUMBER("rate", 0, true, 1e9, struct sl_limit_conf, rate),
    ROW_DURATION("per", "1s", 1, 8760 * MS_HOUR, struct sl_limit_conf, per_ms),
    ROW_NUMBER("burst", 1, false, 1e12, struct sl_limit_conf, burst),
    ROW_CUSTOM("cost", set_limit_cost),
    ROW_BOOL("shadow", "false", struct sl_limit_conf, is_shadow),
    ROW_DURATION("delay", "0s", 0, 60 * 1000, struct sl_limit_conf, delay_ms),
    ROW_UNSIGNED("ipv6_prefix", "128", 1, 128, struct sl_limit_conf, ipv6_prefix),
    ROW_BOOL("cache_hits", "true", struct sl_limit_conf, is_cache_hits),
    ROW_BOOL("lease", "false", struct sl_limit_conf, is_leased),
};

static bool
has_ip_part(const struct sl_limit_conf *l)
{
    for (size_t i = 0; i < l->nparts; i++) {
        if (l->parts[i].kind == SL_KEY_IP)
            return true;
    }
    return false;
}

/* Checks between the fields of one limit, after they are all parsed. */
static bool
check_limit(struct loader *ld, struct sl_limit_conf *l, struct walk w)
{
    uint32_t key = sl_conf_opt_bit(limit_opts, NOPTS(limit_opts), "key");
    uint32_t rate = sl_conf_opt_bit(limit_opts, NOPTS(limit_opts), "rate");
    uint32_t burst = sl_conf_opt_bit(limit_opts, NOPTS(limit_opts), "burst");
    uint32_t cost = sl_conf_opt_bit(limit_opts, NOPTS(limit_opts), "cost");
    bool ok = w.bad == 0, has_burst = false;

    if (!(w.seen & key)) {
        fail(ld, "no key (key = \"ip\", \"header:NAME\", ..., a list of them or a function)");
        ok = false;
    }
    if (!(w.seen & rate)) {
        fail(ld, "no rate (rate = tokens per `per`)");
        ok = false;
    } else if (!(w.bad & rate) && !(w.seen & burst)) {
        if (l->rate < 1) {
            sl_conf_push_key(ld, "rate");
            fail(ld, "rate %g: burst defaults to rate and must be at least 1: set burst", l->rate);
            sl_conf_pop_key(ld);
            ok = false;
        } else {
            l->burst = l->rate;
            has_burst = true;
        }
    } else if ((w.seen & burst) && !(w.bad & burst)) {
        has_burst = true;
    }
    if ((w.seen & sl_conf_opt_bit(limit_opts, NOPTS(limit_opts), "ipv6_prefix"))
        && (w.seen & key) && !(w.bad & key) && !has_ip_part(l)) {
        sl_conf_push_key(ld, "ipv6_prefix");
        fail(ld, "ipv6_prefix: the key has no \"ip\" part for it to apply to");
        sl_conf_pop_key(ld);
        ok = false;
    }
    if (has_burst && (w.seen & cost) && !(w.bad & cost) && !l->is_cost_function
        && l->cost > l->burst) {
        sl_conf_push_key(ld, "cost");
        fail(ld, "cost %g is more than burst %g: no request could ever pass", l->cost, l->burst);
        sl_conf_pop_key(ld);
        ok = false;
    }
    return ok;
}

static bool
set_limits(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    char **names;
    size_t n;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a table of name = { key = ..., rate = ... }"))
        return false;
    names = map_names(ld, idx, "limit", &n);
    cfg->limits = sl_xcalloc(n ? n : 1, sizeof(*cfg->limits));
    cfg->nlimits = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_limit_conf *l = &cfg->limits[i];

        l->name = names[i];
        l->cost = 1;
        sl_conf_defaults(limit_opts, NOPTS(limit_opts), l);
        sl_conf_push_key(ld, l->name);
        {
            size_t file;
            l->line = sl_conf_where(ld, &file);
            l->file = sl_conf_file_path(ld, file);
        }
        check_name(ld, l->name, "limit");
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "limit \"%.*s\"", CONF_MAX_NAME, l->name);
        ld->ctx = ld->ctx_buf;
        lua_getfield(ld->L, idx, l->name);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { key = ..., rate = ... }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = sl_conf_walk(ld, -1, limit_opts, NOPTS(limit_opts), l);
            ok = check_limit(ld, l, w) && ok;
        }
        lua_pop(ld->L, 1);
        ld->ctx = NULL;
        sl_conf_pop_key(ld);
    }
    free(names);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* routes                                                                   */
/* ------------------------------------------------------------------------ */

/* Requests are matched on their normalised path (util/path.h): a route
 * written otherwise could never match, or not what it seems to say. */
static bool
is_normal_path(struct loader *ld, int idx, const char *p, size_t len)
{
    char *norm = sl_xmalloc(len);
    size_t norm_len = 0;
    enum sl_path_result r = sl_path_normalize(p, len, norm, &norm_len, 0);
    bool is_normal = r == SL_PATH_OK && norm_len == len && memcmp(norm, p, len) == 0;

    if (r != SL_PATH_OK)
        sl_conf_fail_value(ld, idx, "bad %%-escape (use %%XX with two hex digits)");
    else if (!is_normal)
        sl_conf_fail_value(ld, idx, "not a normalized path (requests are matched after "
                           "normalization; write \"%.*s\")", (int)norm_len, norm);
    free(norm);
    return is_normal;
}

static bool
set_route_path(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    size_t len;
    const char *p = sl_conf_get_string(ld, idx, &len);

    if (p == NULL)
        return false;
    if (p[0] != '/') {
        sl_conf_fail_value(ld, idx, "must start with /");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '?' || c == '#') {
            sl_conf_fail_value(ld, idx, "must not contain spaces, control characters, ? or #");
            return false;
        }
    }
    if (!is_normal_path(ld, idx, p, len))
        return false;
    free(r->path);
    r->path = sl_xstrndup(p, len);
    r->path_len = len;
    return true;
}

static bool
set_route_host(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    size_t len;
    const char *h = sl_conf_get_string(ld, idx, &len);

    if (h == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == ':') {
            sl_conf_fail_value(ld, idx, "write the host without a port");
            return false;
        }
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
            sl_conf_fail_value(ld, idx, "bad host name");
            return false;
        }
    }
    free(r->host);
    r->host = sl_xstrndup(h, len);
    for (size_t i = 0; i < len; i++)
        r->host[i] = (char)tolower((unsigned char)r->host[i]);
    return true;
}

static bool
set_route_upstream(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    struct sl_config *cfg = ld->cfg;
    const char *name = sl_conf_get_string(ld, idx, NULL);

    if (name == NULL)
        return false;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (strcmp(cfg->upstreams[i].name, name) == 0) {
            r->upstream = i;
            ld->upstream_used[i] = true;
            return true;
        }
    }
    sl_conf_fail_value(ld, idx, "no such upstream");
    ld->has_unknown_upstream = true;
    return false;
}

static bool
set_route_limits(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    struct sl_config *cfg = ld->cfg;
    bool is_single, ok = true;
    size_t n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "a limit name or a list of them", true,
                           &is_single);

    free(r->limits);
    r->limits = NULL;
    r->nlimits = 0;
    if (n == 0)
        return lua_type(ld->L, idx) == LUA_TTABLE;
    r->limits = sl_xcalloc(n, sizeof(*r->limits));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        const char *name = sl_conf_get_string(ld, v, NULL);
        size_t found = SIZE_MAX;

        for (size_t j = 0; name != NULL && j < cfg->nlimits; j++) {
            if (strcmp(cfg->limits[j].name, name) == 0)
                found = j;
        }
        if (name == NULL) {
            ok = false;
        } else if (found == SIZE_MAX) {
            sl_conf_fail_value(ld, v, "no such limit");
            ok = false;
        } else {
            bool is_dup = false;
            for (size_t j = 0; j < r->nlimits; j++)
                is_dup = is_dup || r->limits[j] == found;
            if (is_dup) {
                sl_conf_fail_value(ld, v, "listed twice");
                ok = false;
            } else {
                r->limits[r->nlimits++] = found;
            }
        }
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static const struct opt route_opts[] = {
    ROW_CUSTOM("path", set_route_path),
    ROW_CUSTOM("host", set_route_host),
    ROW_CUSTOM("upstream", set_route_upstream),
    ROW_CUSTOM("limits", set_route_limits),
    ROW_BOOL("ratelimit_headers", "true", struct sl_route_conf, has_ratelimit_headers),
    ROW_BOOL("server_timing", "false", struct sl_route_conf, has_server_timing),
    ROW_BOOL("websocket", "true", struct sl_route_conf, has_websocket),
    SL_CONF_LIFECYCLE_ROWS,
    ROW_CUSTOM("idempotency", sl_conf_set_idempotency), /* config_idempotency.c */
    ROW_CUSTOM("cache", sl_conf_set_route_cache),
};

static bool
same_host(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
set_routes(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    size_t n;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a list of { path = ..., upstream = ... }"))
        return false;
    n = sl_conf_list_len(ld, idx);
    cfg->routes = sl_xcalloc(n ? n : 1, sizeof(*cfg->routes));
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_route_conf *r = &cfg->routes[i];

        sl_conf_defaults(route_opts, NOPTS(route_opts), r);
        sl_conf_push_index(ld, (long)i + 1);
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "route %zu", i + 1);
        ld->ctx = ld->ctx_buf;
        lua_rawgeti(ld->L, idx, (int)i + 1);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { path = ..., upstream = ... }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = sl_conf_walk(ld, -1, route_opts, NOPTS(route_opts), r);
            if (!(w.seen & sl_conf_opt_bit(route_opts, NOPTS(route_opts), "path"))) {
                fail(ld, "no path (path = \"/prefix\")");
                ok = false;
            }
            if (!(w.seen & sl_conf_opt_bit(route_opts, NOPTS(route_opts), "upstream"))) {
                fail(ld, "no upstream (upstream = \"name\")");
                ok = false;
            }
            ok = ok && w.bad == 0;
            ok = sl_conf_check_lifecycle(ld, r) && ok;
        }
        lua_pop(ld->L, 1);
        for (size_t j = 0; j < i && r->path != NULL; j++) {
            const struct sl_route_conf *o = &cfg->routes[j];
            if (o->path != NULL && strcmp(o->path, r->path) == 0 && same_host(o->host, r->host)
                && sl_conf_same_headers(o, r)) {
                sl_conf_push_key(ld, "path");
                fail(ld, "path \"%s\"%s%s%s: same host and path as route %zu", r->path,
                     r->host ? " on host \"" : "", r->host ? r->host : "", r->host ? "\"" : "",
                     j + 1);
                sl_conf_pop_key(ld);
                ok = false;
                break;
            }
        }
        ld->ctx = NULL;
        sl_conf_pop_key(ld);
    }
    return ok;
}

/* ------------------------------------------------------------------------ */
/* slow_request and metrics                                                 */
/* ------------------------------------------------------------------------ */

static const struct opt slow_request_opt =
    ROW_DURATION("slow_request", "0s", 0, MS_HOUR, struct sl_config, slow_request_ms);

/*
 * A duration up to 1h, or 0 (off). Durations refuse bare numbers so that
 * "30" cannot mean 30 ms where 30 s was meant; zero is zero in any unit, so
 * "0" and 0 are accepted here.
 */
static bool
set_slow_request(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    int type = lua_type(ld->L, idx);

    if ((type == LUA_TSTRING && strcmp(lua_tostring(ld->L, idx), "0") == 0)
        || (type == LUA_TNUMBER && lua_tonumber(ld->L, idx) == 0)) {
        cfg->slow_request_ms = 0;
        return true;
    }
    return sl_conf_set_option(ld, &slow_request_opt, cfg, idx);
}

/*
 * Histogram bounds in seconds, Prometheus-style numbers (not durations: the
 * exposition's `le` labels are seconds too). The acceptable set is the
 * metrics module's, so a conf that passes here cannot fail in
 * sl_metrics_new. Its check stops at the first bad bound without saying
 * which; checking growing prefixes finds it, to blame that entry's line.
 */
static bool
set_metrics_buckets(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    char lbuf[96], err[160];
    double *bounds;
    size_t n;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a list of numbers in seconds, e.g. { 0.001, 0.01, 0.1, 1 }"))
        return false;
    n = sl_conf_list_len(ld, idx);
    if (n == 0 || n > SL_METRICS_MAX_BUCKETS) {
        double none = 0;
        (void)sl_metrics_check_buckets(&none, n, err, sizeof(err));
        fail(ld, "%s: %s", sl_conf_label(ld, lbuf, sizeof(lbuf)), err);
        return false;
    }
    bounds = sl_xcalloc(n, sizeof(*bounds));
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(ld->L, idx, (int)i + 1);
        sl_conf_push_index(ld, (long)i + 1);
        if (lua_type(ld->L, -1) != LUA_TNUMBER) {
            sl_conf_fail_type(ld, -1, "a number of seconds");
            ok = false;
        } else {
            bounds[i] = lua_tonumber(ld->L, -1);
        }
        sl_conf_pop_key(ld);
        lua_pop(ld->L, 1);
    }
    for (size_t i = 0; ok && i < n; i++) {
        if (sl_metrics_check_buckets(bounds, i + 1, err, sizeof(err)) == 0)
            continue;
        /* one error: every later bound may only look wrong next to this one */
        sl_conf_push_index(ld, (long)i + 1);
        fail(ld, "%s: %s", sl_conf_label(ld, lbuf, sizeof(lbuf)), err);
        sl_conf_pop_key(ld);
        ok = false;
    }
    if (!ok) {
        free(bounds);
        return false;
    }
    free(cfg->metrics_buckets);
    cfg->metrics_buckets = bounds;
    cfg->nmetrics_buckets = n;
    return true;
}

static bool
set_resolver_servers(struct loader *ld, void *obj, int idx)
{
    struct sl_resolver_conf *rc = obj;
    return parse_addresses(ld, idx, &rc->servers, &rc->nservers);
}

static const struct opt resolver_opts[] = {
    ROW_CUSTOM("servers", set_resolver_servers),
    ROW_DURATION("valid", "30s", 1000, 24 * MS_HOUR, struct sl_resolver_conf, valid_ms),
    ROW_DURATION("timeout", "2s", 100, 60000, struct sl_resolver_conf, timeout_ms),
};

static bool
set_resolver(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { servers = { ... }, valid = ..., timeout = ... }"))
        return false;
    ld->ctx = "resolver";
    w = sl_conf_walk(ld, idx, resolver_opts, NOPTS(resolver_opts), &cfg->resolver);
    ld->ctx = NULL;
    return w.bad == 0;
}

static const struct opt metrics_opts[] = {
    ROW_CUSTOM("buckets", set_metrics_buckets),
};

static bool
set_metrics(struct loader *ld, void *obj, int idx)
{
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { buckets = { ... } }"))
        return false;
    ld->ctx = "metrics";
    w = sl_conf_walk(ld, idx, metrics_opts, NOPTS(metrics_opts), obj);
    ld->ctx = NULL;
    return w.bad == 0;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

/* Order matters: upstreams and limits before routes, which name them. */
static const struct opt top_opts[] = {
    ROW_CUSTOM("listen", sl_conf_set_listen),
    ROW_CUSTOM("admin", set_admin),
    ROW_CUSTOM("workers", set_workers),
    ROW_CUSTOM("trusted_proxies", set_trusted_proxies),
    ROW_DURATION("shutdown_timeout", "30s", 0, MS_HOUR, struct sl_config, shutdown_timeout_ms),
    ROW_CUSTOM("client", set_client),
    ROW_CUSTOM("store", set_store),
    ROW_CUSTOM("upstreams", set_upstreams),
    ROW_CUSTOM("resolver", set_resolver),
    ROW_CUSTOM("limits", set_limits),
    ROW_CUSTOM("routes", set_routes),
    ROW_ENUM("path_encoded_slash", "keep", encoded_slash_actions,
             "unknown action (use \"keep\" or \"reject\")", struct sl_config, path_encoded_slash),
    ROW_ENUM("path_forward", "normalized", path_forwards,
             "unknown choice (use \"normalized\" or \"original\")", struct sl_config, path_forward),
    ROW_SIZE("lua_max_value_size", "1k", 16, 1u << 20, struct sl_config, lua_max_value_size),
    ROW_UNSIGNED("max_delayed", "1024", 0, 1000000, struct sl_config, max_delayed),
    ROW_STRING("access_log", "stderr", struct sl_config, access_log),
    ROW_CUSTOM("error_log", set_error_log),
    ROW_WORD("log_level", "info", log_levels, "unknown log level (use debug, info, warn or error)",
             struct sl_config, log_level),
    ROW_STRING("pidfile", NULL, struct sl_config, pidfile),
    ROW_CUSTOM("slow_request", set_slow_request),
    ROW_CUSTOM("metrics", set_metrics),
};

static const char **
opt_names(const struct opt *opts, size_t n)
{
    const char **names = sl_xcalloc(n + 1, sizeof(*names));

    for (size_t i = 0; i < n; i++)
        names[i] = opts[i].name;
    return names;
}

const char **
sl_conf_top_names(void)
{
    return opt_names(top_opts, NOPTS(top_opts));
}

const char **
sl_conf_section_names(const char *section)
{
    static const struct {
        const char *name;
        const struct opt *opts;
        size_t n;
    } sections[] = {
        { "client", client_opts, NOPTS(client_opts) },
        { "store", store_opts, NOPTS(store_opts) },
        { "upstreams", upstream_opts, NOPTS(upstream_opts) },
        { "limits", limit_opts, NOPTS(limit_opts) },
        { "routes", route_opts, NOPTS(route_opts) },
        { "metrics", metrics_opts, NOPTS(metrics_opts) },
    };

    if (strcmp(section, "health") == 0) /* an upstream's health table (config_health.c) */
        return sl_conf_health_names();
    if (strcmp(section, "listen") == 0) /* a listener's table (config_listen.c) */
        return opt_names(sl_conf_listen_opts, sl_conf_nlisten_opts);
    if (strcmp(section, "cache") == 0) /* a route's cache (config_cache.c) */
        return opt_names(sl_conf_cache_opts, sl_conf_ncache_opts);
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        if (strcmp(section, sections[i].name) == 0)
            return opt_names(sections[i].opts, sections[i].n);
    }
    return NULL;
}

void
sl_conf_set_defaults(struct sl_config *cfg)
{
    sl_conf_defaults(top_opts, NOPTS(top_opts), cfg);
    sl_conf_defaults(client_opts, NOPTS(client_opts), &cfg->client);
    sl_conf_defaults(store_opts, NOPTS(store_opts), &cfg->store);
    sl_conf_redis_tls_defaults(&cfg->store.tls);
    sl_conf_lease_defaults(&cfg->store);
    sl_conf_defaults(resolver_opts, NOPTS(resolver_opts), &cfg->resolver);
    (void)sl_sockaddr_parse("127.0.0.1:9901", &cfg->admin);
    cfg->has_admin = true;
    cfg->workers = online_cpus();
    cfg->is_workers_auto = true;
    cfg->error_log = sl_xstrdup("stderr");
    cfg->store.prefix = sl_xstrdup("sluice");
}

static bool
is_wildcard(const struct sockaddr_storage *ss)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr == INADDR_ANY;
    return memcmp(&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, &any6,
                  sizeof(any6)) == 0;
}

static uint16_t
port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)ss)->sin_port;
    return ((const struct sockaddr_in6 *)(const void *)ss)->sin6_port;
}

/* Whether a proxy listener at `listen` would also take connections for
 * `admin`: the same port, and the same address or a wildcard on either side
 * (a wildcard [::] takes IPv4 too). */
static bool
is_overlapping(const struct sl_listen_conf *listen, const struct sl_sockaddr *admin)
{
    if (listen->is_unix || port_of(&listen->ss) != port_of(&admin->ss))
        return false;
    return strcmp(listen->text, admin->text) == 0 || is_wildcard(&listen->ss)
           || is_wildcard(&admin->ss);
}

/* The admin listener must never be reachable through the proxy. */
static void
check_admin_apart(struct loader *ld, struct walk top)
{
    struct sl_config *cfg = ld->cfg;
    bool is_admin_written = top.seen & sl_conf_opt_bit(top_opts, NOPTS(top_opts), "admin");

    for (size_t i = 0; i < cfg->nlisten; i++) {
        const char *how = strcmp(cfg->listen[i].text, cfg->admin.text) == 0
                              ? "same address as"
                              : "same port as, and overlapping with,";
        if (!is_overlapping(&cfg->listen[i], &cfg->admin))
            continue;
        /* blame the line the operator wrote: admin, or listen when admin is the default */
        if (is_admin_written) {
            sl_conf_push_key(ld, "admin");
            fail(ld, "admin \"%s\": %s listen \"%s\"; the admin listener must never be "
                 "reachable through the proxy", cfg->admin.text, how, cfg->listen[i].text);
            sl_conf_pop_key(ld);
        } else {
            sl_conf_push_key(ld, "listen");
            sl_conf_push_index(ld, (long)i + 1);
            fail(ld, "listen \"%s\": %s the default admin listener \"%s\" (set admin to "
                 "another address or false)", cfg->listen[i].text, how, cfg->admin.text);
            sl_conf_pop_key(ld);
            sl_conf_pop_key(ld);
        }
    }
}

/* Checks that span sections, run after the whole file is walked. */
static void
check_whole(struct loader *ld, struct walk top)
{
    struct sl_config *cfg = ld->cfg;

    if (cfg->nlisten == 0 && !(top.bad & sl_conf_opt_bit(top_opts, NOPTS(top_opts), "listen"))) {
        sl_conf_push_key(ld, "listen");
        fail(ld, "no listen address (listen = \"host:port\")");
        sl_conf_pop_key(ld);
    }
    if (cfg->nroutes == 0 && !(top.bad & sl_conf_opt_bit(top_opts, NOPTS(top_opts), "routes"))) {
        sl_conf_push_key(ld, "routes");
        fail(ld, "no routes (routes = { { path = \"/\", upstream = \"name\" } })");
        sl_conf_pop_key(ld);
    }
    if (cfg->has_admin)
        check_admin_apart(ld, top);
    /* after a misspelt upstream in a route, the unused one is most likely
     * the one that was meant: one error for one mistake */
    if (cfg->nroutes > 0 && !ld->has_unknown_upstream) {
        for (size_t i = 0; i < cfg->nupstreams; i++) {
            if (ld->upstream_used[i])
                continue;
            sl_conf_push_key(ld, "upstreams");
            sl_conf_push_key(ld, cfg->upstreams[i].name);
            fail(ld, "upstream \"%s\" is not used by any route", cfg->upstreams[i].name);
            sl_conf_pop_key(ld);
            sl_conf_pop_key(ld);
        }
    }
}

void
sl_conf_walk_top(struct loader *ld)
{
    check_whole(ld, sl_conf_walk(ld, ld->values, top_opts, NOPTS(top_opts), ld->cfg));
}
