-- Compensate: undo, exactly once, whatever a call that failed for its caller
-- (a timeout, a lost reply) charged, whether its script ran, runs later, or
-- never runs.
--
-- KEYS: the call's record (see lib.lua), then 6 per limit: the requests log,
-- the in-flight set, the lifetime count, the token log, its sum, the budget.
-- ARGV: request id, tokens reserved ('' for an admit), window (µs), how long
-- the tombstone lives (ms).
--
-- The record becomes the tombstone first, so a charge script of the id that
-- runs later charges nothing, and a second compensation does nothing. Entries
-- of the id (request, slot, tokens) are their own record; lifetime counts and
-- budgets are given back as the call's record says.
local id, tokens, win = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rec = KEYS[1]
local state = redis.call('GET', rec)
if state == UNDONE then
  return 0
end
redis.call('SET', rec, UNDONE, 'PX', ARGV[4])

local w = state and words(state) or {}
local life, budget, cost = {}, {}, 0
if w[1] == 'a' then
  for j = 2, #w do
    life[tonumber(w[j])] = true
  end
elseif w[1] == 'r' then
  cost = tonumber(w[3])
  for j = 4, #w do
    budget[tonumber(w[j])] = true
  end
end

local now = now_us()
for i = 1, (#KEYS - 1) / 6 do
  local k = 1 + (i - 1) * 6
  redis.call('ZREM', KEYS[k + 1], id)
  redis.call('ZREM', KEYS[k + 2], id)
  if life[i] and redis.call('EXISTS', KEYS[k + 3]) == 1 then
    redis.call('DECR', KEYS[k + 3])
  end
  if tokens ~= '' then
    -- Expired entries are already out of the sum; a live one comes out now.
    tok_used(KEYS[k + 4], KEYS[k + 5], now - win, win)
    if redis.call('ZREM', KEYS[k + 4], id .. ':' .. tokens) == 1 and redis.call('EXISTS', KEYS[k + 5]) == 1 then
      redis.call('DECRBY', KEYS[k + 5], tokens)
    end
  end
  if budget[i] and cost > 0 and redis.call('HGET', KEYS[k + 6], 'm') == w[2] then
    redis.call('HINCRBY', KEYS[k + 6], 'spent', -cost)
  end
end
return 1
