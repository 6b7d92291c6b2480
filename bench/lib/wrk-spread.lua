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

function request()
    x = (x * 1103515245 + 12345) % 2147483648
    return wrk.format(nil, "/", { ["X-Key"] = "k-" .. (x % keys) })
end
