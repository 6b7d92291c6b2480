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
-- Leases (docs/rate-limiting.md). A proxy worker (a "holder", named by a
-- random hex id) may take a block of tokens in one call and admit from it
-- locally. Redis remembers, per bucket, each holder's outstanding amount and
-- when it lapses: the state string goes on with " <id> <milli> <until>"
-- per holder (at most MAX_HOLDERS). The level can only refill to burst
-- minus the sum L of those amounts, so level + L <= b at all times and the
-- fleet bound stays exact however long a block is held. A holder reports
-- what it still holds when it takes again (its amount becomes that plus the
-- new block: what it spent leaves L) and gives the rest back when the lease
-- ends (its amount leaves L, the rest goes back into the level). A holder
-- that vanishes is forgotten at <until>: what it held is lost, never
-- credited, and the holder must stop spending before then (it spends for
-- `ttl` after sending a take; <until> is `ttl2` after Redis ran it).
--
-- KEYS: the bucket keys of all checks, check after check.
-- ARGV: n, then per check: its bucket count k, then k times: q p tu b c.
-- A lease operation is a check of one bucket with k = -1 (take up to `a`
-- milli-tokens, still holding `held`) or k = -2 (give back `a`), then
-- q p tu b c a held ttl2_us holder.
-- A refund (Redis Cluster: a check split over nodes that one of them
-- refused, see src/store_redis_cluster.c) is a check of one bucket with
-- k = -3 and q p tu b c: c milli-tokens go back, never over what the
-- bucket can hold.
-- Redis Cluster (src/store_redis_cluster.c): one call to a master carries
-- checks of many slots, and Redis refuses declared keys of several slots in
-- one call. So such a call declares no key and passes them in ARGV instead:
-- 'keys', their count, the keys, then ARGV as above; the store loads this
-- file behind a shebang line with the allow-cross-slot-keys flag. A key
-- the master does not serve (its slot moved or is moving) fails redis.pcall:
-- the check or operation touching it does nothing and answers -9 (and
-- zeros for its buckets), and the store sends it again on its own with its
-- keys declared, for Redis to redirect it (MOVED, ASK).
-- Returns a flat array of integers, per check: admitted (1/0), then per
-- bucket: remaining milli-tokens, retry_ms (until c milli-tokens are there;
-- 0 when they are; -1 when c > b: never), reset_ms (until full again).
-- With a refused check nothing is taken and the numbers describe the
-- buckets as they are. A lease operation answers the milli-tokens it took
-- (or took back) in place of admitted, then its bucket as a check does;
-- a refund the milli-tokens it gave back.

local floor, ceil = math.floor, math.ceil
local tonumber = tonumber

