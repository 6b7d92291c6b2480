/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The config loader's machinery, apart from what each section means: the
 * error list and how messages name a key and quote a value, durations and
 * sizes, and the walker that reads a section through its option table
 * (types, bounds and defaults in one row per option, in the manner of
 * Redis's config table). config_schema.c holds the tables.
 */
#include "config_int.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sluice/lua_rt.h"
#include "util/alloc.h"
#include "util/text.h"

/* ------------------------------------------------------------------------ */
/* Durations and sizes                                                      */
/* ------------------------------------------------------------------------ */

/* n = n * 10 + digit, or -1 when that overflows */
static int
add_digit(uint64_t *n, char c)
{
    uint64_t d = (uint64_t)(c - '0');

    if (*n > UINT64_MAX / 10 || (*n == UINT64_MAX / 10 && d > UINT64_MAX % 10))
        return -1;
    *n = *n * 10 + d;
    return 0;
}

/*
 * One or more <integer><unit> groups with units in decreasing order, no
 * spaces: "250ms", "10s", "1m30s", "2h". A bare number is refused so that
 * "30" can never silently mean 30 ms where 30 s was meant.
 */
int
sl_config_parse_duration(const char *text, uint64_t *ms)
{
    const char *p = text;
    uint64_t total = 0;
    uint64_t last_unit = UINT64_MAX;

    if (text == NULL || *p == '\0')
        return -1;
    while (*p != '\0') {
        uint64_t n = 0, unit;

        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p)) {
            if (add_digit(&n, *p) != 0)
                return -1;
            p++;
        }
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = MS_SECOND;
            p++;
        } else if (*p == 'm') {
            unit = MS_MINUTE;
            p++;
        } else if (*p == 'h') {
            unit = MS_HOUR;
            p++;
        } else {
            return -1;
        }
        if (unit >= last_unit)
            return -1;
        last_unit = unit;
        if (n > (UINT64_MAX - total) / unit)
            return -1;
        total += n * unit;
    }
    *ms = total;
    return 0;
}

/* "512", "16k", "8M", "1g": an integer and an optional power-of-1024 suffix. */
int
sl_config_parse_size(const char *text, uint64_t *bytes)
{
    const char *p = text;
    uint64_t n = 0;
    unsigned shift = 0;

    if (text == NULL || !isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        if (add_digit(&n, *p) != 0)
            return -1;
        p++;
    }
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (shift != 0 && p[1] != '\0')
        return -1;
    if (n > (UINT64_MAX >> shift))
        return -1;
    *bytes = n << shift;
    return 0;
}

void
sl_conf_format_duration(uint64_t ms, char *buf, size_t size)
{
    if (ms != 0 && ms % MS_HOUR == 0)
        snprintf(buf, size, "%lluh", (unsigned long long)(ms / MS_HOUR));
    else if (ms != 0 && ms % MS_MINUTE == 0)
        snprintf(buf, size, "%llum", (unsigned long long)(ms / MS_MINUTE));
    else if (ms % MS_SECOND == 0)
        snprintf(buf, size, "%llus", (unsigned long long)(ms / MS_SECOND));
    else
        snprintf(buf, size, "%llums", (unsigned long long)ms);
}

void
sl_conf_format_size(uint64_t bytes, char *buf, size_t size)
{
    if (bytes != 0 && bytes % (1ull << 30) == 0)
        snprintf(buf, size, "%llug", (unsigned long long)(bytes >> 30));
    else if (bytes != 0 && bytes % (1ull << 20) == 0)
        snprintf(buf, size, "%llum", (unsigned long long)(bytes >> 20));
    else if (bytes != 0 && bytes % (1ull << 10) == 0)
        snprintf(buf, size, "%lluk", (unsigned long long)(bytes >> 10));
    else
        snprintf(buf, size, "%llu", (unsigned long long)bytes);
}


/* ------------------------------------------------------------------------ */
/* The error list, and how messages name keys and values                    */
/* ------------------------------------------------------------------------ */

static char *xvformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *
xvformat(const char *fmt, va_list ap)
{
    va_list copy;
    int n;
    char *buf;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        n = 0;
    buf = sl_xmalloc((size_t)n + 1);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    return buf;
}

