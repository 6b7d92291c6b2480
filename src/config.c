/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The config loader. Runs the Lua conf file once in a throwaway, sandboxed
 * LuaJIT state (no io, os, require, load...; bounded in instructions and
 * memory), walks the globals it assigned into the plain C structs of
 * sluice/config.h and validates them. Every problem becomes one
 * "file:line: message"; all of them are reported, then the load fails.
 * Nothing here logs: the caller (main's -t, daemon's reload) decides.
 *
 * The conf runs in lua_rt's sandbox, the very one the workers run it in
 * again (same globals, same limits), so a conf that passes here behaves the
 * same there. Lua functions in the conf (limit key and cost functions) never
 * cross into C; they are only recorded, and each worker's runtime fetches
 * limits[name].key / limits[name].cost from its own run.
 */
#include "sluice/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "sluice/lua_rt.h"
#include "sluice/metrics.h"
#include "util/alloc.h"
#include "util/redis_url.h"

#define CONF_MAX_FILE_SIZE (4u << 20)   /* a conf bigger than this is a mistake */
#define CONF_MAX_PATH 8                 /* deepest key path we track: limits.x.key[2] */
#define CONF_MAX_NAME 64                /* upstream and limit names */
#define CONF_MAX_WORKERS 256

#define MS_SECOND 1000ull
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)

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

static void
format_duration(uint64_t ms, char *buf, size_t size)
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

static void
format_size(uint64_t bytes, char *buf, size_t size)
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
/* Source text: a small Lua lexer, used only to find line numbers           */
/* ------------------------------------------------------------------------ */

/*
 * How error lines are found. Lua values carry no line numbers, so:
 *
 *  1. While the conf runs, every global assignment goes through the
 *     environment's __newindex (env_newindex below), which records the line
 *     of the executing statement from lua_getinfo. LuaJIT attributes a
 *     multi-line assignment to the line where its expression ends, so that
 *     line is only an upper bound.
 *  2. scan_statements() lexes the whole file once and lists every
 *     `name =` at bracket depth 0 (not a local, not a field, not a for
 *     variable): the candidates for global assignments. The statement of a
 *     top-level key is the last candidate with that name at or before the
 *     line recorded in 1, which gives the exact line of `name`.
 *  3. For a nested key (limits.api.per, routes[2].limits[1]) locate_value()
 *     re-lexes from that statement and follows the key path through the
 *     table constructors written there: `name = v`, `["name"] = v`, `[2] = v`
 *     and positional entries. Where the path leaves written constructors
 *     (a value built by a function, a local table, a later `t.x = 1`), the
 *     deepest line found so far is used, at worst the top-level statement.
 */

enum tok_kind { TK_EOF, TK_NAME, TK_STRING, TK_NUMBER, TK_OP };

struct token {
    enum tok_kind kind;
    const char *text; /* names, numbers, operators; string contents without quotes */
    size_t len;
    bool is_plain;    /* a string with no escapes: text is exactly its value */
    int line;
};

struct lexer {
    const char *p;
    const char *end;
    int line;
};

/* Level of a long bracket "[==[" starting at p, or -1 when p starts none. */
static int
long_bracket_level(const char *p, const char *end)
{
    int level = 0;

    if (p >= end || *p != '[')
        return -1;
    p++;
    while (p < end && *p == '=') {
        level++;
        p++;
    }
    return (p < end && *p == '[') ? level : -1;
}

/* Skips a long string or comment whose opening bracket starts at lx->p. */
static void
skip_long(struct lexer *lx, int level, const char **content, size_t *len)
{
    const char *start;

    lx->p += level + 2;
    start = lx->p;
    while (lx->p < lx->end) {
        if (*lx->p == ']') {
            const char *q = lx->p + 1;
            int n = 0;
            while (q < lx->end && *q == '=') {
                n++;
                q++;
            }
            if (n == level && q < lx->end && *q == ']') {
                if (content != NULL) {
                    *content = start;
                    *len = (size_t)(lx->p - start);
                }
                lx->p = q + 1;
                return;
            }
            lx->p++;
            continue;
        }
        if (*lx->p == '\n')
            lx->line++;
        lx->p++;
    }
    if (content != NULL) {
        *content = start;
        *len = (size_t)(lx->p - start);
    }
}

static bool
is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static void
lex_next(struct lexer *lx, struct token *t)
{
    static const char *const ops3[] = { "..." };
    static const char *const ops2[] = { "..", "==", "~=", "<=", ">=", "::" };

    for (;;) {
        while (lx->p < lx->end && isspace((unsigned char)*lx->p)) {
            if (*lx->p == '\n')
                lx->line++;
            lx->p++;
        }
        if (lx->end - lx->p >= 2 && lx->p[0] == '-' && lx->p[1] == '-') {
            int level;
            lx->p += 2;
            level = long_bracket_level(lx->p, lx->end);
            if (level >= 0) {
                skip_long(lx, level, NULL, NULL);
            } else {
                while (lx->p < lx->end && *lx->p != '\n')
                    lx->p++;
            }
            continue;
        }
        break;
    }

    memset(t, 0, sizeof(*t));
    t->line = lx->line;
    t->text = lx->p;
    if (lx->p >= lx->end) {
        t->kind = TK_EOF;
        return;
    }

    if (is_name_start((unsigned char)*lx->p)) {
        while (lx->p < lx->end && (isalnum((unsigned char)*lx->p) || *lx->p == '_'))
            lx->p++;
        t->kind = TK_NAME;
        t->len = (size_t)(lx->p - t->text);
        return;
    }
    if (isdigit((unsigned char)*lx->p)
        || (*lx->p == '.' && lx->p + 1 < lx->end && isdigit((unsigned char)lx->p[1]))) {
        bool is_hex = lx->end - lx->p >= 2 && lx->p[0] == '0'
                      && (lx->p[1] == 'x' || lx->p[1] == 'X');
        while (lx->p < lx->end) {
            char c = *lx->p;
            if ((c == '+' || c == '-') && lx->p > t->text) {
                char prev = lx->p[-1];
                bool is_exp = is_hex ? (prev == 'p' || prev == 'P') : (prev == 'e' || prev == 'E');
                if (!is_exp)
                    break;
            } else if (!isalnum((unsigned char)c) && c != '.') {
                break;
            }
            lx->p++;
        }
        t->kind = TK_NUMBER;
        t->len = (size_t)(lx->p - t->text);
        return;
    }
    if (*lx->p == '"' || *lx->p == '\'') {
        char quote = *lx->p++;
        t->kind = TK_STRING;
        t->text = lx->p;
        t->is_plain = true;
        while (lx->p < lx->end && *lx->p != quote && *lx->p != '\n') {
            if (*lx->p == '\\') {
                t->is_plain = false;
                lx->p++;
                if (lx->p < lx->end && *lx->p == '\n')
                    lx->line++;
            }
            if (lx->p < lx->end)
                lx->p++;
        }
        t->len = (size_t)(lx->p - t->text);
        if (lx->p < lx->end && *lx->p == quote)
            lx->p++;
        return;
    }
    {
        int level = long_bracket_level(lx->p, lx->end);
        if (level >= 0) {
            t->kind = TK_STRING;
            t->is_plain = true;
            skip_long(lx, level, &t->text, &t->len);
            return;
        }
    }

    t->kind = TK_OP;
    for (size_t i = 0; i < sizeof(ops3) / sizeof(ops3[0]); i++) {
        if (lx->end - lx->p >= 3 && memcmp(lx->p, ops3[i], 3) == 0) {
            lx->p += 3;
            t->len = 3;
            return;
        }
    }
    for (size_t i = 0; i < sizeof(ops2) / sizeof(ops2[0]); i++) {
        if (lx->end - lx->p >= 2 && memcmp(lx->p, ops2[i], 2) == 0) {
            lx->p += 2;
            t->len = 2;
            return;
        }
    }
    lx->p++;
    t->len = 1;
}

static bool
tok_is(const struct token *t, enum tok_kind kind, const char *text)
{
    size_t len = strlen(text);
    return t->kind == kind && t->len == len && memcmp(t->text, text, len) == 0;
}

static bool
is_op(const struct token *t, const char *text)
{
    return tok_is(t, TK_OP, text);
}

