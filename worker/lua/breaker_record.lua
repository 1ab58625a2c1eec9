-- Record the outcome of a request to one HubSpot base URL and move the breaker's state.
-- KEYS[1] breaker (hash: state, failures, open_until_ms, probe_until_ms; missing = closed)
-- ARGV: outcome ("success" | "failure"), failures_to_open, cooldown_ms, key_ttl_ms
-- Returns {state after, transitioned 0|1, failures, open_until_ms}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stored = redis.call('HGET', KEYS[1], 'state')
local state = stored or 'closed'

if ARGV[1] == 'success' then
  if state == 'open' then
    -- A straggler sent before the breaker opened proves little; only a probe may close it.
    return {'open', 0, 0, 0}
  end
  -- Closed with no failures is the same as no key at all.
  if stored then
    redis.call('DEL', KEYS[1])
  end
  if state == 'half_open' then
    return {'closed', 1, 0, 0}
  end
  return {'closed', 0, 0, 0}
end

local function open()
  local open_until = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until_ms', open_until, 'failures', 0)
  redis.call('HDEL', KEYS[1], 'probe_until_ms')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'open', 1, 0, open_until}
end

if state == 'half_open' then
  return open()
end
if state == 'open' then
  -- Failures of requests sent before the breaker opened must not extend the cooldown.
  return {'open', 0, 0, 0}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[2]) then
  local r = open()
  r[3] = failures
  return r
end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'closed', 0, failures, 0}
