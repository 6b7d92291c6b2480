/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Shared by the files of the config module, and by nothing else:
 *
 *   config.c         sl_config_load: read the file, run it in lua_rt's sandbox,
 *                    walk it, join the errors
 *   config_lex.c     a small Lua lexer that finds the line of a key path
 *   config_walk.c    the loader's error list and messages, durations and sizes,
 *                    and the typed option walker
 *   config_schema.c  the option table of every section and the checks no
 *                    table can express
 *   config_listen.c  the listen option: addresses, unix paths, listener tables
 *   config_redis_tls.c  the redis store's password_file and tls options
 *   config_redis_sentinel.c  store.sentinel (AUTH to the sentinels)
 *   config_balance.c an upstream's servers (with weights) and balance
 *   config_retry.c   an upstream's retry_on and retry_budget
 *   config_health.c  an upstream's health table: active checks, passive ejection
 *   config_cache.c   a route's cache = { ... }
 */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "sluice/config.h"

#define CONF_MAX_PATH 8  /* deepest key path we track: limits.x.key[2] */
#define CONF_MAX_NAME 64 /* upstream and limit names */

#define MS_SECOND 1000ull
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)

struct sl_lua_sandbox;
struct sl_conf_stmts;

/* One step of a key path: limits.api.per is "limits", "api", "per". */
struct path_el {
    const char *name; /* NULL: a list position */
    size_t len;
    long index;
};

struct conf_error {
    size_t file; /* 0: the conf; i: cfg->files[i - 1], an included file */
    int line;    /* 0: no line */
    char *text;
};

struct loader {
    struct sl_config *cfg;
    struct sl_lua_sandbox *sb;      /* the conf's state, lua_rt's sandbox */
    lua_State *L;
    int values;                     /* stack index of the assigned globals */
    struct sl_conf_stmts **stmts;   /* per file (as conf_error.file), scanned when needed:
                                     * where the top-level assignments are written */
    size_t nstmts;

    struct path_el keys[CONF_MAX_PATH];
    int depth;
    const char *ctx;                /* "upstream \"api\"", or NULL at top level */
    char ctx_buf[CONF_MAX_NAME + 32];

    bool *upstream_used;
    bool has_unknown_upstream;      /* a route names an upstream that does not exist */

    struct conf_error *errs;
    size_t nerrs;
    size_t errs_cap;
};

/* ---- config_lex.c: lines ------------------------------------------------- */

/* Lists every `name =` of the source that may be a global assignment. */
struct sl_conf_stmts *sl_conf_stmts_scan(const char *source, size_t len);
void sl_conf_stmts_free(struct sl_conf_stmts *st);
/*
 * The line of key path[0..n) in the source, given the line the sandbox
 * recorded for the assignment of path[0] (its upper bound); the deepest line
 * found when the path leaves written table constructors.
 */
int sl_conf_stmts_locate(const struct sl_conf_stmts *st, const struct path_el *path, int n,
                         int assigned_line);

/*
 * The line of path[0..n) (n >= 2) when a statement `path0.path1 = v` after
 * line `after` sets it (the last such), following the rest of the path
 * into v's constructors; 0 when there is none.
 */
int sl_conf_stmts_locate_field(const struct sl_conf_stmts *st, const struct path_el *path, int n,
                               int after);

/*
 * Where the function defined from line `first` to line `last` of source is
 * written: [*kw, *end) runs from its `function` keyword past its `end`, and
 * *params is the offset of its "(", after the name a `function name(...)`
 * statement has (an expression must leave the name out). The function on
 * line `first` whose `end` is on line `last`; false when there is none, when
 * two different ones are, or for a method (`function a:b()` has a hidden
 * self).
 */
bool sl_conf_function_text(const char *source, size_t len, int first, int last, size_t *kw,
                           size_t *params, size_t *end);

/* ---- config_walk.c: errors ------------------------------------------------ */

/* Takes `text` (malloc'd) as the error at `line` (0: none) of `file` (as
 * conf_error.file). */
void sl_conf_add_error(struct loader *ld, size_t file, int line, char *text);
/* The path and text of file `file` (as conf_error.file). */
const char *sl_conf_file_path(const struct loader *ld, size_t file);
void sl_conf_push_key(struct loader *ld, const char *name);
void sl_conf_push_index(struct loader *ld, long index);
void sl_conf_pop_key(struct loader *ld);
/* The line of the key path pushed so far, and its file (as conf_error.file). */
int sl_conf_where(struct loader *ld, size_t *file);
int sl_conf_line(struct loader *ld);

