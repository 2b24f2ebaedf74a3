-- Reserve: charge a request's estimated tokens and cost against every limit
-- of a call, all or nothing.
--
-- KEYS, 3 per limit: the token log (ZSET 'id:tokens' -> reserved at), its
-- sum (STRING), the budget (HASH m, spent).
-- ARGV: window (µs), request id, tokens, cost (micro-USD), then 4 per limit:
-- tokens per minute, monthly budget (0: unlimited), budget seed month,
-- budget seed (as in admit.lua).
--
-- Returns
--   {0, month, remaining, reset µs, budget charged (0/1), ...per limit}
--       reserved (remaining -1: no tokens-per-minute limit);
--   {1, limit (1-based), kind, retry after µs} refused;
--   {2, limit, kind, month, ...} seeds needed; nothing charged.
local now = now_us()
local win, id, tokens, cost = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local month = month_of(now)
local n = #KEYS / 3
local lims, need = {}, {}

for i = 1, n do
  local k, a = (i - 1) * 3, 4 + (i - 1) * 4
  local l = {
    log = KEYS[k + 1], sum = KEYS[k + 2], budget = KEYS[k + 3],
    tpm = tonumber(ARGV[a + 1]), maxspend = tonumber(ARGV[a + 2]),
  }
  if l.maxspend > 0 then
    l.spent = budget_spent(l.budget, month, ARGV[a + 3], ARGV[a + 4], need, i)
  end
  if l.tpm > 0 then
    l.used = tok_used(l.log, l.sum, now - win, win)
  end
  lims[i] = l
end
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

local out = {0, month}
for _, l in ipairs(lims) do
  if l.tpm > 0 then
    redis.call('ZADD', l.log, now, id .. ':' .. ARGV[3])
    redis.call('PEXPIRE', l.log, ttl_ms(win))
    local used = redis.call('INCRBY', l.sum, ARGV[3])
    redis.call('PEXPIRE', l.sum, ttl_ms(win))
    local e = redis.call('ZRANGE', l.log, 0, 0, 'WITHSCORES')
    out[#out + 1] = l.tpm - used
    out[#out + 1] = tonumber(e[2]) + win - now
  else
    out[#out + 1] = -1
    out[#out + 1] = 0
  end
  if l.spent then
    redis.call('HINCRBY', l.budget, 'spent', ARGV[4])
    redis.call('PEXPIRE', l.budget, BUDGET_TTL_MS)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
