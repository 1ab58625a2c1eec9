-- Grant (or refuse) one request slot of a sliding-window-log rate limiter, atomically.
-- KEYS[1] log   (zset: member "<ms>-<tag>", score = granted send time, epoch ms, Redis clock)
-- KEYS[2] pause (hash: until_ms, reason)
-- KEYS[3] conf  (hash: req, window_ms; the bucket's configured budget, optional)
-- KEYS[4] obs   (hash: req, window_ms; the budget HubSpot reported, optional)
-- ARGV: default_req, default_window_ms, margin, pad_ms, max_wait_ms, tag, jitter_fraction
-- Returns {granted 0|1, send_at_ms or retry_at_ms, now_ms, reason}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local margin = tonumber(ARGV[3])
local pad = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local jitter_fraction = tonumber(ARGV[7])

-- Each limit becomes {n, w}: n = floor(req * (1 - margin)) grants per w = window + pad ms.
local function limit(req, window_ms)
  -- The epsilon keeps e.g. 100 * (1 - 0.07) from flooring to 92.
  local n = math.floor(tonumber(req) * (1 - margin) + 1e-9)
  if n < 1 then n = 1 end
  return {n, tonumber(window_ms) + pad}
end

local limits = {}
local conf = redis.call('HMGET', KEYS[3], 'req', 'window_ms')
if conf[1] and conf[2] then
  limits[1] = limit(conf[1], conf[2])
else
  limits[1] = limit(ARGV[1], ARGV[2])
end
local obs = redis.call('HMGET', KEYS[4], 'req', 'window_ms')
if obs[1] and obs[2] then
  -- Enforcing both limits makes the budget min(configured, observed).
  limits[2] = limit(obs[1], obs[2])
end

local widest = 0
local slot = nil
for _, l in ipairs(limits) do
  if l[2] > widest then widest = l[2] end
  local s = l[2] / l[1]
  if slot == nil or s < slot then slot = s end
end

-- Bounded jitter so parked jobs do not all come back in the same millisecond; never more than
-- one window, at least one slot's spacing.
local function jittered(at)
  local spread = math.max(slot, 0.25 * (at - now))
  return at + math.floor(jitter_fraction * math.min(widest, spread))
end

local pause = redis.call('HMGET', KEYS[2], 'until_ms', 'reason')
local pause_until = tonumber(pause[1])
if pause_until and pause_until > now then
  return {0, jittered(pause_until), now, 'paused:' .. (pause[2] or '')}
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - widest)
local count = redis.call('ZCARD', KEYS[1])

-- Grants are issued in non-decreasing time order, so every entry is <= T and a window
-- (T - w, T] holds < n entries exactly when the n-th newest entry is <= T - w.
local at = now
if count > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  at = math.max(at, tonumber(last[2]))
end
for _, l in ipairs(limits) do
  if count >= l[1] then
    local e = redis.call('ZRANGE', KEYS[1], count - l[1], count - l[1], 'WITHSCORES')
    at = math.max(at, tonumber(e[2]) + l[2])
  end
end

if at - now > max_wait then
  return {0, jittered(at), now, 'busy'}
end
redis.call('ZADD', KEYS[1], at, at .. '-' .. ARGV[6])
-- The log is useless once its newest entry has left the widest window.
redis.call('PEXPIRE', KEYS[1], at - now + widest + 1000)
return {1, at, now, 'ok'}
