/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * The Lua side of sluice: the one sandbox every Lua state runs in, the conf's
 * while config checks it and each worker's while it calls key and cost
 * functions (a lua_State is not thread-safe, so a worker runs the conf again
 * in a state of its own and keeps references to the functions it defines,
 * which sl_lua_rt_key and sl_lua_rt_cost call with a read-only request `r`).
 *
 * The conf's two ways out of the sandbox are include(), which runs other conf
 * files (read from disk while a conf is checked, and recorded in its
 * sl_config so that every later run, a worker's or -T's, runs the same
 * bytes), and env(), which reads one environment variable.
 *
 * One list of what Lua code may use (sandbox_globals), one set of limits
 * (SL_LUA_*): the allocator refuses to grow a state past SL_LUA_MEMORY_MAX
 * while sandboxed code runs, and a count hook stops a conf run or a call that
 * has used its instructions. LuaJIT does not run hooks inside compiled
 * traces, so the JIT is off in these states; confs and key functions are a
 * few lines, the interpreter is plenty.
 */
#include "sluice/lua_rt.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "reqfield.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "util/alloc.h"

#define ERROR_MAX 1024

/* A file a conf run has loaded: the conf (chunk 0), then each file include()
 * ran, in the order first included (the order of sl_config.files). */
struct chunk {
    char *path;
    char *chunkname;            /* "@" path */
    char short_src[LUA_IDSIZE]; /* how LuaJIT abbreviates chunkname in its messages */
    char *real;                 /* realpath, to see an include cycle; NULL when replayed */
    size_t file;                /* 0: the conf; i: sl_config.files[i - 1] */
};

struct sl_lua_sandbox {
    lua_State *L;
    size_t mem_used;
    bool is_capped;   /* the memory cap binds sandboxed code, not C reading its results */
    bool is_conf;     /* the budget in force is a conf run's, else a call's */
    int last_line;    /* conf runs: the line being run, for errors that carry none */
    size_t cur;       /* ... and the chunk it is in */
    const char *cur_source; /* lua_Debug.source of that chunk, to skip lookups */
    struct chunk *chunks;
    size_t nchunks;
    size_t stack[SL_LUA_INCLUDE_DEPTH + 1]; /* chunks being run, the conf at the bottom */
    int depth;                              /* include() calls in progress */
    struct sl_config *record;               /* include() reads the disk and records here */
    const struct sl_config *replay;         /* include() runs the files recorded here */
    int assigned_ref; /* registry: name -> value of every global the conf assigned */
    int lines_ref;    /* registry: name -> line of its last assignment */
    int files_ref;    /* registry: name -> chunk of its last assignment */
    int library_ref;  /* registry: name -> value of what the sandbox offers */
};

struct sl_lua_rt {
    const struct sl_config *cfg;
    struct sl_lua_sandbox *sb;
    lua_State *L;
    int **key_refs;  /* [limit][part]: registry refs, LUA_NOREF for other parts */
    int *cost_refs;  /* [limit] */
    int traceback_ref;
    int request_ref; /* the `r` table handed to every call */
    size_t max_value; /* request values reach Lua cut to this many bytes */
    const struct sl_request *req; /* the request of the call in progress, else NULL */
    uint64_t errors;
    char error[ERROR_MAX];
};

/* ---- sandbox: memory and instructions ------------------------------------ */

static struct sl_lua_sandbox *
sandbox_of(lua_State *L)
{
    void *ud;

    lua_getallocf(L, &ud);
    return ud;
}

static void *
sandbox_alloc(void *ud, void *ptr, size_t old_size, size_t new_size)
{
    struct sl_lua_sandbox *sb = ud;

    if (ptr == NULL)
        old_size = 0;
    if (new_size == 0) {
        sb->mem_used -= old_size;
        free(ptr);
        return NULL;
    }
    /* Refusing makes LuaJIT raise "not enough memory" in the running code;
     * shrinking is always granted. */
    if (sb->is_capped && new_size > old_size
        && sb->mem_used - old_size + new_size > SL_LUA_MEMORY_MAX)
        return NULL;
    ptr = realloc(ptr, new_size);
    if (ptr != NULL)
        sb->mem_used = sb->mem_used - old_size + new_size;
    return ptr;
}

static int
on_panic(lua_State *L)
{
    sl_fatalx("lua: unprotected error: %s", lua_tostring(L, -1));
}

/* The chunk whose chunk name is `source`, else `fallback`. */
static size_t
chunk_of_source(const struct sl_lua_sandbox *sb, const char *source, size_t fallback)
{
    for (size_t i = 0; source != NULL && i < sb->nchunks; i++) {
        if (strcmp(source, sb->chunks[i].chunkname) == 0)
            return i;
    }
    return fallback;
}

static void
budget_hook(lua_State *L, lua_Debug *ar)
{
    struct sl_lua_sandbox *sb = sandbox_of(L);

    if (ar->event == LUA_HOOKLINE) {
        sb->last_line = ar->currentline;
        if (lua_getinfo(L, "S", ar) && ar->source != sb->cur_source) {
            sb->cur_source = ar->source;
            sb->cur = chunk_of_source(sb, ar->source, sb->cur);
        }
        return;
    }
    /* From now on every instruction fails, so a pcall inside the code cannot
     * swallow the error and keep looping. */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (!sb->is_conf)
        luaL_error(L, "instruction budget exceeded (%d Lua instructions per call)",
                   (int)SL_LUA_CALL_INSTRUCTIONS);
    lua_pushfstring(L, "%s:%d: conf still running after %d million Lua instructions "
                    "(an endless loop?)", sb->chunks[sb->cur].short_src,
                    sb->last_line > 0 ? sb->last_line : 1,
                    (int)(SL_LUA_CONF_INSTRUCTIONS / 1000000));
    lua_error(L);
}

