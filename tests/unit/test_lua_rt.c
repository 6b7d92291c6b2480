/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the sluice developers */
/*
 * lua_rt tests: what the sandbox leaves out, loading key and cost functions
 * from a conf, the request object, value conversion, and that a runaway or
 * memory-hungry function becomes an error the worker survives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lua.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/lua_rt.h"

/* ---- sandbox ------------------------------------------------------------- */

static const char long_path[] = "/a/rather/long/directory/name/that/luajit/will/abbreviate/in/"
                                "its/messages/t.conf";

static int
run_at(const char *path, const char *source, size_t len, char *err, size_t err_size)
{
    struct sl_lua_sandbox *sb = sl_lua_sandbox_new(NULL, err, err_size);
    int rc;

    if (sb == NULL)
        fail_msg("sl_lua_sandbox_new: %s", err);
    err[0] = '\0';
    rc = sl_lua_sandbox_run(sb, source, len, path, err, err_size);
    sl_lua_sandbox_free(sb);
    return rc;
}

static int
run(const char *source, char *err, size_t err_size)
{
    return run_at("t.conf", source, strlen(source), err, err_size);
}

static void
test_sandbox_contents(void **state)
{
    static const char *const absent[] = {
        "io", "os", "require", "package", "debug", "load", "loadstring", "loadfile", "dofile",
        "jit", "ffi", "collectgarbage", "setfenv", "getfenv", "module", "newproxy", "print",
        "_G", "rawset", "rawget", "setmetatable", "getmetatable", "coroutine", "bit", "xpcall",
    };
    char err[512], source[128], want[128];
    const char *allowed =
        "assert(string.dump == nil, 'string.dump')\n"
        "assert(string.format('%d', 42) == '42')\n"
        "assert(('abc'):upper() == 'ABC')\n"
        "assert(table.concat({ 'a', 'b' }, ',') == 'a,b')\n"
        "assert(math.floor(2.5) == 2 and select('#', 1, 2) == 2 and next({}) == nil)\n"
        "assert(pcall(error, 'x') == false and type(tostring) == 'function')\n"
        "assert(tonumber('7') == 7 and unpack({ 1 }) == 1)\n"
        "for _, v in pairs({ 1 }) do assert(v == 1) end\n"
        "for _, v in ipairs({ 1 }) do assert(v == 1) end\n";

    (void)state;
    if (run(allowed, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
        snprintf(source, sizeof(source), "\nlocal x = %s\n", absent[i]);
        snprintf(want, sizeof(want), "t.conf:2: undefined variable \"%s\"", absent[i]);
        assert_int_equal(run(source, err, sizeof(err)), -1);
        if (strncmp(err, want, strlen(want)) != 0)
            fail_msg("%s: got \"%s\"", absent[i], err);
    }
}

static void
test_sandbox_errors(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(run("x = 1\ny = = 2\n", err, sizeof(err)), -1);
    assert_memory_equal(err, "t.conf:2:", 9);
    assert_int_equal(run("\n\nerror('boom')\n", err, sizeof(err)), -1);
    assert_string_equal(err, "t.conf:3: boom");
    assert_int_equal(run("\nerror({})\n", err, sizeof(err)), -1);
    assert_string_equal(err, "t.conf:2: error object is a table value");
    /* LuaJIT abbreviates long chunk names; messages carry the whole path */
    assert_int_equal(run_at(long_path, "\nerror('late')", 14, err, sizeof(err)), -1);
    assert_true(strncmp(err, long_path, strlen(long_path)) == 0);
    assert_string_equal(err + strlen(long_path), ":2: late");
}

static void
test_sandbox_no_bytecode(void **state)
{
    static const char chunk[] = "\033LJ\002\000junk";
    char err[512];

    (void)state;
    assert_int_equal(run_at("t.conf", chunk, sizeof(chunk) - 1, err, sizeof(err)), -1);
    assert_string_equal(err, "t.conf: binary chunks are not accepted (the conf must be Lua "
                             "source text)");
    /* and nothing in the sandbox can make bytecode to begin with */
    assert_int_equal(run("local f = string.dump(function() end)", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "t.conf:1: attempt to call field 'dump'"));
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_sandbox_runaway_conf(void **state)
{
    static const struct {
        const char *source, *want;
    } cases[] = {
        { "local n = 0\nwhile true do\n  n = n + 1\nend\n",
          "t.conf:3: conf still running after 10 million Lua instructions (an endless loop?)" },
        /* pcall cannot swallow the budget */
        { "\nwhile true do pcall(function() while true do end end) end\n",
          "t.conf:2: conf still running after 10 million Lua instructions (an endless loop?)" },
        { "local a = 1\nlocal s = string.rep('x', 1024 * 1024 * 1024)\n",
          "t.conf:2: conf uses more than 64 MiB of memory" },
        { "local t = {}\nfor i = 1, 1e9 do\n  t[i] = ('x'):rep(100) .. i\nend\n",
          "t.conf:3: conf uses more than 64 MiB of memory" },
    };
    char err[512];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double start = now_s();
        assert_int_equal(run(cases[i].source, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].want);
        /* bounded: well under a second normally, generous for sanitizers */
        assert_true(now_s() - start < 20);
    }
}

static void
test_sandbox_globals(void **state)
{
    static const char *const declared[] = { "listen", "limits", NULL };
    static const char conf[] = "if listen == nil then\n  listen = 'a'\nend\n"
                               "limits = {\n x = 1 }\nlimits.y = 2\n";
    struct sl_lua_sandbox *sb;
    char err[512];
    lua_State *L;

    (void)state;
    sb = sl_lua_sandbox_new(declared, err, sizeof(err));
    assert_non_null(sb);
    /* declared names read as nil until assigned; others are typos */
    assert_int_equal(sl_lua_sandbox_run(sb, conf, strlen(conf), "t.conf", err, sizeof(err)), 0);
    assert_int_equal(sl_lua_sandbox_line(sb, "listen", 6), 2);
    assert_int_equal(sl_lua_sandbox_line(sb, "limits", 6), 5);
    assert_int_equal(sl_lua_sandbox_line(sb, "routes", 6), 0);
    L = sl_lua_sandbox_state(sb);
    sl_lua_sandbox_push_assigned(sb);
    lua_getfield(L, -1, "listen");
    assert_string_equal(lua_tostring(L, -1), "a");
    lua_settop(L, 0);
    assert_int_equal(sl_lua_sandbox_run(sb, "local r = routes", 16, "t.conf", err, sizeof(err)),
                     -1);
    assert_memory_equal(err, "t.conf:1: undefined variable \"routes\"", 37);
    sl_lua_sandbox_free(sb);
    sl_lua_sandbox_free(NULL);
}

/* ---- runtime ----------------------------------------------------------- */

struct fixture {
    struct sl_config cfg;
    struct sl_limit_conf limits[8];
    struct sl_key_part parts[8][2];
    struct sl_lua_rt *rt;
    char err[512];
    struct sl_header headers[8];
    struct sl_request req;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->cfg.path = "t.conf";
    f->cfg.limits = f->limits;
    f->req.method = "POST";
    f->req.method_len = 4;
    f->req.path = "/v1/upload";
    f->req.path_len = strlen(f->req.path);
    f->req.target = "/v1/upload?size=10&x";
    f->req.target_len = strlen(f->req.target);
    f->req.query = f->req.target + f->req.path_len + 1;
    f->req.query_len = strlen(f->req.query);
    f->req.host = "api.example";
    f->req.host_len = strlen(f->req.host);
    f->req.client_ip = "192.0.2.7";
    f->req.client_ip_len = strlen(f->req.client_ip);
    f->req.headers = f->headers;
    f->headers[0] = (struct sl_header){ "X-Tenant", 8, "acme", 4 };
    f->headers[1] = (struct sl_header){ "X-Api-Key", 9, "k1", 2 };
    f->headers[2] = (struct sl_header){ "Cookie", 6, "sid=s1; lang=en", 15 };
    f->headers[3] = (struct sl_header){ "Content-Length", 14, "2048", 4 };
    f->req.nheaders = 4;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    sl_lua_rt_free(f->rt);
    free(f);
    return 0;
}

/* A limit whose key is one function part (or, with is_composite, "ip" then a
 * function), optionally with a cost function. */
static void
add_limit(struct fixture *f, const char *name, bool is_composite, bool is_cost_function)
{
    struct sl_limit_conf *l = &f->limits[f->cfg.nlimits];

    l->name = (char *)(uintptr_t)name;
    l->parts = f->parts[f->cfg.nlimits];
    if (is_composite)
        l->parts[l->nparts++].kind = SL_KEY_IP;
    l->parts[l->nparts++].kind = SL_KEY_FUNCTION;
    l->is_cost_function = is_cost_function;
    f->cfg.nlimits++;
}

static void
load(struct fixture *f, const char *source)
{
    f->cfg.source = (char *)(uintptr_t)source;
    f->cfg.source_len = strlen(source);
    f->rt = sl_lua_rt_new(&f->cfg, f->err, sizeof(f->err));
    if (f->rt == NULL)
        fail_msg("sl_lua_rt_new: %s", f->err);
}

/* Calls the key function of limit i and returns its value as a string, or
 * "<absent>" / "<error>". */
static const char *
key(struct fixture *f, size_t i, size_t part)
{
    static char buf[512];
    const char *value;
    size_t len;

    switch (sl_lua_rt_key(f->rt, i, part, &f->req, &value, &len)) {
    case SL_LUA_VALUE:
        snprintf(buf, sizeof(buf), "%.*s", (int)len, value);
        return buf;
    case SL_LUA_ABSENT:
        return "<absent>";
    case SL_LUA_ERROR:
        return "<error>";
    }
    return "?";
}

static void
test_request_object(void **state)
{
    struct fixture *f = *state;
    static const char conf[] =
        "local function f(e) return function(r) return e(r) end end\n"
        "limits = {\n"
        "  method = { key = f(function(r) return r.method end) },\n"
        "  path = { key = f(function(r) return r.path end) },\n"
        "  query = { key = f(function(r) return r.query end) },\n"
        "  host = { key = f(function(r) return r.host end) },\n"
        "  ip = { key = f(function(r) return r.ip end) },\n"
        "  header = { key = f(function(r) return r.header['x-tenant'] .. r.header.X_API_KEY\n"
        "                                   .. r.header['Content-Length'] end) },\n"
        "  cookie = { key = f(function(r) return r.cookie.sid .. '/' .. r.cookie.lang\n"
        "                                   .. tostring(r.cookie.none) end) },\n"
        "  arg = { key = f(function(r) return r.arg.size .. '[' .. r.arg.x .. ']'\n"
        "                                .. tostring(r.arg.nope) end) },\n"
        "}\n";
    static const char *const names[] = { "method", "path", "query", "host",
                                         "ip",     "header", "cookie", "arg" };
    static const char *const want[] = { "POST",     "/v1/upload",      "size=10&x",
                                         "api.example", "192.0.2.7",   "acmek12048",
                                         "s1/ennil", "10[]nil" };

    for (size_t i = 0; i < 8; i++)
        add_limit(f, names[i], false, false);
    load(f, conf);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(key(f, i, 0), want[i]);

    f->req.query = NULL;
    f->req.query_len = 0;
    f->req.host = NULL;
    f->req.host_len = 0;
    assert_string_equal(key(f, 2, 0), "<absent>");
    assert_string_equal(key(f, 3, 0), "<absent>");
    assert_int_equal(sl_lua_rt_errors(f->rt), 0);
}

/*
 * Issue 12, point 2: every request value reaches Lua cut to
 * lua_max_value_size (default SL_LUA_VALUE_MAX), so string functions, which
 * run in C out of the instruction budget's sight, work on bounded input.
 */
static void
test_value_cap(void **state)
{
    struct fixture *f = *state;
    static const char conf[] =
        "local function n(e) return function(r) return tostring(#(e(r) or '')) end end\n"
        "limits = {\n"
        "  header = { key = n(function(r) return r.header['x-long'] end) },\n"
        "  cookie = { key = n(function(r) return r.cookie.big end) },\n"
        "  arg = { key = n(function(r) return r.arg.q end) },\n"
        "  target = { key = n(function(r) return r.target end) },\n"
        "  path = { key = n(function(r) return r.path end) },\n"
        "  query = { key = n(function(r) return r.query end) },\n"
        "  trim = { key = function(r) return r.header['x-spaces']:match('^%s*(.-)%s*$') end },\n"
        "  short = { key = function(r) return r.header['x-tenant'] end },\n"
        "}\n";
    static const char *const names[] = { "header", "cookie", "arg",  "target",
                                         "path",   "query",  "trim", "short" };
    char *big = malloc(20000), *target = malloc(10000), *cookie = malloc(6000);

    memset(big, 'x', 20000);
    memset(cookie, 'c', 6000);
    memcpy(cookie, "big=", 4);
    memset(target, 'p', 10000);
    target[0] = '/';
    memcpy(target + 3000, "?q=", 3);
    f->headers[0] = (struct sl_header){ "X-Long", 6, big, 20000 };
    f->headers[1] = (struct sl_header){ "X-Spaces", 8, big, 0 };
    f->headers[2] = (struct sl_header){ "Cookie", 6, cookie, 6000 };
    f->headers[3] = (struct sl_header){ "X-Tenant", 8, "acme", 4 };
    f->req.nheaders = 4;
    f->req.target = target;
    f->req.target_len = 10000;
    f->req.path = target;
    f->req.path_len = 3000;
    f->req.query = target + 3001;
    f->req.query_len = 10000 - 3001;
    for (size_t i = 0; i < 8; i++)
        add_limit(f, names[i], false, false);
    load(f, conf);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(key(f, i, 0), "1024");
    assert_string_equal(key(f, 6, 0), "");
    assert_string_equal(key(f, 7, 0), "acme");

    /* the reproduction: 15,000 spaces inside a value make the trim
     * idiom quadratic; it sees the first 1 KiB only, so "b" never comes */
    memset(big, ' ', 15000);
    big[0] = 'a';
    big[14999] = 'b';
    f->headers[1].value_len = 15000;
    assert_string_equal(key(f, 6, 0), "a");
    assert_int_equal(sl_lua_rt_errors(f->rt), 0);

    sl_lua_rt_free(f->rt);
    f->cfg.nlimits = 0;
    memset(f->parts, 0, sizeof(f->parts));
    memset(f->limits, 0, sizeof(f->limits));
    f->cfg.lua_max_value_size = 100;
    for (size_t i = 0; i < 8; i++)
        add_limit(f, names[i], false, false);
    load(f, conf);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(key(f, i, 0), "100");
    free(big);
    free(target);
    free(cookie);
}

static void
test_request_read_only(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "w", false, false);
    add_limit(f, "h", false, false);
    add_limit(f, "kept", false, false);
    load(f, "limits = {\n"
            "  w = { key = function(r) r.ip = '1.1.1.1' return r.ip end },\n"
            "  h = { key = function(r) r.header.x = 'y' return 'no' end },\n"
            "  kept = { key = function(r) saved = r return 'k' end },\n"
            "}\n");
    assert_string_equal(key(f, 0, 0), "<error>");
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "read-only"));
    assert_string_equal(key(f, 1, 0), "<error>");
    assert_string_equal(key(f, 2, 0), "k");
}

