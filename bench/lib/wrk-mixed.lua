-- wrk script: 90 % of requests over 10 hot keys, 10 % over 100,000 cold
-- ones (X-Key), in a fixed pseudo-random order per thread; the stats line
-- comes from wrk-stats.lua.
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "wrk-stats.lua")

local n = 0
local x = 12345

-- MINSTD: exact in Lua's doubles (a glibc-style LCG is not, and cycled
-- through a few thousand cold keys instead of 100,000)
function request()
    n = n + 1
    x = (x * 48271) % 2147483647
    local key
    if n % 10 == 0 then
        key = "cold-" .. (x % 100000)
    else
        key = "hot-" .. (x % 10)
    end
    return wrk.format(nil, "/", { ["X-Key"] = key })
end
