-- Grant (or refuse) one request slot of a sliding-window-log rate limiter, atomically.
-- KEYS[1] log   (zset: member "<ms>-<tag>", score = granted send time, epoch ms, Redis clock)
-- KEYS[2] pause (hash: until_ms, reason)
-- KEYS[3] conf  (hash: req, window_ms; the bucket's configured budget, optional)
-- KEYS[4] obs   (hash: req, window_ms; the budget HubSpot reported, optional)
-- KEYS[5] share (hash: others, at_ms; what other clients of the budget spend, optional)
-- ARGV: default_req, default_window_ms, margin, pad_ms, max_wait_ms, tag, jitter_fraction,
--       ceiling_req, ceiling_window_ms, share (1 = leave the others' part, 0 = ignore it)
-- Returns {granted 0|1, send_at_ms or retry_at_ms, now_ms, reason[, log member when granted]}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local margin = tonumber(ARGV[3])
local pad = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local jitter_fraction = tonumber(ARGV[7])
local ceiling_req = tonumber(ARGV[8])
local ceiling_window = tonumber(ARGV[9])
local share = ARGV[10] == '1'

-- Must match RateLimiter._granted: n = floor(req * (1 - margin)) grants, at least 1.
local function granted(req)
  -- The epsilon keeps e.g. 100 * (1 - 0.07) from flooring to 92.
  local n = math.floor(tonumber(req) * (1 - margin) + 1e-9)
  if n < 1 then n = 1 end
  return n
end

-- Must match shared_budget in rate_limit.py.
local function shared(req, others)
  if others < 1 then return req end
  local headroom = math.max(1, math.ceil(others * 0.1))
  return math.max(1, req - math.ceil(others) - headroom)
end

-- Each limit is {n, w}: n grants per w ms (window + pad).
local limits = {}
local obs = redis.call('HMGET', KEYS[4], 'req', 'window_ms')
if obs[1] and obs[2] then
  -- HubSpot's figure is the account's budget: rise to it (or fall), up to the ceiling.
  local window = tonumber(obs[2])
  local ceiling = math.max(1, math.floor(ceiling_req * window / ceiling_window + 1e-9))
  local req = math.min(tonumber(obs[1]), ceiling)
  if share then
    local sh = redis.call('HMGET', KEYS[5], 'others', 'at_ms')
    if sh[1] and sh[2] then
      -- Must match held_estimate in rate_limit.py: held one window, then halved per window.
      local fading = math.max(0, now - tonumber(sh[2]) - window)
      req = shared(req, tonumber(sh[1]) * 0.5 ^ (fading / window))
    end
  end
  limits[1] = {granted(req), window + pad}
else
  local conf = redis.call('HMGET', KEYS[3], 'req', 'window_ms')
  local req, window = ARGV[1], ARGV[2]
  if conf[1] and conf[2] then
    req, window = conf[1], conf[2]
  end
  limits[1] = {granted(req), tonumber(window) + pad}
  if share then
    -- Until HubSpot's headers are seen, a tenth of the budget per tenth of the window: a cold
    -- bucket's first burst would take the part other clients of the same app spend.
    limits[2] = {math.max(1, math.ceil(limits[1][1] / 10)), math.max(1, math.floor(window / 10))}
  end
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

-- Kept two windows: the share estimate counts our grants as of a request's send time, which may
-- be up to a window + pad before now (rate_limit_share.lua). The n-th newest is unchanged.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 2 * widest)
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
local member = string.format('%d', at) .. '-' .. ARGV[6]
redis.call('ZADD', KEYS[1], at, member)
-- The log is useless once its newest entry has left the widest window twice (the share
-- estimate looks back up to a window + pad from a send).
redis.call('PEXPIRE', KEYS[1], at - now + 2 * widest + 1000)
return {1, at, now, 'ok', member}