static bool
is_keyword(const struct token *t)
{
    static const char *const words[] = {
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    };
    if (t->kind != TK_NAME)
        return false;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (tok_is(t, TK_NAME, words[i]))
            return true;
    }
    return false;
}

/* +1 for tokens that open a nesting level, -1 for those that close one. */
static int
nesting(const struct token *t)
{
    if (is_op(t, "(") || is_op(t, "[") || is_op(t, "{") || tok_is(t, TK_NAME, "function")
        || tok_is(t, TK_NAME, "do") || tok_is(t, TK_NAME, "if") || tok_is(t, TK_NAME, "repeat"))
        return 1;
    if (is_op(t, ")") || is_op(t, "]") || is_op(t, "}") || tok_is(t, TK_NAME, "end")
        || tok_is(t, TK_NAME, "until"))
        return -1;
    return 0;
}

/*
 * Skips one expression inside a table constructor. Returns the token that
 * ended it: "," or ";" (more fields follow), "}" (the constructor's end) or
 * EOF.
 */
static void
skip_field_value(struct lexer *lx, struct token *t)
{
    int depth = 0;

    for (;;) {
        lex_next(lx, t);
        if (t->kind == TK_EOF)
            return;
        if (depth == 0 && (is_op(t, ",") || is_op(t, ";") || is_op(t, "}")))
            return;
        depth += nesting(t);
        if (depth < 0)
            depth = 0;
    }
}

struct top_stmt {
    const char *name;
    size_t len;
    int line;
    struct lexer value; /* positioned just after the "=" */
};

struct path_el {
    const char *name; /* NULL: a list position */
    size_t len;
    long index;
};

static bool
key_matches(const struct token *k, const struct path_el *el)
{
    if (el->name != NULL)
        return (k->kind == TK_NAME || (k->kind == TK_STRING && k->is_plain)) && k->len == el->len
               && memcmp(k->text, el->name, el->len) == 0;
    if (k->kind == TK_NUMBER) {
        char buf[32];
        char *end;
        double d;
        if (k->len >= sizeof(buf))
            return false;
        memcpy(buf, k->text, k->len);
        buf[k->len] = '\0';
        d = strtod(buf, &end);
        return *end == '\0' && d == (double)el->index;
    }
    return false;
}

/*
 * Follows `path` through the table constructor that starts at lx. Returns
 * the line of the deepest key found, or `fallback` when the first key is
 * not written there.
 */
static int
locate_value(struct lexer *lx, const struct path_el *path, int n, int fallback)
{
    struct token t;
    struct lexer found = { 0 };
    int found_line = 0;
    long index = 1;

    lex_next(lx, &t);
    if (!is_op(&t, "{"))
        return fallback;
    for (;;) {
        struct lexer field_start = *lx;
        struct lexer value;
        bool is_match = false;
        int key_line;

        lex_next(lx, &t);
        if (t.kind == TK_EOF || is_op(&t, "}"))
            break;
        key_line = t.line;
        if (is_op(&t, "[")) {
            struct token k, close;
            struct lexer after_open = *lx;
            lex_next(lx, &k);
            lex_next(lx, &close);
            if ((k.kind == TK_STRING || k.kind == TK_NUMBER) && is_op(&close, "]")) {
                is_match = key_matches(&k, path);
            } else {
                int depth = 1;
                *lx = after_open;
                while (depth > 0) {
                    lex_next(lx, &k);
                    if (k.kind == TK_EOF)
                        return found_line ? found_line : fallback;
                    depth += nesting(&k);
                }
            }
            lex_next(lx, &t);
            if (!is_op(&t, "="))
                break; /* not a constructor we understand */
            value = *lx;
        } else {
            struct lexer peek = *lx;
            struct token eq;
            lex_next(&peek, &eq);
            if (t.kind == TK_NAME && !is_keyword(&t) && is_op(&eq, "=")) {
                is_match = key_matches(&t, path);
                *lx = peek;
            } else {
                *lx = field_start;
                is_match = path->name == NULL && path->index == index;
                index++;
            }
            value = *lx;
        }
        if (is_match) {
            found = value;
            found_line = key_line;
        }
        skip_field_value(lx, &t);
        if (!is_op(&t, ",") && !is_op(&t, ";"))
            break;
    }
    if (found_line == 0)
        return fallback;
    if (n == 1)
        return found_line;
    return locate_value(&found, path + 1, n - 1, found_line);
}

/* ------------------------------------------------------------------------ */
/* The loader state and its error list                                      */
/* ------------------------------------------------------------------------ */

struct conf_error {
    int line; /* 0: no line */
    char *text;
};

struct loader {
    struct sl_config *cfg;
    struct sl_lua_sandbox *sb;      /* the conf's state, lua_rt's sandbox */
    lua_State *L;
    int values;                     /* stack index of the assigned globals */

    struct top_stmt *stmts;
    size_t nstmts;

    struct path_el keys[CONF_MAX_PATH];
    int depth;
    const char *ctx;                /* "upstream \"api\"", or NULL at top level */
    char ctx_buf[CONF_MAX_NAME + 32];
    uint32_t seen;                  /* options present in the section being walked */
    uint32_t bad;                   /* options present but invalid */

    bool *upstream_used;
    bool has_unknown_upstream;      /* a route names an upstream that does not exist */

    struct conf_error *errs;
    size_t nerrs;
    size_t errs_cap;
};

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

static void
add_error_text(struct loader *ld, int line, char *text)
{
    if (ld->nerrs == ld->errs_cap) {
        ld->errs_cap = ld->errs_cap ? ld->errs_cap * 2 : 8;
        ld->errs = sl_xrealloc(ld->errs, ld->errs_cap * sizeof(*ld->errs));
    }
    ld->errs[ld->nerrs].line = line;
    ld->errs[ld->nerrs].text = text;
    ld->nerrs++;
}

static void
push_key(struct loader *ld, const char *name)
{
    if (ld->depth < CONF_MAX_PATH) {
        ld->keys[ld->depth].name = name;
        ld->keys[ld->depth].len = strlen(name);
        ld->keys[ld->depth].index = 0;
    }
    ld->depth++;
}

static void
push_index(struct loader *ld, long index)
{
    if (ld->depth < CONF_MAX_PATH) {
        ld->keys[ld->depth].name = NULL;
        ld->keys[ld->depth].len = 0;
        ld->keys[ld->depth].index = index;
    }
    ld->depth++;
}

static void
pop_key(struct loader *ld)
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

/* The line for a key path; see the comment above the lexer. */
static int
locate(struct loader *ld, const struct path_el *path, int n)
{
    const struct top_stmt *st = NULL;
    int hook_line;
    struct lexer lx;

    if (n <= 0)
        return 1;
    if (n > CONF_MAX_PATH)
        n = CONF_MAX_PATH;
    hook_line = assigned_line(ld, &path[0]);
    if (hook_line == 0)
        return 1; /* a required key that is missing: point at the top */
    for (size_t i = 0; i < ld->nstmts; i++) {
        const struct top_stmt *s = &ld->stmts[i];
        if (s->len == path[0].len && memcmp(s->name, path[0].name, s->len) == 0
            && s->line <= hook_line)
            st = s;
    }
    if (st == NULL)
        return hook_line;
    if (n == 1)
        return st->line;
    lx = st->value;
    return locate_value(&lx, path + 1, n - 1, st->line);
}

static int
current_line(struct loader *ld)
{
    return locate(ld, ld->keys, ld->depth);
}

static void fail_at(struct loader *ld, bool with_ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail_at(struct loader *ld, bool with_ctx, const char *fmt, ...)
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
    add_error_text(ld, current_line(ld), msg);
}

/* An error about the key at the top of the path, prefixed with the context. */
#define fail(ld, ...) fail_at((ld), true, __VA_ARGS__)