static void
test_value_conversion(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "num", false, false);
    add_limit(f, "float", false, false);
    add_limit(f, "nil", false, false);
    add_limit(f, "false", false, false);
    add_limit(f, "table", false, false);
    add_limit(f, "true", false, false);
    add_limit(f, "empty", false, false);
    load(f, "limits = {\n"
            "  num = { key = function() return 42 end },\n"
            "  float = { key = function() return 1.5 end },\n"
            "  ['nil'] = { key = function() return nil end },\n"
            "  ['false'] = { key = function() return false end },\n"
            "  table = { key = function() return {} end },\n"
            "  ['true'] = { key = function() return true end },\n"
            "  empty = { key = function() return '' end },\n"
            "}\n");
    assert_string_equal(key(f, 0, 0), "42");
    assert_string_equal(key(f, 1, 0), "1.5");
    assert_string_equal(key(f, 2, 0), "<absent>");
    assert_string_equal(key(f, 3, 0), "<absent>");
    assert_string_equal(key(f, 4, 0), "<error>");
    assert_string_equal(sl_lua_rt_error(f->rt),
                        "key function returned a table (want a string or nil)");
    assert_string_equal(key(f, 5, 0), "<error>");
    assert_string_equal(key(f, 6, 0), "");
    assert_int_equal(sl_lua_rt_errors(f->rt), 2);
}