/*
 * lua_pcall under the budget of a conf run or of one call, with the memory
 * cap in force; the hook goes when it returns. A conf run also follows lines,
 * to place errors that carry no position (out of memory, a budget hit).
 */
static int
budgeted_pcall(struct sl_lua_sandbox *sb, int nargs, int nresults, int msgh, bool is_conf)
{
    int status;

    sb->is_conf = is_conf;
    sb->last_line = 0;
    sb->cur = 0;
    sb->cur_source = NULL;
    if (is_conf)
        lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT | LUA_MASKLINE,
                    (int)SL_LUA_CONF_INSTRUCTIONS);
    else
        lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, (int)SL_LUA_CALL_INSTRUCTIONS);
    sb->is_capped = true;
    status = lua_pcall(sb->L, nargs, nresults, msgh);
    sb->is_capped = false;
    lua_sethook(sb->L, NULL, 0, 0);
    return status;
}

/* ---- sandbox: the globals ------------------------------------------------- */

/* What Lua code may use, the conf and key and cost functions alike: a conf
 * that passes `sluice -t` sees the same world in a worker. Everything else
 * (io, os, require, load*, debug, setfenv, jit, ffi...) is absent. */
static const char *const sandbox_globals[] = {
    "string", "table", "math", "pairs", "ipairs", "type", "tostring", "tonumber",
    "error", "assert", "pcall", "select", "next", "unpack",
};

/* __newindex of the globals: (env, name, value); upvalues: assigned, lines,
 * files. */
static int
env_newindex(lua_State *L)
{
    lua_Debug ar;
    int line = 0;
    size_t chunk = 0; /* the file, as sl_lua_sandbox_file says */

    lua_settop(L, 3);
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        line = ar.currentline;
        struct sl_lua_sandbox *sb = sandbox_of(L);
        chunk = sb->chunks[chunk_of_source(sb, ar.source, 0)].file;
    }
    lua_pushvalue(L, 2);
    lua_pushinteger(L, (lua_Integer)chunk);
    lua_rawset(L, lua_upvalueindex(3));
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    lua_pushinteger(L, line);
    lua_rawset(L, lua_upvalueindex(2));
    return 0;
}

/*
 * __index of the globals: (env, name); upvalues: assigned, library, declared.
 * Reading a name that is none of them is an error: it catches typos such as
 * `key = tennant_key` that would otherwise silently be nil.
 */
static int
env_index(lua_State *L)
{
    lua_settop(L, 2);
    for (int i = 1; i <= 2; i++) {
        lua_pushvalue(L, 2);
        lua_rawget(L, lua_upvalueindex(i));
        if (!lua_isnil(L, -1))
            return 1;
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(3));
    if (lua_toboolean(L, -1) || lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    return luaL_error(L, "undefined variable \"%s\" (the conf sandbox has no io, os, "
                      "require, load or debug; declare helpers with local)", lua_tostring(L, 2));
}

static void
open_lib(lua_State *L, lua_CFunction open, const char *name)
{
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static int lua_include(lua_State *L);
static int lua_env(lua_State *L);

/* Pushes a table of the allowed names, taken from the full libraries. */
static void
push_library(lua_State *L)
{
    open_lib(L, luaopen_base, "");
    open_lib(L, luaopen_string, LUA_STRLIBNAME);
    open_lib(L, luaopen_table, LUA_TABLIBNAME);
    open_lib(L, luaopen_math, LUA_MATHLIBNAME);
    /* string.dump reads out bytecode; nothing may load it, and nothing needs it */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    /* Hide the string metatable from anything that could reach it: rewriting
     * it would change every string operation of the state. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_newtable(L);
    for (size_t i = 0; i < sizeof(sandbox_globals) / sizeof(sandbox_globals[0]); i++) {
        lua_getglobal(L, sandbox_globals[i]);
        lua_setfield(L, -2, sandbox_globals[i]);
    }
    /* the conf's own conveniences; all they reach of the system is the
     * files include() names and the variables env() names */
    lua_pushcfunction(L, lua_include);
    lua_setfield(L, -2, "include");
    lua_pushcfunction(L, lua_env);
    lua_setfield(L, -2, "env");
}

/* Makes the strict globals table the state's: everything loaded later (the
 * conf, and the functions it defines) reads and writes through it. */
static void
install_env(struct sl_lua_sandbox *sb, const char *const *declared)
{
    lua_State *L = sb->L;
    int assigned, lines, files, library, set;

    lua_newtable(L);
    assigned = lua_gettop(L);
    lua_newtable(L);
    lines = lua_gettop(L);
    lua_newtable(L);
    files = lua_gettop(L);
    push_library(L);
    library = lua_gettop(L);
    lua_newtable(L);
    set = lua_gettop(L);
    for (size_t i = 0; declared != NULL && declared[i] != NULL; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, set, declared[i]);
    }

    lua_newtable(L); /* the globals: always empty, the metatable does the work */
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, assigned);
    lua_pushvalue(L, library);
    lua_pushvalue(L, set);
    lua_pushcclosure(L, env_index, 3);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, assigned);
    lua_pushvalue(L, lines);
    lua_pushvalue(L, files);
    lua_pushcclosure(L, env_newindex, 3);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, LUA_GLOBALSINDEX);

    lua_pushvalue(L, assigned);
    sb->assigned_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, lines);
    sb->lines_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, files);
    sb->files_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, library);
    sb->library_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
}