/* "per", "servers[2]": how the current key is named in messages. */
static const char *
label(struct loader *ld, char *buf, size_t size)
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
static const char *
describe(lua_State *L, int idx, char *buf, size_t size)
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
static void
fail_type(struct loader *ld, int idx, const char *expected)
{
    char lbuf[96], vbuf[96];
    int type = lua_type(ld->L, idx);

    if (type == LUA_TSTRING || type == LUA_TNUMBER || type == LUA_TBOOLEAN)
        fail(ld, "%s: expected %s, got %s %s", label(ld, lbuf, sizeof(lbuf)), expected,
             lua_typename(ld->L, type), describe(ld->L, idx, vbuf, sizeof(vbuf)));
    else
        fail(ld, "%s: expected %s, got a %s", label(ld, lbuf, sizeof(lbuf)), expected,
             lua_typename(ld->L, type));
}

/* "<key> <value>: <why>" */
static void fail_value(struct loader *ld, int idx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail_value(struct loader *ld, int idx, const char *fmt, ...)
{
    char lbuf[96], vbuf[96];
    va_list ap;
    char *why;

    va_start(ap, fmt);
    why = xvformat(fmt, ap);
    va_end(ap);
    fail(ld, "%s %s: %s", label(ld, lbuf, sizeof(lbuf)), describe(ld->L, idx, vbuf, sizeof(vbuf)),
         why);
    free(why);
}

static int
abs_index(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

static bool
to_u64(lua_State *L, int idx, uint64_t *out)
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
static size_t
list_len(struct loader *ld, int idx)
{
    size_t n;

    idx = abs_index(ld->L, idx);
    n = lua_objlen(ld->L, idx);
    lua_pushnil(ld->L);
    while (lua_next(ld->L, idx) != 0) {
        int ktype = lua_type(ld->L, -2);
        double d = ktype == LUA_TNUMBER ? lua_tonumber(ld->L, -2) : 0;
        char lbuf[96];
        label(ld, lbuf, sizeof(lbuf));
        if (ktype == LUA_TSTRING) {
            push_key(ld, lua_tostring(ld->L, -2));
            fail(ld, "%s: unexpected key \"%s\" (a list takes no names)", lbuf,
                 lua_tostring(ld->L, -2));
            pop_key(ld);
        } else if (ktype != LUA_TNUMBER || floor(d) != d || d < 1 || d > (double)n) {
            fail(ld, "%s: must be a list (entries 1, 2, 3...), not a table with holes or odd keys",
                 lbuf);
        }
        lua_pop(ld->L, 1);
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Running the conf (in lua_rt's sandbox)                                   */
/* ------------------------------------------------------------------------ */

/* Records a message of the sandbox ("path:line: text" or "path: text") as an
 * error of ours. */
static void
add_lua_error(struct loader *ld, const char *msg)
{
    const char *path = ld->cfg->path;
    size_t plen = strlen(path);
    int line = 0;

    if (strncmp(msg, path, plen) == 0 && msg[plen] == ':') {
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
    add_error_text(ld, line, sl_xstrdup(msg));
}

/* The names a conf may read before it assigns them: the top-level keys. */
static const char **
top_level_names(void);

/*
 * Runs cfg->source in a sandbox. On success leaves the sandbox in ld->sb and
 * the assigned globals at stack index ld->values; returns 0. On a syntax or
 * runtime error records it, returns -1.
 */
static int
run_conf(struct loader *ld)
{
    struct sl_config *cfg = ld->cfg;
    char err[1024];

    cfg->conf_names = top_level_names();
    ld->sb = sl_lua_sandbox_new(cfg->conf_names, err, sizeof(err));
    if (ld->sb == NULL
        || sl_lua_sandbox_run(ld->sb, cfg->source, cfg->source_len, cfg->path, err,
                              sizeof(err)) != 0) {
        add_lua_error(ld, err);
        return -1;
    }
    ld->L = sl_lua_sandbox_state(ld->sb);
    sl_lua_sandbox_push_assigned(ld->sb);
    ld->values = lua_gettop(ld->L);
    return 0;
}

/* Lists every `name =` that may be a global assignment; see locate(). */
static void
scan_statements(struct loader *ld)
{
    struct lexer lx = { ld->cfg->source, ld->cfg->source + ld->cfg->source_len, 1 };
    struct token t, prev;
    size_t cap = 0;
    int depth = 0;
    bool in_local = false;

    memset(&prev, 0, sizeof(prev));
    for (;;) {
        lex_next(&lx, &t);
        if (t.kind == TK_EOF)
            break;
        if (is_op(&t, "(") || is_op(&t, "[") || is_op(&t, "{")) {
            depth++;
        } else if (is_op(&t, ")") || is_op(&t, "]") || is_op(&t, "}")) {
            if (depth > 0)
                depth--;
        } else if (depth == 0 && t.kind == TK_NAME && !is_keyword(&t) && !in_local
                   && !is_op(&prev, ".") && !is_op(&prev, ":") && !tok_is(&prev, TK_NAME, "for")) {
            struct lexer peek = lx;
            struct token eq;
            lex_next(&peek, &eq);
            if (is_op(&eq, "=")) {
                if (ld->nstmts == cap) {
                    cap = cap ? cap * 2 : 16;
                    ld->stmts = sl_xrealloc(ld->stmts, cap * sizeof(*ld->stmts));
                }
                ld->stmts[ld->nstmts].name = t.text;
                ld->stmts[ld->nstmts].len = t.len;
                ld->stmts[ld->nstmts].line = t.line;
                ld->stmts[ld->nstmts].value = peek;
                ld->nstmts++;
            }
        }
        /* `local a, b = ...` declares locals: none of those names is a global */
        if (tok_is(&t, TK_NAME, "local"))
            in_local = true;
        else if (in_local && !(t.kind == TK_NAME && !is_keyword(&t)) && !is_op(&t, ","))
            in_local = false;
        prev = t;
    }
}

/* ------------------------------------------------------------------------ */
/* Option tables and the generic walker                                     */
/* ------------------------------------------------------------------------ */

enum opt_type {
    OPT_DURATION, /* uint64_t ms, from "10s" */
    OPT_SIZE,     /* size_t bytes, from "16k" or a number */
    OPT_SIZE64,   /* uint64_t bytes, same syntax */
    OPT_UNSIGNED, /* unsigned, a whole number */
    OPT_COUNT,    /* size_t, a whole number */
    OPT_BOOL,     /* bool */
    OPT_STRING,   /* char *, not empty */
    OPT_CUSTOM,   /* parsed by `custom` */
};

struct opt;
/* Parses the value at idx into obj; returns false after reporting an error. */
typedef bool opt_fn(struct loader *ld, void *obj, int idx);

/*
 * One option of a section, in the manner of Redis's config table. The
 * default is written the way a conf would write it and goes through the
 * same parser, so docs/configuration.md can quote these strings.
 */
struct opt {
    const char *name;
    enum opt_type type;
    const char *def;   /* NULL: no default (or set by the section's code) */
    uint64_t min, max; /* ms for durations, bytes for sizes */
    size_t offset;     /* of the field in the section's struct */
    opt_fn *custom;
};

struct walk {
    uint32_t seen; /* bit i: option i was written */
    uint32_t bad;  /* bit i: ... and was invalid */
};

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))
#define FIELD(obj, o, type) ((type *)(void *)((char *)(obj) + (o)->offset))

static void
apply_defaults(const struct opt *opts, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const struct opt *o = &opts[i];
        uint64_t v = 0;

        if (o->def == NULL || o->type == OPT_CUSTOM)
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
            free(*FIELD(obj, o, char *));
            *FIELD(obj, o, char *) = sl_xstrdup(o->def);
            break;
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
        format_duration(o->min, lo, sizeof(lo));
        format_duration(o->max, hi, sizeof(hi));
    } else if (o->type == OPT_SIZE || o->type == OPT_SIZE64) {
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
    } else {
        snprintf(lo, sizeof(lo), "%llu", (unsigned long long)o->min);
        snprintf(hi, sizeof(hi), "%llu", (unsigned long long)o->max);
    }
    fail_value(ld, idx, "must be between %s and %s", lo, hi);
    return false;
}

/* A non-empty string without NUL bytes, or an error; returns it or NULL. */
static const char *
get_string(struct loader *ld, int idx, size_t *lenp)
{
    size_t len;
    const char *s;

    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        fail_type(ld, idx, "a string");
        return NULL;
    }
    s = lua_tolstring(ld->L, idx, &len);
    if (len == 0 || strlen(s) != len) {
        fail_value(ld, idx, "must be a non-empty string");
        return NULL;
    }
    if (lenp != NULL)
        *lenp = len;
    return s;
}

static bool
set_option(struct loader *ld, const struct opt *o, void *obj, int idx)
{
    lua_State *L = ld->L;
    uint64_t v = 0;

    switch (o->type) {
    case OPT_DURATION:
        if (lua_type(L, idx) != LUA_TSTRING) {
            fail_type(ld, idx, "a duration such as \"10s\"");
            return false;
        }
        if (sl_config_parse_duration(lua_tostring(L, idx), &v) != 0) {
            fail_value(ld, idx, "bad duration (use ms, s, m, h)");
            return false;
        }
        if (!check_range(ld, o, idx, v))
            return false;
        *FIELD(obj, o, uint64_t) = v;
        return true;
    case OPT_SIZE:
    case OPT_SIZE64:
        if (lua_type(L, idx) == LUA_TNUMBER) {
            if (!to_u64(L, idx, &v)) {
                fail_value(ld, idx, "must be a whole number of bytes");
                return false;
            }
        } else if (lua_type(L, idx) == LUA_TSTRING) {
            if (sl_config_parse_size(lua_tostring(L, idx), &v) != 0) {
                fail_value(ld, idx, "bad size (use a number of bytes, or k, m, g)");
                return false;
            }
        } else {
            fail_type(ld, idx, "a size such as \"16k\" or a number of bytes");
            return false;
        }
        if (!check_range(ld, o, idx, v))
            return false;
        if (o->type == OPT_SIZE)
            *FIELD(obj, o, size_t) = (size_t)v;
        else
            *FIELD(obj, o, uint64_t) = v;
        return true;
    case OPT_UNSIGNED:
    case OPT_COUNT:
        if (lua_type(L, idx) != LUA_TNUMBER) {
            fail_type(ld, idx, "a whole number");
            return false;
        }
        if (!to_u64(L, idx, &v)) {
            fail_value(ld, idx, "must be a whole number");
            return false;
        }
        if (!check_range(ld, o, idx, v))
            return false;
        if (o->type == OPT_UNSIGNED)
            *FIELD(obj, o, unsigned) = (unsigned)v;
        else
            *FIELD(obj, o, size_t) = (size_t)v;
        return true;
    case OPT_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN) {
            fail_type(ld, idx, "true or false");
            return false;
        }
        *FIELD(obj, o, bool) = lua_toboolean(L, idx);
        return true;
    case OPT_STRING: {
        const char *s = get_string(ld, idx, NULL);
        if (s == NULL)
            return false;
        free(*FIELD(obj, o, char *));
        *FIELD(obj, o, char *) = sl_xstrdup(s);
        return true;
    }
    case OPT_CUSTOM:
        return o->custom(ld, obj, idx);
    }
    return false;
}

static uint32_t
opt_bit(const struct opt *opts, size_t n, const char *name)
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
static struct walk
walk_record(struct loader *ld, int idx, const struct opt *opts, size_t n, void *obj)
{
    lua_State *L = ld->L;
    struct walk w = { 0, 0 };

    idx = abs_index(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (opt_bit(opts, n, k) == 0) {
                push_key(ld, k);
                if (ld->ctx != NULL)
                    fail_at(ld, false, "unknown key \"%s\" in %s", k, ld->ctx);
                else
                    fail_at(ld, false, "unknown key \"%s\"", k);
                pop_key(ld);
            }
        } else {
            char vbuf[96];
            double d = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
            push_index(ld, (long)d);
            fail(ld, "unexpected list entry [%s] (write name = value)",
                 describe(L, -2, vbuf, sizeof(vbuf)));
            pop_key(ld);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, idx, opts[i].name);
        if (!lua_isnil(L, -1)) {
            w.seen |= 1u << i;
            push_key(ld, opts[i].name);
            if (!set_option(ld, &opts[i], obj, lua_gettop(L)))
                w.bad |= 1u << i;
            pop_key(ld);
        }
        lua_pop(L, 1);
    }
    return w;
}

