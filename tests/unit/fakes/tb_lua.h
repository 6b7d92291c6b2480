/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * Test helper: runs the real lua/token_bucket.lua in LuaJIT, the way Redis
 * runs it, against a Lua-side fake of redis.call (TIME, GET, SET ... PX) over
 * an in-memory table and a clock the test sets. Used to prove the C port in
 * store_local.c equal to the script, and by the fake Redis server of
 * test_store_redis.c to answer EVALSHA with the very same script.
 *
 * Header-only (static functions) because the unit-test build compiles one
 * .c file per test. Finds the script through $SL_SOURCE_DIR, else the
 * SL_SOURCE_DIR macro, else the current directory.
 */
#ifndef SL_TEST_TB_LUA_H
#define SL_TEST_TB_LUA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

/* Mirrors what Redis 7 does for these commands; expiry as in Redis: a key is
 * gone once the ms clock is past its deadline (now_ms > when). */
static const char tb_lua_shim[] =
    "local data, deadline = {}, {}\n"
    "local now_us = 0\n"
    "local ncalls = 0\n"
    "local function now_ms() return math.floor(now_us / 1000) end\n"
    "local function alive(k)\n"
    "  local d = deadline[k]\n"
    "  if d ~= nil and now_ms() > d then data[k], deadline[k] = nil, nil end\n"
    "  return data[k] ~= nil\n"
    "end\n"
    "redis = {}\n"
    "function redis.call(cmd, ...)\n"
    "  local a = { ... }\n"
    "  cmd = string.upper(cmd)\n"
    "  ncalls = ncalls + 1\n"
    "  if cmd == 'TIME' then\n"
    "    return { string.format('%d', math.floor(now_us / 1000000)),\n"
    "             string.format('%d', now_us % 1000000) }\n"
    "  elseif cmd == 'GET' then\n"
    "    if not alive(a[1]) then return false end\n"
    "    return data[a[1]]\n"
    "  elseif cmd == 'SET' then\n"
    "    assert(type(a[2]) == 'string', 'SET value must be a string')\n"
    "    data[a[1]], deadline[a[1]] = a[2], nil\n"
    "    if a[3] ~= nil then\n"
    "      assert(string.upper(a[3]) == 'PX' and tonumber(a[4]) >= 1, 'bad SET options')\n"
    "      deadline[a[1]] = now_ms() + tonumber(a[4])\n"
    "    end\n"
    "    return { ok = 'OK' }\n"
    "  end\n"
    "  error('shim: unsupported command ' .. cmd)\n"
    "end\n"
    /* a cluster master that does not serve keys starting "far:" */
    "function redis.pcall(cmd, ...)\n"
    "  local a = { ... }\n"
    "  if string.upper(cmd) == 'GET' and string.sub(a[1], 1, 4) == 'far:' then\n"
    "    return { err = 'ERR Script attempted to access a non local key in a cluster node' }\n"
    "  end\n"
    "  local ok, r = pcall(redis.call, cmd, ...)\n"
    "  if ok then return r end\n"
    "  return { err = r }\n"
    "end\n"
    "shim = {}\n"
    "function shim.set_now(us) now_us = us end\n"
    "function shim.ncalls() return ncalls end\n"
    "function shim.nkeys()\n"
    "  local n = 0\n"
    "  for k in pairs(data) do if alive(k) then n = n + 1 end end\n"
    "  return n\n"
    "end\n"
    "function shim.get(k) if alive(k) then return data[k] end return nil end\n"
    "function shim.pttl(k)\n"
    "  if not alive(k) then return -2 end\n"
    "  if deadline[k] == nil then return -1 end\n"
    "  return deadline[k] - now_ms()\n"
    "end\n"
    "function shim.flush() data, deadline = {}, {} end\n"
    "function shim.del(k)\n"
    "  local n = alive(k) and 1 or 0\n"
    "  data[k], deadline[k] = nil, nil\n"
    "  return n\n"
    "end\n";

