-- Helpers shared by every limiter script. Redis scripts cannot include one another, so the
-- adapter prepends this file to each script body before register_script.
-- KEYS: none of its own (scripts pass a lane's keys, see lane_keys)
-- ARGV: none of its own
-- Mirrors tidegate.core.limits.InMemoryLimiter line by line: same names, same float order.

local DIMS = {{'req', 'rpm'}, {'inp', 'input_tpm'}, {'out', 'output_tpm'}, {'tot', 'tpm'}}
local LIMIT_FIELDS = {'rpm', 'input_tpm', 'output_tpm', 'tpm', 'concurrency'}
local TOL = 1e-6
local WALK_LIMIT = 1000
local BATCH = 500 -- bounded unpack() sizes: Lua's C stack holds ~8000 values

-- %.17g round-trips a double exactly, so Lua and Python see the same numbers.
local function fmt(x) return string.format('%.17g', x) end

local function round_factor(x) return math.floor(x * 1e6 + 0.5) / 1e6 end

-- '' = production: one clock for all machines (the server's). A number = a test's fake clock.
local function clock(arg)
  if arg == nil or arg == '' then
    -- Redis < 5 replicates scripts verbatim and refuses writes after TIME without this;
    -- from 7.0 it is a no-op.
    if redis.replicate_commands then redis.replicate_commands() end
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return tonumber(arg)
end

-- Every lane script receives the same ten keys, in this order.
local function lane_keys()
  return {h = KEYS[1], log = KEYS[2], amt = KEYS[3], fly = KEYS[4], res = KEYS[5],
          wq = KEYS[6], wdl = KEYS[7], wm = KEYS[8], wx = KEYS[9], ft = KEYS[10]}
end

-- The lane hash as a table; changes are collected and written back once by save().
local function load(h)
  local raw = redis.call('HGETALL', h)
  local v = {}
  for i = 1, #raw, 2 do v[raw[i]] = raw[i + 1] end
  return {h = h, v = v, dirty = {}, del = {}}
end

local function num(st, k, default)
  local x = st.v[k]
  if x then return tonumber(x) end
  return default
end

local function put(st, k, x)
  if type(x) == 'number' then x = fmt(x) end
  st.v[k] = x
  st.dirty[k] = true
  st.del[k] = nil
end

local function drop(st, k)
  if st.v[k] ~= nil then
    st.v[k] = nil
    st.dirty[k] = nil
    st.del[k] = true
  end
end

local function save(st)
  local args, dels = {}, {}
  for k in pairs(st.dirty) do
    args[#args + 1] = k
    args[#args + 1] = st.v[k]
  end
  for k in pairs(st.del) do dels[#dels + 1] = k end
  if #args > 0 then redis.call('HSET', st.h, unpack(args)) end
  if #dels > 0 then redis.call('HDEL', st.h, unpack(dels)) end
end

-- Configured wins over learned, field by field.
local function limit(st, field)
  local x = st.v['c:' .. field] or st.v['l:' .. field]
  if x then return tonumber(x) end
  return nil
end

local function hmget_all(key, fields)
  local out = {}
  for i = 1, #fields, BATCH do
    local part = {}
    for j = i, math.min(i + BATCH - 1, #fields) do part[#part + 1] = fields[j] end
    local got = redis.call('HMGET', key, unpack(part))
    for j = 1, #got do out[#out + 1] = got[j] end
  end
  return out
end

local function due(key, max_score)
  return redis.call('ZRANGEBYSCORE', key, '-inf', max_score, 'LIMIT', 0, BATCH)
end

-- Drop what has aged out: window entries (giving their share back), expired reservations
-- (a dead worker's slot), late waiters (-> dormant), dormant waiters past their memory and
-- flows' virtual finish times behind now (they no longer move anyone's start).
local function housekeep(st, K, now, window_ms, memory_ms)
  local cutoff = '(' .. fmt(now - window_ms)
  local dreq, din, dout = 0, 0, 0
  while true do
    local old = due(K.log, cutoff)
    if #old == 0 then break end
    local amts = redis.call('HMGET', K.amt, unpack(old))
    for i = 1, #old do
      dreq = dreq + 1
      if amts[i] then
        local x, y = string.match(amts[i], '^(%S+) (%S+)')
        din = din + tonumber(x)
        dout = dout + tonumber(y)
      end
    end
    redis.call('ZREM', K.log, unpack(old))
    redis.call('HDEL', K.amt, unpack(old))
    if #old < BATCH then break end
  end
  if dreq > 0 then
    put(st, 'w:req', num(st, 'w:req', 0) - dreq)
    put(st, 'w:inp', num(st, 'w:inp', 0) - din)
    put(st, 'w:out', num(st, 'w:out', 0) - dout)
  end
  while true do
    local dead = due(K.fly, fmt(now))
    if #dead == 0 then break end
    redis.call('ZREM', K.fly, unpack(dead))
    redis.call('HDEL', K.res, unpack(dead))
    if #dead < BATCH then break end
  end
  while true do
    local late = due(K.wdl, fmt(now))
    if #late == 0 then break end
    local args = {}
    for i = 1, #late do
      args[#args + 1] = now + memory_ms
      args[#args + 1] = late[i]
    end
    redis.call('ZREM', K.wq, unpack(late))
    redis.call('ZREM', K.wdl, unpack(late))
    redis.call('ZADD', K.wx, unpack(args))
    if #late < BATCH then break end
  end
  while true do
    local gone = due(K.wx, fmt(now))
    if #gone == 0 then break end
    redis.call('ZREM', K.wx, unpack(gone))
    redis.call('HDEL', K.wm, unpack(gone))
    if #gone < BATCH then break end
  end
  if K.ft then redis.call('ZREMRANGEBYSCORE', K.ft, '-inf', fmt(now)) end
end

-- Bring each limited pacer bucket to now at the current factor: dim -> {level, cap, rate/ms}.
local function refill(st, now, window_ms, burst_ms)
  local f = num(st, 'f', 1)
  local pt = num(st, 'pt', nil)
  local elapsed = 0
  if pt then elapsed = math.max(0, now - pt) end
  local out = {}
  for _, d in ipairs(DIMS) do
    local q = limit(st, d[2])
    if q then
      local qe = q * f
      local cap = qe * burst_ms / window_ms
      local rate = qe / window_ms
      local lvl = num(st, 'p:' .. d[1], nil)
      if lvl then lvl = math.min(cap, lvl + elapsed * rate) else lvl = cap end
      put(st, 'p:' .. d[1], lvl)
      out[d[1]] = {lvl, cap, rate}
    end
  end
  put(st, 'pt', now)
  return out
end

-- After limits or the factor changed: clamp levels to the new capacities. A limit new to
-- the lane starts as if it had charged what the window already granted (calls made while it
-- was unknown are in flight or counted by the provider).
local function reconcile(st, window_ms, burst_ms)
  local f = num(st, 'f', 1)
  local w_inp, w_out = num(st, 'w:inp', 0), num(st, 'w:out', 0)
  local used = {req = num(st, 'w:req', 0), inp = w_inp, out = w_out, tot = w_inp + w_out}
  for _, d in ipairs(DIMS) do
    local q = limit(st, d[2])
    local key = 'p:' .. d[1]
    if q then
      local cap = q * f * burst_ms / window_ms
      local lvl = num(st, key, nil)
      if lvl == nil then lvl = cap - used[d[1]] else lvl = math.min(lvl, cap) end
      put(st, key, lvl)
    else
      drop(st, key)
    end
  end
end

-- Set the configured limits (values: one per LIMIT_FIELDS, '' = not configured) and their
-- stamp, refilling at the old limits up to now first.
local function set_configured(st, now, window_ms, burst_ms, values, stamp)
  refill(st, now, window_ms, burst_ms)
  for i, field in ipairs(LIMIT_FIELDS) do
    if values[i] == '' then drop(st, 'c:' .. field) else put(st, 'c:' .. field, values[i]) end
  end
  put(st, 'cfg', stamp)
  reconcile(st, window_ms, burst_ms)
end
