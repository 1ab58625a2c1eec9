-- Lease up to ARGV[3] due jobs of the retry schedule: their score moves to the lease time, so
-- no other mover takes them, and a mover that dies before confirming leaves them to be taken
-- again when the lease runs out.
-- KEYS: schedule   ARGV: now, lease score (decimal text, reused verbatim by confirm), limit,
-- job key prefix, envelope key suffix (the envelope of job ID is ARGV[4] .. ID .. ARGV[5])
-- Returns {id1, envelope1, id2, envelope2, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  local envelope = redis.call('GET', ARGV[4] .. id .. ARGV[5])
  table.insert(out, id)
  table.insert(out, envelope or '')
end
return out
