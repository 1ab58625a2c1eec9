-- Reserve a job atomically: answer the existing job when the same event (or idempotency key)
-- is already queued, retrying or delivered; else record the new job as queued.
-- KEYS: job, dedupe, idempotency ("" when none), unfinished, envelope   ARGV: jobId, now, source,
-- summary,
-- dedupe_ttl_s, job key prefix, envelope JSON, publish grace (s)
-- Returns {jobId, duplicate (0|1), needs_publish (0|1)}. A duplicate needs publishing when its
-- job is queued, was never marked published and is older than the grace period (its producer
-- died between recording and publishing); only one caller per grace period gets that answer.
local existing = redis.call('GET', KEYS[2])
if not existing and KEYS[3] ~= '' then existing = redis.call('GET', KEYS[3]) end
if existing then
  local job_key = ARGV[6] .. existing
  local job = redis.call('HMGET', job_key, 'state', 'published', 'publishClaimAt', 'createdAt')
  if job[1] and job[1] ~= 'dead_lettered' then
    local claimed = tonumber(job[3] or job[4] or '0')
    if job[1] == 'queued' and job[2] ~= '1' and tonumber(ARGV[2]) - claimed > tonumber(ARGV[8]) then
      redis.call('HSET', job_key, 'publishClaimAt', ARGV[2])
      return {existing, 1, 1}
    end
    return {existing, 1, 0}
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[5])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
redis.call('HSET', KEYS[1], 'jobId', ARGV[1], 'state', 'queued', 'attempt', 1, 'attempts', 0,
  'source', ARGV[3], 'summary', ARGV[4], 'createdAt', ARGV[2], 'updatedAt', ARGV[2],
  'dedupeKey', KEYS[2], 'published', 0)
redis.call('SET', KEYS[5], ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return {ARGV[1], 0, 1}