/*
 * For values that may be one item or a list of them. Returns the number of
 * items, 0 after an error (or for an empty list when that is allowed).
 */
static size_t
items_begin(struct loader *ld, int idx, int item_type, const char *expected, bool allow_empty,
            bool *is_single)
{
    size_t n;
    char lbuf[96];

    *is_single = lua_type(ld->L, idx) == item_type;
    if (*is_single)
        return 1;
    if (lua_type(ld->L, idx) != LUA_TTABLE) {
        fail_type(ld, idx, expected);
        return 0;
    }
    n = list_len(ld, idx);
    if (n == 0 && !allow_empty)
        fail(ld, "%s: empty list", label(ld, lbuf, sizeof(lbuf)));
    return n;
}

/* Pushes item i (1-based) onto the stack and the key path; returns its index. */
static int
item_push(struct loader *ld, int idx, size_t i, bool is_single)
{
    if (is_single) {
        lua_pushvalue(ld->L, idx);
    } else {
        lua_rawgeti(ld->L, idx, (int)i);
        push_index(ld, (long)i);
    }
    return lua_gettop(ld->L);
}

static void
item_pop(struct loader *ld, bool is_single)
{
    lua_pop(ld->L, 1);
    if (!is_single)
        pop_key(ld);
}

/* ------------------------------------------------------------------------ */
/* Top level: addresses, workers, logs                                      */
/* ------------------------------------------------------------------------ */

static const char *const address_help =
    "bad address (use host:port with a numeric host, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")";

static bool
parse_one_address(struct loader *ld, int idx, struct sl_sockaddr *addr)
{
    const char *s = get_string(ld, idx, NULL);

    if (s == NULL)
        return false;
    if (sl_sockaddr_parse(s, addr) != 0) {
        fail_value(ld, idx, "%s", address_help);
        return false;
    }
    return true;
}

/* "host:port" or a list of them into a new array; duplicates are errors. */
static bool
parse_addresses(struct loader *ld, int idx, struct sl_sockaddr **out, size_t *nout)
{
    bool is_single, ok = true;
    size_t n = items_begin(ld, idx, LUA_TSTRING, "\"host:port\" or a list of them", false,
                           &is_single);

    free(*out);
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return false;
    *out = sl_xcalloc(n, sizeof(**out));
    for (size_t i = 1; i <= n; i++) {
        int v = item_push(ld, idx, i, is_single);
        struct sl_sockaddr *a = &(*out)[*nout];
        if (parse_one_address(ld, v, a)) {
            bool is_dup = false;
            for (size_t j = 0; j < *nout; j++)
                is_dup = is_dup || strcmp((*out)[j].text, a->text) == 0;
            if (is_dup) {
                fail_value(ld, v, "listed twice");
                ok = false;
            } else {
                (*nout)++;
            }
        } else {
            ok = false;
        }
        item_pop(ld, is_single);
    }
    return ok;
}

static bool
set_listen(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    return parse_addresses(ld, idx, &cfg->listen, &cfg->nlisten);
}

static bool
set_admin(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;

    if (lua_type(ld->L, idx) == LUA_TBOOLEAN && !lua_toboolean(ld->L, idx)) {
        cfg->has_admin = false;
        return true;
    }
    if (lua_type(ld->L, idx) != LUA_TSTRING) {
        fail_type(ld, idx, "\"host:port\" or false");
        return false;
    }
    cfg->has_admin = parse_one_address(ld, idx, &cfg->admin);
    return cfg->has_admin;
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
        return true;
    }
    if (lua_type(ld->L, idx) != LUA_TSTRING && lua_type(ld->L, idx) != LUA_TNUMBER) {
        fail_type(ld, idx, "\"auto\" or a number");
        return false;
    }
    if (lua_type(ld->L, idx) != LUA_TNUMBER || !to_u64(ld->L, idx, &n) || n < 1
        || n > CONF_MAX_WORKERS) {
        fail_value(ld, idx, "use \"auto\" or a whole number from 1 to %d", CONF_MAX_WORKERS);
        return false;
    }
    cfg->workers = (unsigned)n;
    return true;
}

