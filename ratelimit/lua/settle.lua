-- Settle: replace a reservation with what the request used.
--
-- KEYS, 3 per limit: the token log, its sum, the budget (as in reserve.lua).
-- ARGV: request id, reserved tokens, used tokens, month of the reservation,
-- cost difference (used - reserved, micro-USD), window (µs), then 2 per
-- limit: settle tokens (1/0), settle budget (1/0).
local now = now_us()
local id, reserved, used, month, dcost, win = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local delta = tonumber(used) - tonumber(reserved)

for i = 1, #KEYS / 3 do
  local k, a = (i - 1) * 3, 6 + (i - 1) * 2
  if ARGV[a + 1] == '1' then
    local log, sum = KEYS[k + 1], KEYS[k + 2]
    tok_used(log, sum, now - win, win)
    local old = id .. ':' .. reserved
    local at = redis.call('ZSCORE', log, old)
    if at then
      -- Same timestamp, new amount.
      redis.call('ZREM', log, old)
      redis.call('ZADD', log, at, id .. ':' .. used)
      if redis.call('EXISTS', sum) == 1 then
        redis.call('INCRBY', sum, delta)
      end
    elseif delta > 0 then
      -- The reservation has left the window: charge the overage now.
      redis.call('ZADD', log, now, id .. ':' .. string.format('%d', delta))
      redis.call('PEXPIRE', log, ttl_ms(win))
      if redis.call('EXISTS', sum) == 1 then
        redis.call('INCRBY', sum, delta)
        redis.call('PEXPIRE', sum, ttl_ms(win))
      end
    end
  end
  if ARGV[a + 2] == '1' and redis.call('HGET', KEYS[k + 3], 'm') == month then
    redis.call('HINCRBY', KEYS[k + 3], 'spent', dcost)
  end
end
return 0
