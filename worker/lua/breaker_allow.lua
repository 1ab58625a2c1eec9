-- Decide whether a request to one HubSpot base URL may go, atomically across all workers.
-- KEYS[1] breaker (hash: state, failures, open_until_ms, probe_until_ms; missing = closed)
-- ARGV: probe_ttl_ms, key_ttl_ms
-- Returns {allowed 0|1, state, retry_at_ms, probe 0|1, transitioned 0|1, now_ms, failures}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until_ms', 'probe_until_ms', 'failures')
local state = h[1] or 'closed'

if state == 'closed' then
  return {1, 'closed', now, 0, 0, now, tonumber(h[4]) or 0}
end

local function grant_probe(transitioned)
  -- The probe permission expires so a probe whose holder died does not wedge the breaker.
  local probe_until = now + tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until_ms', probe_until)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, 'half_open', now, 1, transitioned, now, 0}
end

if state == 'open' then
  local open_until = tonumber(h[2]) or 0
  if now < open_until then
    return {0, 'open', open_until, 0, 0, now, 0}
  end
  return grant_probe(1)
end

-- half_open: someone holds the probe until probe_until_ms.
local probe_until = tonumber(h[3]) or 0
if now < probe_until then
  return {0, 'half_open', probe_until, 0, 0, now, 0}
end
return grant_probe(0)
