/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * LuaJIT states for per-request hooks: the sandbox the conf file runs in, and
 * one runtime per worker that calls the key and cost functions of the limits.
 * A runtime is used only from its worker's thread. Every call is protected,
 * carries a traceback on error and runs under an instruction and memory
 * budget, so a runaway function fails instead of hanging the worker.
 */
#ifndef SL_LUA_RT_H
#define SL_LUA_RT_H

#include <stddef.h>
#include <stdint.h>

struct lua_State;
struct sl_config;
struct sl_request;
struct sl_lua_rt;
struct sl_lua_sandbox;

/*
 * The limits of every sandboxed state, the conf's while it is checked and a
 * worker's alike (docs/configuration.md, "The sandbox"). One conf run may take
 * SL_LUA_CONF_INSTRUCTIONS (about 0.3 s); one call of a key or cost function
 * SL_LUA_CALL_INSTRUCTIONS; a state may hold SL_LUA_MEMORY_MAX bytes.
 */
#define SL_LUA_MEMORY_MAX (64u << 20)
#define SL_LUA_CONF_INSTRUCTIONS 10000000u
#define SL_LUA_CALL_INSTRUCTIONS 200000u
/* Request values handed to key and cost functions are cut to
 * cfg->lua_max_value_size bytes; this is its default. */
#define SL_LUA_VALUE_MAX 1024u
/* include(): nesting depth, files per conf, bytes per file */
#define SL_LUA_INCLUDE_DEPTH 8
#define SL_LUA_INCLUDE_FILES 256
#define SL_LUA_INCLUDE_FILE_MAX (4u << 20)

/*
 * A new sandboxed LuaJIT state. Its code sees string (without dump), table,
 * math, pairs, ipairs, type, tostring, tonumber, error, assert, pcall,
 * select, next and unpack, and the conf's include() and env(); no io, os,
 * require, package, debug, load*, dofile, setfenv, jit or ffi. Globals the
 * code assigns are recorded with their line and file; reading a name that
 * is neither assigned, allowed nor one of `declared` (NULL-terminated, may
 * be NULL: names that read as nil until assigned) is an error. The JIT is
 * off so the instruction budget holds in every loop. NULL with the reason
 * in err when no state can be made.
 */
struct sl_lua_sandbox *sl_lua_sandbox_new(const char *const *declared, char *err,
                                          size_t err_size);
/* Closes the state and frees the sandbox; NULL is a no-op. */
void sl_lua_sandbox_free(struct sl_lua_sandbox *sb);

/*
 * Runs `source` as the chunk "@"..path under SL_LUA_CONF_INSTRUCTIONS and
 * SL_LUA_MEMORY_MAX. Source text only: bytecode is refused. Returns 0, or -1
 * with "path:line: message" in err ("path: message" for a binary chunk). A
 * runaway conf ends with "conf still running after 10 million Lua
 * instructions (an endless loop?)", a memory-hungry one with "conf uses more
 * than 64 MiB of memory", each at the line being run.
 */
int sl_lua_sandbox_run(struct sl_lua_sandbox *sb, const char *source, size_t len,
                       const char *path, char *err, size_t err_size);

/*
 * Makes include() in later runs read files from disk (a glob relative to
 * the including file's directory, sorted) and record them, with the
 * patterns, in cfg->files and cfg->includes: the conf being loaded. Without
 * this or sl_lua_sandbox_run_config, include() is an error.
 */
void sl_lua_sandbox_record(struct sl_lua_sandbox *sb, struct sl_config *cfg);

/*
 * Runs cfg->source as sl_lua_sandbox_run does, as a worker runs the conf
 * that was checked: include() is served the files cfg recorded, never the
 * disk, so every state runs the same bytes.
 */
int sl_lua_sandbox_run_config(struct sl_lua_sandbox *sb, const struct sl_config *cfg, char *err,
                              size_t err_size);

/*
 * After a run, for C to read the results. The memory cap binds sandboxed code
 * only, so reading does not fail on a conf that used all of it; a Lua error
 * raised while reading is not protected (use raw access).
 */
struct lua_State *sl_lua_sandbox_state(const struct sl_lua_sandbox *sb);
/* Pushes the table of name -> value of what the sandbox offers (string, pairs...). */
void sl_lua_sandbox_push_library(struct sl_lua_sandbox *sb);
/* Pushes the table of name -> value of every global the code assigned. */
void sl_lua_sandbox_push_assigned(struct sl_lua_sandbox *sb);
/* The line of the last assignment of global `name`, 0 when never assigned. */
int sl_lua_sandbox_line(struct sl_lua_sandbox *sb, const char *name, size_t len);
/* The file of that assignment: 0 the conf, i > 0 the included file
 * cfg->files[i - 1] of a recorded run; 0 when never assigned. */
size_t sl_lua_sandbox_file(struct sl_lua_sandbox *sb, const char *name, size_t len);

enum sl_lua_result {
    SL_LUA_VALUE,  /* the function returned a usable value */
    SL_LUA_ABSENT, /* it returned nil or false: the limit does not apply */
    SL_LUA_ERROR,  /* it raised an error, ran out of budget or returned junk */
};

/*
 * A worker's runtime: runs cfg->source in a sandbox of its own (declaring
 * cfg->conf_names) and keeps a
 * reference to every key function (a SL_KEY_FUNCTION part, read from
 * limits[name].key or limits[name].key[part + 1]) and cost function
 * (limits[name].cost). `cfg` must outlive the runtime. NULL with the reason
 * in err when the conf does not run or a function is missing.
 */
struct sl_lua_rt *sl_lua_rt_new(const struct sl_config *cfg, char *err, size_t err_size);
void sl_lua_rt_free(struct sl_lua_rt *rt);

/*
 * Calls the key function of part `part` of limit `limit` (indexes into
 * cfg->limits and its parts) with the request object `r`, under
 * SL_LUA_CALL_INSTRUCTIONS and SL_LUA_MEMORY_MAX: a runaway call is an
 * SL_LUA_ERROR and the next call runs normally. A string is the
 * key as is, a number is converted with tostring. On SL_LUA_VALUE *value
 * points into the Lua state and stays valid until the next call on `rt`.
 */
enum sl_lua_result sl_lua_rt_key(struct sl_lua_rt *rt, size_t limit, size_t part,
                                 const struct sl_request *req, const char **value,
                                 size_t *value_len);

/*
 * Calls the cost function of limit `limit`. SL_LUA_VALUE: *cost is a finite
 * number > 0. SL_LUA_ABSENT: it returned nil (the caller uses 1). Anything
 * else (an error, a string, 0, a negative number, NaN, inf) is SL_LUA_ERROR.
 */
enum sl_lua_result sl_lua_rt_cost(struct sl_lua_rt *rt, size_t limit,
                                  const struct sl_request *req, double *cost);

/* The message of the last SL_LUA_ERROR, traceback included; "" before any. */
const char *sl_lua_rt_error(const struct sl_lua_rt *rt);
/* Calls that ended in SL_LUA_ERROR since the runtime was made. */
uint64_t sl_lua_rt_errors(const struct sl_lua_rt *rt);

#endif
