-- Shared by every script (prepended to each). All times are Unix
-- microseconds from Redis's own clock, never a client's: replicas with
-- skewed clocks still share one timeline.

-- Kind codes, as in redis.go.
local KIND_REQUESTS, KIND_TOKENS, KIND_CONCURRENCY, KIND_BUDGET, KIND_LIFETIME = 1, 2, 3, 4, 5

-- A budget hash lives this long after its last write; a lifetime count after
-- its last request. Either is seeded again from the store when missing.
local BUDGET_TTL_MS = 40 * 24 * 3600 * 1000
local LIFE_TTL_MS = 30 * 24 * 3600 * 1000

-- A call's record (<prefix>{<group>}:call:<id>, a STRING) says what a call
-- charged that leaves no entry of its own id behind, so that compensate.lua
-- can undo exactly that:
--   'a i j ...'           admit: the lifetime counts of limits i, j, ... (1-based)
--   'r month cost i j ...' reserve: cost micro-USD on the budgets of limits i, j, ...
-- It lives RECORD_TTL_MS (as redis.go's recordTTL): a compensation that
-- comes later leaves those counts charged. Once compensated, the record is
-- the tombstone UNDONE (for redis.go's tombstoneTTL), and a charge script of
-- the same id that arrives late charges nothing.
local RECORD_TTL_MS = 5 * 60 * 1000
local UNDONE = 'undone'

-- words splits a record into its fields.
local function words(s)
  local w = {}
  for f in string.gmatch(s, '%S+') do
    w[#w + 1] = f
  end
  return w
end

-- extend_ttl makes key live at least ms more, never shortening its TTL:
-- another replica may have set a longer one for its leases.
local function extend_ttl(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- month_of returns the UTC calendar month of a time as 'YYYY-MM' (Howard
-- Hinnant's civil_from_days; Redis's Lua has no os.date).
local function month_of(us)
  local z = math.floor(us / 86400000000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d', y, m)
end

-- ttl_ms is how long a window's keys live after a write: the window plus a
-- second.
local function ttl_ms(win)
  return math.ceil(win / 1000) + 1000
end

-- budget_spent returns the micro-USD spent this month according to the
-- budget hash (fields m: month, spent). A hash of another month, or none, is
-- seeded from the call's seed: '' asks for one (appended to need as limit
-- index, kind, month; returns nil), '-' skips the budget for this call
-- (returns nil), a number is used if its month (seed_month; '*' for any) is
-- this one.
local function budget_spent(key, month, seed_month, seed, need, i)
  local h = redis.call('HMGET', key, 'm', 'spent')
  if h[1] == month then
    return tonumber(h[2])
  end
  if seed == '-' then
    return nil
  end
  if seed == '' or (seed_month ~= '*' and seed_month ~= month) then
    need[#need + 1] = i
    need[#need + 1] = KIND_BUDGET
    need[#need + 1] = month
    return nil
  end
  redis.call('HSET', key, 'm', month, 'spent', seed)
  redis.call('PEXPIRE', key, BUDGET_TTL_MS)
  return tonumber(seed)
end

-- A token-log member is 'id:tokens'.
local function entry_tokens(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

-- tok_used drops the reservations that have left the window (reserved at or
-- before cutoff) and returns the tokens of those left. The sum is kept in its
-- own key so a call costs O(expired), not O(window); if that key is missing
-- it is rebuilt from the log.
local function tok_used(log, sum, cutoff, win)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  end
  local s = redis.call('GET', sum)
  if s then
    local gone = 0
    for _, m in ipairs(old) do
      gone = gone + entry_tokens(m)
    end
    if gone > 0 then
      return redis.call('DECRBY', sum, gone)
    end
    return tonumber(s)
  end
  local total = 0
  for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
    total = total + entry_tokens(m)
  end
  if total > 0 then
    redis.call('SET', sum, total, 'PX', ttl_ms(win))
  end
  return total
end

