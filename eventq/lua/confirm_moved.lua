-- Drop published jobs from the retry schedule, unless someone re-scheduled one meanwhile, and
-- hand them to the recovery sweep's watch list (their message is now in the queue).
-- KEYS: schedule, unfinished   ARGV: lease_score, now, id...
local removed = 0
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
  end
end
return removed