static void
test_errors_have_traceback(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "bad", false, false);
    load(f, "local function inner(r)\n"
            "  return r.header.missing:lower()\n"
            "end\n"
            "limits = { bad = { key = function(r) return inner(r) end } }\n");
    assert_string_equal(key(f, 0, 0), "<error>");
    assert_memory_equal(sl_lua_rt_error(f->rt), "t.conf:2: attempt to index", 26);
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "stack traceback:"));
    assert_null(strchr(sl_lua_rt_error(f->rt), '\n'));
    assert_int_equal(sl_lua_rt_errors(f->rt), 1);
}

static void
test_budgets(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "loop", false, false);
    add_limit(f, "sneaky", false, false);
    add_limit(f, "hungry", false, false);
    add_limit(f, "fine", false, false);
    load(f, "limits = {\n"
            "  loop = { key = function() while true do end end },\n"
            "  sneaky = { key = function()\n"
            "    while true do pcall(function() while true do end end) end end },\n"
            "  hungry = { key = function()\n"
            "    local s = ('x'):rep(1000000) while true do s = s .. s end end },\n"
            "  fine = { key = function(r) local n = 0 for i = 1, 1000 do n = n + i end\n"
            "                             return n end },\n"
            "}\n");
    assert_int_equal(sl_lua_rt_key(f->rt, 0, 0, &f->req, &(const char *){ NULL },
                                   &(size_t){ 0 }), SL_LUA_ERROR);
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "instruction budget exceeded (200000 Lua "
                                                   "instructions per call)"));
    assert_string_equal(key(f, 3, 0), "500500"); /* the budget is per call */
    assert_string_equal(key(f, 1, 0), "<error>");
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "instruction budget exceeded"));
    assert_string_equal(key(f, 2, 0), "<error>");
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "not enough memory"));
    assert_string_equal(key(f, 3, 0), "500500"); /* and memory comes back */
    assert_string_equal(key(f, 2, 0), "<error>");
    assert_string_equal(key(f, 3, 0), "500500");
}