static void
free_chunks(struct sl_lua_sandbox *sb)
{
    for (size_t i = 0; i < sb->nchunks; i++) {
        free(sb->chunks[i].path);
        free(sb->chunks[i].chunkname);
        free(sb->chunks[i].real);
    }
    free(sb->chunks);
    sb->chunks = NULL;
    sb->nchunks = 0;
}

struct sl_lua_sandbox *
sl_lua_sandbox_new(const char *const *declared, char *err, size_t err_size)
{
    struct sl_lua_sandbox *sb = sl_xcalloc(1, sizeof(*sb));

    /* LuaJIT builds without GC64 refuse custom allocators on x86_64: no state
     * then, rather than one without a memory cap */
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (sb->L == NULL) {
        snprintf(err, err_size, "lua: cannot create a state with a memory cap (LuaJIT "
                 "built without GC64?)");
        free(sb);
        return NULL;
    }
    lua_atpanic(sb->L, on_panic);
    luaJIT_setmode(sb->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    install_env(sb, declared);
    return sb;
}

void
sl_lua_sandbox_free(struct sl_lua_sandbox *sb)
{
    if (sb == NULL)
        return;
    lua_close(sb->L);
    free_chunks(sb);
    free(sb);
}

struct lua_State *
sl_lua_sandbox_state(const struct sl_lua_sandbox *sb)
{
    return sb->L;
}

/* ---- sandbox: running a conf ---------------------------------------------- */

/* Adds the chunk of `path` and learns how LuaJIT shortens its name (from an
 * empty chunk of that name), to recognise it, and restore it, in messages. */
static size_t
add_chunk(struct sl_lua_sandbox *sb, const char *path, char *real)
{
    struct chunk *c;
    size_t len = strlen(path);
    lua_Debug ar;

    sb->chunks = sl_xrealloc(sb->chunks, (sb->nchunks + 1) * sizeof(*sb->chunks));
    c = &sb->chunks[sb->nchunks];
    c->path = sl_xstrdup(path);
    c->chunkname = sl_xmalloc(len + 2);
    c->chunkname[0] = '@';
    memcpy(c->chunkname + 1, path, len + 1);
    c->real = real;
    c->file = 0;
    snprintf(c->short_src, sizeof(c->short_src), "%s", path);
    if (luaL_loadbuffer(sb->L, "", 0, c->chunkname) == 0 && lua_getinfo(sb->L, ">S", &ar))
        snprintf(c->short_src, sizeof(c->short_src), "%s", ar.short_src);
    lua_settop(sb->L, 0);
    return sb->nchunks++;
}

/* The chunk whose position ("<short_src>:<digit>") starts msg, or -1. */
static int
chunk_of_message(const struct sl_lua_sandbox *sb, const char *msg)
{
    for (size_t i = 0; i < sb->nchunks; i++) {
        const char *src = sb->chunks[i].short_src;
        size_t len = strlen(src);
        if (strncmp(msg, src, len) == 0 && msg[len] == ':'
            && isdigit((unsigned char)msg[len + 1]))
            return (int)i;
    }
    return -1;
}

/* Message handler of a conf run: gives a message its position when it has
 * none, from the innermost frame of a conf file, else the line being run. */
static int
conf_traceback(lua_State *L)
{
    struct sl_lua_sandbox *sb = sandbox_of(L);
    const char *msg = lua_tostring(L, 1);
    lua_Debug ar;

    if (msg == NULL)
        msg = lua_pushfstring(L, "error object is a %s value", luaL_typename(L, 1));
    if (chunk_of_message(sb, msg) >= 0)
        return 1;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        size_t c;
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source == NULL)
            continue;
        c = chunk_of_source(sb, ar.source, SIZE_MAX);
        if (c != SIZE_MAX) {
            lua_pushfstring(L, "%s:%d: %s", sb->chunks[c].short_src, ar.currentline, msg);
            return 1;
        }
    }
    lua_pushfstring(L, "%s:%d: %s", sb->chunks[sb->cur].short_src,
                    sb->last_line > 0 ? sb->last_line : 1, msg);
    return 1;
}

/* Copies msg to err with LuaJIT's abbreviated chunk name put back to the path. */
static void
conf_error(struct sl_lua_sandbox *sb, const char *msg, char *err, size_t err_size)
{
    int c;

    if (msg == NULL)
        msg = "unknown error";
    c = chunk_of_message(sb, msg);
    if (c >= 0)
        snprintf(err, err_size, "%s%s", sb->chunks[c].path,
                 msg + strlen(sb->chunks[c].short_src));
    else
        snprintf(err, err_size, "%s", msg);
}

/* ---- sandbox: include() and env() ----------------------------------------- */

