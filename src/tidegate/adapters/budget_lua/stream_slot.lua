-- Take, renew or give back one of a tenant's open-stream slots.
-- KEYS: 1 zset (stream id -> expiry ms)
-- ARGV: 1 op ('take' | 'renew' | 'give'), 2 stream id, 3 max open, 4 ttl ms
-- Returns 1 when the stream holds a slot (after take/renew), 0 when refused or given back.
-- A slot not renewed within ttl (its API process died) frees itself.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] == 'give' then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
local exp = now + tonumber(ARGV[4])
if ARGV[1] == 'renew' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[2])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], exp, ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 2)
return 1
