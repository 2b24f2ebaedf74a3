-- Reserve: charge a request's estimated tokens and cost against every limit
-- of a call, all or nothing.
--
-- KEYS, 3 per limit: the token log (ZSET 'id:tokens' -> reserved at), its
-- sum (STRING), the budget (HASH m, spent); then the call's record (see
-- lib.lua).
-- ARGV: window (µs), request id, tokens, cost (micro-USD), then 4 per limit:
-- tokens per minute, monthly budget (0: unlimited), budget seed month,
-- budget seed (as in admit.lua).
--
-- Every charge is keyed by the id: its token entries, and the record for the
-- budgets. As in admit.lua, a compensated call charges nothing and a call
-- already charged is not charged again.
--
-- Returns
--   {0, month, remaining, reset µs, budget charged (0/1), ...per limit}
--       reserved (remaining -1: no tokens-per-minute limit);
--   {1, limit (1-based), kind, retry after µs} refused;
--   {2, limit, kind, month, ...} seeds needed; nothing charged;
--   {3} the call was compensated before it ran; nothing charged.
local now = now_us()
local win, id, tokens, cost = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local member = id .. ':' .. ARGV[3]
local month = month_of(now)
local rec = KEYS[#KEYS]
local n = (#KEYS - 1) / 3
local lims, need = {}, {}

local state = redis.call('GET', rec)
if state == UNDONE then
  return {3}
end
-- charged[i]: limit i's budget holds this call's cost.
local dup, charged = state ~= false, {}
local w = dup and words(state) or {}
if w[1] == 'r' then
  month = w[2]
  for j = 4, #w do
    charged[tonumber(w[j])] = true
  end
end

for i = 1, n do
  local k, a = (i - 1) * 3, 4 + (i - 1) * 4
  local l = {
    log = KEYS[k + 1], sum = KEYS[k + 2], budget = KEYS[k + 3],
    tpm = tonumber(ARGV[a + 1]), maxspend = tonumber(ARGV[a + 2]),
  }
  if l.maxspend > 0 and not dup then
    l.spent = budget_spent(l.budget, month, ARGV[a + 3], ARGV[a + 4], need, i)
  end
  if l.tpm > 0 then
    l.used = tok_used(l.log, l.sum, now - win, win)
    dup = dup or redis.call('ZSCORE', l.log, member) ~= false
  end
  lims[i] = l
end

if not dup then
  if #need > 0 then
    return {2, unpack(need)}
  end

  for i, l in ipairs(lims) do
    if l.spent and l.spent + cost > l.maxspend then
      return {1, i, KIND_BUDGET, 0}
    end
  end
  for i, l in ipairs(lims) do
    if l.tpm > 0 and l.used + tokens > l.tpm then
      -- Room once enough of the oldest reservations have left.
      local e = redis.call('ZRANGE', l.log, 0, -1, 'WITHSCORES')
      local freed = 0
      for j = 1, #e, 2 do
        freed = freed + entry_tokens(e[j])
        if l.used - freed + tokens <= l.tpm then
          return {1, i, KIND_TOKENS, tonumber(e[j + 1]) + win - now}
        end
      end
      return {1, i, KIND_TOKENS, win}
    end
  end

  local budgets = {}
  for i, l in ipairs(lims) do
    if l.tpm > 0 then
      redis.call('ZADD', l.log, now, member)
      redis.call('PEXPIRE', l.log, ttl_ms(win))
      l.used = redis.call('INCRBY', l.sum, ARGV[3])
      redis.call('PEXPIRE', l.sum, ttl_ms(win))
    end
    if l.spent then
      redis.call('HINCRBY', l.budget, 'spent', ARGV[4])
      redis.call('PEXPIRE', l.budget, BUDGET_TTL_MS)
      charged[i] = true
      budgets[#budgets + 1] = i
    end
  end
  if #budgets > 0 then
    redis.call('SET', rec, 'r ' .. month .. ' ' .. ARGV[4] .. ' ' .. table.concat(budgets, ' '), 'PX', RECORD_TTL_MS)
  end
end

local out = {0, month}
for i, l in ipairs(lims) do
  local e = l.tpm > 0 and redis.call('ZRANGE', l.log, 0, 0, 'WITHSCORES') or {}
  if e[2] then
    out[#out + 1] = l.tpm - l.used
    out[#out + 1] = tonumber(e[2]) + win - now
  elseif l.tpm > 0 then
    out[#out + 1] = l.tpm - l.used
    out[#out + 1] = 0
  else
    out[#out + 1] = -1
    out[#out + 1] = 0
  end
  out[#out + 1] = charged[i] and 1 or 0
end
return out
