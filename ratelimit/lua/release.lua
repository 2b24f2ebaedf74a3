-- Release: end a request's concurrency slots.
--
-- KEYS: the in-flight sets (ZSET request id -> end of lease) holding it.
-- ARGV: request id.
for _, k in ipairs(KEYS) do
  redis.call('ZREM', k, ARGV[1])
end
return 0
