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

/* Budgets of one call into a key or cost function, and of running a conf. */
#define SL_LUA_CALL_INSTRUCTIONS 200000u
#define SL_LUA_CONF_INSTRUCTIONS 50000000u
#define SL_LUA_MEMORY_MAX (64u * 1024u * 1024u) /* bytes per state, all calls together */

/*
 * A new LuaJIT state whose globals are those config.c gives the conf and
 * nothing else: string (without dump), table, math, pairs, ipairs, type,
 * tostring, tonumber, error, assert, pcall, select, next, unpack. No io, os,
 * require, package, debug, load*, dofile, setfenv, jit or ffi. The JIT
 * compiler is off so the instruction budget is enforced in every loop. NULL
 * when LuaJIT cannot allocate a state.
 */
struct lua_State *sl_lua_sandbox_new(void);
/* Closes a sandbox state and frees its memory account; NULL is a no-op. */
void sl_lua_sandbox_close(struct lua_State *L);

/*
 * Loads `source` with chunkname "@"..path and runs it in the sandbox's
 * globals, under SL_LUA_CONF_INSTRUCTIONS. Returns 0, or -1 with
 * "path:line: message" in err.
 */
int sl_lua_sandbox_run(struct lua_State *L, const char *source, size_t len, const char *path,
                       char *err, size_t err_size);

enum sl_lua_result {
    SL_LUA_VALUE,  /* the function returned a usable value */
    SL_LUA_ABSENT, /* it returned nil or false: the limit does not apply */
    SL_LUA_ERROR,  /* it raised an error, ran out of budget or returned junk */
};

/*
 * A worker's runtime: loads cfg->source into a fresh sandbox and keeps a
 * reference to every key function (a SL_KEY_FUNCTION part, read from
 * limits[name].key or limits[name].key[part + 1]) and cost function
 * (limits[name].cost). `cfg` must outlive the runtime. NULL with the reason
 * in err when the conf does not run or a function is missing.
 */
struct sl_lua_rt *sl_lua_rt_new(const struct sl_config *cfg, char *err, size_t err_size);
void sl_lua_rt_free(struct sl_lua_rt *rt);

/*
 * Calls the key function of part `part` of limit `limit` (indexes into
 * cfg->limits and its parts) with the request object `r`. A string is the
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
