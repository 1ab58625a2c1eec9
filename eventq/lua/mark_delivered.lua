-- End a job as delivered, atomically, in one command (a worker's hot path: one reply to read
-- instead of a MULTI/EXEC block): remember the event in the delivered ledger, record the
-- outcome and the attempt, let the record expire, drop its lock and its envelope, count the
-- outcome in its minute (the admin overview) and append it to the outcome stream.
-- KEYS: ledger, job, history, counters, unfinished, lock, envelope, activity minute, outcomes
-- ARGV: ledger value, ledger ttl (s), attempts, now, objectId ('' when none), attempt record
-- JSON, job ttl (s), jobId, activity ttl (s), stream max length, then the stream entry's
-- field/value pairs
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HDEL', KEYS[2], 'nextAttemptAt', 'objectId', 'lastError')
redis.call('HSET', KEYS[2], 'state', 'delivered', 'attempts', ARGV[3], 'updatedAt', ARGV[4],
  'verify', 0)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'objectId', ARGV[5]) end
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('HINCRBY', KEYS[4], 'delivered', 1)
redis.call('ZREM', KEYS[5], ARGV[8])
redis.call('DEL', KEYS[6], KEYS[7])
redis.call('HINCRBY', KEYS[8], 'delivered', 1)
redis.call('EXPIRE', KEYS[8], ARGV[9])
redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[10], '*', unpack(ARGV, 11))
return 1
