-- Lease up to ARGV[3] due jobs of the retry schedule: their score moves to now + lease, so no
-- other mover takes them, and a mover that dies before confirming leaves them to be taken again.
-- KEYS: schedule   ARGV: now, lease_s, limit, job key prefix
-- Returns {lease_score, id1, envelope1, id2, envelope2, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local lease = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out = {tostring(lease)}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease, id)
  local envelope = redis.call('HGET', ARGV[4] .. id, 'envelope')
  table.insert(out, id)
  table.insert(out, envelope or '')
end
return out
