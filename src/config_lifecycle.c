/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The route keys of API versions and their end: `headers` (routing on a
 * header's value), `deprecation`, `sunset`, `link`, `brownouts`,
 * `consumer` and `consumer_top`, and the checks between them. Dates are RFC
 * 3339 (util/datetime.h). What the keys do at run time is
 * src/phase_lifecycle.c's; the choices are written in docs/api-lifecycle.md.
 */
#include "config_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "sluice/http.h"
#include "util/alloc.h"
#include "util/datetime.h"

#define MAX_ROUTE_HEADERS 16
#define MAX_BROWNOUTS 64
#define MAX_LINK 1024
#define MAX_CONSUMER_TOP 100
#define DEFAULT_CONSUMER_TOP 10

/* ---- headers ------------------------------------------------------------- */

static int
cmp_header(const void *a, const void *b)
{
    const struct sl_route_header *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* The value must be one a request can carry after trimming (RFC 9110 5.5):
 * otherwise the route could never match. */
static const char *
header_value_problem(const char *v, size_t len)
{
    if (v[0] == ' ' || v[0] == '\t' || v[len - 1] == ' ' || v[len - 1] == '\t')
        return "has blanks around it, which a request's field never has (they are trimmed)";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "has a control character";
    }
    return NULL;
}

/* One `["Name"] = "value"` of the table being walked (key at -2, value at -1). */
static bool
add_header(struct loader *ld, struct sl_route_conf *r)
{
    size_t nlen, vlen;
    const char *name = lua_tolstring(ld->L, -2, &nlen);
    const char *value, *why;
    struct sl_route_header *h;
    bool ok = false;

    sl_conf_push_key(ld, name);
    for (size_t i = 0; i < nlen; i++) {
        if (!sl_http_is_tchar((unsigned char)name[i])) {
            fail(ld, "headers: \"%s\" is not a header name", name);
            goto out;
        }
    }
    if (nlen == 0 || strcasecmp(name, "host") == 0) {
        fail(ld, "headers: \"%s\": not a header to match on (the host has its own key, host = ...)",
             name);
        goto out;
    }
    if ((value = sl_conf_get_string(ld, -1, &vlen)) == NULL)
        goto out;
    if ((why = header_value_problem(value, vlen)) != NULL) {
        sl_conf_fail_value(ld, -1, "%s", why);
        goto out;
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        if (r->headers[i].name_len == nlen && strncasecmp(r->headers[i].name, name, nlen) == 0) {
            fail(ld, "headers: \"%s\" is written twice (names are case-insensitive)", name);
            goto out;
        }
    }
    if (r->nheaders == MAX_ROUTE_HEADERS) {
        fail(ld, "headers: more than %d", MAX_ROUTE_HEADERS);
        goto out;
    }
    h = &r->headers[r->nheaders++];
    h->name = sl_xstrndup(name, nlen);
    h->name_len = nlen;
    for (size_t i = 0; i < nlen; i++)
        h->name[i] = (char)tolower((unsigned char)h->name[i]);
    h->value = sl_xstrndup(value, vlen);
    h->value_len = vlen;
    ok = true;
out:
    sl_conf_pop_key(ld);
    return ok;
}

static bool
set_headers(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a table of [\"Header-Name\"] = \"value\""))
        return false;
    idx = lua_gettop(ld->L);
    r->headers = sl_xcalloc(MAX_ROUTE_HEADERS, sizeof(*r->headers));
    lua_pushnil(ld->L);
    while (lua_next(ld->L, idx) != 0) {
        if (lua_type(ld->L, -2) != LUA_TSTRING) {
            fail(ld, "headers: expected [\"Header-Name\"] = \"value\", got a list entry");
            ok = false;
        } else {
            ok = add_header(ld, r) && ok;
        }
        lua_pop(ld->L, 1);
    }
    /* sorted, so that equal sets compare entry by entry and -T is stable */
    qsort(r->headers, r->nheaders, sizeof(*r->headers), cmp_header);
    return ok;
}

bool
sl_conf_same_headers(const struct sl_route_conf *a, const struct sl_route_conf *b)
{
    if (a->nheaders != b->nheaders)
        return false;
    for (size_t i = 0; i < a->nheaders; i++) {
        if (strcmp(a->headers[i].name, b->headers[i].name) != 0
            || a->headers[i].value_len != b->headers[i].value_len
            || memcmp(a->headers[i].value, b->headers[i].value, a->headers[i].value_len) != 0)
            return false;
    }
    return true;
}

/* ---- dates and link ------------------------------------------------------ */