/* The conf's own bytes end up in messages (a key, a value, Lua's "near"):
 * a terminal or a log reader gets them as \xNN unless they are printable
 * ASCII or valid UTF-8, so a message is always one clean line. */
static char *
escape_unprintable(char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), o = 0, i = 0;
    char *out = sl_xmalloc(len * 4 + 1);

    while (i < len) {
        size_t n = s[i] >= 0x80 ? sl_utf8_len(s + i, len - i) : 1;

        if (s[i] >= 0x80 ? n != 0 : (s[i] >= 0x20 && s[i] != 0x7f)) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", s[i]);
            i++;
        }
    }
    out[o] = '\0';
    free(text);
    return out;
}

void
sl_conf_add_error(struct loader *ld, size_t file, int line, char *text)
{
    text = escape_unprintable(text);
    if (ld->nerrs == ld->errs_cap) {
        ld->errs_cap = ld->errs_cap ? ld->errs_cap * 2 : 8;
        ld->errs = sl_xrealloc(ld->errs, ld->errs_cap * sizeof(*ld->errs));
    }
    ld->errs[ld->nerrs].file = file;
    ld->errs[ld->nerrs].line = line;
    ld->errs[ld->nerrs].text = text;
    ld->nerrs++;
}

void
sl_conf_push_key(struct loader *ld, const char *name)
{
    if (ld->depth < CONF_MAX_PATH) {
        ld->keys[ld->depth].name = name;
        ld->keys[ld->depth].len = strlen(name);
        ld->keys[ld->depth].index = 0;
    }
    ld->depth++;
}

void
sl_conf_push_index(struct loader *ld, long index)
{
    if (ld->depth < CONF_MAX_PATH) {
        ld->keys[ld->depth].name = NULL;
        ld->keys[ld->depth].len = 0;
        ld->keys[ld->depth].index = index;
    }
    ld->depth++;
}

void
sl_conf_pop_key(struct loader *ld)
{
    ld->depth--;
}

/* Line recorded by env_newindex for a top-level name; 0 when never assigned. */
static int
assigned_line(struct loader *ld, const struct path_el *el)
{
    if (ld->sb == NULL || el->name == NULL)
        return 0;
    return sl_lua_sandbox_line(ld->sb, el->name, el->len);
}

const char *
sl_conf_file_path(const struct loader *ld, size_t file)
{
    if (file == 0 || file > ld->cfg->nfiles)
        return ld->cfg->path;
    return ld->cfg->files[file - 1].path;
}

/* The top-level statements of `file`, lexed on first use. */
static struct sl_conf_stmts *
file_stmts(struct loader *ld, size_t file)
{
    const struct sl_config *cfg = ld->cfg;

    if (file > cfg->nfiles)
        return NULL;
    if (ld->nstmts <= file) {
        ld->stmts = sl_xrealloc(ld->stmts, (cfg->nfiles + 1) * sizeof(*ld->stmts));
        memset(ld->stmts + ld->nstmts, 0, (cfg->nfiles + 1 - ld->nstmts) * sizeof(*ld->stmts));
        ld->nstmts = cfg->nfiles + 1;
    }
    if (ld->stmts[file] == NULL) {
        if (file == 0)
            ld->stmts[0] = sl_conf_stmts_scan(cfg->source, cfg->source_len);
        else
            ld->stmts[file] = sl_conf_stmts_scan(cfg->files[file - 1].source,
                                                 cfg->files[file - 1].source_len);
    }
    return ld->stmts[file];
}

/*
 * The line for the key path pushed so far, and its file; see config_lex.c.
 * A top-level key is written in the file that assigned it last. A key one
 * level down may be set on its own, `limits.api = {...}`, the way included
 * files add to a table: such a statement wins, the last file first, unless
 * the top-level assignment comes after it in the same file.
 */
int
sl_conf_where(struct loader *ld, size_t *file)
{
    int n = ld->depth < CONF_MAX_PATH ? ld->depth : CONF_MAX_PATH;
    const struct path_el *top = &ld->keys[0];
    int top_line;

    *file = 0;
    if (n <= 0)
        return 1;
    if (ld->sb != NULL && top->name != NULL)
        *file = sl_lua_sandbox_file(ld->sb, top->name, top->len);
    top_line = sl_conf_stmts_locate(file_stmts(ld, *file), ld->keys, 1, assigned_line(ld, top));
    for (size_t f = ld->cfg->nfiles + 1; n >= 2 && f-- > 0;) {
        int line = sl_conf_stmts_locate_field(file_stmts(ld, f), ld->keys, n,
                                              f == *file ? top_line : 0);
        if (line > 0) {
            *file = f;
            return line;
        }
    }
    return sl_conf_stmts_locate(file_stmts(ld, *file), ld->keys, n, assigned_line(ld, top));
}

