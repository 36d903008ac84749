-- settle / release: replace a reservation's estimate by real usage and free its slot.
-- KEYS: 1 h (lane hash)  2 log  3 amt  4 fly  5 res  6 wq  7 wdl  8 wm  9 wx  10 ft
-- ARGV: 1 now_ms ('' = Redis TIME)  2 reservation_id  3 input_tokens  4 output_tokens
--       5 success (1 = settle: may raise the rate factor; 0 = release)  6 window_ms
--       7 burst_ms  8 waiter_memory_ms  9 increase
-- Returns: 1 if the reservation was open, 0 if unknown, expired or already settled.
local K = lane_keys()
local now = clock(ARGV[1])
local rid = ARGV[2]
local uin, uout = tonumber(ARGV[3]), tonumber(ARGV[4])
local window_ms, burst_ms, memory_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])

local st = load(K.h)
housekeep(st, K, now, window_ms, memory_ms)
local rec = redis.call('HGET', K.res, rid)
if not rec then
  save(st)
  return 0
end
local _, ein, eout = string.match(rec, '^(%S+) (%S+) (%S+)$')
local levels = refill(st, now, window_ms, burst_ms)
local din, dout = uin - tonumber(ein), uout - tonumber(eout)
if redis.call('ZSCORE', K.log, rid) then -- still inside the window: correct what it counts
  -- (and keep what it was charged at grant, for observe)
  redis.call('HSET', K.amt, rid, ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ein .. ' ' .. eout)
  put(st, 'w:inp', num(st, 'w:inp', 0) + din)
  put(st, 'w:out', num(st, 'w:out', 0) + dout)
end
for _, pair in ipairs({{'inp', din}, {'out', dout}, {'tot', din + dout}}) do
  local b = levels[pair[1]]
  if b then put(st, 'p:' .. pair[1], math.min(b[2], b[1] - pair[2])) end
end
redis.call('ZREM', K.fly, rid)
redis.call('HDEL', K.res, rid)
-- The last two calls to end (observe: the one before its own)
put(st, 'd2', num(st, 'd1', -1))
put(st, 'd1', now)
local f = num(st, 'f', 1)
if ARGV[5] == '1' and f < 1 and now - num(st, 'rec', 0) >= window_ms then
  put(st, 'f', round_factor(math.min(1, f + tonumber(ARGV[9]))))
  put(st, 'rec', now)
end
save(st)
return 1
