/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * An upstream's retry keys: `retries` (a plain row of config_schema.c),
 * `retry_on` (what is worth another attempt) and `retry_budget` (how many
 * retries may be in flight). Only the reading and checking of the values;
 * when a request is sent again is upstream_retry.c's and proxy_upstream.c's.
 */
#include "config_int.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* As Envoy's retry_on names them, where it has a name; the statuses as written. */
static const struct {
    const char *word;
    unsigned bit;
} retry_words[] = {
    { "connect_failure", SL_RETRY_ON_CONNECT_FAILURE },
    { "reset", SL_RETRY_ON_RESET },
    { "502", SL_RETRY_ON_502 },
    { "503", SL_RETRY_ON_503 },
};

#define NWORDS (sizeof(retry_words) / sizeof(retry_words[0]))

const char *
sl_conf_retry_word(unsigned bit)
{
    for (size_t i = 0; i < NWORDS; i++) {
        if (retry_words[i].bit == bit)
            return retry_words[i].word;
    }
    return NULL;
}

void
sl_conf_retry_defaults(struct sl_retry_conf *r)
{
    r->retries = 1;
    r->on = SL_RETRY_ON_CONNECT_FAILURE | SL_RETRY_ON_RESET;
    r->budget_percent = 20;
    r->budget_min = 3;
}

/* One condition, a word or the status as a number; 0 after reporting it. */
static unsigned
retry_bit(struct loader *ld, int v)
{
    char word[16] = "";

    if (lua_type(ld->L, v) == LUA_TNUMBER) {
        double d = lua_tonumber(ld->L, v);
        if (d == 502 || d == 503)
            snprintf(word, sizeof(word), "%d", (int)d);
    } else if (lua_type(ld->L, v) == LUA_TSTRING) {
        snprintf(word, sizeof(word), "%s", lua_tostring(ld->L, v));
    } else {
        sl_conf_fail_type(ld, v, "a condition (\"connect_failure\", \"reset\", \"502\", \"503\")");
        return 0;
    }
    for (size_t i = 0; i < NWORDS; i++) {
        if (strcmp(word, retry_words[i].word) == 0)
            return retry_words[i].bit;
    }
    sl_conf_fail_value(ld, v, "unknown retry condition (use connect_failure, reset, 502 or 503)");
    return 0;
}

/* retry_on = "reset" or a list of conditions; an empty list: never. */
bool
sl_conf_set_retry_on(struct loader *ld, void *obj, int idx)
{
    struct sl_upstream_conf *u = obj;
    bool is_single, ok = true;
    unsigned on = 0;
    size_t n;

    if (lua_type(ld->L, idx) == LUA_TNUMBER) { /* retry_on = 503 */
        is_single = true;
        n = 1;
    } else {
        n = sl_conf_items_begin(ld, idx, LUA_TSTRING, "a condition or a list of them", true,
                                &is_single);
        if (n == 0 && lua_type(ld->L, idx) != LUA_TTABLE)
            return false;
    }
    for (size_t i = 1; i <= n; i++) {
        int v = sl_conf_item_push(ld, idx, i, is_single);
        unsigned bit = retry_bit(ld, v);
        if (bit == 0)
            ok = false;
        else if (on & bit) {
            sl_conf_fail_value(ld, v, "listed twice");
            ok = false;
        }
        on |= bit;
        sl_conf_item_pop(ld, is_single);
    }
    if (ok)
        u->retry.on = on;
    return ok;
}

static const struct opt budget_opts[] = {
    ROW_UNSIGNED("percent", "20", 0, 100, struct sl_retry_conf, budget_percent),
    ROW_UNSIGNED("min", "3", 0, 1000000, struct sl_retry_conf, budget_min),
};

/* retry_budget = { percent = 20, min = 3 } */
bool
sl_conf_set_retry_budget(struct loader *ld, void *obj, int idx)
{
    struct sl_upstream_conf *u = obj;
    struct walk w;

    if (!sl_conf_need_table(ld, idx, "a table { percent = 20, min = 3 }"))
        return false;
    w = sl_conf_walk(ld, idx, budget_opts, sizeof(budget_opts) / sizeof(budget_opts[0]),
                     &u->retry);
    return w.bad == 0;
}