int
sl_conf_line(struct loader *ld)
{
    size_t file;
    return sl_conf_where(ld, &file);
}

void
sl_conf_fail_at(struct loader *ld, bool with_ctx, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = xvformat(fmt, ap);
    va_end(ap);
    if (with_ctx && ld->ctx != NULL) {
        size_t clen = strlen(ld->ctx), mlen = strlen(msg);
        char *full = sl_xmalloc(clen + 2 + mlen + 1);
        memcpy(full, ld->ctx, clen);
        memcpy(full + clen, ": ", 2);
        memcpy(full + clen + 2, msg, mlen + 1);
        free(msg);
        msg = full;
    }
    {
        size_t file;
        int line = sl_conf_where(ld, &file);
        sl_conf_add_error(ld, file, line, msg);
    }
}

/* "per", "servers[2]": how the current key is named in messages. */
const char *
sl_conf_label(struct loader *ld, char *buf, size_t size)
{
    int d = ld->depth < CONF_MAX_PATH ? ld->depth : CONF_MAX_PATH;
    const struct path_el *last;

    if (d == 0)
        return "conf";
    last = &ld->keys[d - 1];
    if (last->name != NULL) {
        snprintf(buf, size, "%.*s", (int)last->len, last->name);
    } else if (d >= 2 && ld->keys[d - 2].name != NULL) {
        snprintf(buf, size, "%.*s[%ld]", (int)ld->keys[d - 2].len, ld->keys[d - 2].name,
                 last->index);
    } else {
        snprintf(buf, size, "[%ld]", last->index);
    }
    return buf;
}

/* A value as quoted in messages: "10x", 5, true, table. */
const char *
sl_conf_describe(lua_State *L, int idx, char *buf, size_t size)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len, o = 0;
        const char *s = lua_tolstring(L, idx, &len);
        buf[o++] = '"';
        for (size_t i = 0; i < len && o + 5 < size; i++) {
            unsigned char c = (unsigned char)s[i];
            if (i == 60) {
                memcpy(buf + o, "...", 3);
                o += 3;
                break;
            }
            buf[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        return buf;
    }
    case LUA_TNUMBER:
        snprintf(buf, size, "%.14g", lua_tonumber(L, idx));
        return buf;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "true" : "false";
    default:
        return lua_typename(L, lua_type(L, idx));
    }
}

/* "<key>: expected <what>, got <type> <value>" */
void
sl_conf_fail_type(struct loader *ld, int idx, const char *expected)
{
    char lbuf[96], vbuf[96];
    int type = lua_type(ld->L, idx);

    if (type == LUA_TSTRING || type == LUA_TNUMBER || type == LUA_TBOOLEAN)
        fail(ld, "%s: expected %s, got %s %s", sl_conf_label(ld, lbuf, sizeof(lbuf)), expected,
             lua_typename(ld->L, type), sl_conf_describe(ld->L, idx, vbuf, sizeof(vbuf)));
    else
        fail(ld, "%s: expected %s, got a %s", sl_conf_label(ld, lbuf, sizeof(lbuf)), expected,
             lua_typename(ld->L, type));
}

void
sl_conf_fail_value(struct loader *ld, int idx, const char *fmt, ...)
{
    char lbuf[96], vbuf[96];
    va_list ap;
    char *why;

    va_start(ap, fmt);
    why = xvformat(fmt, ap);
    va_end(ap);
    fail(ld, "%s %s: %s", sl_conf_label(ld, lbuf, sizeof(lbuf)),
         sl_conf_describe(ld->L, idx, vbuf, sizeof(vbuf)), why);
    free(why);
}

