/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * A route's `idempotency` table: the methods it applies to, whether a key
 * is required, how long responses and claims are kept, the largest response
 * kept and the scope selector. Only the reading and checking of the values;
 * the phase is src/phase_idem.c.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define METHODS_MAX 16
#define METHOD_LEN_MAX 32

static bool
is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

/* One method name: an RFC 9110 token, written in upper case (method names
 * are case-sensitive and every standard one is upper case). */
static bool
add_method(struct loader *ld, int v, struct sl_idempotency_conf *ic)
{
    size_t len;
    const char *m = sl_conf_get_string(ld, v, &len);

    if (m == NULL)
        return false;
    if (len > METHOD_LEN_MAX) {
        sl_conf_fail_value(ld, v, "not a method name (at most %d characters)", METHOD_LEN_MAX);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)m[i])) {
            sl_conf_fail_value(ld, v, "not a method name (upper case, as \"POST\")");
            return false;
        }
    }
    for (size_t i = 0; i < ic->nmethods; i++) {
        if (strcmp(ic->methods[i], m) == 0) {
            sl_conf_fail_value(ld, v, "listed twice");
            return false;
        }
    }
    ic->methods[ic->nmethods++] = sl_xstrdup(m);
    return true;
}

static void
free_methods(struct sl_idempotency_conf *ic)
{
    for (size_t i = 0; i < ic->nmethods; i++)
        free(ic->methods[i]);
    free(ic->methods);
    ic->methods = NULL;
    ic->nmethods = 0;
}

static bool
set_methods(struct loader *ld, void *obj, int idx)
{
    struct sl_idempotency_conf *ic = obj;
    bool is_single, ok = true;
    size_t n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "a method or a list of methods", false,
                                   &is_single);

    if (n == 0)
        return false;
    if (n > METHODS_MAX) {
        fail(ld, "%zu methods: at most %d", n, METHODS_MAX);
        return false;
    }
    free_methods(ic);
    ic->methods = sl_xcalloc(n, sizeof(*ic->methods));
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        ok = add_method(ld, v, ic) && ok;
        sl_conf_item_pop(ld, is_single);
    }
    return ok;
}

static bool
set_scope(struct loader *ld, void *obj, int idx)
{
    struct sl_idempotency_conf *ic = obj;
    size_t len;
    const char *s = sl_conf_get_string(ld, idx, &len);
    const char *why;

    if (s == NULL)
        return false;
    free(ic->scope.name);
    memset(&ic->scope, 0, sizeof(ic->scope));
    why = sl_conf_parse_selector(s, len, &ic->scope);
    if (why == NULL && (ic->scope.kind == SL_KEY_FUNCTION || ic->scope.kind == SL_KEY_PATH
                        || ic->scope.kind == SL_KEY_METHOD)) {
        why = "the scope names who sends the key: ip, header:NAME, cookie:NAME, query:NAME "
              "or global";
    }
    if (why != NULL) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    return true;
}

static const struct opt idempotency_opts[] = {
    ROW_CUSTOM("methods", set_methods),
    ROW_BOOL("required", "false", struct sl_idempotency_conf, is_required),
    ROW_DURATION("ttl", "24h", 1000, 30 * 24 * MS_HOUR, struct sl_idempotency_conf, ttl_ms),
    ROW_DURATION("lock", "5m", 1000, 24 * MS_HOUR, struct sl_idempotency_conf, lock_ms),
    ROW_SIZE("max_response", "1m", 1024, 64u << 20, struct sl_idempotency_conf, max_response),
    ROW_CUSTOM("scope", set_scope),
};

static void
set_defaults(struct sl_idempotency_conf *ic)
{
    sl_conf_defaults(idempotency_opts, NOPTS(idempotency_opts), ic);
    ic->methods = sl_xcalloc(2, sizeof(*ic->methods));
    ic->methods[0] = sl_xstrdup("POST");
    ic->methods[1] = sl_xstrdup("PATCH");
    ic->nmethods = 2;
    ic->scope.kind = SL_KEY_IP;
}

void
sl_conf_free_idempotency(struct sl_idempotency_conf *ic)
{
    if (ic == NULL)
        return;
    free_methods(ic);
    free(ic->scope.name);
    free(ic);
}

bool
sl_conf_set_idempotency(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    const char *outer = ld->ctx;
    char ctx[sizeof(ld->ctx_buf) + 16];
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { methods = { \"POST\" }, ttl = \"24h\", ... }"))
        return false;
    sl_conf_free_idempotency(r->idempotency);
    r->idempotency = sl_xcalloc(1, sizeof(*r->idempotency));
    set_defaults(r->idempotency);
    snprintf(ctx, sizeof(ctx), "%s idempotency", outer != NULL ? outer : "route");
    ld->ctx = ctx;
    w = sl_conf_walk(ld, idx, idempotency_opts, NOPTS(idempotency_opts), r->idempotency);
    ld->ctx = outer;
    return w.bad == 0;
}
