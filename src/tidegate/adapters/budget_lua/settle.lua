-- Replace a reservation by the call's actual usage (or, with tok = nano = 0, refund it).
-- KEYS: per period i: 2i-1 = used hash, 2i = reservations hash
-- ARGV: 1 rid, 2 tok, 3 nano
-- A used hash that is missing (Redis lost it) is left missing: the next reserve rebuilds it
-- from the database, which holds this usage too.
for i = 1, #KEYS / 2 do
  redis.call('HDEL', KEYS[2 * i], ARGV[1])
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    redis.call('HINCRBY', KEYS[2 * i - 1], 'tok', ARGV[2])
    redis.call('HINCRBY', KEYS[2 * i - 1], 'nano', ARGV[3])
  end
end
return 1