static bool
get_date(struct loader *ld, int idx, int64_t *out)
{
    size_t len;
    const char *s = sl_conf_get_string(ld, idx, &len);
    const char *why;

    if (s == NULL)
        return false;
    if ((why = sl_datetime_parse_rfc3339(s, len, out)) != NULL) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    return true;
}

static bool
set_deprecation(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;

    lc->has_deprecation = get_date(ld, idx, &lc->deprecation_s);
    return lc->has_deprecation;
}

static bool
set_sunset(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;

    lc->has_sunset = get_date(ld, idx, &lc->sunset_s);
    return lc->has_sunset;
}

/* RFC 3986 characters only: the link goes between <> in a Link header
 * (RFC 8288) and into a JSON body, where nothing else may hide. */
static bool
set_link(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;
    static const char extra[] = "-._~:/?#[]@!$&'()*+,;=%";
    size_t len;
    const char *s = sl_conf_get_string(ld, idx, &len);

    if (s == NULL)
        return false;
    if (len > MAX_LINK) {
        sl_conf_fail_value(ld, idx, "longer than %d bytes", MAX_LINK);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL) {
            sl_conf_fail_value(ld, idx, "not a URI (byte %zu; percent-encode it)", i + 1);
            return false;
        }
    }
    free(lc->link);
    lc->link = sl_xstrndup(s, len);
    return true;
}

/* ---- brownouts ----------------------------------------------------------- */

static bool
set_from(struct loader *ld, void *obj, int idx)
{
    return get_date(ld, idx, &((struct sl_brownout *)obj)->from_s);
}

static bool
set_to(struct loader *ld, void *obj, int idx)
{
    return get_date(ld, idx, &((struct sl_brownout *)obj)->to_s);
}

static const struct opt brownout_opts[] = {
    ROW_CUSTOM("from", set_from),
    ROW_CUSTOM("to", set_to),
};

static int
cmp_brownout(const void *a, const void *b)
{
    const struct sl_brownout *x = a, *y = b;
    return x->from_s < y->from_s ? -1 : x->from_s > y->from_s;
}

static bool
walk_brownout(struct loader *ld, struct sl_brownout *b)
{
    struct walk w;

    if (!sl_conf_need_table(ld, -1, "a table { from = \"<RFC 3339>\", to = \"<RFC 3339>\" }"))
        return false;
    w = sl_conf_walk(ld, -1, brownout_opts, NOPTS(brownout_opts), b);
    if (w.bad != 0)
        return false;
    if (w.seen != 3) {
        fail(ld, "brownout: needs both from and to");
        return false;
    }
    if (b->from_s >= b->to_s) {
        fail(ld, "brownout: to must be after from");
        return false;
    }
    return true;
}

static bool
set_brownouts(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;
    size_t n;
    bool ok = true;

    if (!sl_conf_need_table(ld, idx, "a list of { from = ..., to = ... }"))
        return false;
    n = sl_conf_list_len(ld, idx);
    if (n > MAX_BROWNOUTS) {
        fail(ld, "brownouts: more than %d", MAX_BROWNOUTS);
        return false;
    }
    lc->brownouts = sl_xcalloc(n ? n : 1, sizeof(*lc->brownouts));
    for (size_t i = 0; i < n; i++) {
        sl_conf_push_index(ld, (long)i + 1);
        lua_rawgeti(ld->L, idx, (int)i + 1);
        if (walk_brownout(ld, &lc->brownouts[lc->nbrownouts]))
            lc->nbrownouts++;
        else
            ok = false;
        lua_pop(ld->L, 1);
        sl_conf_pop_key(ld);
    }
    qsort(lc->brownouts, lc->nbrownouts, sizeof(*lc->brownouts), cmp_brownout);
    return ok;
}

/* ---- consumer ------------------------------------------------------------ */

static bool
set_consumer(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;
    size_t len;
    const char *s = sl_conf_get_string(ld, idx, &len);
    const char *why;
    struct sl_key_part part;

    if (s == NULL)
        return false;
    if ((why = sl_conf_parse_selector(s, len, &part)) != NULL) {
        sl_conf_fail_value(ld, idx, "%s", why);
        return false;
    }
    if (part.kind != SL_KEY_IP && part.kind != SL_KEY_HEADER && part.kind != SL_KEY_QUERY
        && part.kind != SL_KEY_COOKIE) {
        free(part.name);
        sl_conf_fail_value(ld, idx, "names no caller (use ip, header:NAME, query:NAME or "
                                    "cookie:NAME)");
        return false;
    }
    free(lc->consumer.name);
    lc->consumer = part;
    lc->has_consumer = true;
    return true;
}