/* A worker's state is the conf's sandbox: same globals, same strictness. */
static void
test_worker_same_sandbox(void **state)
{
    static const char *const declared[] = { "listen", "limits", NULL };
    struct fixture *f = *state;

    f->cfg.conf_names = (const char **)(uintptr_t)declared;
    add_limit(f, "io", false, false);
    add_limit(f, "dump", false, false);
    add_limit(f, "typo", false, false);
    add_limit(f, "fine", false, false);
    load(f, "if listen == nil then listen = '127.0.0.1:1' end\n"
            "limits = {\n"
            "  io = { key = function() return io.read() end },\n"
            "  dump = { key = function() return string.dump(function() end) end },\n"
            "  typo = { key = function(r) return tennant end },\n"
            "  fine = { key = function(r) return listen end },\n"
            "}\n");
    assert_string_equal(key(f, 0, 0), "<error>");
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "undefined variable \"io\""));
    assert_string_equal(key(f, 1, 0), "<error>");
    assert_string_equal(key(f, 2, 0), "<error>");
    assert_non_null(strstr(sl_lua_rt_error(f->rt), "undefined variable \"tennant\""));
    assert_string_equal(key(f, 3, 0), "127.0.0.1:1");
    assert_int_equal(sl_lua_rt_errors(f->rt), 3);
}