/* A file include() found on disk, read whole; NULL with the reason in err. */
static char *
read_file(const char *path, size_t *len, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;

    *len = 0;
    if (f == NULL) {
        snprintf(err, err_size, "cannot open: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;
        if (cap - *len < 4096) {
            cap = cap ? cap * 2 : 16384;
            buf = sl_xrealloc(buf, cap + 1);
        }
        got = fread(buf + *len, 1, cap - *len, f);
        *len += got;
        if (*len > SL_LUA_INCLUDE_FILE_MAX) {
            snprintf(err, err_size, "larger than %u MiB", SL_LUA_INCLUDE_FILE_MAX >> 20);
            break;
        }
        if (got == 0) {
            if (ferror(f))
                snprintf(err, err_size, "cannot read: %s", strerror(errno));
            break;
        }
    }
    if (ferror(f) || *len > SL_LUA_INCLUDE_FILE_MAX) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

/* The recorded include of `pattern` in cfg, or NULL. */
static const struct sl_conf_include *
find_include(const struct sl_config *cfg, const char *pattern)
{
    for (size_t i = 0; cfg != NULL && i < cfg->nincludes; i++) {
        if (strcmp(cfg->includes[i].pattern, pattern) == 0)
            return &cfg->includes[i];
    }
    return NULL;
}

/* Index of `path` in cfg->files, or SIZE_MAX. */
static size_t
find_file(const struct sl_config *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->nfiles; i++) {
        if (strcmp(cfg->files[i].path, path) == 0)
            return i;
    }
    return SIZE_MAX;
}

/* Reads one match of a pattern into the record (once per path); returns its
 * index in record->files. Raises a Lua error naming the file. */
static size_t
record_file(lua_State *L, struct sl_lua_sandbox *sb, const char *path)
{
    struct sl_config *cfg = sb->record;
    size_t i = find_file(cfg, path), len;
    char err[256];
    char *text;

    if (i != SIZE_MAX)
        return i;
    if (cfg->nfiles >= SL_LUA_INCLUDE_FILES)
        luaL_error(L, "include: more than %d files", SL_LUA_INCLUDE_FILES);
    if ((text = read_file(path, &len, err, sizeof(err))) == NULL)
        luaL_error(L, "include: %s: %s", path, err);
    cfg->files = sl_xrealloc(cfg->files, (cfg->nfiles + 1) * sizeof(*cfg->files));
    cfg->files[cfg->nfiles].path = sl_xstrdup(path);
    cfg->files[cfg->nfiles].source = text;
    cfg->files[cfg->nfiles].source_len = len;
    return cfg->nfiles++;
}

/* A directory of the pattern that does not exist matches nothing; one that
 * cannot be read is an error, not a silently smaller conf. */
static int
glob_error(const char *path, int error)
{
    (void)path;
    return error != ENOENT && error != ENOTDIR;
}

/*
 * Globs `pattern` (sorted, as glob(3) does) and records what it matched; a
 * pattern recorded already is not globbed again. A pattern without wildcards
 * names one file, which must exist; a wildcard that matches nothing is fine
 * (nginx's rule for include). Returns the index in record->includes.
 */
static size_t
record_include(lua_State *L, struct sl_lua_sandbox *sb, const char *pattern)
{
    struct sl_config *cfg = sb->record;
    struct sl_conf_include *inc;
    glob_t g;
    size_t n, idx;
    int rc;

    for (size_t i = 0; i < cfg->nincludes; i++) {
        if (strcmp(cfg->includes[i].pattern, pattern) == 0)
            return i;
    }
    rc = glob(pattern, 0, glob_error, &g);
    if (rc == GLOB_NOMATCH && strpbrk(pattern, "*?[") == NULL)
        rc = -1;
    if (rc != 0 && rc != GLOB_NOMATCH) {
        globfree(&g);
        luaL_error(L, "include \"%s\": %s", pattern,
                   rc == -1 ? "no such file" : rc == GLOB_ABORTED ? "cannot read a directory"
                                                               : "glob failed");
    }
    /* the matches go to a Lua table: reading them may raise a Lua error, and
     * glob's memory must be freed before that can happen */
    n = rc == 0 ? g.gl_pathc : 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, g.gl_pathv[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    globfree(&g);
    /* counted at once, so that cfg frees it if a file below raises */
    cfg->includes = sl_xrealloc(cfg->includes, (cfg->nincludes + 1) * sizeof(*cfg->includes));
    idx = cfg->nincludes++;
    inc = &cfg->includes[idx];
    inc->pattern = sl_xstrdup(pattern);
    inc->files = sl_xcalloc(n ? n : 1, sizeof(*inc->files));
    inc->nfiles = 0;
    for (size_t i = 0; i < n; i++) {
        size_t f;
        lua_rawgeti(L, -1, (int)i + 1);
        f = record_file(L, sb, lua_tostring(L, -1));
        cfg->includes[idx].files[i] = f;
        cfg->includes[idx].nfiles = i + 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return idx;
}

/*
 * The chunk of included file `f` of cfg, added on first use. In a recorded
 * run, refuses a file that is being run already: an include cycle.
 */
static size_t
chunk_for_file(lua_State *L, struct sl_lua_sandbox *sb, const struct sl_config *cfg, size_t f)
{
    const char *path = cfg->files[f].path;
    char *real = NULL;
    size_t c = SIZE_MAX;

    for (size_t i = 1; i < sb->nchunks && c == SIZE_MAX; i++) {
        if (strcmp(sb->chunks[i].path, path) == 0)
            c = i;
    }
    if (c == SIZE_MAX) {
        c = add_chunk(sb, path, sb->record != NULL ? realpath(path, NULL) : NULL);
        sb->chunks[c].file = f + 1;
    }
    real = sb->chunks[c].real;
    for (int d = 0; real != NULL && d <= sb->depth; d++) {
        const char *other = sb->chunks[sb->stack[d]].real;
        if (other != NULL && strcmp(other, real) == 0)
            luaL_error(L, "include: %s includes itself (an include cycle)", path);
    }
    return c;
}

/* Runs included file `f` of cfg in the conf's environment. */
static void
run_included(lua_State *L, struct sl_lua_sandbox *sb, const struct sl_config *cfg, size_t f)
{
    const struct sl_conf_file *file = &cfg->files[f];
    size_t c = chunk_for_file(L, sb, cfg, f);

    if (file->source_len > 0 && file->source[0] == '\033')
        luaL_error(L, "include: %s: binary chunks are not accepted (Lua source text only)",
                   file->path);
    /* loaded in this state, so the chunk's globals are the conf's */
    if (luaL_loadbufferx(L, file->source, file->source_len, sb->chunks[c].chunkname, "t") != 0)
        lua_error(L);
    sb->stack[++sb->depth] = c;
    lua_call(L, 0, 0);
    sb->depth--;
}

/* The chunk of the code that calls include(), the conf's when unknown. */
static size_t
caller_chunk(lua_State *L, struct sl_lua_sandbox *sb)
{
    lua_Debug ar;

    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar))
        return chunk_of_source(sb, ar.source, 0);
    return 0;
}

/* `pattern` relative to the directory of chunk c. */
static void
push_resolved(lua_State *L, struct sl_lua_sandbox *sb, size_t c, const char *pattern)
{
    const char *path = sb->chunks[c].path;
    const char *slash = strrchr(path, '/');

    if (pattern[0] == '/' || slash == NULL) {
        lua_pushstring(L, pattern);
    } else {
        lua_pushlstring(L, path, (size_t)(slash - path + 1));
        lua_pushstring(L, pattern);
        lua_concat(L, 2);
    }
}

/*
 * include("conf.d/<glob>"): runs every file the pattern matches, sorted, in
 * the conf's environment (they set the same globals), as if written at the
 * call. A conf being checked reads the disk and records the files; any
 * other run (a worker's, -T's) runs the recorded bytes.
 */
static int
lua_include(lua_State *L)
{
    struct sl_lua_sandbox *sb = sandbox_of(L);
    const struct sl_config *cfg = sb->record != NULL ? sb->record : sb->replay;
    const char *pattern = luaL_checkstring(L, 1);
    const char *resolved;
    size_t inc, caller;

    if (!sb->is_conf || cfg == NULL)
        return luaL_error(L, "include() works only while the conf is loaded");
    /* files above the caller on the stack are includes that a pcall cut
     * short: they are not running any more */
    caller = caller_chunk(L, sb);
    while (sb->depth > 0 && sb->stack[sb->depth] != caller)
        sb->depth--;
    if (pattern[0] == '\0')
        return luaL_error(L, "include: empty pattern");
    if (sb->depth >= SL_LUA_INCLUDE_DEPTH)
        return luaL_error(L, "include \"%s\": nested more than %d deep", pattern,
                          SL_LUA_INCLUDE_DEPTH);
    push_resolved(L, sb, caller, pattern);
    resolved = lua_tostring(L, -1);
    if (sb->record != NULL) {
        inc = record_include(L, sb, resolved);
    } else {
        const struct sl_conf_include *found = find_include(cfg, resolved);
        if (found == NULL)
            return luaL_error(L, "include \"%s\": not run when the conf was checked", pattern);
        inc = (size_t)(found - cfg->includes);
    }
    /* by index: a nested include may move cfg->includes */
    for (size_t i = 0; i < cfg->includes[inc].nfiles; i++)
        run_included(L, sb, cfg, cfg->includes[inc].files[i]);
    return 0;
}

/* env("NAME", default): the variable's value, else the default when one is
 * given (nil included), else an error at the caller's line. */
static int
lua_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *value = getenv(name);

    if (value != NULL) {
        lua_pushstring(L, value);
        return 1;
    }
    if (lua_gettop(L) >= 2) {
        lua_settop(L, 2);
        return 1;
    }
    return luaL_error(L, "env \"%s\": not set, and no default given", name);
}

