-- wrk script: every request carries an X-Key never sent before, until KEYS
-- distinct keys have gone out from each thread; then the thread stops itself.
-- Used to fill the local store with KEYS buckets: run it with -t1.
-- A stopped thread does not end wrk before its -d duration, so the script
-- creates DONEFILE and bench.py, which watches for it, sends wrk SIGINT.
-- Arguments: wrk -t1 ... -s wrk-keys.lua URL -- KEYS PREFIX [DONEFILE]
local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    local total = tonumber(args[1]) or 1000000
    prefix = (args[2] or "k") .. "-" .. tid .. "-"
    donefile = args[3]
    quota = total
    sent = 0
    received = 0
end

function request()
    if sent < quota then
        sent = sent + 1
    end
    -- past the quota (only while the last replies are in flight) keys repeat
    return wrk.format(nil, "/", { ["X-Key"] = prefix .. sent })
end

function response(status, headers, body)
    received = received + 1
    if received == quota then
        if donefile then
            local f = io.open(donefile, "w")
            if f then
                f:close()
            end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, t in ipairs(threads) do
        total = total + (t:get("sent") or 0)
    end
    io.write(string.format("WRKKEYS requests=%d duration_us=%d keys=%d err_status=%d\n",
        summary.requests, summary.duration, total, summary.errors.status))
end