static void
test_composite_and_list_form(void **state)
{
    struct fixture *f = *state;

    add_limit(f, "pair", true, false);
    add_limit(f, "listed", false, false);
    load(f, "limits = {\n"
            "  pair = { key = { 'ip', function(r) return r.method end } },\n"
            "  { name = 'listed', key = function(r) return 'L' end },\n"
            "}\n");
    assert_string_equal(key(f, 0, 1), "POST");
    assert_string_equal(key(f, 1, 0), "L");
    /* part 0 of pair is "ip": not a function */
    assert_string_equal(key(f, 0, 0), "<error>");
}

static void
test_cost(void **state)
{
    struct fixture *f = *state;
    static const char conf[] =
        "local costs = { ['/a'] = 5, ['/zero'] = 0, ['/neg'] = -1, ['/nan'] = 0/0,\n"
        "                ['/inf'] = math.huge, ['/str'] = '5', ['/frac'] = 0.25 }\n"
        "limits = { c = { key = function() return 'k' end,\n"
        "                 cost = function(r) if r.path == '/err' then error('x') end\n"
        "                                    if r.path == '/loop' then while true do end end\n"
        "                                    return costs[r.path] end } }\n";
    static const struct {
        const char *path;
        enum sl_lua_result want;
        double cost;
    } cases[] = {
        { "/a", SL_LUA_VALUE, 5 },     { "/frac", SL_LUA_VALUE, 0.25 },
        { "/none", SL_LUA_ABSENT, 0 }, { "/zero", SL_LUA_ERROR, 0 },
        { "/neg", SL_LUA_ERROR, 0 },   { "/nan", SL_LUA_ERROR, 0 },
        { "/inf", SL_LUA_ERROR, 0 },   { "/str", SL_LUA_ERROR, 0 },
        { "/err", SL_LUA_ERROR, 0 },   { "/loop", SL_LUA_ERROR, 0 },
        { "/a", SL_LUA_VALUE, 5 }, /* a runaway call leaves the next one whole */
    };

    add_limit(f, "c", false, true);
    load(f, conf);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double cost = -7;
        f->req.path = cases[i].path;
        f->req.path_len = strlen(cases[i].path);
        assert_int_equal(sl_lua_rt_cost(f->rt, 0, &f->req, &cost), cases[i].want);
        if (cases[i].want == SL_LUA_VALUE)
            assert_true(cost == cases[i].cost);
    }
    assert_int_equal(sl_lua_rt_errors(f->rt), 7);
}