void sl_conf_fail_at(struct loader *ld, bool with_ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error about the key at the top of the path, prefixed with the context. */
#define fail(ld, ...) sl_conf_fail_at((ld), true, __VA_ARGS__)
/* "<key>: expected <what>, got <type> <value>" */
void sl_conf_fail_type(struct loader *ld, int idx, const char *expected);
/* "<key> <value>: <why>" */
void sl_conf_fail_value(struct loader *ld, int idx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "per", "servers[2]": how the current key is named in messages. */
const char *sl_conf_label(struct loader *ld, char *buf, size_t size);
/* A value as quoted in messages: "10x", 5, true, table. */
const char *sl_conf_describe(lua_State *L, int idx, char *buf, size_t size);

/* "10s", "1m", "250ms": the shortest form that parses back to ms. */
void sl_conf_format_duration(uint64_t ms, char *buf, size_t size);
void sl_conf_format_size(uint64_t bytes, char *buf, size_t size);
bool sl_conf_to_u64(lua_State *L, int idx, uint64_t *out);
/* The list at idx: reports entries not at 1..n, returns n. */
size_t sl_conf_list_len(struct loader *ld, int idx);

/* ---- config_walk.c: options ---------------------------------------------- */

enum opt_type {
    OPT_DURATION, /* uint64_t ms, from "10s", within [min, max] */
    OPT_SIZE,     /* size_t bytes, from "16k" or a number, within [min, max] */
    OPT_SIZE64,   /* uint64_t bytes, same syntax */
    OPT_UNSIGNED, /* unsigned, a whole number within [min, max] */
    OPT_COUNT,    /* size_t, a whole number within [min, max] */
    OPT_NUMBER,   /* double, finite, from fmin (or above it) to fmax */
    OPT_BOOL,     /* bool */
    OPT_STRING,   /* char *, not empty */
    OPT_ENUM,     /* a C enum: the index of the string in `words` */
    OPT_WORD,     /* char *, one of `words` */
    OPT_CUSTOM,   /* parsed by `custom` */
};

struct opt;
/* Parses the value at idx into obj; returns false after reporting an error. */
typedef bool opt_fn(struct loader *ld, void *obj, int idx);

/*
 * One option of a section, in the manner of Redis's config table: its type
 * carries its bounds, so a new option is one row (written with the ROW_
 * macros below). The default is written the way a conf would write it and
 * goes through the same parser, so docs/configuration.md can quote it.
 */
struct opt {
    const char *name;
    enum opt_type type;
    const char *def;          /* NULL: no default (or set by the section's code) */
    size_t offset;            /* of the field in the section's struct */
    uint64_t min, max;        /* ms for durations, bytes for sizes */
    double fmin, fmax;        /* OPT_NUMBER */
    bool is_above_min;        /* OPT_NUMBER: more than fmin, not "at least" */
    const char *const *words; /* OPT_ENUM, OPT_WORD: NULL-terminated */
    const char *help;         /* OPT_ENUM, OPT_WORD: the message for any other word */
    opt_fn *custom;
};

#define ROW_(n, t, d, st, f) .name = (n), .type = (t), .def = (d), .offset = offsetof(st, f)
#define ROW_DURATION(n, d, lo, hi, st, f) { ROW_(n, OPT_DURATION, d, st, f), .min = lo, .max = hi }
#define ROW_SIZE(n, d, lo, hi, st, f) { ROW_(n, OPT_SIZE, d, st, f), .min = lo, .max = hi }
#define ROW_SIZE64(n, d, lo, hi, st, f) { ROW_(n, OPT_SIZE64, d, st, f), .min = lo, .max = hi }
#define ROW_UNSIGNED(n, d, lo, hi, st, f) { ROW_(n, OPT_UNSIGNED, d, st, f), .min = lo, .max = hi }
#define ROW_COUNT(n, d, lo, hi, st, f) { ROW_(n, OPT_COUNT, d, st, f), .min = lo, .max = hi }
/* No default: a number the section needs is checked by the section. */
#define ROW_NUMBER(n, lo, is_above, hi, st, f)                                                    \
    { ROW_(n, OPT_NUMBER, NULL, st, f), .fmin = lo, .is_above_min = is_above, .fmax = hi }
#define ROW_BOOL(n, d, st, f) { ROW_(n, OPT_BOOL, d, st, f) }
#define ROW_STRING(n, d, st, f) { ROW_(n, OPT_STRING, d, st, f) }
#define ROW_ENUM(n, d, w, why, st, f) { ROW_(n, OPT_ENUM, d, st, f), .words = w, .help = why }
#define ROW_WORD(n, d, w, why, st, f) { ROW_(n, OPT_WORD, d, st, f), .words = w, .help = why }
#define ROW_CUSTOM(n, fn) { .name = (n), .type = OPT_CUSTOM, .custom = (fn) }

struct walk {
    uint32_t seen; /* bit i: option i was written */
    uint32_t bad;  /* bit i: ... and was invalid */
};

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))
#define FIELD(obj, o, type) ((type *)(void *)((char *)(obj) + (o)->offset))

