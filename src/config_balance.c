/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * An upstream's `servers` and `balance`: server addresses as strings or as
 * tables { address = ..., weight = ... }, and the name of the algorithm
 * that picks one for a request, with the key selector of "hash:...". Only
 * the reading and checking of the values; the choosing is
 * upstream_balance.c's.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/netaddr.h"
#include "util/alloc.h"

static const char *const server_help =
    "bad address (use host:port, e.g. \"10.0.0.1:8080\", \"[::1]:8080\" or "
    "\"api.default.svc:8080\", or unix:/absolute/path)";

static bool
is_server_listed(const struct sl_upstream_conf *u, const char *text)
{
    for (size_t j = 0; j < u->nservers; j++) {
        if (strcmp(u->servers[j].text, text) == 0)
            return true;
    }
    for (size_t j = 0; j < u->nnames; j++) {
        if (strcmp(u->names[j].text, text) == 0)
            return true;
    }
    return false;
}

/* One server's address at v: a numeric one, else a host name the resolver
 * looks up. */
static bool
add_server(struct loader *ld, int v, struct sl_upstream_conf *u, unsigned weight)
{
    const char *s = sl_conf_get_string(ld, v, NULL);
    char host[256];
    uint16_t port;

    if (s == NULL)
        return false;
    if (strncmp(s, "unix:", 5) == 0 ? sl_sockaddr_parse_unix(s, &u->servers[u->nservers]) == 0
                                    : sl_sockaddr_parse(s, &u->servers[u->nservers]) == 0) {
        if (is_server_listed(u, u->servers[u->nservers].text)) {
            sl_conf_fail_value(ld, v, "listed twice");
            return false;
        }
        u->weights[u->nservers++] = weight;
        return true;
    }
    if (strncmp(s, "unix:", 5) == 0 || sl_hostport_parse(s, host, sizeof(host), &port) != 0) {
        sl_conf_fail_value(ld, v, "%s", server_help);
        return false;
    }
    if (is_server_listed(u, s)) {
        sl_conf_fail_value(ld, v, "listed twice");
        return false;
    }
    u->names[u->nnames++] = (struct sl_server_name){ .host = sl_xstrdup(host), .port = port,
                                                     .text = sl_xstrdup(s), .weight = weight };
    return true;
}

/* A server's table form, read into this before its address is parsed. */
struct server_table {
    unsigned weight;
};

static bool
set_server_address(struct loader *ld, void *obj, int idx)
{
    /* checked once the weight is known, by server_table() */
    (void)obj;
    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        sl_conf_fail_type(ld, idx, "\"host:port\" or \"unix:/path\"");
        return false;
    }
    return true;
}

static const struct opt server_opts[] = {
    ROW_CUSTOM("address", set_server_address),
    ROW_UNSIGNED("weight", "1", 1, SL_UPSTREAM_WEIGHT_MAX, struct server_table, weight),
};

/* { address = "host:port", weight = 3 }; messages name it as
 * `upstream "api": servers[2]`. */
static bool
server_table(struct loader *ld, int v, struct sl_upstream_conf *u)
{
    const char *upstream_ctx = ld->ctx;
    char ctx[CONF_MAX_NAME + 64], lbuf[64];
    struct server_table t;
    struct walk w;
    bool ok = false;

    snprintf(ctx, sizeof(ctx), "%s: %s", upstream_ctx != NULL ? upstream_ctx : "upstream",
             sl_conf_label(ld, lbuf, sizeof(lbuf)));
    ld->ctx = ctx;
    sl_conf_defaults(server_opts, NOPTS(server_opts), &t);
    w = sl_conf_walk(ld, v, server_opts, NOPTS(server_opts), &t);
    if (!(w.seen & sl_conf_opt_bit(server_opts, NOPTS(server_opts), "address"))) {
        fail(ld, "no address (write { address = \"host:port\", weight = 2 })");
    } else if (w.bad == 0) {
        lua_getfield(ld->L, v, "address");
        sl_conf_push_key(ld, "address");
        ok = add_server(ld, lua_gettop(ld->L), u, t.weight);
        sl_conf_pop_key(ld);
        lua_pop(ld->L, 1);
    }
    ld->ctx = upstream_ctx;
    return ok;
}

/* One entry of servers: a string or a table. */
static bool
server_entry(struct loader *ld, int v, struct sl_upstream_conf *u)
{
    if (lua_type(ld->L, v) == LUA_TTABLE)
        return server_table(ld, v, u);
    if (lua_type(ld->L, v) != LUA_TSTRING) {
        sl_conf_fail_type(ld, v, "\"host:port\" or { address = \"host:port\", weight = N }");
        return false;
    }
    return add_server(ld, v, u, 1);
}

bool
sl_conf_set_servers(struct loader *ld, void *obj, int idx)
{
    struct sl_upstream_conf *u = obj;
    bool is_single, ok = true;
    size_t n;

    if (lua_type(ld->L, idx) == LUA_TTABLE) {
        /* a table with an address is one server, any other a list of them */
        lua_getfield(ld->L, idx, "address");
        is_single = !lua_isnil(ld->L, -1);
        lua_pop(ld->L, 1);
        n = is_single ? 1 : sl_conf_items_begin(ld, idx, LUA_TSTRING, "", false, &is_single);
    } else {
        n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "\"host:port\" or a list of them", false,
                                &is_single);
    }
    if (n == 0)
        return false;
    u->servers = sl_xcalloc(n, sizeof(*u->servers));
    u->weights = sl_xcalloc(n, sizeof(*u->weights));
    u->names = sl_xcalloc(n, sizeof(*u->names));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        ok = server_entry(ld, v, u) && ok;
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static const char *const balance_help =
    "unknown balance (use round_robin, least_conn, random2 or hash:SELECTOR, e.g. "
    "hash:header:X-Tenant, hash:ip, hash:cookie:session)";

bool
sl_conf_set_balance(struct loader *ld, void *obj, int idx)
{
    static const struct {
        const char *word;
        enum sl_balance balance;
    } words[] = {
        { "round_robin", SL_BALANCE_ROUND_ROBIN },
        { "least_conn", SL_BALANCE_LEAST_CONN },
        { "random2", SL_BALANCE_RANDOM2 },
    };
    struct sl_upstream_conf *u = obj;
    struct sl_key_part part;
    const char *s, *why;
    size_t len;

    if ((s = sl_conf_get_string(ld, idx, &len)) == NULL)
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(s, words[i].word) == 0) {
            u->balance = words[i].balance;
            return true;
        }
    }
    if (strncmp(s, "hash:", 5) != 0) {
        sl_conf_fail_value(ld, idx, "%s", balance_help);
        return false;
    }
    if (len == 5) {
        sl_conf_fail_value(ld, idx, "missing key selector after hash: (e.g. hash:header:X-Tenant)");
        return false;
    }
    if ((why = sl_conf_parse_selector(s + 5, len - 5, &part)) != NULL) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    if (part.kind == SL_KEY_GLOBAL) {
        sl_conf_fail_value(ld, idx, "hash:global would send every request to one server");
        return false;
    }
    u->balance = SL_BALANCE_HASH;
    u->hash_key = sl_xmalloc(sizeof(*u->hash_key));
    *u->hash_key = part;
    return true;
}

void
sl_conf_balance_free(struct sl_upstream_conf *u)
{
    free(u->weights);
    if (u->hash_key != NULL)
        free(u->hash_key->name);
    free(u->hash_key);
}