static void
test_load_failures(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *source;
        const char *want;
    } cases[] = {
        { "limits = {", "t.conf:1:" },
        { "x = 1", "t.conf: no limits table" },
        { "limits = { other = {} }", "t.conf: limit \"fn\" not found" },
        { "limits = { fn = { key = 'ip' } }", "t.conf: limit \"fn\": key part 1 is not a" },
        { "limits = { fn = { key = function() end } }",
          "t.conf: limit \"fn\": cost is not a function" },
        { "os.exit(1)", "t.conf:1: undefined variable \"os\"" },
        { "while true do end", "t.conf:1: conf still running after 10 million" },
    };

    add_limit(f, "fn", false, true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f->cfg.source = (char *)(uintptr_t)cases[i].source;
        f->cfg.source_len = strlen(cases[i].source);
        assert_null(sl_lua_rt_new(&f->cfg, f->err, sizeof(f->err)));
        if (strncmp(f->err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s...\"", i, f->err, cases[i].want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sandbox_contents),
        cmocka_unit_test(test_sandbox_errors),
        cmocka_unit_test(test_sandbox_no_bytecode),
        cmocka_unit_test(test_sandbox_runaway_conf),
        cmocka_unit_test(test_sandbox_globals),
        cmocka_unit_test_setup_teardown(test_request_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_conversion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_have_traceback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_same_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_composite_and_list_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_failures, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