static bool
set_trusted_proxies(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    bool is_single, ok = true;
    size_t n = items_begin(ld, idx, LUA_TSTRING, "an address/CIDR or a list of them", true,
                           &is_single);

    free(cfg->trusted_proxies);
    cfg->trusted_proxies = NULL;
    cfg->ntrusted_proxies = 0;
    if (n == 0)
        return lua_type(ld->L, idx) == LUA_TTABLE;
    cfg->trusted_proxies = sl_xcalloc(n, sizeof(*cfg->trusted_proxies));
    for (size_t i = 1; i <= n; i++) {
        int v = item_push(ld, idx, i, is_single);
        const char *s = get_string(ld, v, NULL);
        if (s == NULL) {
            ok = false;
        } else if (sl_cidr_parse(s, &cfg->trusted_proxies[cfg->ntrusted_proxies]) != 0) {
            fail_value(ld, v, "bad address or CIDR (use e.g. \"10.0.0.0/8\" or \"::1\")");
            ok = false;
        } else {
            cfg->ntrusted_proxies++;
        }
        item_pop(ld, is_single);
    }
    return ok;
}

/* The string at idx must be one of `words` (NULL-terminated); returns its index or -1. */
static int
choose(struct loader *ld, int idx, const char *const *words, const char *help)
{
    const char *s = get_string(ld, idx, NULL);

    if (s == NULL)
        return -1;
    for (int i = 0; words[i] != NULL; i++) {
        if (strcmp(s, words[i]) == 0)
            return i;
    }
    fail_value(ld, idx, "%s", help);
    return -1;
}

static bool
set_log_level(struct loader *ld, void *obj, int idx)
{
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    struct sl_config *cfg = obj;
    int i = choose(ld, idx, levels, "unknown log level (use debug, info, warn or error)");

    if (i < 0)
        return false;
    free(cfg->log_level);
    cfg->log_level = sl_xstrdup(levels[i]);
    return true;
}

static bool
set_error_log(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    const char *s = get_string(ld, idx, NULL);

    if (s == NULL)
        return false;
    if (strcmp(s, "off") == 0) {
        fail_value(ld, idx, "the error log cannot be turned off (use a path or \"stderr\")");
        return false;
    }
    free(cfg->error_log);
    cfg->error_log = sl_xstrdup(s);
    return true;
}

/* ------------------------------------------------------------------------ */
/* client and store                                                         */
/* ------------------------------------------------------------------------ */

static const struct opt client_opts[] = {
    { "header_timeout", OPT_DURATION, "10s", 1, 24 * MS_HOUR,
      offsetof(struct sl_client_conf, header_timeout_ms), NULL },
    { "body_timeout", OPT_DURATION, "30s", 1, 24 * MS_HOUR,
      offsetof(struct sl_client_conf, body_timeout_ms), NULL },
    { "idle_timeout", OPT_DURATION, "60s", 1, 24 * MS_HOUR,
      offsetof(struct sl_client_conf, idle_timeout_ms), NULL },
    { "max_header_size", OPT_SIZE, "16k", 1024, 1u << 20,
      offsetof(struct sl_client_conf, max_header_size), NULL },
    { "max_uri_size", OPT_SIZE, "8k", 64, 1u << 20,
      offsetof(struct sl_client_conf, max_uri_size), NULL },
    { "max_headers", OPT_UNSIGNED, "100", 1, 10000,
      offsetof(struct sl_client_conf, max_headers), NULL },
    { "max_body_size", OPT_SIZE64, "0", 0, UINT64_MAX,
      offsetof(struct sl_client_conf, max_body_size), NULL },
    { "max_connections", OPT_UNSIGNED, "10000", 1, 10000000,
      offsetof(struct sl_client_conf, max_connections), NULL },
};

static bool
need_table(struct loader *ld, int idx, const char *what)
{
    if (lua_type(ld->L, idx) == LUA_TTABLE)
        return true;
    fail_type(ld, idx, what);
    return false;
}

static bool
set_client(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct sl_client_conf *c = &cfg->client;
    struct walk w;

    if (!need_table(ld, idx, "a table { header_timeout = ..., ... }"))
        return false;
    ld->ctx = "client";
    w = walk_record(ld, idx, client_opts, NOPTS(client_opts), c);
    if (c->max_uri_size > c->max_header_size && !(w.bad & opt_bit(client_opts,
                                                          NOPTS(client_opts), "max_uri_size"))) {
        char a[32], b[32];
        format_size(c->max_uri_size, a, sizeof(a));
        format_size(c->max_header_size, b, sizeof(b));
        push_key(ld, (w.seen & opt_bit(client_opts, NOPTS(client_opts), "max_uri_size"))
                         ? "max_uri_size" : "max_header_size");
        fail(ld, "max_uri_size %s is larger than max_header_size %s", a, b);
        pop_key(ld);
        w.bad |= 1;
    }
    ld->ctx = NULL;
    return w.bad == 0;
}

static bool
set_store_kind(struct loader *ld, void *obj, int idx)
{
    static const char *const kinds[] = { "local", "redis", NULL };
    struct sl_store_conf *s = obj;
    int i = choose(ld, idx, kinds, "unknown store kind (use \"local\" or \"redis\")");

    if (i < 0)
        return false;
    s->kind = i == 0 ? SL_STORE_LOCAL : SL_STORE_REDIS;
    return true;
}

static bool
set_store_on_error(struct loader *ld, void *obj, int idx)
{
    static const char *const policies[] = { "allow", "deny", "local", NULL };
    struct sl_store_conf *s = obj;
    int i = choose(ld, idx, policies, "unknown policy (use \"allow\", \"deny\" or \"local\")");

    if (i < 0)
        return false;
    s->on_error = i == 0 ? SL_ON_ERROR_ALLOW : i == 1 ? SL_ON_ERROR_DENY : SL_ON_ERROR_LOCAL;
    return true;
}

static bool
set_store_url(struct loader *ld, void *obj, int idx)
{
    struct sl_store_conf *s = obj;
    const char *url = get_string(ld, idx, NULL);
    struct sl_redis_url parsed;
    char why[200];

    if (url == NULL)
        return false;
    if (sl_redis_url_parse(url, &parsed, why, sizeof(why)) != 0) {
        fail_value(ld, idx, "%s", why);
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
    const char *p = get_string(ld, idx, &len);

    if (p == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '{' || c == '}') {
            fail_value(ld, idx, "must not contain spaces, control characters or braces");
            return false;
        }
    }
    if (len > 64) {
        fail_value(ld, idx, "longer than 64 bytes");
        return false;
    }
    free(s->prefix);
    s->prefix = sl_xstrdup(p);
    return true;
}

static const struct opt store_opts[] = {
    { "kind", OPT_CUSTOM, NULL, 0, 0, 0, set_store_kind },
    { "url", OPT_CUSTOM, NULL, 0, 0, 0, set_store_url },
    { "timeout", OPT_DURATION, "20ms", 1, 10 * MS_SECOND,
      offsetof(struct sl_store_conf, timeout_ms), NULL },
    { "on_error", OPT_CUSTOM, NULL, 0, 0, 0, set_store_on_error },
    { "prefix", OPT_CUSTOM, NULL, 0, 0, 0, set_store_prefix },
    { "max_keys", OPT_COUNT, "2000000", 1, 1000000000,
      offsetof(struct sl_store_conf, max_keys), NULL },
};

static bool
set_store(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    struct walk w;

    if (!need_table(ld, idx, "a table { kind = \"local\" | \"redis\", ... }"))
        return false;
    ld->ctx = "store";
    w = walk_record(ld, idx, store_opts, NOPTS(store_opts), &cfg->store);
    if (cfg->store.kind == SL_STORE_REDIS && cfg->store.url == NULL
        && !(w.bad & opt_bit(store_opts, NOPTS(store_opts), "url"))) {
        push_key(ld, "kind");
        fail(ld, "kind \"redis\" needs a url (url = \"redis://host:port\" or \"unix:/path\")");
        pop_key(ld);
        w.bad |= 1;
    }
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
            push_index(ld, lua_type(ld->L, -2) == LUA_TNUMBER ? (long)lua_tonumber(ld->L, -2) : 0);
            fail(ld, "%ss: entry [%s] has no name (write name = { ... })", what,
                 describe(ld->L, -2, vbuf, sizeof(vbuf)));
            pop_key(ld);
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
        fail_at(ld, false, "%s name \"%s\": use 1 to %d letters, digits, '_', '-' or '.'", what,
                name, CONF_MAX_NAME);
}

