-- Reserve a job atomically: answer the existing job when the same event (or idempotency key)
-- is already queued, retrying or delivered; else record the new job as queued.
-- KEYS: job, dedupe, idempotency ("" when none)   ARGV: jobId, now, source, summary,
-- dedupe_ttl_s, job key prefix, envelope JSON
local existing = redis.call('GET', KEYS[2])
if not existing and KEYS[3] ~= '' then existing = redis.call('GET', KEYS[3]) end
if existing then
  local state = redis.call('HGET', ARGV[6] .. existing, 'state')
  if state and state ~= 'dead_lettered' then return {existing, 1} end
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[5])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
redis.call('HSET', KEYS[1], 'jobId', ARGV[1], 'state', 'queued', 'attempt', 1, 'attempts', 0,
  'source', ARGV[3], 'summary', ARGV[4], 'createdAt', ARGV[2], 'updatedAt', ARGV[2],
  'envelope', ARGV[7], 'dedupeKey', KEYS[2])
return {ARGV[1], 0}
