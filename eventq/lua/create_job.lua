-- Reserve a job atomically: answer the existing job when the same Idempotency-Key names a job
-- that is not dead-lettered, or when the same event's job is live (queued, in progress,
-- retrying) or was delivered within the dedupe window; else record the new job as queued.
-- KEYS: job, dedupe, idempotency ("" when none), unfinished, ledger, envelope (the job
-- envelope's own key, beside the hash: the hash stays a listpack)
-- ARGV: jobId, now, source, summary, dedupe_ttl_s, job key prefix, envelope JSON,
-- publish grace (s), dedupe window (s)
-- Returns {jobId, duplicate (0|1), needs_publish (0|1), existing job's state or '',
-- its updatedAt or ''}. A duplicate needs publishing when its job is queued, was never marked
-- published and is older than the grace period (its producer died between recording and
-- publishing); only one caller per grace period gets that answer.
-- A new job of an event the delivered ledger knows is sent with create-or-update (verify 1):
-- HubSpot may hold the event already, and the ledger no longer answers for it.
local now = tonumber(ARGV[2])

-- the existing job answers when it still counts as the same delivery
local function answer(existing, window_s)
  local job_key = ARGV[6] .. existing
  local job = redis.call('HMGET', job_key, 'state', 'published', 'publishClaimAt', 'createdAt',
    'updatedAt')
  local state, updated = job[1], job[5] or ''
  if not state or state == 'dead_lettered' then return nil end
  if state == 'delivered' and window_s and now - tonumber(updated ~= '' and updated or '0') > window_s then
    return nil
  end
  local claimed = tonumber(job[3] or job[4] or '0')
  if state == 'queued' and job[2] ~= '1' and now - claimed > tonumber(ARGV[8]) then
    redis.call('HSET', job_key, 'publishClaimAt', ARGV[2])
    return {existing, 1, 1, state, updated}
  end
  return {existing, 1, 0, state, updated}
end

-- the same Idempotency-Key answers its job for as long as the key lives
if KEYS[3] ~= '' then
  local by_key = redis.call('GET', KEYS[3])
  if by_key then
    local found = answer(by_key, nil)
    if found then return found end
  end
end
local same_event = redis.call('GET', KEYS[2])
if same_event then
  local found = answer(same_event, tonumber(ARGV[9]))
  if found then return found end
end
local verify = redis.call('DEL', KEYS[5])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[5])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
redis.call('HSET', KEYS[1], 'jobId', ARGV[1], 'state', 'queued', 'attempt', 1, 'attempts', 0,
  'source', ARGV[3], 'summary', ARGV[4], 'createdAt', ARGV[2], 'updatedAt', ARGV[2],
  'dedupeKey', KEYS[2], 'published', 0, 'verify', verify)
redis.call('SET', KEYS[6], ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return {ARGV[1], 0, 1, '', ''}
