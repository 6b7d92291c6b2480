-- SPDX-License-Identifier: MIT
-- Copyright (c) 2026 the sluice developers
--
-- The token bucket: the one copy of the algorithm. Redis runs it with EVALSHA
-- (store_redis); src/store_local.c is a line-by-line C port of it, and
-- tests/unit/test_token_bucket.c runs this very file next to the port and
-- compares every answer.
--
-- One call carries several independent CHECKS, one per HTTP request, applied
-- in order. A check names every bucket the request matches and takes `cost`
-- from all of them or from none (all-or-nothing per check, independent of the
-- other checks of the call). Time comes from Redis TIME, never from a caller.
--
-- Exact arithmetic. Every quantity is an integer below 2^52, so Lua's doubles
-- compute it exactly and no rounding can ever credit a token that the real
-- rate has not produced (the fleet bound "admitted cost over T <= burst +
-- rate * T / per" holds with no drift). The caller (src/store_int.h,
-- sl_tb_params_init) turns a limit into these integers once:
--   b   burst in milli-tokens (thousandths of a token, rounded down)
--   c   cost in milli-tokens (rounded up)
--   tu  the tick: microseconds of TIME that count as one unit (1 unless
--       burst x per is too large for 2^52, then 10, 100, ...)
--   q/p the refill rate as a reduced fraction: q milli-tokens every p ticks.
-- A bucket's level is kept in "units" of 1/p milli-token, so a tick adds
-- exactly q units and the level is an integer. The stored state is
-- "<milli-tokens> <remainder units> <stamp>": level = m * p + r, as of the
-- tick that starts at microsecond <stamp>. An absent key is a full bucket;
-- each written key expires 1 ms after it would be full again, so idle keys
-- vanish and Redis memory stays bounded.
--
-- KEYS: the bucket keys of all checks, check after check.
-- ARGV: n, then per check: its bucket count k, then k times: q p tu b c.
-- Returns a flat array of integers, per check: admitted (1/0), then per
-- bucket: remaining milli-tokens, retry_ms (until c milli-tokens are there;
-- 0 when they are; -1 when c > b: never), reset_ms (until full again).
-- With a refused check nothing is taken and the numbers describe the
-- buckets as they are.

local floor, ceil = math.floor, math.ceil
local tonumber = tonumber

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- state of every key this call has read: milli-tokens (-1: absent, i.e.
-- full), remainder units, stamp
local tok, rem, stamp = {}, {}, {}
-- keys to write back, and their expiry in ms
local dirty, px = {}, {}

local function load(key)
    local s = redis.call('GET', key)
    if s then
        local m, r, t = string.match(s, '^(%d+) (%d+) (%d+)$')
        if m then
            tok[key], rem[key], stamp[key] = tonumber(m), tonumber(r), tonumber(t)
            return
        end
    end
    tok[key], rem[key], stamp[key] = -1, 0, 0
end

-- level of `key` now, in units of 1/p milli-token, and the stamp it is as of
local function level(key, q, p, tu, b)
    local m = tok[key]
    if m == nil then
        load(key)
        m = tok[key]
    end
    local cur = floor(now / tu) * tu
    local full = b * p
    if m < 0 or m >= b then
        return full, cur
    end
    local r = rem[key]
    if r >= p then
        r = p - 1
    end
    local v = m * p + r
    local t = stamp[key]
    local el = floor(now / tu) - floor(t / tu)
    if el <= 0 then
        -- same tick, or TIME went backwards: credit nothing, keep the stamp
        return v, t
    end
    if el >= ceil((full - v) / q) then
        return full, cur
    end
    return v + q * el, cur
end

-- ms from now until `ticks` ticks after the tick of stamp t (a level is as of
-- its stamp, which is later than now when TIME stepped back)
local function ms_until(ticks, tu, t)
    if ticks <= 0 then
        return 0
    end
    return ceil((floor(t / tu) * tu + ticks * tu - now) / 1000)
end

-- ARGV strings repeat from check to check (same limits): parse each once
local num = {}
local function arg(i)
    local s = ARGV[i]
    local n = num[s]
    if n == nil then
        n = tonumber(s)
        num[s] = n
    end
    return n
end

-- scratch, reused by every check: its buckets, and the takes to undo
local bkey, bq, bp, btu, bb, bc = {}, {}, {}, {}, {}, {}
local ukey, utok, urem, ustamp = {}, {}, {}, {}

local out, o = {}, 0
local ki, ai = 1, 2
for _ = 1, arg(1) do
    local k = arg(ai)
    ai = ai + 1
    -- pass 1: take from every bucket in turn (a key named twice sees its
    -- first take), remembering what to undo if a later one refuses
    local admitted, nundo = true, 0
    for j = 1, k do
        local key = KEYS[ki]
        local q, p, tu, b, c = arg(ai), arg(ai + 1), arg(ai + 2), arg(ai + 3), arg(ai + 4)
        ki, ai = ki + 1, ai + 5
        bkey[j], bq[j], bp[j], btu[j], bb[j], bc[j] = key, q, p, tu, b, c
        if admitted then
            local v, t = level(key, q, p, tu, b)
            if c > b or v < c * p then
                admitted = false
            else
                nundo = nundo + 1
                ukey[nundo], utok[nundo], urem[nundo], ustamp[nundo] =
                    key, tok[key], rem[key], stamp[key]
                v = v - c * p
                local m = floor(v / p)
                tok[key], rem[key], stamp[key] = m, v - m * p, t
            end
        end
    end
    if not admitted then
        for u = nundo, 1, -1 do
            local key = ukey[u]
            tok[key], rem[key], stamp[key] = utok[u], urem[u], ustamp[u]
        end
    end
    o = o + 1
    out[o] = admitted and 1 or 0
    -- pass 2: report on every bucket as it now is
    for j = 1, k do
        local key, q, p, tu, b, c = bkey[j], bq[j], bp[j], btu[j], bb[j], bc[j]
        local v, t = level(key, q, p, tu, b)
        local retry
        if c > b then
            retry = -1
        elseif v >= c * p then
            retry = 0
        else
            retry = ms_until(ceil((c * p - v) / q), tu, t)
        end
        local reset = ms_until(ceil((b * p - v) / q), tu, t)
        out[o + 1], out[o + 2], out[o + 3] = floor(v / p), retry, reset
        o = o + 3
        if admitted then
            if px[key] == nil then
                dirty[#dirty + 1] = key
            end
            px[key] = reset + 1
        end
    end
end

for i = 1, #dirty do
    local key = dirty[i]
    redis.call('SET', key, string.format('%d %d %d', tok[key], rem[key], stamp[key]),
               'PX', px[key])
end
return out
