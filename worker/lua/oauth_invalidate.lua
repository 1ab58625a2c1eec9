-- Forget a cached access token after HubSpot said it expired, but only if it is still the
-- cached one: a token another worker already replaced must not be thrown away.
-- KEYS[1] token (hash: token, fp, lifetime_ms; expires with the token)
-- ARGV[1] fingerprint of the token HubSpot refused
-- ARGV[2] minimum age in ms: a younger token reported expired means clocks disagree, and
--         refreshing again would loop
-- Returns 'gone' (nothing cached), 'newer' (a different token is cached), 'too_new' or
-- 'invalidated'.

local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  return 'gone'
end
if fp ~= ARGV[1] then
  return 'newer'
end
local lifetime = tonumber(redis.call('HGET', KEYS[1], 'lifetime_ms') or '0') or 0
local left = redis.call('PTTL', KEYS[1])
if left > 0 and lifetime - left < tonumber(ARGV[2]) then
  return 'too_new'
end
redis.call('DEL', KEYS[1])
return 'invalidated'
