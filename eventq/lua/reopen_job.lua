-- Reopen a dead-lettered job for replay, atomically (the twin of create_job.lua): answer the
-- other job when another live job (queued, retrying or delivered) already has the same event;
-- else make this job queued again with its new envelope, checked against HubSpot first.
-- KEYS: job, dedupe, unfinished, history, envelope   ARGV: jobId, now, summary, dedupe_ttl_s,
-- job key prefix, envelope JSON, attempt, history record JSON
-- Returns the other job's id, or false when this job was reopened.
local other = redis.call('GET', KEYS[2])
if other and other ~= ARGV[1] then
  local state = redis.call('HGET', ARGV[5] .. other, 'state')
  if state and state ~= 'dead_lettered' then return other end
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
redis.call('HSET', KEYS[1], 'jobId', ARGV[1], 'state', 'queued', 'attempt', ARGV[7],
  'attempts', 0, 'verify', 1, 'source', 'replay', 'summary', ARGV[3],
  'updatedAt', ARGV[2], 'dedupeKey', KEYS[2])
redis.call('SET', KEYS[5], ARGV[6])
redis.call('HSETNX', KEYS[1], 'createdAt', ARGV[2])
redis.call('HDEL', KEYS[1], 'deadLetterId', 'lastError')
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[8])
return false
