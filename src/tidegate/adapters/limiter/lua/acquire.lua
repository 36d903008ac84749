-- acquire: check and reserve every quota of one lane for one call, atomically.
-- KEYS: 1 h (lane hash)  2 log  3 amt  4 fly  5 res  6 wq  7 wdl  8 wm  9 wx  10 ft
-- ARGV: 1 now_ms ('' = Redis TIME)  2 reservation_id  3 holder  4 priority (high|medium|low)
--       5 input_tokens  6 output_tokens  7 ttl_ms  8 window_ms  9 burst_ms  10 aging_ms
--       11 waiter_grace_ms  12 waiter_memory_ms  13 concurrency_poll_ms
--       14 sliding window ('1' = hold every quota in any window too, '0' = pacer only)
--       15 rpm  16 input_tpm  17 output_tpm  18 tpm  19 concurrency: the caller's configured
--       limits ('' = not configured)  20 their stamp ('' = none sent: 15-19 are ignored)
--       21 tenant  22 its weight (fair shares, see tidegate.core.limits)
--       23 priority_reserve_ms (quota a call below high leaves while high ones use the lane)
--       24 priority_memory_ms (how long after the last high call the reserve is kept)
-- Returns: {granted 1|0, reservation_id or '', wait_ms, reason, re-seeded 1|0}
local K = lane_keys()
local now = clock(ARGV[1])
local rid, holder, prio = ARGV[2], ARGV[3], ARGV[4]
local cin, cout, ttl_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window_ms, burst_ms, aging_ms = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local grace_ms, memory_ms, poll_ms = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local sliding = ARGV[14] ~= '0'
local HANDICAP = {high = 0, medium = 1, low = 2}
local weight = tonumber(ARGV[22])
local handicap = HANDICAP[prio] * aging_ms
local flow = prio .. ':' .. ARGV[21]

local st = load(K.h)
-- The caller's limits win when the lane holds others, or lost them with everything else; then
-- no second burst either (see "Lost state" in tidegate.core.limits).
local reseeded = 0
if ARGV[20] ~= '' and st.v['cfg'] ~= ARGV[20] then
  local lost = st.v['cfg'] == nil
  set_configured(st, now, window_ms, burst_ms, {ARGV[15], ARGV[16], ARGV[17], ARGV[18],
                                                ARGV[19]}, ARGV[20])
  if lost then
    for _, d in ipairs(DIMS) do
      local lvl = num(st, 'p:' .. d[1], nil)
      if lvl then put(st, 'p:' .. d[1], math.min(lvl, 0)) end
    end
  end
  reseeded = 1
end
housekeep(st, K, now, window_ms, memory_ms)
local levels = refill(st, now, window_ms, burst_ms)
local f = num(st, 'f', 1)
if prio == 'high' then put(st, 'hi', now) end
-- Below high, a call leaves the reserve in each pacer while high ones use the lane.
local reserve_ms = 0
local hi = num(st, 'hi', nil)
if prio ~= 'high' and hi and now - hi < tonumber(ARGV[24]) then reserve_ms = tonumber(ARGV[23]) end

-- A returning waiter (live or dormant) keeps its rank; a newcomer starts at its flow's fair
-- start: the lane's virtual time, or later if its flow has a backlog.
local meta = redis.call('HGET', K.wm, holder)
local vt = num(st, 'vt', nil)
local vnow = now
if vt and vt > now then vnow = vt end
local start = vnow
local fin = redis.call('ZSCORE', K.ft, flow)
if fin and tonumber(fin) > start then start = tonumber(fin) end
local rank
if meta then
  rank = tonumber(string.match(meta, '^(%S+)'))
else
  rank = start + handicap
end

-- What the live waiters ranked strictly ahead still need: we may only use capacity beyond it.
local a_n, a_in, a_out = 0, 0, 0
local ahead = redis.call('ZRANGEBYSCORE', K.wq, '-inf', '(' .. fmt(rank))
for _, m in ipairs(hmget_all(K.wm, ahead)) do
  if m then
    local _, _, x, y = string.match(m, '^(%S+) (%S+) (%S+) (%S+)$')
    a_n = a_n + 1
    a_in = a_in + tonumber(x)
    a_out = a_out + tonumber(y)
  end
end
local cost = {req = 1, inp = cin, out = cout, tot = cin + cout}
local queued = {req = a_n, inp = a_in, out = a_out, tot = a_in + a_out}
local w_in, w_out = num(st, 'w:inp', 0), num(st, 'w:out', 0)
local used = {req = num(st, 'w:req', 0), inp = w_in, out = w_out, tot = w_in + w_out}