static int
abs_index(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

bool
sl_conf_to_u64(lua_State *L, int idx, uint64_t *out)
{
    double d = lua_tonumber(L, idx);
    if (!(d >= 0 && d < 18446744073709551616.0) || floor(d) != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/*
 * The value at idx must be a list. Reports entries that are not at
 * positions 1..n and returns n (0 for an empty table).
 */
size_t
sl_conf_list_len(struct loader *ld, int idx)
{
    size_t n;

    idx = abs_index(ld->L, idx);
    n = lua_objlen(ld->L, idx);
    lua_pushnil(ld->L);
    while (lua_next(ld->L, idx) != 0) {
        int ktype = lua_type(ld->L, -2);
        double d = ktype == LUA_TNUMBER ? lua_tonumber(ld->L, -2) : 0;
        char lbuf[96];
        sl_conf_label(ld, lbuf, sizeof(lbuf));
        if (ktype == LUA_TSTRING) {
            sl_conf_push_key(ld, lua_tostring(ld->L, -2));
            fail(ld, "%s: unexpected key \"%s\" (a list takes no names)", lbuf,
                 lua_tostring(ld->L, -2));
            sl_conf_pop_key(ld);
        } else if (ktype != LUA_TNUMBER || floor(d) != d || d < 1 || d > (double)n) {
            fail(ld, "%s: must be a list (entries 1, 2, 3...), not a table with holes or odd keys",
                 lbuf);
        }
        lua_pop(ld->L, 1);
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* The option walker                                                        */
/* ------------------------------------------------------------------------ */

/* Index of `word` in the NULL-terminated `words`, or -1. */
static int
word_index(const char *const *words, const char *word)
{
    for (int i = 0; words[i] != NULL; i++) {
        if (strcmp(word, words[i]) == 0)
            return i;
    }
    return -1;
}

/* Defaults go through the parsers a conf's value would. */
void
sl_conf_defaults(const struct opt *opts, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt *o = &opts[i];
        uint64_t v = 0;

        if (o->def == NULL)
            continue;
        switch (o->type) {
        case OPT_DURATION:
            (void)sl_config_parse_duration(o->def, &v);
            *FIELD(obj, o, uint64_t) = v;
            break;
        case OPT_SIZE:
            (void)sl_config_parse_size(o->def, &v);
            *FIELD(obj, o, size_t) = (size_t)v;
            break;
        case OPT_SIZE64:
            (void)sl_config_parse_size(o->def, &v);
            *FIELD(obj, o, uint64_t) = v;
            break;
        case OPT_UNSIGNED:
            *FIELD(obj, o, unsigned) = (unsigned)strtoul(o->def, NULL, 10);
            break;
        case OPT_COUNT:
            *FIELD(obj, o, size_t) = (size_t)strtoull(o->def, NULL, 10);
            break;
        case OPT_BOOL:
            *FIELD(obj, o, bool) = strcmp(o->def, "true") == 0;
            break;
        case OPT_STRING:
        case OPT_WORD:
            free(*FIELD(obj, o, char *));
            *FIELD(obj, o, char *) = sl_xstrdup(o->def);
            break;
        case OPT_ENUM:
            *FIELD(obj, o, int) = word_index(o->words, o->def);
            break;
        case OPT_NUMBER:
        case OPT_CUSTOM:
            break;
        }
    }
}

static bool
check_range(struct loader *ld, const struct opt *o, int idx, uint64_t v)
{
    char lo[32], hi[32];

    if (v >= o->min && v <= o->max)
        return true;
    if (o->type == OPT_DURATION) {
        sl_conf_format_duration(o->min, lo, sizeof(lo));
        sl_conf_format_duration(o->max, hi, sizeof(hi));
    } else if (o->type == OPT_SIZE || o->type == OPT_SIZE64) {
        sl_conf_format_size(o->min, lo, sizeof(lo));
        sl_conf_format_size(o->max, hi, sizeof(hi));
    } else {
        snprintf(lo, sizeof(lo), "%llu", (unsigned long long)o->min);
        snprintf(hi, sizeof(hi), "%llu", (unsigned long long)o->max);
    }
    sl_conf_fail_value(ld, idx, "must be between %s and %s", lo, hi);
    return false;
}

/* A non-empty string without NUL bytes, or an error; returns it or NULL. */
const char *
sl_conf_get_string(struct loader *ld, int idx, size_t *lenp)
{
    size_t len;
    const char *s;

    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        sl_conf_fail_type(ld, idx, "a string");
        return NULL;
    }
    s = lua_tolstring(ld->L, idx, &len);
    if (len == 0 || strlen(s) != len) {
        sl_conf_fail_value(ld, idx, "must be a non-empty string");
        return NULL;
    }
    if (lenp != NULL)
        *lenp = len;
    return s;
}

static bool
set_duration(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    uint64_t v;

    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        sl_conf_fail_type(ld, idx, "a duration such as \"10s\"");
        return false;
    }
    if (sl_config_parse_duration(lua_tostring(ld->L, idx), &v) != 0) {
        sl_conf_fail_value(ld, idx, "bad duration (use ms, s, m, h)");
        return false;
    }
    if (!check_range(ld, o, idx, v))
        return false;
    *FIELD(obj, o, uint64_t) = v;
    return true;
}

static bool
set_size(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    lua_State *L = ld->L;
    uint64_t v = 0;

    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (!sl_conf_to_u64(L, idx, &v)) {
            sl_conf_fail_value(ld, idx, "must be a whole number of bytes");
            return false;
        }
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        if (sl_config_parse_size(lua_tostring(L, idx), &v) != 0) {
            sl_conf_fail_value(ld, idx, "bad size (use a number of bytes, or k, m, g)");
            return false;
        }
    } else {
        sl_conf_fail_type(ld, idx, "a size such as \"16k\" or a number of bytes");
        return false;
    }
    if (!check_range(ld, o, idx, v))
        return false;
    if (o->type == OPT_SIZE)
        *FIELD(obj, o, size_t) = (size_t)v;
    else
        *FIELD(obj, o, uint64_t) = v;
    return true;
}

static bool
set_whole(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    uint64_t v;

    if (lua_type(ld->L, idx) != LUA_TNUMBER) {
        sl_conf_fail_type(ld, idx, "a whole number");
        return false;
    }
    if (!sl_conf_to_u64(ld->L, idx, &v)) {
        sl_conf_fail_value(ld, idx, "must be a whole number");
        return false;
    }
    if (!check_range(ld, o, idx, v))
        return false;
    if (o->type == OPT_UNSIGNED)
        *FIELD(obj, o, unsigned) = (unsigned)v;
    else
        *FIELD(obj, o, size_t) = (size_t)v;
    return true;
}

static bool
set_number(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    double v;

    if (!sl_conf_get_number(ld, idx, &v))
        return false;
    if (o->is_above_min && !(v > o->fmin)) {
        sl_conf_fail_value(ld, idx, "must be more than %.15g", o->fmin);
        return false;
    }
    if (!o->is_above_min && !(v >= o->fmin)) {
        sl_conf_fail_value(ld, idx, "must be at least %.15g", o->fmin);
        return false;
    }
    if (v > o->fmax) {
        sl_conf_fail_value(ld, idx, "must be at most %.15g", o->fmax);
        return false;
    }
    *FIELD(obj, o, double) = v;
    return true;
}

/* OPT_ENUM and OPT_WORD: one of the option's words. */
static bool
set_word(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    const char *s = sl_conf_get_string(ld, idx, NULL);
    int i;

    if (s == NULL)
        return false;
    if ((i = word_index(o->words, s)) < 0) {
        sl_conf_fail_value(ld, idx, "%s", o->help);
        return false;
    }
    if (o->type == OPT_ENUM) {
        *FIELD(obj, o, int) = i;
    } else {
        free(*FIELD(obj, o, char *));
        *FIELD(obj, o, char *) = sl_xstrdup(o->words[i]);
    }
    return true;
}

bool
sl_conf_set_option(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    const char *s;

    switch (o->type) {
    case OPT_DURATION:
        return set_duration(ld, o, obj, idx);
    case OPT_SIZE:
    case OPT_SIZE64:
        return set_size(ld, o, obj, idx);
    case OPT_UNSIGNED:
    case OPT_COUNT:
        return set_whole(ld, o, obj, idx);
    case OPT_NUMBER:
        return set_number(ld, o, obj, idx);
    case OPT_BOOL:
        if (lua_type(ld->L, idx) != LUA_TBOOLEAN) {
            sl_conf_fail_type(ld, idx, "true or false");
            return false;
        }
        *FIELD(obj, o, bool) = lua_toboolean(ld->L, idx);
        return true;
    case OPT_STRING:
        if ((s = sl_conf_get_string(ld, idx, NULL)) == NULL)
            return false;
        free(*FIELD(obj, o, char *));
        *FIELD(obj, o, char *) = sl_xstrdup(s);
        return true;
    case OPT_ENUM:
    case OPT_WORD:
        return set_word(ld, o, obj, idx);
    case OPT_CUSTOM:
        return o->custom(ld, obj, idx);
    }
    return false;
}

uint32_t
sl_conf_opt_bit(const struct opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(opts[i].name, name) == 0)
            return 1u << i;
    }
    return 0;
}