local KEYS, ARGV = KEYS, ARGV
local is_sharded = #KEYS == 0 and ARGV[1] == 'keys'
if is_sharded then
    local nk, k, a = tonumber(ARGV[2]), {}, {}
    for i = 1, nk do
        k[i] = ARGV[2 + i]
    end
    for i = 3 + nk, #ARGV do
        a[#a + 1] = ARGV[i]
    end
    KEYS, ARGV = k, a
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local MAX_HOLDERS = 64

-- state of every key this call has read: milli-tokens (-1: absent, i.e.
-- full), remainder units, stamp; its holders (nil: none) and their sum
local tok, rem, stamp = {}, {}, {}
local hold, lsum = {}, {}
-- keys to write back, and their expiry in ms
local dirty, px = {}, {}

local function parse(key, s)
    lsum[key] = 0
    if s then
        local m, r, t, rest = string.match(s, '^(%d+) (%d+) (%d+)(.*)$')
        if m then
            tok[key], rem[key], stamp[key] = tonumber(m), tonumber(r), tonumber(t)
            if rest ~= '' then
                -- lapsed holders are dropped here: what they held is gone
                local h, sum = {}, 0
                for id, a, u in string.gmatch(rest, ' (%x+) (%d+) (%d+)') do
                    a, u = tonumber(a), tonumber(u)
                    if u > now then
                        h[#h + 1] = { id, a, u }
                        sum = sum + a
                    end
                end
                if #h > 0 then
                    hold[key], lsum[key] = h, sum
                end
            end
            return
        end
    end
    tok[key], rem[key], stamp[key] = -1, 0, 0
end

local function load(key)
    parse(key, redis.call('GET', key))
end

-- Sharded calls: whether this master serves the n keys from KEYS[first]
-- on, reading those not read yet, before anything is taken from them.
local function all_local(first, n)
    for j = first, first + n - 1 do
        local key = KEYS[j]
        if tok[key] == nil then
            local s = redis.pcall('GET', key)
            if type(s) == 'table' and s.err then
                return false
            end
            parse(key, s)
        end
    end
    return true
end

-- level of `key` now, in units of 1/p milli-token, and the stamp it is as of
local function level(key, q, p, tu, b)
    local m = tok[key]
    if m == nil then
        load(key)
        m = tok[key]
    end
    local cur = floor(now / tu) * tu
    local cap = b - lsum[key]
    if cap < 0 then
        cap = 0
    end
    local full = cap * p
    if m < 0 or m >= cap then
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

-- one bucket as it now is: remaining, retry, reset; marks it to be written
-- when `is_written`
local function report(key, q, p, tu, b, c, is_written)
    local v, t = level(key, q, p, tu, b)
    local retry
    if c > b then
        retry = -1
    elseif v >= c * p then
        retry = 0
    else
        retry = ms_until(ceil((c * p - v) / q), tu, t)
    end
    local cap = b - lsum[key]
    if cap < 0 then
        cap = 0
    end
    local reset = ms_until(ceil((cap * p - v) / q), tu, t)
    out[o + 1], out[o + 2], out[o + 3] = floor(v / p), retry, reset
    o = o + 3
    if is_written then
        if px[key] == nil then
            dirty[#dirty + 1] = key
        end
        local ms = reset + 1
        local h = hold[key]
        if h then
            -- the key must outlive its holders (a lapsed key would forget
            -- what they hold and be full), and then until the level, short
            -- of burst by at most what they held, is full again
            local last = 0
            for j = 1, #h do
                if h[j][3] > last then
                    last = h[j][3]
                end
            end
            local after = ceil((last - now + ceil(lsum[key] * p / q) * tu) / 1000) + 1
            local to_b = ms_until(ceil((b * p - v) / q), tu, t) + 1
            if after > ms then
                ms = after
            end
            if to_b > ms then
                ms = to_b
            end
        end
        px[key] = ms
    end
end

local function find_holder(key, id)
    local h = hold[key]
    if h then
        for i = 1, #h do
            if h[i][1] == id then
                return h, i
            end
        end
    end
    return h, nil
end

-- k = -1: take up to a milli-tokens; k = -2: give a back. Returns the
-- milli-tokens moved.
local function lease_op(k, key, q, p, tu, b, a, held, ttl2, id)
    local v, t = level(key, q, p, tu, b)
    local h, i = find_holder(key, id)
    local moved = 0
    if k == -1 then
        if i == nil and h ~= nil and #h >= MAX_HOLDERS then
            return 0
        end
        moved = floor(v / p)
        if a < moved then
            moved = a
        end
        -- what it says it holds, never more than Redis knows it holds
        local keep = 0
        if i ~= nil then
            keep = h[i][2]
            if held < keep then
                keep = held
            end
        end
        if i == nil then
            if moved <= 0 then
                return 0
            end
            if h == nil then
                h = {}
                hold[key] = h
            end
            i = #h + 1
            h[i] = { id, 0, 0 }
        end
        lsum[key] = lsum[key] - h[i][2] + keep + moved
        h[i][2], h[i][3] = keep + moved, now + ttl2
        v = v - moved * p
    else
        if i == nil then
            return 0
        end
        moved = h[i][2]
        if a < moved then
            moved = a
        end
        lsum[key] = lsum[key] - h[i][2]
        table.remove(h, i)
        if #h == 0 then
            hold[key] = nil
        end
        v = v + moved * p
        local full = (b - lsum[key]) * p
        if v > full then
            v = full
        end
    end
    local m = floor(v / p)
    tok[key], rem[key], stamp[key] = m, v - m * p, t
    return moved
end

-- k = -3: c milli-tokens back to a bucket a split check took them from.
-- Returns the milli-tokens given back (less when the bucket refilled meanwhile).
local function refund(key, q, p, tu, b, c)
    local v, t = level(key, q, p, tu, b)
    local cap = b - lsum[key]
    if cap < 0 then
        cap = 0
    end
    local back = c * p
    if v + back > cap * p then
        back = cap * p - v
    end
    if back <= 0 then
        return 0
    end
    v = v + back
    local m = floor(v / p)
    tok[key], rem[key], stamp[key] = m, v - m * p, t
    return floor(back / p)
end

local ki, ai = 1, 2

-- a check of k buckets, from KEYS[ki] and ARGV[ai] on
local function check(k)
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
        report(bkey[j], bq[j], bp[j], btu[j], bb[j], bc[j], admitted)
    end
end

for _ = 1, arg(1) do
    local k = arg(ai)
    ai = ai + 1
    local nk = k < 0 and 1 or k
    if is_sharded and not all_local(ki, nk) then
        ki = ki + nk
        ai = ai + (k >= 0 and 5 * k or k == -3 and 5 or 9)
        o = o + 1
        out[o] = -9
        for _ = 1, 3 * nk do
            o = o + 1
            out[o] = 0
        end
    elseif k == -3 then
        local key = KEYS[ki]
        local q, p, tu, b, c = arg(ai), arg(ai + 1), arg(ai + 2), arg(ai + 3), arg(ai + 4)
        ki, ai = ki + 1, ai + 5
        local back = refund(key, q, p, tu, b, c)
        o = o + 1
        out[o] = back
        report(key, q, p, tu, b, c, back > 0)
    elseif k < 0 then
        local key = KEYS[ki]
        local q, p, tu, b, c = arg(ai), arg(ai + 1), arg(ai + 2), arg(ai + 3), arg(ai + 4)
        local a, held, ttl2 = arg(ai + 5), arg(ai + 6), arg(ai + 7)
        local id = ARGV[ai + 8]
        ki, ai = ki + 1, ai + 9
        if not string.match(id, '^%x+$') or #id > 32 then
            error('lease: bad holder id')
        end
        local moved = lease_op(k, key, q, p, tu, b, a, held, ttl2, id)
        o = o + 1
        out[o] = moved
        report(key, q, p, tu, b, c, moved > 0 or (k == -1 and find_holder(key, id) ~= nil))
    else
        check(k)
    end
end

for i = 1, #dirty do
    local key = dirty[i]
    local s = string.format('%d %d %d', tok[key], rem[key], stamp[key])
    local h = hold[key]
    if h then
        for j = 1, #h do
            s = s .. string.format(' %s %d %d', h[j][1], h[j][2], h[j][3])
        end
    end
    redis.call('SET', key, s, 'PX', px[key])
end
return out