void sl_conf_defaults(const struct opt *opts, size_t n, void *obj);
bool sl_conf_set_option(struct loader *ld, const struct opt *o, void *obj, int idx);
uint32_t sl_conf_opt_bit(const struct opt *opts, size_t n, const char *name);
/*
 * Walks the table at idx as a section described by opts: reports unknown
 * keys and stray list entries, then parses each option written, in table
 * order. The key path of the section must already be pushed.
 */
struct walk sl_conf_walk(struct loader *ld, int idx, const struct opt *opts, size_t n,
                         void *obj);

/* A non-empty string without NUL bytes, or an error; returns it or NULL. */
const char *sl_conf_get_string(struct loader *ld, int idx, size_t *lenp);
bool sl_conf_need_table(struct loader *ld, int idx, const char *what);
/* A finite number, or an error. */
bool sl_conf_get_number(struct loader *ld, int idx, double *out);
/*
 * For values that may be one item or a list of them: the number of items,
 * 0 after an error (or for an empty list when that is allowed).
 */
size_t sl_conf_items_begin(struct loader *ld, int idx, int item_type, const char *expected,
                           bool allow_empty, bool *is_single);
/* Pushes item i (1-based) onto the stack and the key path; returns its index. */
int sl_conf_item_push(struct loader *ld, int idx, size_t i, bool is_single);
void sl_conf_item_pop(struct loader *ld, bool is_single);

/* ---- config.c, config_bound.c ------------------------------------------- */

/*
 * Loads the conf in this process, unbounded in time: from the disk when
 * `snapshot` is NULL, else from the snapshot's bytes (path, source, files
 * and includes set; it is completed and returned, or freed). As
 * sl_config_load otherwise.
 */
struct sl_config *sl_conf_load_direct(const char *path, struct sl_config *snapshot,
                                      char **errors);

/* ---- config_listen.c ------------------------------------------------------ */

/* listen = ...: the option of the top-level table (an opt_fn). */
bool sl_conf_set_listen(struct loader *ld, void *obj, int idx);
/* config_lease.c: store.lease, its defaults, its key names */
bool sl_conf_set_store_lease(struct loader *ld, void *obj, int idx);
void sl_conf_lease_defaults(struct sl_store_conf *store);
const char **sl_conf_lease_names(void);
/* The keys of a listener's table form. */
extern const struct opt sl_conf_listen_opts[];
extern const size_t sl_conf_nlisten_opts;

/* ---- config_redis_tls.c --------------------------------------------------- */

/* A password_file option at idx: the file read (sl_secret_read), its path
 * into *file and its secret into *password, replacing what they held; false
 * after a config error at the option's line. */
bool sl_conf_read_password_file(struct loader *ld, int idx, char **file, char **password);
/* store.password_file = "/path" (an opt_fn on struct sl_store_conf). */
bool sl_conf_set_store_password_file(struct loader *ld, void *obj, int idx);
/* store.tls = { ... } (an opt_fn on struct sl_store_conf). */
bool sl_conf_set_store_tls(struct loader *ld, void *obj, int idx);
/* The checks that span store.url and the options above, after the store
 * table is walked, and the TLS context of a rediss:// url, built now so
 * that a bad file is an error of the conf; false after reporting one. */
bool sl_conf_check_store_redis(struct loader *ld, struct sl_store_conf *s);
/* The defaults of store.tls; its end (the context included). */
void sl_conf_redis_tls_defaults(struct sl_redis_tls_conf *tls);
void sl_conf_redis_tls_fini(struct sl_redis_tls_conf *tls);

/* ---- config_redis_sentinel.c ---------------------------------------------- */

struct sl_redis_url;
/* store.sentinel = { ... } (an opt_fn on struct sl_store_conf). */
bool sl_conf_set_store_sentinel(struct loader *ld, void *obj, int idx);
/* Its checks against the parsed store.url; reports, does not return. */
void sl_conf_check_store_sentinel(struct loader *ld, const struct sl_store_conf *s,
                                  const struct sl_redis_url *u);