/*
 * Walks the table at idx as a section described by opts: reports unknown
 * keys and stray list entries, then parses each option written, in table
 * order. The key path of the section must already be pushed.
 */
struct walk
sl_conf_walk(struct loader *ld, int idx, const struct opt *opts, size_t n, void *obj)
{
    lua_State *L = ld->L;
    struct walk w = { 0, 0 };

    idx = abs_index(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (sl_conf_opt_bit(opts, n, k) == 0) {
                sl_conf_push_key(ld, k);
                if (ld->ctx != NULL)
                    sl_conf_fail_at(ld, false, "unknown key \"%s\" in %s", k, ld->ctx);
                else
                    sl_conf_fail_at(ld, false, "unknown key \"%s\"", k);
                sl_conf_pop_key(ld);
            }
        } else {
            char vbuf[96];
            double d = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
            sl_conf_push_index(ld, (long)d);
            fail(ld, "unexpected list entry [%s] (write name = value)",
                 sl_conf_describe(L, -2, vbuf, sizeof(vbuf)));
            sl_conf_pop_key(ld);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, idx, opts[i].name);
        if (!lua_isnil(L, -1)) {
            w.seen |= 1u << i;
            sl_conf_push_key(ld, opts[i].name);
            if (!sl_conf_set_option(ld, &opts[i], obj, lua_gettop(L)))
                w.bad |= 1u << i;
            sl_conf_pop_key(ld);
        }
        lua_pop(L, 1);
    }
    return w;
}

