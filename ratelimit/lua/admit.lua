-- Admit: check one request against every limit of a call and charge it, all
-- or nothing (a script runs atomically).
--
-- KEYS, 4 per limit: the requests log (ZSET request id -> admitted at), the
-- in-flight set (ZSET request id -> end of lease), the lifetime count
-- (STRING), the budget (HASH m, spent); then the call's record (see lib.lua).
-- ARGV: window (µs), lease (µs), request id, then 7 per limit: requests per
-- minute, max concurrent, max requests, monthly budget (0: unlimited),
-- lifetime seed, budget seed month, budget seed. A seed is '' (unknown),
-- '-' (skip that limit in this call) or a number.
--
-- Every charge is keyed by the id: its entries in the logs and sets, and the
-- record for the lifetime counts. A call already compensated charges nothing;
-- a call already charged (the client resent it on a new connection) is not
-- charged again and answers as admitted.
--
-- Returns
--   {0, month, remaining, reset µs, ...per limit} admitted (remaining -1: no
--       requests-per-minute limit);
--   {1, limit (1-based), kind, retry after µs} refused;
--   {2, limit, kind, month, ...} seeds needed; nothing charged;
--   {3} the call was compensated before it ran; nothing charged.
local now = now_us()
local win, lease, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local month = month_of(now)
local rec = KEYS[#KEYS]
local n = (#KEYS - 1) / 4
local lims, need = {}, {}

local state = redis.call('GET', rec)
if state == UNDONE then
  return {3}
end
local dup = state ~= false

for i = 1, n do
  local k, a = (i - 1) * 4, 3 + (i - 1) * 7
  local l = {
    req = KEYS[k + 1], conc = KEYS[k + 2], life = KEYS[k + 3], budget = KEYS[k + 4],
    rpm = tonumber(ARGV[a + 1]), maxconc = tonumber(ARGV[a + 2]),
    maxreq = tonumber(ARGV[a + 3]), maxspend = tonumber(ARGV[a + 4]),
  }
  if l.maxreq > 0 then
    local v = redis.call('GET', l.life)
    local seed = ARGV[a + 5]
    if v then
      l.count = tonumber(v)
    elseif seed == '' then
      need[#need + 1] = i
      need[#need + 1] = KIND_LIFETIME
      need[#need + 1] = ''
    elseif seed ~= '-' then
      redis.call('SET', l.life, seed, 'PX', LIFE_TTL_MS)
      l.count = tonumber(seed)
    end
  end
  if l.maxspend > 0 then
    l.spent = budget_spent(l.budget, month, ARGV[a + 6], ARGV[a + 7], need, i)
  end
  if l.rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', l.req, '-inf', now - win)
    l.nreq = redis.call('ZCARD', l.req)
    dup = dup or redis.call('ZSCORE', l.req, id) ~= false
  end
  if l.maxconc > 0 then
    redis.call('ZREMRANGEBYSCORE', l.conc, '-inf', now)
    l.nconc = redis.call('ZCARD', l.conc)
    dup = dup or redis.call('ZSCORE', l.conc, id) ~= false
  end
  lims[i] = l
end

if not dup then
  if #need > 0 then
    return {2, unpack(need)}
  end

  -- Refusals, those retrying cannot cure first.
  for i, l in ipairs(lims) do
    if l.count and l.count >= l.maxreq then
      return {1, i, KIND_LIFETIME, 0}
    end
  end
  for i, l in ipairs(lims) do
    if l.spent and l.spent >= l.maxspend then
      return {1, i, KIND_BUDGET, 0}
    end
  end
  for i, l in ipairs(lims) do
    if l.maxconc > 0 and l.nconc >= l.maxconc then
      return {1, i, KIND_CONCURRENCY, 0}
    end
  end
  for i, l in ipairs(lims) do
    if l.rpm > 0 and l.nreq >= l.rpm then
      -- Room for one more once all but rpm-1 entries have left.
      local e = redis.call('ZRANGE', l.req, l.nreq - l.rpm, l.nreq - l.rpm, 'WITHSCORES')
      return {1, i, KIND_REQUESTS, tonumber(e[2]) + win - now}
    end
  end

  local life = {}
  for i, l in ipairs(lims) do
    if l.rpm > 0 then
      redis.call('ZADD', l.req, now, id)
      redis.call('PEXPIRE', l.req, ttl_ms(win))
    end
    if l.maxconc > 0 then
      redis.call('ZADD', l.conc, now + lease, id)
      extend_ttl(l.conc, ttl_ms(lease))
    end
    if l.count then
      redis.call('INCR', l.life)
      redis.call('PEXPIRE', l.life, LIFE_TTL_MS)
      life[#life + 1] = i
    end
  end
  if #life > 0 then
    redis.call('SET', rec, 'a ' .. table.concat(life, ' '), 'PX', RECORD_TTL_MS)
  end
end

local out = {0, month}
for _, l in ipairs(lims) do
  local e = l.rpm > 0 and redis.call('ZRANGE', l.req, 0, 0, 'WITHSCORES') or {}
  if e[2] then
    out[#out + 1] = l.rpm - redis.call('ZCARD', l.req)
    out[#out + 1] = tonumber(e[2]) + win - now
  elseif l.rpm > 0 then
    out[#out + 1] = l.rpm
    out[#out + 1] = 0
  else
    out[#out + 1] = -1
    out[#out + 1] = 0
  end
end
return out