static bool
set_consumer_top(struct loader *ld, void *obj, int idx)
{
    struct sl_lifecycle_conf *lc = &((struct sl_route_conf *)obj)->lifecycle;
    uint64_t v;

    if (lua_type(ld->L, idx) != LUA_TNUMBER || !sl_conf_to_u64(ld->L, idx, &v) || v < 1
        || v > MAX_CONSUMER_TOP) {
        sl_conf_fail_value(ld, idx, "must be a whole number from 1 to %d", MAX_CONSUMER_TOP);
        return false;
    }
    lc->consumer_top = (unsigned)v;
    return true;
}

static const struct opt lifecycle_opts[] = {
    ROW_CUSTOM("headers", set_headers),
    ROW_CUSTOM("deprecation", set_deprecation),
    ROW_CUSTOM("sunset", set_sunset),
    ROW_CUSTOM("link", set_link),
    ROW_CUSTOM("brownouts", set_brownouts),
    ROW_CUSTOM("consumer", set_consumer),
    ROW_CUSTOM("consumer_top", set_consumer_top),
};

/* The walker has pushed the key it is setting: its name picks the setter,
 * so that the route table needs one macro of rows, not seven exports. */
bool
sl_conf_set_lifecycle(struct loader *ld, void *obj, int idx)
{
    const struct path_el *key = &ld->keys[ld->depth - 1];

    for (size_t i = 0; i < NOPTS(lifecycle_opts); i++) {
        if (key->name != NULL && strcmp(key->name, lifecycle_opts[i].name) == 0)
            return lifecycle_opts[i].custom(ld, obj, idx);
    }
    return false; /* not reached: the macro rows name only these keys */
}

/* ---- checks between the keys --------------------------------------------- */

static void
fail_key(struct loader *ld, const char *key, const char *msg)
{
    sl_conf_push_key(ld, key);
    fail(ld, "%s: %s", key, msg);
    sl_conf_pop_key(ld);
}

static bool
check_brownouts(struct loader *ld, const struct sl_lifecycle_conf *lc)
{
    char when[SL_RFC3339_SIZE];

    if (lc->nbrownouts == 0)
        return true;
    if (!lc->has_sunset) {
        fail_key(ld, "brownouts", "brownouts rehearse a sunset: the route has no sunset");
        return false;
    }
    for (size_t i = 0; i < lc->nbrownouts; i++) {
        const struct sl_brownout *b = &lc->brownouts[i];
        if (b->to_s > lc->sunset_s) {
            sl_datetime_format_rfc3339(b->from_s, when);
            sl_conf_push_key(ld, "brownouts");
            fail(ld, "brownouts: the window from %s ends after the sunset", when);
            sl_conf_pop_key(ld);
            return false;
        }
        /* clients must have been told (Deprecation) before they are broken */
        if (lc->has_deprecation && b->from_s < lc->deprecation_s) {
            sl_datetime_format_rfc3339(b->from_s, when);
            sl_conf_push_key(ld, "brownouts");
            fail(ld, "brownouts: the window from %s starts before the deprecation", when);
            sl_conf_pop_key(ld);
            return false;
        }
    }
    return true;
}

bool
sl_conf_check_lifecycle(struct loader *ld, struct sl_route_conf *r)
{
    struct sl_lifecycle_conf *lc = &r->lifecycle;
    bool ok = true;

    if (!sl_route_has_lifecycle(r)) {
        /* each of these means nothing without a date: refused, not ignored */
        const char *const keys[] = { "link", "brownouts", "consumer", "consumer_top" };
        const bool is_set[] = { lc->link != NULL, lc->nbrownouts > 0, lc->has_consumer,
                                lc->consumer_top != 0 };
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (is_set[i]) {
                fail_key(ld, keys[i], "only a route with a deprecation or a sunset takes it");
                ok = false;
            }
        }
        return ok;
    }
    if (lc->has_deprecation && lc->has_sunset && lc->sunset_s <= lc->deprecation_s) {
        fail_key(ld, "sunset", "must come after the deprecation");
        ok = false;
    }
    ok = check_brownouts(ld, lc) && ok;
    if (!lc->has_consumer)
        lc->consumer.kind = SL_KEY_IP;
    if (lc->consumer_top == 0)
        lc->consumer_top = DEFAULT_CONSUMER_TOP;
    return ok;
}

void
sl_conf_free_route_lifecycle(struct sl_route_conf *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->lifecycle.link);
    free(r->lifecycle.brownouts);
    free(r->lifecycle.consumer.name);
}