void sl_conf_redis_sentinel_fini(struct sl_redis_sentinel_conf *sc);

/* ---- config_lifecycle.c --------------------------------------------------- */

/* The route keys of API versions and their end, as rows of the route table:
 * headers, deprecation, sunset, link, brownouts, consumer, consumer_top. */
bool sl_conf_set_lifecycle(struct loader *ld, void *obj, int idx);
#define SL_CONF_LIFECYCLE_ROWS                                                                    \
    ROW_CUSTOM("headers", sl_conf_set_lifecycle), ROW_CUSTOM("deprecation", sl_conf_set_lifecycle), \
        ROW_CUSTOM("sunset", sl_conf_set_lifecycle), ROW_CUSTOM("link", sl_conf_set_lifecycle),   \
        ROW_CUSTOM("brownouts", sl_conf_set_lifecycle),                                           \
        ROW_CUSTOM("consumer", sl_conf_set_lifecycle),                                            \
        ROW_CUSTOM("consumer_top", sl_conf_set_lifecycle)
/* After a route's walk: the checks between those keys, and their defaults. */
bool sl_conf_check_lifecycle(struct loader *ld, struct sl_route_conf *r);
/* Same header conditions (both sorted by name)? */
bool sl_conf_same_headers(const struct sl_route_conf *a, const struct sl_route_conf *b);
void sl_conf_free_route_lifecycle(struct sl_route_conf *r);
/* ---- config_retry.c ------------------------------------------------------- */

/* retries = 1, retry_on = { "connect_failure", "reset" }, 20 %, at least 3. */
void sl_conf_retry_defaults(struct sl_retry_conf *r);
/* retry_on and retry_budget of an upstream (opt_fn on a struct sl_upstream_conf). */
bool sl_conf_set_retry_on(struct loader *ld, void *obj, int idx);
bool sl_conf_set_retry_budget(struct loader *ld, void *obj, int idx);
/* "reset" for SL_RETRY_ON_RESET...; NULL for anything but one bit. */
const char *sl_conf_retry_word(unsigned bit);
/* ---- config_health.c ------------------------------------------------------ */

/* upstreams.NAME.health = { ... }: an option of an upstream (an opt_fn). */
bool sl_conf_set_health(struct loader *ld, void *obj, int idx);
void sl_conf_health_defaults(struct sl_health_conf *hc);
/* NULL-terminated, new array of static strings: the keys of a health table. */
const char **sl_conf_health_names(void);
/* ---- config_cache.c ------------------------------------------------------- */

/* cache = { ... } on a route (an opt_fn). */
bool sl_conf_set_route_cache(struct loader *ld, void *obj, int idx);
extern const struct opt sl_conf_cache_opts[];
extern const size_t sl_conf_ncache_opts;

/* ---- config_schema.c ------------------------------------------------------ */

/* NULL-terminated, new array of static strings: the top-level keys. */
const char **sl_conf_top_names(void);
/* The same for the keys of an entry of a section ("client", "store",
 * "upstreams", "limits", "routes", "metrics", "listen": a listener's table, "health": an
 * upstream's health table); NULL for another
 * name. */
const char **sl_conf_section_names(const char *section);
void sl_conf_set_defaults(struct sl_config *cfg);
/* One key selector string ("ip", "header:NAME", ...) into a part (a header
 * name lower-cased, malloc'd); NULL, or a message saying what is wrong. */
const char *sl_conf_parse_selector(const char *s, size_t len, struct sl_key_part *part);
/* Walks the assigned globals (at ld->values) into ld->cfg and checks the whole. */
void sl_conf_walk_top(struct loader *ld);

/* ---- config_idempotency.c ------------------------------------------------- */

/* A route's idempotency = { ... } (an opt_fn on a struct sl_route_conf). */
bool sl_conf_set_idempotency(struct loader *ld, void *obj, int idx);
void sl_conf_free_idempotency(struct sl_idempotency_conf *ic);

/* ---- config_balance.c ----------------------------------------------------- */

/* An upstream's servers = ... and balance = ... (opt_fns). */
bool sl_conf_set_servers(struct loader *ld, void *obj, int idx);
bool sl_conf_set_balance(struct loader *ld, void *obj, int idx);
/* Frees what those two added to u. */
void sl_conf_balance_free(struct sl_upstream_conf *u);

#endif
