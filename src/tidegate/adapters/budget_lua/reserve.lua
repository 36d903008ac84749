-- Reserve a call's estimate against every limited budget period of one tenant, or refuse.
-- KEYS: per period i (1..n): 2i-1 = used hash (fields tok, nano), 2i = reservations hash
--       (rid -> "tok nano expiry_ms")
-- ARGV: 1 now_ms, 2 rid, 3 tok, 4 nano, 5 expiry_ms, 6 mode ('reserve' | 'peek'),
--       then per period i: 6+3i-2 limit_tok (-1: none), 6+3i-1 limit_nano (-1: none),
--       6+3i key ttl s
-- Returns {status, left_tok_1, left_nano_1, ...}: status 1 granted (or peek), 0 refused
-- (nothing written), -1 a used hash is missing (the caller seeds it from the database and
-- asks again; its index is the second element). 'x' stands for "no limit".
local now = tonumber(ARGV[1])
local tok = tonumber(ARGV[3])
local nano = tonumber(ARGV[4])
local n = #KEYS / 2
local out = {1}
local fits = true

-- One dimension of one period: record what is left, and whether ``want`` fits in it.
local function check(limit, spent, want)
  if limit < 0 then
    out[#out + 1] = 'x'
    return
  end
  local left = limit - spent
  if want > left or (ARGV[6] == 'reserve' and left <= 0) then fits = false end
  out[#out + 1] = string.format('%d', left) -- tostring() would write 1e+15
end

for i = 1, n do
  local used_key, res_key = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('EXISTS', used_key) == 0 then return {-1, i} end
  local res_tok, res_nano = 0, 0
  local all = redis.call('HGETALL', res_key)
  for j = 1, #all, 2 do
    local t, c, exp = string.match(all[j + 1], '(%S+) (%S+) (%S+)')
    if tonumber(exp) < now then
      redis.call('HDEL', res_key, all[j]) -- a worker that died mid-call: its hold ends
    else
      res_tok = res_tok + tonumber(t)
      res_nano = res_nano + tonumber(c)
    end
  end
  local used_tok = tonumber(redis.call('HGET', used_key, 'tok') or '0')
  local used_nano = tonumber(redis.call('HGET', used_key, 'nano') or '0')
  check(tonumber(ARGV[6 + 3 * i - 2]), used_tok + res_tok, tok)
  check(tonumber(ARGV[6 + 3 * i - 1]), used_nano + res_nano, nano)
end
if ARGV[6] ~= 'reserve' then return out end
if not fits then
  out[1] = 0
  return out
end
for i = 1, n do
  redis.call('HSET', KEYS[2 * i], ARGV[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
  redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[6 + 3 * i]))
end
return out
