-- Renew: extend a request's concurrency slots to a full lease from now.
--
-- KEYS: the in-flight sets (ZSET request id -> end of lease) holding it.
-- ARGV: request id, lease (µs).
--
-- A slot whose lease already ended (or that was released or compensated) is
-- not taken again: another request may hold it. Returns the number of such
-- slots (0: all renewed).
local now = now_us()
local id, lease = ARGV[1], tonumber(ARGV[2])
local lost = 0
for _, k in ipairs(KEYS) do
  local s = redis.call('ZSCORE', k, id)
  if s and tonumber(s) > now then
    redis.call('ZADD', k, now + lease, id)
    extend_ttl(k, ttl_ms(lease))
  else
    if s then
      redis.call('ZREM', k, id)
    end
    lost = lost + 1
  end
end
return lost
