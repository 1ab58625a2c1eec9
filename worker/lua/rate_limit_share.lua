-- Update the estimate of what other clients spend of a shared budget, from one HubSpot answer.
-- KEYS[1] log   (zset of our own grants, see rate_limit_acquire.lua)
-- KEYS[2] share (hash: others = the peak estimate, at_ms = when it was seen)
-- ARGV: used_by_all (HubSpot's Max - Remaining), window_ms (HubSpot's interval),
--       sent_ms (the request's grant time, epoch ms; 0 = now), pad_ms (the limiter's pad)
-- Returns the estimate in force as text. Must match others_estimate and our_counted_span in
-- rate_limit.py.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local pad = tonumber(ARGV[4] or '0')
local sent = tonumber(ARGV[3] or '0')
if sent <= 0 or sent > now then sent = now end
-- Our grants HubSpot may have counted: it counted at the request's arrival (between sent and
-- now), and each of ours arrives up to pad after its grant.
local ours = redis.call('ZCOUNT', KEYS[1], '(' .. (sent - window - pad), math.min(sent + pad, now))
local sample = math.max(0, tonumber(ARGV[1]) - ours)
if now - sent > window + pad then
  -- An answer slower than a window: our grants of then may be gone from the log; no sample.
  sample = 0
end
local held = 0
local previous = redis.call('HMGET', KEYS[2], 'others', 'at_ms')
if previous[1] and previous[2] then
  -- held one window, then halved per window
  local fading = math.max(0, now - tonumber(previous[2]) - window)
  held = tonumber(previous[1]) * 0.5 ^ (fading / window)
end
if sample >= held then
  redis.call('HSET', KEYS[2], 'others', sample, 'at_ms', now)
end
-- Forgotten (faded to nothing) after ten windows without an answer.
redis.call('PEXPIRE', KEYS[2], 10 * window)
return string.format('%.4f', math.max(sample, held))