struct tb_lua {
    lua_State *L;
    int script_ref;
    char *script;
    size_t script_len;
};

static inline char *
tb_lua_read_script(size_t *len)
{
    const char *dir = getenv("SL_SOURCE_DIR");
    char path[4096];
    FILE *f;
    char *buf;
    long n;

    if (dir == NULL || *dir == '\0')
        dir = SL_SOURCE_DIR;
    snprintf(path, sizeof(path), "%s/lua/token_bucket.lua", dir);
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "tb_lua: cannot open %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        abort();
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline void
tb_lua_init(struct tb_lua *tl)
{
    tl->L = luaL_newstate();
    luaL_openlibs(tl->L);
    if (luaL_loadbuffer(tl->L, tb_lua_shim, sizeof(tb_lua_shim) - 1, "=shim") != 0
        || lua_pcall(tl->L, 0, 0, 0) != 0) {
        fprintf(stderr, "tb_lua: shim: %s\n", lua_tostring(tl->L, -1));
        abort();
    }
    tl->script = tb_lua_read_script(&tl->script_len);
    if (luaL_loadbuffer(tl->L, tl->script, tl->script_len, "@lua/token_bucket.lua") != 0) {
        fprintf(stderr, "tb_lua: %s\n", lua_tostring(tl->L, -1));
        abort();
    }
    tl->script_ref = luaL_ref(tl->L, LUA_REGISTRYINDEX);
}

static inline void
tb_lua_fini(struct tb_lua *tl)
{
    lua_close(tl->L);
    free(tl->script);
}

static inline void
tb_lua_shim_call(struct tb_lua *tl, const char *fn, int nargs, int nresults)
{
    lua_getglobal(tl->L, "shim");
    lua_getfield(tl->L, -1, fn);
    lua_remove(tl->L, -2);
    if (nargs > 0)
        lua_insert(tl->L, -1 - nargs);
    if (lua_pcall(tl->L, nargs, nresults, 0) != 0) {
        fprintf(stderr, "tb_lua: shim.%s: %s\n", fn, lua_tostring(tl->L, -1));
        abort();
    }
}

static inline void
tb_lua_set_now(struct tb_lua *tl, uint64_t now_us)
{
    lua_pushnumber(tl->L, (lua_Number)now_us);
    tb_lua_shim_call(tl, "set_now", 1, 0);
}

static inline long
tb_lua_shim_int(struct tb_lua *tl, const char *fn, const char *key)
{
    long v;

    if (key != NULL)
        lua_pushstring(tl->L, key);
    tb_lua_shim_call(tl, fn, key != NULL, 1);
    v = (long)lua_tonumber(tl->L, -1);
    lua_pop(tl->L, 1);
    return v;
}

/*
 * One EVALSHA: keys and argv as Redis would pass them. On success returns the
 * number of integers stored in out (at most out_cap) as Redis would convert
 * them (truncated to integers); on a script error returns -1 and copies the
 * message to err.
 */
static inline long
tb_lua_eval(struct tb_lua *tl, const char *const *keys, const size_t *key_lens, size_t nkeys,
            const char *const *argv, const size_t *argv_lens, size_t nargv, long long *out,
            size_t out_cap, char *err, size_t err_size)
{
    lua_State *L = tl->L;
    size_t n;

    lua_createtable(L, (int)nkeys, 0);
    for (size_t i = 0; i < nkeys; i++) {
        lua_pushlstring(L, keys[i], key_lens[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setglobal(L, "KEYS");
    lua_createtable(L, (int)nargv, 0);
    for (size_t i = 0; i < nargv; i++) {
        lua_pushlstring(L, argv[i], argv_lens[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setglobal(L, "ARGV");
    lua_rawgeti(L, LUA_REGISTRYINDEX, tl->script_ref);
    if (lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(err, err_size, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, err_size, "script returned a %s", luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    n = lua_objlen(L, -1);
    for (size_t i = 0; i < n && i < out_cap; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        out[i] = (long long)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return (long)n;
}

#endif