int
sl_lua_sandbox_run(struct sl_lua_sandbox *sb, const char *source, size_t len, const char *path,
                   char *err, size_t err_size)
{
    lua_State *L = sb->L;
    int status;

    /* Bytecode can break out of any sandbox: only source text is run. The
     * "t" mode below refuses it too; this says so in our words. */
    if (len > 0 && source[0] == '\033') { /* ESC starts Lua and LuaJIT bytecode */
        snprintf(err, err_size, "%s: binary chunks are not accepted (the conf must be Lua "
                 "source text)", path);
        return -1;
    }
    free_chunks(sb);
    add_chunk(sb, path, sb->record != NULL ? realpath(path, NULL) : NULL);
    sb->stack[0] = 0;
    sb->depth = 0;
    lua_pushcfunction(L, conf_traceback);
    status = luaL_loadbufferx(L, source, len, sb->chunks[0].chunkname, "t");
    if (status == 0)
        status = budgeted_pcall(sb, 0, 0, 1, true);
    if (status == LUA_ERRMEM) {
        snprintf(err, err_size, "%s:%d: conf uses more than %u MiB of memory",
                 sb->chunks[sb->cur].path, sb->last_line > 0 ? sb->last_line : 1,
                 SL_LUA_MEMORY_MAX >> 20);
    } else if (status != 0) {
        conf_error(sb, lua_tostring(L, -1), err, err_size);
    }
    lua_settop(L, 0);
    /* memory a failed or finished run left behind is not the next call's */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return status == 0 ? 0 : -1;
}

