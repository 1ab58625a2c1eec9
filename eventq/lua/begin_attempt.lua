-- Claim one attempt of a job for this worker, or say why not.
-- KEYS: job, lock, unfinished, ledger, envelope   ARGV: jobId, attempt, now, lock_ttl_ms, source, summary,
-- envelope JSON ('' when the job is known to be recorded: a pack's reference)
-- Returns {status, verify, attempts, ledger value or ''}: status is ok | done | stale | locked
-- (the ledger value is the objectId, or '-' for an event delivered without one).
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- a reference to a job whose record is gone (purged, expired): nothing to run
  if ARGV[7] == '' then return {'stale', 0, 0, ''} end
  -- a raw Celery message nobody registered: adopt it
  redis.call('HSET', KEYS[1], 'jobId', ARGV[1], 'state', 'queued', 'attempt', ARGV[2],
    'attempts', 0, 'source', ARGV[5], 'summary', ARGV[6], 'createdAt', ARGV[3],
    'updatedAt', ARGV[3])
  redis.call('SET', KEYS[5], ARGV[7])
end
local job = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'attempts', 'verify')
local state, attempts = job[1], tonumber(job[3] or '0')
if state == 'delivered' or state == 'dead_lettered' then return {'done', 0, attempts, ''} end
if tonumber(job[2]) ~= tonumber(ARGV[2]) then return {'stale', 0, attempts, ''} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then
  return {'locked', 0, attempts, ''}
end
-- in_progress here means a worker died mid-attempt: the request may have reached HubSpot
local verify = 0
if state == 'in_progress' or job[4] == '1' then verify = 1 end
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'updatedAt', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return {'ok', verify, attempts, redis.call('GET', KEYS[4]) or ''}
