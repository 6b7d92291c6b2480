/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Where a key of the conf is written. Lua values carry no line numbers, so
 * the config loader lexes the source itself: a small Lua lexer (names,
 * numbers, strings, long brackets, comments, operators; never an evaluator)
 * finds the top-level assignments and follows a key path through the table
 * constructors written there. Used only to put a line on an error.
 */
#include "config_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/*
 * How error lines are found. Lua values carry no line numbers, so:
 *
 *  1. While the conf runs, every global assignment goes through the
 *     sandbox's globals (lua_rt.c, env_newindex), which records the line
 *     of the executing statement from lua_getinfo. LuaJIT attributes a
 *     multi-line assignment to the line where its expression ends, so that
 *     line is only an upper bound.
 *  2. sl_conf_stmts_scan() lexes the whole file once and lists every
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

/* Skips white space and comments, counting lines. */
static void
skip_space(struct lexer *lx)
{
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
        return;
    }
}

/* A number: decimal or hex, with a fraction and an exponent (p for hex). */
static void
lex_number(struct lexer *lx, struct token *t)
{
    bool is_hex = lx->end - lx->p >= 2 && lx->p[0] == '0' && (lx->p[1] == 'x' || lx->p[1] == 'X');

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
}

/* A quoted string; its text is the contents, exactly the value when is_plain. */
static void
lex_quoted(struct lexer *lx, struct token *t)
{
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
}

static void
lex_op(struct lexer *lx, struct token *t)
{
    static const char *const ops[] = { "...", "..", "==", "~=", "<=", ">=", "::" };

    t->kind = TK_OP;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t len = strlen(ops[i]);
        if ((size_t)(lx->end - lx->p) >= len && memcmp(lx->p, ops[i], len) == 0) {
            lx->p += len;
            t->len = len;
            return;
        }
    }
    lx->p++;
    t->len = 1;
}

static void
lex_next(struct lexer *lx, struct token *t)
{
    int level;

    skip_space(lx);
    memset(t, 0, sizeof(*t));
    t->line = lx->line;
    t->text = lx->p;
    if (lx->p >= lx->end) {
        t->kind = TK_EOF;
    } else if (is_name_start((unsigned char)*lx->p)) {
        while (lx->p < lx->end && (isalnum((unsigned char)*lx->p) || *lx->p == '_'))
            lx->p++;
        t->kind = TK_NAME;
        t->len = (size_t)(lx->p - t->text);
    } else if (isdigit((unsigned char)*lx->p)
               || (*lx->p == '.' && lx->p + 1 < lx->end && isdigit((unsigned char)lx->p[1]))) {
        lex_number(lx, t);
    } else if (*lx->p == '"' || *lx->p == '\'') {
        lex_quoted(lx, t);
    } else if ((level = long_bracket_level(lx->p, lx->end)) >= 0) {
        t->kind = TK_STRING;
        t->is_plain = true;
        skip_long(lx, level, &t->text, &t->len);
    } else {
        lex_op(lx, t);
    }
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
    const char *field; /* `name.field = v` (as an included file sets one limit); else NULL */
    size_t field_len;
    int line;
    struct lexer value; /* positioned just after the "=" */
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

struct sl_conf_stmts {
    struct top_stmt *v;
    size_t n;
};

struct sl_conf_stmts *
sl_conf_stmts_scan(const char *source, size_t len)
{
    struct sl_conf_stmts *st = sl_xcalloc(1, sizeof(*st));
    struct lexer lx = { source, source + len, 1 };
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
            struct token eq, field = { 0 };
            lex_next(&peek, &eq);
            if (is_op(&eq, ".")) {
                lex_next(&peek, &field);
                lex_next(&peek, &eq);
                if (field.kind != TK_NAME)
                    eq.kind = TK_EOF;
            }
            if (is_op(&eq, "=")) {
                if (st->n == cap) {
                    cap = cap ? cap * 2 : 16;
                    st->v = sl_xrealloc(st->v, cap * sizeof(*st->v));
                }
                st->v[st->n].name = t.text;
                st->v[st->n].len = t.len;
                st->v[st->n].field = field.kind == TK_NAME ? field.text : NULL;
                st->v[st->n].field_len = field.len;
                st->v[st->n].line = t.line;
                st->v[st->n].value = peek;
                st->n++;
            }
        }
        /* `local a, b = ...` declares locals: none of those names is a global */
        if (tok_is(&t, TK_NAME, "local"))
            in_local = true;
        else if (in_local && !(t.kind == TK_NAME && !is_keyword(&t)) && !is_op(&t, ","))
            in_local = false;
        prev = t;
    }
    return st;
}

