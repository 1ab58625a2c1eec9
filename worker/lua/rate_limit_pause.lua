-- Pause a rate-limit bucket until max(until_ms, now + for_ms); never shortens a longer pause.
-- KEYS[1] pause (hash: until_ms, reason)
-- ARGV: until_ms (epoch ms, 0 = none), for_ms (from Redis now, 0 = none), reason
-- Returns {changed 0|1, until_ms in force}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wanted = math.max(tonumber(ARGV[1]), now + tonumber(ARGV[2]))
local current = tonumber(redis.call('HGET', KEYS[1], 'until_ms'))
if (current and current >= wanted) or wanted <= now then
  return {0, current or 0}
end
redis.call('HSET', KEYS[1], 'until_ms', wanted, 'reason', ARGV[3])
-- The key disappears by itself when the pause ends.
redis.call('PEXPIREAT', KEYS[1], wanted)
return {1, wanted}
