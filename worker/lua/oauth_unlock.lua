-- Release an access-token refresh lock, but only if the caller still holds it.
-- KEYS[1] lock (string: holder id, set with SET NX PX)
-- ARGV[1] the caller's holder id
-- Returns 1 when released, 0 when the lock had expired or passed to someone else.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