void
sl_lua_sandbox_record(struct sl_lua_sandbox *sb, struct sl_config *cfg)
{
    sb->record = cfg;
    sb->replay = NULL;
}

int
sl_lua_sandbox_run_config(struct sl_lua_sandbox *sb, const struct sl_config *cfg, char *err,
                          size_t err_size)
{
    sb->record = NULL;
    sb->replay = cfg;
    return sl_lua_sandbox_run(sb, cfg->source != NULL ? cfg->source : "", cfg->source_len,
                              cfg->path != NULL ? cfg->path : "?", err, err_size);
}


void
sl_lua_sandbox_push_library(struct sl_lua_sandbox *sb)
{
    lua_rawgeti(sb->L, LUA_REGISTRYINDEX, sb->library_ref);
}

void
sl_lua_sandbox_push_assigned(struct sl_lua_sandbox *sb)
{
    lua_rawgeti(sb->L, LUA_REGISTRYINDEX, sb->assigned_ref);
}

int
sl_lua_sandbox_line(struct sl_lua_sandbox *sb, const char *name, size_t len)
{
    int line;

    lua_rawgeti(sb->L, LUA_REGISTRYINDEX, sb->lines_ref);
    lua_pushlstring(sb->L, name, len);
    lua_rawget(sb->L, -2);
    line = (int)lua_tointeger(sb->L, -1);
    lua_pop(sb->L, 2);
    return line;
}

size_t
sl_lua_sandbox_file(struct sl_lua_sandbox *sb, const char *name, size_t len)
{
    lua_Integer chunk;

    lua_rawgeti(sb->L, LUA_REGISTRYINDEX, sb->files_ref);
    lua_pushlstring(sb->L, name, len);
    lua_rawget(sb->L, -2);
    chunk = lua_tointeger(sb->L, -1);
    lua_pop(sb->L, 2);
    return chunk > 0 ? (size_t)chunk : 0;
}

/* ---- the request object ------------------------------------------------- */

/*
 * A request value as Lua sees it, cut to lua_max_value_size bytes. The
 * string library runs in C, out of the instruction budget's sight, and a
 * common pattern such as the trim idiom "^%s*(.-)%s*$" backtracks
 * quadratically over its subject: 15,000 spaces cost half a second. Cut
 * rather than left out, so that a long value still keys its limit.
 */
static void
push_value(lua_State *L, const char *s, size_t len)
{
    const struct sl_lua_rt *rt = lua_touserdata(L, lua_upvalueindex(1));

    if (s == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, s, len < rt->max_value ? len : rt->max_value);
}

static const struct sl_request *
current_request(lua_State *L)
{
    const struct sl_lua_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
    return rt->req;
}

