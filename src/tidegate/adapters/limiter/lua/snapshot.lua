-- snapshot: a lane's limits, factor, last-window usage, in-flight and waiters (for /v1/limits).
-- KEYS: 1 h (lane hash)  2 log  3 amt  4 fly  5 res  6 wq  7 wdl  8 wm  9 wx  10 ft
-- ARGV: 1 now_ms ('' = Redis TIME)  2 window_ms  3 waiter_memory_ms
-- Returns: {now_ms, in_flight, waiting_high, waiting_medium, waiting_low, field, value, ...}
--          where field/value are the lane hash after housekeeping
local K = lane_keys()
local now = clock(ARGV[1])
local st = load(K.h)
housekeep(st, K, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
save(st)
local counts = {high = 0, medium = 0, low = 0}
for _, m in ipairs(hmget_all(K.wm, redis.call('ZRANGE', K.wq, 0, -1))) do
  if m then
    local p = string.match(m, '^%S+ (%S+)')
    counts[p] = (counts[p] or 0) + 1
  end
end
local out = {fmt(now), redis.call('ZCARD', K.fly), counts.high, counts.medium, counts.low}
for k, v in pairs(st.v) do
  out[#out + 1] = k
  out[#out + 1] = v
end
return out