void
sl_conf_stmts_free(struct sl_conf_stmts *st)
{
    if (st == NULL)
        return;
    free(st->v);
    free(st);
}

int
sl_conf_stmts_locate(const struct sl_conf_stmts *st, const struct path_el *path, int n,
                     int assigned_line)
{
    const struct top_stmt *found = NULL;
    struct lexer lx;

    if (n <= 0 || assigned_line == 0)
        return 1; /* a required key that is missing: point at the top */
    for (size_t i = 0; st != NULL && i < st->n; i++) {
        const struct top_stmt *s = &st->v[i];
        if (s->field == NULL && s->len == path[0].len
            && memcmp(s->name, path[0].name, s->len) == 0 && s->line <= assigned_line)
            found = s;
    }
    if (found == NULL)
        return assigned_line;
    if (n == 1)
        return found->line;
    lx = found->value;
    return locate_value(&lx, path + 1, n - 1, found->line);
}

/*
 * From the token after `function` (lx): skips a statement's name, refuses a
 * method (its hidden self would be lost in an expression), then follows
 * the nesting to the matching `end`, which must be on line `last`.
 */
static bool
function_span(struct lexer *lx, const char *source, int last, size_t *params, size_t *end)
{
    struct token t;
    int depth = 0;

    for (;;) {
        lex_next(lx, &t);
        if (is_op(&t, "("))
            break;
        if (is_op(&t, ":") || (t.kind != TK_NAME && !is_op(&t, ".")))
            return false;
    }
    *params = (size_t)(t.text - source);
    depth = 2; /* the function and its "(" */
    while (depth > 0) {
        lex_next(lx, &t);
        if (t.kind == TK_EOF)
            return false;
        depth += nesting(&t);
    }
    if (!tok_is(&t, TK_NAME, "end") || t.line != last)
        return false;
    *end = (size_t)(t.text + t.len - source);
    return true;
}

bool
sl_conf_function_text(const char *source, size_t len, int first, int last, size_t *kw,
                      size_t *params, size_t *end)
{
    struct lexer lx = { source, source + len, 1 };
    struct token t;
    bool is_found = false;

    /* Lua gives lines, not columns: two different functions spanning the
     * same lines cannot be told apart, and neither is chosen. */
    for (;;) {
        struct lexer scan;
        size_t p, e;

        lex_next(&lx, &t);
        if (t.kind == TK_EOF || t.line > first)
            return is_found;
        if (t.line != first || !tok_is(&t, TK_NAME, "function"))
            continue;
        scan = lx;
        if (!function_span(&scan, source, last, &p, &e))
            continue;
        if (is_found && (e - p != *end - *params || memcmp(source + p, source + *params, e - p)))
            return false;
        if (!is_found) {
            *kw = (size_t)(t.text - source);
            *params = p;
            *end = e;
            is_found = true;
        }
    }
}

int
sl_conf_stmts_locate_field(const struct sl_conf_stmts *st, const struct path_el *path, int n,
                           int after)
{
    const struct top_stmt *found = NULL;
    struct lexer lx;

    if (st == NULL || n < 2 || path[0].name == NULL || path[1].name == NULL)
        return 0;
    for (size_t i = 0; i < st->n; i++) {
        const struct top_stmt *s = &st->v[i];
        if (s->field != NULL && s->line > after && s->len == path[0].len
            && memcmp(s->name, path[0].name, s->len) == 0 && s->field_len == path[1].len
            && memcmp(s->field, path[1].name, s->field_len) == 0)
            found = s;
    }
    if (found == NULL)
        return 0;
    if (n == 2)
        return found->line;
    lx = found->value;
    return locate_value(&lx, path + 2, n - 2, found->line);
}
