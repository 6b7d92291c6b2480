-- wrk script: every request carries the same tenant (a hot key for a
-- per-tenant limit), as static headers so wrk runs no Lua per request; the
-- stats line comes from wrk-stats.lua.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "wrk-stats.lua")
wrk.headers["X-Tenant"] = "tenant-1"