static int
request_index(lua_State *L)
{
    const struct sl_request *req = current_request(L);
    const char *key;
    size_t len;

    if (req == NULL || lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    key = lua_tolstring(L, 2, &len);
    if (len == 6 && memcmp(key, "method", 6) == 0)
        push_value(L, req->method, req->method_len);
    else if (len == 4 && memcmp(key, "path", 4) == 0)
        push_value(L, req->path, req->path_len);
    else if (len == 5 && memcmp(key, "query", 5) == 0)
        push_value(L, req->query, req->query_len);
    else if (len == 4 && memcmp(key, "host", 4) == 0)
        push_value(L, req->host, req->host_len);
    else if (len == 2 && memcmp(key, "ip", 2) == 0)
        push_value(L, req->client_ip_len > 0 ? req->client_ip : NULL, req->client_ip_len);
    else if (len == 6 && memcmp(key, "target", 6) == 0)
        push_value(L, req->target, req->target_len);
    else
        lua_pushnil(L);
    return 1;
}

static int
header_index(lua_State *L)
{
    const struct sl_request *req = current_request(L);
    const struct sl_header *h;
    const char *name;
    size_t len;

    if (req == NULL || lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    name = lua_tolstring(L, 2, &len);
    h = sl_request_header(req, name, len);
    if (h == NULL && len < 256 && memchr(name, '_', len) != NULL) {
        /* r.header.x_api_key reads X-Api-Key: '-' is not valid in a Lua name */
        char dashed[256];
        for (size_t i = 0; i < len; i++)
            dashed[i] = name[i] == '_' ? '-' : name[i];
        h = sl_request_header(req, dashed, len);
    }
    if (h == NULL)
        lua_pushnil(L);
    else
        push_value(L, h->value, h->value_len);
    return 1;
}

static int
field_index(lua_State *L, bool (*lookup)(const struct sl_request *, const char *, size_t,
                                         const char **, size_t *))
{
    const struct sl_request *req = current_request(L);
    const char *name, *value;
    size_t len, value_len;

    if (req == NULL || lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    name = lua_tolstring(L, 2, &len);
    if (lookup(req, name, len, &value, &value_len))
        push_value(L, value, value_len);
    else
        lua_pushnil(L);
    return 1;
}

static int
cookie_index(lua_State *L)
{
    return field_index(L, sl_reqfield_cookie);
}

static int
arg_index(lua_State *L)
{
    return field_index(L, sl_reqfield_query);
}

static int
read_only(lua_State *L)
{
    return luaL_error(L, "the request object is read-only");
}

/* Pushes an empty table whose reads go to `index` (with rt as upvalue). */
static void
push_proxy(lua_State *L, struct sl_lua_rt *rt, lua_CFunction index)
{
    lua_newtable(L);
    lua_newtable(L);
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, read_only);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static void
make_request_object(struct sl_lua_rt *rt)
{
    lua_State *L = rt->L;

    push_proxy(L, rt, request_index);
    /* the sub-tables are raw fields of r, read without the metamethod (and
     * set past its read-only __newindex) */
    lua_pushliteral(L, "header");
    push_proxy(L, rt, header_index);
    lua_rawset(L, -3);
    lua_pushliteral(L, "cookie");
    push_proxy(L, rt, cookie_index);
    lua_rawset(L, -3);
    lua_pushliteral(L, "arg");
    push_proxy(L, rt, arg_index);
    lua_rawset(L, -3);
    rt->request_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ---- loading the functions ---------------------------------------------- */

static int
traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Pushes the conf's table for limit `name`: limits[name], or the entry of a
 * list of limits whose .name is `name`. Returns false (nothing pushed) when
 * there is none. Expects the limits table on top of the stack. */
static bool
push_limit_table(lua_State *L, const char *name)
{
    lua_getfield(L, -1, name);
    if (lua_istable(L, -1))
        return true;
    lua_pop(L, 1);
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return false;
        }
        lua_getfield(L, -1, "name");
        if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) == 0) {
            lua_pop(L, 1);
            return true;
        }
        lua_pop(L, 2);
    }
}

/* With the limit's table on top: refs for its functions. 0 or -1 + err. */
static int
ref_functions(struct sl_lua_rt *rt, size_t i, char *err, size_t err_size)
{
    lua_State *L = rt->L;
    const struct sl_limit_conf *limit = &rt->cfg->limits[i];
    bool is_single = false;

    lua_getfield(L, -1, "key");
    if (lua_isfunction(L, -1))
        is_single = true;
    for (size_t j = 0; j < limit->nparts; j++) {
        if (limit->parts[j].kind != SL_KEY_FUNCTION)
            continue;
        if (is_single && j == 0) {
            lua_pushvalue(L, -1);
        } else if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, (int)j + 1);
        } else {
            lua_pushnil(L);
        }
        if (!lua_isfunction(L, -1)) {
            snprintf(err, err_size, "%s: limit \"%s\": key part %zu is not a function in the "
                     "conf as run by the worker", rt->cfg->path, limit->name, j + 1);
            lua_pop(L, 2);
            return -1;
        }
        rt->key_refs[i][j] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    if (limit->is_cost_function) {
        lua_getfield(L, -1, "cost");
        if (!lua_isfunction(L, -1)) {
            snprintf(err, err_size, "%s: limit \"%s\": cost is not a function in the conf as "
                     "run by the worker", rt->cfg->path, limit->name);
            lua_pop(L, 1);
            return -1;
        }
        rt->cost_refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

struct sl_lua_rt *
sl_lua_rt_new(const struct sl_config *cfg, char *err, size_t err_size)
{
    struct sl_lua_rt *rt = sl_xcalloc(1, sizeof(*rt));

    rt->cfg = cfg;
    rt->max_value = cfg->lua_max_value_size ? cfg->lua_max_value_size : SL_LUA_VALUE_MAX;
    rt->key_refs = sl_xcalloc(cfg->nlimits + 1, sizeof(*rt->key_refs));
    rt->cost_refs = sl_xcalloc(cfg->nlimits + 1, sizeof(*rt->cost_refs));
    for (size_t i = 0; i < cfg->nlimits; i++) {
        rt->key_refs[i] = sl_xcalloc(cfg->limits[i].nparts + 1, sizeof(int));
        for (size_t j = 0; j < cfg->limits[i].nparts; j++)
            rt->key_refs[i][j] = LUA_NOREF;
        rt->cost_refs[i] = LUA_NOREF;
    }
    rt->sb = sl_lua_sandbox_new(cfg->conf_names, err, err_size);
    if (rt->sb == NULL)
        goto fail;
    rt->L = sl_lua_sandbox_state(rt->sb);
    if (sl_lua_sandbox_run_config(rt->sb, cfg, err, err_size) != 0)
        goto fail;

    /* read what the conf assigned, raw: the globals' __index would raise on
     * a name the conf never set */
    sl_lua_sandbox_push_assigned(rt->sb);
    lua_getfield(rt->L, -1, "limits");
    if (!lua_istable(rt->L, -1)) {
        snprintf(err, err_size, "%s: no limits table in the conf as run by the worker",
                 cfg->path);
        goto fail;
    }
    for (size_t i = 0; i < cfg->nlimits; i++) {
        if (!sl_limit_uses_lua(&cfg->limits[i]))
            continue;
        if (!push_limit_table(rt->L, cfg->limits[i].name)) {
            snprintf(err, err_size, "%s: limit \"%s\" not found in the conf as run by the "
                     "worker", cfg->path, cfg->limits[i].name);
            goto fail;
        }
        if (ref_functions(rt, i, err, err_size) != 0)
            goto fail;
        lua_pop(rt->L, 1);
    }
    lua_settop(rt->L, 0);

    lua_pushcfunction(rt->L, traceback);
    rt->traceback_ref = luaL_ref(rt->L, LUA_REGISTRYINDEX);
    make_request_object(rt);
    return rt;

fail:
    sl_lua_rt_free(rt);
    return NULL;
}

void
sl_lua_rt_free(struct sl_lua_rt *rt)
{
    if (rt == NULL)
        return;
    sl_lua_sandbox_free(rt->sb);
    for (size_t i = 0; i < rt->cfg->nlimits; i++)
        free(rt->key_refs[i]);
    free(rt->key_refs);
    free(rt->cost_refs);
    free(rt);
}

/* ---- calls -------------------------------------------------------------- */

/* Keeps the message on one line: the diagnostic log is one line per event. */
static void
set_error(struct sl_lua_rt *rt, const char *msg)
{
    size_t n = 0;

    if (msg == NULL)
        msg = "unknown error";
    for (const char *p = msg; *p != '\0' && n + 1 < sizeof(rt->error); p++) {
        if (*p == '\t')
            continue;
        rt->error[n++] = *p == '\n' ? ' ' : *p;
    }
    rt->error[n] = '\0';
    rt->errors++;
}

/* Calls function `ref` with r; leaves its single result on the stack at 2. */
static int
call(struct sl_lua_rt *rt, int ref, const struct sl_request *req)
{
    lua_State *L = rt->L;
    int status;

    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->traceback_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->request_ref);
    rt->req = req;
    status = budgeted_pcall(rt->sb, 1, 1, 1, false);
    rt->req = NULL;
    if (status != 0) {
        set_error(rt, status == LUA_ERRMEM ? "not enough memory (lua memory budget)"
                                           : lua_tostring(L, -1));
        lua_settop(L, 0);
        /* give the garbage of a failed call back before the next one */
        if (status == LUA_ERRMEM)
            lua_gc(L, LUA_GCCOLLECT, 0);
        return -1;
    }
    return 0;
}

