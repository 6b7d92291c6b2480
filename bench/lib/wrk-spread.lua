-- wrk script: every request carries an X-Key drawn from KEYS keys (100,000
-- unless given) in a fixed pseudo-random order per thread, so that the
-- buckets land on every Redis Cluster slot; the stats line comes from
-- wrk-stats.lua. Arguments: wrk ... -s wrk-spread.lua URL -- [KEYS]
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "wrk-stats.lua")

local keys = 100000
local x = 12345

function init(args)
    keys = tonumber(args[1]) or keys
end

-- MINSTD (Park-Miller): every product stays below 2^53, so Lua's doubles
-- compute it exactly; a glibc-style LCG (x * 1103515245 mod 2^31) does not,
-- and in doubles it cycles through a few thousand keys, unevenly over slots
function request()
    x = (x * 48271) % 2147483647
    return wrk.format(nil, "/", { ["X-Key"] = "k-" .. (x % keys) })
end