static bool
set_servers(struct loader *ld, void *obj, int idx)
{
    struct sl_upstream_conf *u = obj;
    return parse_addresses(ld, idx, &u->servers, &u->nservers);
}

static const struct opt upstream_opts[] = {
    { "servers", OPT_CUSTOM, NULL, 0, 0, 0, set_servers },
    { "keepalive", OPT_UNSIGNED, "64", 0, 100000,
      offsetof(struct sl_upstream_conf, keepalive), NULL },
    { "connect_timeout", OPT_DURATION, "1s", 1, MS_HOUR,
      offsetof(struct sl_upstream_conf, connect_timeout_ms), NULL },
    { "timeout", OPT_DURATION, "30s", 1, 24 * MS_HOUR,
      offsetof(struct sl_upstream_conf, timeout_ms), NULL },
    { "idle_timeout", OPT_DURATION, "60s", 1, 24 * MS_HOUR,
      offsetof(struct sl_upstream_conf, idle_timeout_ms), NULL },
    { "max_inflight", OPT_UNSIGNED, "1024", 1, 1000000,
      offsetof(struct sl_upstream_conf, max_inflight), NULL },
    { "queue", OPT_UNSIGNED, "4096", 0, 10000000,
      offsetof(struct sl_upstream_conf, queue), NULL },
};

static bool
set_upstreams(struct loader *ld, void *obj, int idx)
{
    struct sl_config *cfg = obj;
    char **names;
    size_t n;
    bool ok = true;

    if (!need_table(ld, idx, "a table of name = { servers = { ... } }"))
        return false;
    names = map_names(ld, idx, "upstream", &n);
    cfg->upstreams = sl_xcalloc(n ? n : 1, sizeof(*cfg->upstreams));
    cfg->nupstreams = n;
    ld->upstream_used = sl_xcalloc(n ? n : 1, sizeof(*ld->upstream_used));
    for (size_t i = 0; i < n; i++) {
        struct sl_upstream_conf *u = &cfg->upstreams[i];

        u->name = names[i];
        apply_defaults(upstream_opts, NOPTS(upstream_opts), u);
        u->file = cfg->path;
        push_key(ld, u->name);
        u->line = current_line(ld);
        check_name(ld, u->name, "upstream");
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "upstream \"%.*s\"", CONF_MAX_NAME, u->name);
        ld->ctx = ld->ctx_buf;
        lua_getfield(ld->L, idx, u->name);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { servers = { \"host:port\" } }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = walk_record(ld, -1, upstream_opts, NOPTS(upstream_opts), u);
            if (!(w.seen & opt_bit(upstream_opts, NOPTS(upstream_opts), "servers"))) {
                fail(ld, "no servers (servers = { \"host:port\", ... })");
                ok = false;
            }
            ok = ok && w.bad == 0;
        }
        lua_pop(ld->L, 1);
        ld->ctx = NULL;
        pop_key(ld);
    }
    free(names);
    return ok;
}

static const char *const selector_help =
    "unknown key selector (use ip, header:NAME, query:NAME, cookie:NAME, path, method or global)";

static bool
is_tchar(int c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* One key selector string into a part; returns a message on error. */
static const char *
parse_selector(const char *s, size_t len, struct sl_key_part *part)
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
                          : is_tchar(c);
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
    n = items_begin(ld, idx, LUA_TSTRING,
                    "a key selector (\"ip\", \"header:NAME\", ...), a list of them or a function",
                    false, &is_single);
    if (n == 0)
        return false;
    l->parts = sl_xcalloc(n, sizeof(*l->parts));
    for (size_t i = 1; i <= n; i++) {
        int v = item_push(ld, idx, i, is_single);
        struct sl_key_part *part = &l->parts[l->nparts];
        size_t len;
        const char *s, *why;

        if (lua_type(L, v) == LUA_TFUNCTION) {
            char lbuf[96];
            fail(ld, "%s: a key function cannot be part of a composite key",
                 label(ld, lbuf, sizeof(lbuf)));
            ok = false;
        } else if ((s = get_string(ld, v, &len)) == NULL) {
            ok = false;
        } else if ((why = parse_selector(s, len, part)) != NULL) {
            fail_value(ld, v, "%s", why);
            ok = false;
        } else {
            bool is_dup = false;
            for (size_t j = 0; j < l->nparts; j++)
                is_dup = is_dup || same_part(&l->parts[j], part);
            if (is_dup) {
                fail_value(ld, v, "listed twice in the key");
                free(part->name);
                ok = false;
            } else if (!is_single && n > 1 && part->kind == SL_KEY_GLOBAL) {
                fail_value(ld, v, "global cannot be combined with other key parts");
                ok = false;
            } else {
                l->nparts++;
            }
        }
        item_pop(ld, is_single);
    }
    return ok;
}

static bool
get_number(struct loader *ld, int idx, double *out)
{
    if (lua_type(ld->L, idx) != LUA_TNUMBER) {
        fail_type(ld, idx, "a number");
        return false;
    }
    *out = lua_tonumber(ld->L, idx);
    if (!isfinite(*out)) {
        fail_value(ld, idx, "must be a finite number");
        return false;
    }
    return true;
}

static bool
set_limit_rate(struct loader *ld, void *obj, int idx)
{
    struct sl_limit_conf *l = obj;
    double v;

    if (!get_number(ld, idx, &v))
        return false;
    if (v <= 0) {
        fail_value(ld, idx, "must be more than 0");
        return false;
    }
    if (v > 1e9) {
        fail_value(ld, idx, "must be at most 1000000000");
        return false;
    }
    l->rate = v;
    return true;
}

static bool
set_limit_burst(struct loader *ld, void *obj, int idx)
{
    struct sl_limit_conf *l = obj;
    double v;

    if (!get_number(ld, idx, &v))
        return false;
    if (v < 1) {
        fail_value(ld, idx, "must be at least 1");
        return false;
    }
    if (v > 1e12) {
        fail_value(ld, idx, "must be at most 1000000000000");
        return false;
    }
    l->burst = v;
    return true;
}

static bool
set_limit_cost(struct loader *ld, void *obj, int idx)
{
    struct sl_limit_conf *l = obj;
    double v;

    if (lua_type(ld->L, idx) == LUA_TFUNCTION) {
        l->is_cost_function = true;
        return true;
    }
    if (lua_type(ld->L, idx) != LUA_TNUMBER) {
        fail_type(ld, idx, "a number or a function");
        return false;
    }
    if (!get_number(ld, idx, &v))
        return false;
    if (v <= 0) {
        fail_value(ld, idx, "must be more than 0");
        return false;
    }
    l->cost = v;
    return true;
}

static const struct opt limit_opts[] = {
    { "key", OPT_CUSTOM, NULL, 0, 0, 0, set_limit_key },
    { "rate", OPT_CUSTOM, NULL, 0, 0, 0, set_limit_rate },
    { "per", OPT_DURATION, "1s", 1, 8760 * MS_HOUR, offsetof(struct sl_limit_conf, per_ms), NULL },
    { "burst", OPT_CUSTOM, NULL, 0, 0, 0, set_limit_burst },
    { "cost", OPT_CUSTOM, NULL, 0, 0, 0, set_limit_cost },
    { "shadow", OPT_BOOL, "false", 0, 0, offsetof(struct sl_limit_conf, is_shadow), NULL },
};