/*
 * For values that may be one item or a list of them. Returns the number of
 * items, 0 after an error (or for an empty list when that is allowed).
 */
size_t
sl_conf_items_begin(struct loader *ld, int idx, int item_type, const char *expected,
                    bool allow_empty, bool *is_single)
{
    size_t n;
    char lbuf[96];

    *is_single = lua_type(ld->L, idx) == item_type;
    if (*is_single)
        return 1;
    if (lua_type(ld->L, idx) != LUA_TTABLE) {
        sl_conf_fail_type(ld, idx, expected);
        return 0;
    }
    n = sl_conf_list_len(ld, idx);
    if (n == 0 && !allow_empty)
        fail(ld, "%s: empty list", sl_conf_label(ld, lbuf, sizeof(lbuf)));
    return n;
}

/* Pushes item i (1-based) onto the stack and the key path; returns its index. */
int
sl_conf_item_push(struct loader *ld, int idx, size_t i, bool is_single)
{
    if (is_single) {
        lua_pushvalue(ld->L, idx);
    } else {
        lua_rawgeti(ld->L, idx, (int)i);
        sl_conf_push_index(ld, (long)i);
    }
    return lua_gettop(ld->L);
}

void
sl_conf_item_pop(struct loader *ld, bool is_single)
{
    lua_pop(ld->L, 1);
    if (!is_single)
        sl_conf_pop_key(ld);
}

bool
sl_conf_need_table(struct loader *ld, int idx, const char *what)
{
    if (lua_type(ld->L, idx) == LUA_TTABLE)
        return true;
    sl_conf_fail_type(ld, idx, what);
    return false;
}

bool
sl_conf_get_number(struct loader *ld, int idx, double *out)
{
    if (lua_type(ld->L, idx) != LUA_TNUMBER) {
        sl_conf_fail_type(ld, idx, "a number");
        return false;
    }
    *out = lua_tonumber(ld->L, idx);
    if (!isfinite(*out)) {
        sl_conf_fail_value(ld, idx, "must be a finite number");
        return false;
    }
    return true;
}
