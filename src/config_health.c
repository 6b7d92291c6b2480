/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * An upstream's `health` table: the active check (path, interval, timeout,
 * fails, passes) and passive ejection (max_fails, fail_timeout,
 * max_fail_timeout, passive_5xx). Only the reading and checking of the
 * values; the checks themselves are src/health.c's.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* Longer paths are a typo more likely than a health endpoint. */
#define HEALTH_PATH_MAX 1024

/*
 * The path goes into the request line as it is: an origin-form target
 * (RFC 9112 section 3.2.1), visible ASCII only, so that nothing in it can
 * end the line or split the request.
 */
static bool
set_health_path(struct loader *ld, void *obj, int idx)
{
    struct sl_health_conf *hc = obj;
    size_t len;
    const char *s = sl_conf_get_string(ld, idx, &len);

    if (s == NULL)
        return false;
    if (s[0] != '/') {
        sl_conf_fail_value(ld, idx, "the check's path must start with '/' (e.g. \"/healthz\")");
        return false;
    }
    if (len > HEALTH_PATH_MAX) {
        sl_conf_fail_value(ld, idx, "longer than %d bytes", HEALTH_PATH_MAX);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '#') {
            sl_conf_fail_value(ld, idx, "byte %zu is not allowed in a request path (use "
                               "visible ASCII, percent-encode the rest)", i + 1);
            return false;
        }
    }
    free(hc->path);
    hc->path = sl_xstrdup(s);
    return true;
}

static const struct opt health_opts[] = {
    ROW_CUSTOM("path", set_health_path),
    ROW_DURATION("interval", "2s", 100, MS_HOUR, struct sl_health_conf, interval_ms),
    ROW_DURATION("timeout", "1s", 1, MS_HOUR, struct sl_health_conf, timeout_ms),
    ROW_UNSIGNED("fails", "3", 1, 1000, struct sl_health_conf, fails),
    ROW_UNSIGNED("passes", "2", 1, 1000, struct sl_health_conf, passes),
    ROW_UNSIGNED("max_fails", "1", 0, 100000, struct sl_health_conf, max_fails),
    ROW_DURATION("fail_timeout", "2s", 1, MS_HOUR, struct sl_health_conf, fail_timeout_ms),
    ROW_DURATION("max_fail_timeout", "30s", 1, 24 * MS_HOUR, struct sl_health_conf,
                 max_fail_timeout_ms),
    ROW_BOOL("passive_5xx", "false", struct sl_health_conf, is_passive_5xx),
};

const char **
sl_conf_health_names(void)
{
    const char **names = sl_xcalloc(NOPTS(health_opts) + 1, sizeof(*names));

    for (size_t i = 0; i < NOPTS(health_opts); i++)
        names[i] = health_opts[i].name;
    return names;
}

void
sl_conf_health_defaults(struct sl_health_conf *hc)
{
    sl_conf_defaults(health_opts, NOPTS(health_opts), hc);
}

static uint32_t
bit(const char *name)
{
    return sl_conf_opt_bit(health_opts, NOPTS(health_opts), name);
}

/* What no row can say: bounds between keys. */
static bool
check_health(struct loader *ld, const struct sl_health_conf *hc, struct walk w)
{
    uint32_t active = bit("interval") | bit("timeout") | bit("fails") | bit("passes");
    char a[32], b[32];
    bool ok = true;

    if (!(w.seen & bit("path")) && (w.seen & active)) {
        fail(ld, "interval, timeout, fails and passes are for active checks: add path = "
                 "\"/healthz\" (the check's GET), or leave them out");
        ok = false;
    }
    if ((w.seen & bit("path")) && !(w.bad & (bit("timeout") | bit("interval")))
        && hc->timeout_ms > hc->interval_ms) {
        sl_conf_format_duration(hc->timeout_ms, a, sizeof(a));
        sl_conf_format_duration(hc->interval_ms, b, sizeof(b));
        sl_conf_push_key(ld, "timeout");
        fail(ld, "timeout \"%s\" is longer than interval \"%s\" (a check must end before "
                 "the next one starts)", a, b);
        sl_conf_pop_key(ld);
        ok = false;
    }
    if (!(w.bad & (bit("fail_timeout") | bit("max_fail_timeout")))
        && hc->max_fail_timeout_ms < hc->fail_timeout_ms) {
        sl_conf_push_key(ld, (w.seen & bit("max_fail_timeout")) ? "max_fail_timeout"
                                                                 : "fail_timeout");
        sl_conf_format_duration(hc->max_fail_timeout_ms, a, sizeof(a));
        sl_conf_format_duration(hc->fail_timeout_ms, b, sizeof(b));
        fail(ld, "max_fail_timeout \"%s\" is shorter than fail_timeout \"%s\" (the "
                 "ejection doubles from fail_timeout up to max_fail_timeout)", a, b);
        sl_conf_pop_key(ld);
        ok = false;
    }
    return ok;
}

bool
sl_conf_set_health(struct loader *ld, void *obj, int idx)
{
    struct sl_upstream_conf *u = obj;
    const char *outer = ld->ctx;
    char ctx[sizeof(ld->ctx_buf) + 16];
    struct walk w;
    bool ok;

    if (!sl_conf_need_table(ld, idx, "a table { path = \"/healthz\", interval = \"2s\", ... }"))
        return false;
    snprintf(ctx, sizeof(ctx), "%s health", outer != NULL ? outer : "upstream");
    ld->ctx = ctx;
    w = sl_conf_walk(ld, idx, health_opts, NOPTS(health_opts), &u->health);
    ok = check_health(ld, &u->health, w);
    ok = ok && w.bad == 0;
    ld->ctx = outer;
    return ok;
}
