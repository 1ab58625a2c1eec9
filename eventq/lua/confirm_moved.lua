-- Drop published jobs from the retry schedule, unless someone re-scheduled one meanwhile.
-- KEYS: schedule   ARGV: lease_score, id...
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
