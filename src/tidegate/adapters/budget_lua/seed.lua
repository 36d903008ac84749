-- Rebuild a period's used totals from the database, unless another worker did already.
-- KEYS: 1 used hash
-- ARGV: 1 tok, 2 nano, 3 ttl s
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'tok', ARGV[1], 'nano', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