enum sl_lua_result
sl_lua_rt_key(struct sl_lua_rt *rt, size_t limit, size_t part, const struct sl_request *req,
              const char **value, size_t *value_len)
{
    lua_State *L = rt->L;
    int ref = rt->key_refs[limit][part];

    if (ref == LUA_NOREF || ref == LUA_REFNIL) {
        set_error(rt, "no key function for this limit part");
        return SL_LUA_ERROR;
    }
    if (call(rt, ref, req) != 0)
        return SL_LUA_ERROR;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        return SL_LUA_ABSENT;
    case LUA_TBOOLEAN:
        if (!lua_toboolean(L, -1))
            return SL_LUA_ABSENT;
        break;
    case LUA_TSTRING:
    case LUA_TNUMBER:
        /* converts a number in its stack slot, which keeps the string alive */
        *value = lua_tolstring(L, -1, value_len);
        return SL_LUA_VALUE;
    default:
        break;
    }
    {
        char msg[128];
        snprintf(msg, sizeof(msg), "key function returned a %s (want a string or nil)",
                 luaL_typename(L, -1));
        set_error(rt, msg);
    }
    return SL_LUA_ERROR;
}

enum sl_lua_result
sl_lua_rt_cost(struct sl_lua_rt *rt, size_t limit, const struct sl_request *req, double *cost)
{
    lua_State *L = rt->L;
    int ref = rt->cost_refs[limit];
    char msg[128];
    double n;

    if (ref == LUA_NOREF || ref == LUA_REFNIL) {
        set_error(rt, "no cost function for this limit");
        return SL_LUA_ERROR;
    }
    if (call(rt, ref, req) != 0)
        return SL_LUA_ERROR;
    if (lua_isnil(L, -1))
        return SL_LUA_ABSENT;
    if (lua_type(L, -1) != LUA_TNUMBER) {
        snprintf(msg, sizeof(msg), "cost function returned a %s (want a number > 0)",
                 luaL_typename(L, -1));
        set_error(rt, msg);
        return SL_LUA_ERROR;
    }
    n = lua_tonumber(L, -1);
    if (!isfinite(n) || n <= 0) {
        snprintf(msg, sizeof(msg), "cost function returned %g (want a number > 0)", n);
        set_error(rt, msg);
        return SL_LUA_ERROR;
    }
    *cost = n;
    return SL_LUA_VALUE;
}

const char *
sl_lua_rt_error(const struct sl_lua_rt *rt)
{
    return rt->error;
}

uint64_t
sl_lua_rt_errors(const struct sl_lua_rt *rt)
{
    return rt->errors;
}