/* Checks between the fields of one limit, after they are all parsed. */
static bool
check_limit(struct loader *ld, struct sl_limit_conf *l, struct walk w)
{
    uint32_t key = opt_bit(limit_opts, NOPTS(limit_opts), "key");
    uint32_t rate = opt_bit(limit_opts, NOPTS(limit_opts), "rate");
    uint32_t burst = opt_bit(limit_opts, NOPTS(limit_opts), "burst");
    uint32_t cost = opt_bit(limit_opts, NOPTS(limit_opts), "cost");
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
            push_key(ld, "rate");
            fail(ld, "rate %g: burst defaults to rate and must be at least 1: set burst", l->rate);
            pop_key(ld);
            ok = false;
        } else {
            l->burst = l->rate;
            has_burst = true;
        }
    } else if ((w.seen & burst) && !(w.bad & burst)) {
        has_burst = true;
    }
    if (has_burst && (w.seen & cost) && !(w.bad & cost) && !l->is_cost_function
        && l->cost > l->burst) {
        push_key(ld, "cost");
        fail(ld, "cost %g is more than burst %g: no request could ever pass", l->cost, l->burst);
        pop_key(ld);
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

    if (!need_table(ld, idx, "a table of name = { key = ..., rate = ... }"))
        return false;
    names = map_names(ld, idx, "limit", &n);
    cfg->limits = sl_xcalloc(n ? n : 1, sizeof(*cfg->limits));
    cfg->nlimits = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_limit_conf *l = &cfg->limits[i];

        l->name = names[i];
        l->cost = 1;
        apply_defaults(limit_opts, NOPTS(limit_opts), l);
        l->file = cfg->path;
        push_key(ld, l->name);
        l->line = current_line(ld);
        check_name(ld, l->name, "limit");
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "limit \"%.*s\"", CONF_MAX_NAME, l->name);
        ld->ctx = ld->ctx_buf;
        lua_getfield(ld->L, idx, l->name);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { key = ..., rate = ... }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = walk_record(ld, -1, limit_opts, NOPTS(limit_opts), l);
            ok = check_limit(ld, l, w) && ok;
        }
        lua_pop(ld->L, 1);
        ld->ctx = NULL;
        pop_key(ld);
    }
    free(names);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* routes                                                                   */
/* ------------------------------------------------------------------------ */

static bool
set_route_path(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    size_t len;
    const char *p = get_string(ld, idx, &len);

    if (p == NULL)
        return false;
    if (p[0] != '/') {
        fail_value(ld, idx, "must start with /");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '?' || c == '#') {
            fail_value(ld, idx, "must not contain spaces, control characters, ? or #");
            return false;
        }
    }
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
    const char *h = get_string(ld, idx, &len);

    if (h == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == ':') {
            fail_value(ld, idx, "write the host without a port");
            return false;
        }
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
            fail_value(ld, idx, "bad host name");
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
    const char *name = get_string(ld, idx, NULL);

    if (name == NULL)
        return false;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (strcmp(cfg->upstreams[i].name, name) == 0) {
            r->upstream = i;
            ld->upstream_used[i] = true;
            return true;
        }
    }
    fail_value(ld, idx, "no such upstream");
    ld->has_unknown_upstream = true;
    return false;
}

static bool
set_route_limits(struct loader *ld, void *obj, int idx)
{
    struct sl_route_conf *r = obj;
    struct sl_config *cfg = ld->cfg;
    bool is_single, ok = true;
    size_t n = items_begin(ld, idx, LUA_TSTRING, "a limit name or a list of them", true,
                           &is_single);

    free(r->limits);
    r->limits = NULL;
    r->nlimits = 0;
    if (n == 0)
        return lua_type(ld->L, idx) == LUA_TTABLE;
    r->limits = sl_xcalloc(n, sizeof(*r->limits));
    for (size_t i = 1; i <= n; i++) {
        int v = item_push(ld, idx, i, is_single);
        const char *name = get_string(ld, v, NULL);
        size_t found = SIZE_MAX;

        for (size_t j = 0; name != NULL && j < cfg->nlimits; j++) {
            if (strcmp(cfg->limits[j].name, name) == 0)
                found = j;
        }
        if (name == NULL) {
            ok = false;
        } else if (found == SIZE_MAX) {
            fail_value(ld, v, "no such limit");
            ok = false;
        } else {
            bool is_dup = false;
            for (size_t j = 0; j < r->nlimits; j++)
                is_dup = is_dup || r->limits[j] == found;
            if (is_dup) {
                fail_value(ld, v, "listed twice");
                ok = false;
            } else {
                r->limits[r->nlimits++] = found;
            }
        }
        item_pop(ld, is_single);
    }
    return ok;
}

static const struct opt route_opts[] = {
    { "path", OPT_CUSTOM, NULL, 0, 0, 0, set_route_path },
    { "host", OPT_CUSTOM, NULL, 0, 0, 0, set_route_host },
    { "upstream", OPT_CUSTOM, NULL, 0, 0, 0, set_route_upstream },
    { "limits", OPT_CUSTOM, NULL, 0, 0, 0, set_route_limits },
    { "ratelimit_headers", OPT_BOOL, "true", 0, 0,
      offsetof(struct sl_route_conf, has_ratelimit_headers), NULL },
    { "server_timing", OPT_BOOL, "false", 0, 0,
      offsetof(struct sl_route_conf, has_server_timing), NULL },
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

    if (!need_table(ld, idx, "a list of { path = ..., upstream = ... }"))
        return false;
    n = list_len(ld, idx);
    cfg->routes = sl_xcalloc(n ? n : 1, sizeof(*cfg->routes));
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        struct sl_route_conf *r = &cfg->routes[i];

        apply_defaults(route_opts, NOPTS(route_opts), r);
        push_index(ld, (long)i + 1);
        snprintf(ld->ctx_buf, sizeof(ld->ctx_buf), "route %zu", i + 1);
        ld->ctx = ld->ctx_buf;
        lua_rawgeti(ld->L, idx, (int)i + 1);
        if (lua_type(ld->L, -1) != LUA_TTABLE) {
            fail(ld, "expected a table { path = ..., upstream = ... }, got %s",
                 lua_typename(ld->L, lua_type(ld->L, -1)));
            ok = false;
        } else {
            struct walk w = walk_record(ld, -1, route_opts, NOPTS(route_opts), r);
            if (!(w.seen & opt_bit(route_opts, NOPTS(route_opts), "path"))) {
                fail(ld, "no path (path = \"/prefix\")");
                ok = false;
            }
            if (!(w.seen & opt_bit(route_opts, NOPTS(route_opts), "upstream"))) {
                fail(ld, "no upstream (upstream = \"name\")");
                ok = false;
            }
            ok = ok && w.bad == 0;
        }
        lua_pop(ld->L, 1);
        for (size_t j = 0; j < i && r->path != NULL; j++) {
            const struct sl_route_conf *o = &cfg->routes[j];
            if (o->path != NULL && strcmp(o->path, r->path) == 0 && same_host(o->host, r->host)) {
                push_key(ld, "path");
                fail(ld, "path \"%s\"%s%s%s: same host and path as route %zu", r->path,
                     r->host ? " on host \"" : "", r->host ? r->host : "", r->host ? "\"" : "",
                     j + 1);
                pop_key(ld);
                ok = false;
                break;
            }
        }
        ld->ctx = NULL;
        pop_key(ld);
    }
    return ok;
}

/* ------------------------------------------------------------------------ */
/* slow_request and metrics                                                 */
/* ------------------------------------------------------------------------ */