local blocks = {} -- {wait ms, reason, fails even without waiters ahead}
local pause = num(st, 'pause', 0)
if pause > now then blocks[#blocks + 1] = {pause - now, 'paused', true} end
local conc = limit(st, 'concurrency')
if conc then
  local n = redis.call('ZCARD', K.fly)
  if n + a_n + 1 > conc then
    local wait = poll_ms
    if n > 0 then
      local first = redis.call('ZRANGE', K.fly, 0, 0, 'WITHSCORES')
      wait = math.min(wait, tonumber(first[2]) - now)
    end
    blocks[#blocks + 1] = {wait, 'concurrency', n + 1 > conc}
  end
end
local window_needs = {}
for _, d in ipairs(DIMS) do
  local b = levels[d[1]]
  if b and cost[d[1]] > 0 then -- a call that spends none of a dimension cannot overrun or delay it
    local lvl, cap, rate = b[1], b[2], b[3]
    local qe = limit(st, d[2]) * f
    local c = math.min(cost[d[1]], cap)
    if reserve_ms > 0 then c = math.min(c + rate * reserve_ms, cap) end
    local need = queued[d[1]] + c - lvl
    if need > TOL then blocks[#blocks + 1] = {math.ceil(need / rate), d[2], c - lvl > TOL} end
    if sliding then
      c = math.min(cost[d[1]], qe)
      need = used[d[1]] + queued[d[1]] + c - qe
      if need > TOL then window_needs[d[1]] = {need, used[d[1]] + c - qe > TOL} end
    end
  end
end

-- Ms until enough of the window has aged out (a lower bound past WALK_LIMIT entries).
local walked = nil
local function walk()
  if walked then return walked end
  local raw = redis.call('ZRANGE', K.log, 0, WALK_LIMIT - 1, 'WITHSCORES')
  local ids, ts = {}, {}
  for i = 1, #raw, 2 do
    ids[#ids + 1] = raw[i]
    ts[#ts + 1] = tonumber(raw[i + 1])
  end
  walked = {ts = ts, amts = hmget_all(K.amt, ids)}
  return walked
end
for _, d in ipairs(DIMS) do
  local wn = window_needs[d[1]]
  if wn then
    local need, wait = wn[1], poll_ms
    if d[1] == 'req' then
      local k = math.min(math.ceil(need - TOL) - 1, redis.call('ZCARD', K.log) - 1)
      if k >= 0 then
        local e = redis.call('ZRANGE', K.log, k, k, 'WITHSCORES')
        wait = tonumber(e[2]) + window_ms + 1 - now
      end
    else
      local w = walk()
      local freed, last = 0, nil
      for i = 1, #w.ts do
        local x, y = string.match(w.amts[i] or '0 0', '^(%S+) (%S+)')
        x, y = tonumber(x), tonumber(y)
        if d[1] == 'inp' then freed = freed + x
        elseif d[1] == 'out' then freed = freed + y
        else freed = freed + x + y end
        last = w.ts[i]
        if freed >= need - TOL then break end
      end
      if last then wait = last + window_ms + 1 - now end
    end
    blocks[#blocks + 1] = {wait, d[2], wn[2]}
  end
end

if #blocks == 0 then
  for dim, b in pairs(levels) do put(st, 'p:' .. dim, b[1] - cost[dim]) end
  local served = start
  if meta then served = rank - handicap end
  if vt == nil or served > vt then put(st, 'vt', served) end
  put(st, 'w:req', used.req + 1)
  put(st, 'w:inp', w_in + cin)
  put(st, 'w:out', w_out + cout)
  save(st)
  redis.call('ZADD', K.log, now, rid)
  redis.call('HSET', K.amt, rid, ARGV[5] .. ' ' .. ARGV[6])
  redis.call('ZADD', K.fly, now + ttl_ms, rid)
  redis.call('HSET', K.res, rid, fmt(now) .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
  if meta then
    redis.call('ZREM', K.wq, holder)
    redis.call('ZREM', K.wdl, holder)
    redis.call('ZREM', K.wx, holder)
    redis.call('HDEL', K.wm, holder)
  end
  return {1, rid, '0', 'ok', reseeded}
end

local wait, reason, best = 0, 'priority', -1
for _, b in ipairs(blocks) do
  wait = math.max(wait, b[1])
  if b[3] and b[1] > best then
    best = b[1]
    reason = b[2]
  end
end
wait = math.max(1, wait)
if not meta then
  -- The ms of lane capacity this call takes: its cost over the rate in the tightest limited
  -- dimension; without rate limits, the concurrency poll over the concurrency.
  local tick = 0
  for _, d in ipairs(DIMS) do
    local b = levels[d[1]]
    if b and cost[d[1]] > 0 then tick = math.max(tick, cost[d[1]] / b[3]) end
  end
  if tick == 0 then tick = poll_ms / (conc or 1) end
  redis.call('ZADD', K.ft, fmt(start + tick / weight), flow)
end
redis.call('HSET', K.wm, holder, fmt(rank) .. ' ' .. prio .. ' ' .. ARGV[5] .. ' ' .. ARGV[6])
redis.call('ZADD', K.wq, fmt(rank), holder)
redis.call('ZADD', K.wdl, now + wait + grace_ms, holder)
redis.call('ZREM', K.wx, holder)
save(st)
return {0, '', fmt(wait), reason, reseeded}
