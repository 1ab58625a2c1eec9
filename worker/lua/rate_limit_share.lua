-- Update the estimate of what other clients spend of a shared budget, from one HubSpot answer.
-- KEYS[1] log   (zset of our own grants, see rate_limit_acquire.lua)
-- KEYS[2] share (hash: others, at_ms)
-- ARGV: used_by_all (HubSpot's Max - Remaining), window_ms (HubSpot's interval)
-- Returns the new estimate as text. Must match others_estimate in rate_limit.py.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local ours = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), now)
local estimate = math.max(0, tonumber(ARGV[1]) - ours)
local previous = redis.call('HMGET', KEYS[2], 'others', 'at_ms')
if previous[1] and previous[2] then
  local age = math.max(0, now - tonumber(previous[2]))
  estimate = math.max(estimate, tonumber(previous[1]) * 0.5 ^ (age / window))
end
local text = string.format('%.4f', estimate)
redis.call('HSET', KEYS[2], 'others', text, 'at_ms', now)
-- Forgotten (decayed to nothing) after ten windows without an answer.
redis.call('PEXPIRE', KEYS[2], 10 * window)
return text