static const struct opt slow_request_opt = {
    "slow_request", OPT_DURATION, "0s", 0, MS_HOUR, offsetof(struct sl_config, slow_request_ms),
    NULL,
};

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
    return set_option(ld, &slow_request_opt, cfg, idx);
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

    if (!need_table(ld, idx, "a list of numbers in seconds, e.g. { 0.001, 0.01, 0.1, 1 }"))
        return false;
    n = list_len(ld, idx);
    if (n == 0 || n > SL_METRICS_MAX_BUCKETS) {
        double none = 0;
        (void)sl_metrics_check_buckets(&none, n, err, sizeof(err));
        fail(ld, "%s: %s", label(ld, lbuf, sizeof(lbuf)), err);
        return false;
    }
    bounds = sl_xcalloc(n, sizeof(*bounds));
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(ld->L, idx, (int)i + 1);
        push_index(ld, (long)i + 1);
        if (lua_type(ld->L, -1) != LUA_TNUMBER) {
            fail_type(ld, -1, "a number of seconds");
            ok = false;
        } else {
            bounds[i] = lua_tonumber(ld->L, -1);
        }
        pop_key(ld);
        lua_pop(ld->L, 1);
    }
    for (size_t i = 0; ok && i < n; i++) {
        if (sl_metrics_check_buckets(bounds, i + 1, err, sizeof(err)) == 0)
            continue;
        /* one error: every later bound may only look wrong next to this one */
        push_index(ld, (long)i + 1);
        fail(ld, "%s: %s", label(ld, lbuf, sizeof(lbuf)), err);
        pop_key(ld);
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

static const struct opt metrics_opts[] = {
    { "buckets", OPT_CUSTOM, NULL, 0, 0, 0, set_metrics_buckets },
};

static bool
set_metrics(struct loader *ld, void *obj, int idx)
{
    struct walk w;

    if (!need_table(ld, idx, "a table { buckets = { ... } }"))
        return false;
    ld->ctx = "metrics";
    w = walk_record(ld, idx, metrics_opts, NOPTS(metrics_opts), obj);
    ld->ctx = NULL;
    return w.bad == 0;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

/* Order matters: upstreams and limits before routes, which name them. */
static const struct opt top_opts[] = {
    { "listen", OPT_CUSTOM, NULL, 0, 0, 0, set_listen },
    { "admin", OPT_CUSTOM, NULL, 0, 0, 0, set_admin },
    { "workers", OPT_CUSTOM, NULL, 0, 0, 0, set_workers },
    { "trusted_proxies", OPT_CUSTOM, NULL, 0, 0, 0, set_trusted_proxies },
    { "shutdown_timeout", OPT_DURATION, "30s", 0, MS_HOUR,
      offsetof(struct sl_config, shutdown_timeout_ms), NULL },
    { "client", OPT_CUSTOM, NULL, 0, 0, 0, set_client },
    { "store", OPT_CUSTOM, NULL, 0, 0, 0, set_store },
    { "upstreams", OPT_CUSTOM, NULL, 0, 0, 0, set_upstreams },
    { "limits", OPT_CUSTOM, NULL, 0, 0, 0, set_limits },
    { "routes", OPT_CUSTOM, NULL, 0, 0, 0, set_routes },
    { "access_log", OPT_STRING, "stderr", 0, 0, offsetof(struct sl_config, access_log), NULL },
    { "error_log", OPT_CUSTOM, NULL, 0, 0, 0, set_error_log },
    { "log_level", OPT_CUSTOM, NULL, 0, 0, 0, set_log_level },
    { "pidfile", OPT_STRING, NULL, 0, 0, offsetof(struct sl_config, pidfile), NULL },
    { "slow_request", OPT_CUSTOM, NULL, 0, 0, 0, set_slow_request },
    { "metrics", OPT_CUSTOM, NULL, 0, 0, 0, set_metrics },
};

static const char **
top_level_names(void)
{
    const char **names = sl_xcalloc(NOPTS(top_opts) + 1, sizeof(*names));

    for (size_t i = 0; i < NOPTS(top_opts); i++)
        names[i] = top_opts[i].name;
    return names;
}

static void
set_defaults(struct sl_config *cfg)
{
    apply_defaults(top_opts, NOPTS(top_opts), cfg);
    apply_defaults(client_opts, NOPTS(client_opts), &cfg->client);
    apply_defaults(store_opts, NOPTS(store_opts), &cfg->store);
    (void)sl_sockaddr_parse("127.0.0.1:9901", &cfg->admin);
    cfg->has_admin = true;
    cfg->workers = online_cpus();
    cfg->error_log = sl_xstrdup("stderr");
    cfg->log_level = sl_xstrdup("info");
    cfg->store.kind = SL_STORE_LOCAL;
    cfg->store.on_error = SL_ON_ERROR_ALLOW;
    cfg->store.prefix = sl_xstrdup("sluice");
}

/* Checks that span sections, run after the whole file is walked. */
static void
check_whole(struct loader *ld, struct walk top)
{
    struct sl_config *cfg = ld->cfg;

    if (cfg->nlisten == 0 && !(top.bad & opt_bit(top_opts, NOPTS(top_opts), "listen"))) {
        push_key(ld, "listen");
        fail(ld, "no listen address (listen = \"host:port\")");
        pop_key(ld);
    }
    if (cfg->nroutes == 0 && !(top.bad & opt_bit(top_opts, NOPTS(top_opts), "routes"))) {
        push_key(ld, "routes");
        fail(ld, "no routes (routes = { { path = \"/\", upstream = \"name\" } })");
        pop_key(ld);
    }
    if (cfg->has_admin) {
        bool is_admin_written = top.seen & opt_bit(top_opts, NOPTS(top_opts), "admin");
        for (size_t i = 0; i < cfg->nlisten; i++) {
            if (strcmp(cfg->listen[i].text, cfg->admin.text) != 0)
                continue;
            /* blame the line the operator wrote: admin, or listen when admin is the default */
            if (is_admin_written) {
                push_key(ld, "admin");
                fail(ld, "admin \"%s\": same address as listen; the admin listener must "
                     "never be reachable through the proxy", cfg->admin.text);
                pop_key(ld);
            } else {
                push_key(ld, "listen");
                push_index(ld, (long)i + 1);
                fail(ld, "listen \"%s\": same address as the default admin listener "
                     "(set admin to another address or false)", cfg->listen[i].text);
                pop_key(ld);
                pop_key(ld);
            }
        }
    }
    /* after a misspelt upstream in a route, the unused one is most likely
     * the one that was meant: one error for one mistake */
    if (cfg->nroutes > 0 && !ld->has_unknown_upstream) {
        for (size_t i = 0; i < cfg->nupstreams; i++) {
            if (ld->upstream_used[i])
                continue;
            push_key(ld, "upstreams");
            push_key(ld, cfg->upstreams[i].name);
            fail(ld, "upstream \"%s\" is not used by any route", cfg->upstreams[i].name);
            pop_key(ld);
            pop_key(ld);
        }
    }
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

/* "file:line: message" lines, by line; the order of discovery breaks ties. */
static char *
join_errors(struct loader *ld)
{
    size_t total = 0, o = 0;
    char *out;

    for (size_t i = 1; i < ld->nerrs; i++) {
        struct conf_error e = ld->errs[i];
        size_t j = i;
        while (j > 0 && ld->errs[j - 1].line > e.line) {
            ld->errs[j] = ld->errs[j - 1];
            j--;
        }
        ld->errs[j] = e;
    }
    for (size_t i = 0; i < ld->nerrs; i++)
        total += strlen(ld->cfg->path) + strlen(ld->errs[i].text) + 16;
    out = sl_xmalloc(total + 1);
    out[0] = '\0';
    for (size_t i = 0; i < ld->nerrs; i++) {
        const struct conf_error *e = &ld->errs[i];
        int n;
        if (e->line > 0)
            n = snprintf(out + o, total + 1 - o, "%s%s:%d: %s", i ? "\n" : "", ld->cfg->path,
                         e->line, e->text);
        else
            n = snprintf(out + o, total + 1 - o, "%s%s: %s", i ? "\n" : "", ld->cfg->path,
                         e->text);
        o += (size_t)n;
    }
    return out;
}

struct sl_config *
sl_config_load(const char *path, char **errors)
{
    struct loader ld;
    struct sl_config *cfg;
    char err[128];

    *errors = NULL;
    memset(&ld, 0, sizeof(ld));
    cfg = sl_xcalloc(1, sizeof(*cfg));
    ld.cfg = cfg;
    cfg->path = sl_xstrdup(path);
    set_defaults(cfg);

    if (read_source(cfg, err, sizeof(err)) != 0) {
        add_error_text(&ld, 0, sl_xstrdup(err));
        goto done;
    }
    if (run_conf(&ld) != 0)
        goto done;
    scan_statements(&ld);
    check_whole(&ld, walk_record(&ld, ld.values, top_opts, NOPTS(top_opts), cfg));

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
    free(cfg->trusted_proxies);
    free(cfg->store.url);
    free(cfg->store.prefix);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        free(cfg->upstreams[i].name);
        free(cfg->upstreams[i].servers);
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
    }
    free(cfg->routes);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->log_level);
    free(cfg->pidfile);
    free(cfg->metrics_buckets);
    free(cfg->conf_names);
    free(cfg);
}
