/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The conf's `listen`: "host:port", "unix:/path", or a table
 * { address = ..., proxy_protocol = ..., mode = ... }, alone or in a list
 * that may mix them. Only the reading and checking of the values; the
 * sockets are proxy.c's and proxy_listen.c's.
 */
#include "config_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sluice/netaddr.h"
#include "util/alloc.h"

static const char *const address_help =
    "bad address (use host:port with a numeric host, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\", "
    "or unix:/path)";

#define UNIX_PREFIX "unix:"

/* "unix:/path" into l; false after reporting why not. */
static bool
parse_unix_address(struct loader *ld, int idx, const char *s, struct sl_listen_conf *l)
{
    const char *path = s + strlen(UNIX_PREFIX);
    struct sockaddr_un *sun = (struct sockaddr_un *)(void *)&l->ss;
    size_t len = strlen(path);

    if (path[0] != '/') {
        sl_conf_fail_value(ld, idx,
                           "a unix socket needs an absolute path (\"unix:/run/sluice.sock\")");
        return false;
    }
    if (len >= sizeof(sun->sun_path)) {
        sl_conf_fail_value(ld, idx, "unix socket path longer than %zu bytes",
                           sizeof(sun->sun_path) - 1);
        return false;
    }
    memset(&l->ss, 0, sizeof(l->ss));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    l->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    l->is_unix = true;
    snprintf(l->text, sizeof(l->text), "%s", s);
    return true;
}

static bool
set_listen_address(struct loader *ld, void *obj, int idx)
{
    struct sl_listen_conf *l = obj;
    struct sl_sockaddr a;
    const char *s = sl_conf_get_string(ld, idx, NULL);

    if (s == NULL)
        return false;
    if (strncmp(s, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0)
        return parse_unix_address(ld, idx, s, l);
    if (sl_sockaddr_parse(s, &a) != 0) {
        sl_conf_fail_value(ld, idx, "%s", address_help);
        return false;
    }
    memcpy(&l->ss, &a.ss, sizeof(l->ss));
    l->len = a.len;
    snprintf(l->text, sizeof(l->text), "%s", a.text);
    return true;
}

/* A string of octal digits: a Lua number 0660 would be decimal 660. */
static bool
set_listen_mode(struct loader *ld, void *obj, int idx)
{
    struct sl_listen_conf *l = obj;
    const char *s;
    char *end;
    unsigned long mode;

    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        sl_conf_fail_type(ld, idx, "a string of octal digits, e.g. \"0660\"");
        return false;
    }
    s = lua_tostring(ld->L, idx);
    mode = strtoul(s, &end, 8);
    if (*s < '0' || *s > '7' || *end != '\0' || mode > 07777) {
        sl_conf_fail_value(ld, idx, "not an octal file mode (e.g. \"0660\")");
        return false;
    }
    l->mode = (unsigned)mode;
    l->has_mode = true;
    return true;
}

const struct opt sl_conf_listen_opts[] = {
    ROW_CUSTOM("address", set_listen_address),
    ROW_BOOL("proxy_protocol", "false", struct sl_listen_conf, is_proxy_protocol),
    ROW_CUSTOM("mode", set_listen_mode),
};
const size_t sl_conf_nlisten_opts = NOPTS(sl_conf_listen_opts);

/* One listener, a string or a table; false after reporting an error. */
static bool
parse_listener(struct loader *ld, int idx, struct sl_listen_conf *l)
{
    struct walk w;
    uint32_t mode = sl_conf_opt_bit(sl_conf_listen_opts, sl_conf_nlisten_opts, "mode");
    uint32_t pp = sl_conf_opt_bit(sl_conf_listen_opts, sl_conf_nlisten_opts, "proxy_protocol");

    if (lua_type(ld->L, idx) == LUA_TSTRING)
        return set_listen_address(ld, l, idx);
    if (lua_type(ld->L, idx) != LUA_TTABLE) {
        sl_conf_fail_type(ld, idx, "\"host:port\", \"unix:/path\" or { address = ... }");
        return false;
    }
    ld->ctx = ld->ctx_buf; /* "listen" or "listen[i]", set by set_listen */
    w = sl_conf_walk(ld, idx, sl_conf_listen_opts, sl_conf_nlisten_opts, l);
    if (!(w.seen & sl_conf_opt_bit(sl_conf_listen_opts, sl_conf_nlisten_opts, "address"))) {
        fail(ld, "no address (address = \"host:port\" or \"unix:/path\")");
        w.bad |= 1;
    } else if (w.bad == 0 && (w.seen & mode) && !l->is_unix) {
        sl_conf_push_key(ld, "mode");
        fail(ld, "mode is for unix: addresses only, not \"%s\"", l->text);
        sl_conf_pop_key(ld);
        w.bad |= mode;
    } else if (w.bad == 0 && (w.seen & pp) && l->is_unix && l->is_proxy_protocol) {
        /* trusted_proxies are addresses: a unix peer can never be one of them */
        sl_conf_push_key(ld, "proxy_protocol");
        fail(ld, "proxy_protocol needs a TCP listener, not \"%s\" (a unix peer is never in "
             "trusted_proxies)", l->text);
        sl_conf_pop_key(ld);
        w.bad |= pp;
    }
    ld->ctx = NULL;
    return w.bad == 0;
}

/* A table with an address is one listener; any other table a list of them. */
bool
sl_conf_set_listen(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    bool is_single, ok = true;
    size_t n;

    free(cfg->listen);
    cfg->listen = NULL;
    cfg->nlisten = 0;
    if (lua_type(ld->L, idx) == LUA_TTABLE) {
        lua_getfield(ld->L, idx, "address");
        is_single = !lua_isnil(ld->L, -1);
        lua_pop(ld->L, 1);
        n = is_single ? 1 : sl_conf_items_begin(ld, idx, LUA_TSTRING, "", false, &is_single);
    } else {
        n = sl_conf_items_begin(ld, idx, LUA_TSTRING,
                                "\"host:port\", \"unix:/path\", { address = ... } or a list "
                                "of them", false, &is_single);
    }
    if (n == 0)
        return false;
    cfg->listen = sl_xcalloc(n, sizeof(*cfg->listen));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        struct sl_listen_conf *l = &cfg->listen[cfg->nlisten];
        bool is_dup = false;

        if (is_single)
            snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "listen");
        else
            snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "listen[%zu]", i);
        if (!parse_listener(ld, v, l)) {
            ok = false;
        } else {
            for (size_t j = 0; j < cfg->nlisten; j++)
                is_dup = is_dup || strcmp(cfg->listen[j].text, l->text) == 0;
            if (is_dup) {
                fail(ld, "listen \"%s\": listed twice", l->text);
                ok = false;
            } else {
                cfg->nlisten++;
            }
        }
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

