-- observe: adopt the limits a provider advertises and drain the pacer to what it says is left.
-- KEYS: 1 h (lane hash)  2 log  3 amt  4 fly
-- ARGV: 1 now_ms ('' = Redis TIME)  2 window_ms  3 burst_ms
--       4 learned rpm  5 learned input_tpm  6 learned output_tpm  7 learned tpm
--       8.. for each bucket req, inp, out, tot: remaining, advertised limit, reset_ms
--       ('' = not given)  20 age_ms: how long ago the provider counted (0 = now)
--       21 margin_ms: resync to this much quota below what the provider says is left
--       22 '1' when the resets are exact durations (their fraction of a unit is kept)
-- Returns: 1
local now = clock(ARGV[1])
local window_ms, burst_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local age_ms = tonumber(ARGV[20]) or 0
local margin_ms = tonumber(ARGV[21]) or 0
local exact = ARGV[22] == '1'
local st = load(KEYS[1])
refill(st, now, window_ms, burst_ms) -- at the old limits, up to now
for i = 1, 4 do
  if ARGV[3 + i] ~= '' then put(st, 'l:' .. LIMIT_FIELDS[i], ARGV[3 + i]) end
end
reconcile(st, window_ms, burst_ms)
-- Tokens the provider charges for grants after it counted, which it had not seen yet: input
-- as known now (real once settled), output as reserved (requests: none; see
-- tidegate.core.limits, "Learned limits").
local since = nil
local quiet = false
if age_ms > 0 then
  local cutoff = '(' .. fmt(now - age_ms)
  since = {req = 0, inp = 0, out = 0}
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], cutoff, '+inf', 'LIMIT', 0, WALK_LIMIT)
  local amts = hmget_all(KEYS[3], ids)
  for i = 1, #ids do
    local a = amts[i] or '0 0'
    local x, _, _, y = string.match(a, '^(%S+) (%S+) (%S+) (%S+)$') -- settled: real, estimate
    if not x then x, y = string.match(a, '^(%S+) (%S+)$') end
    since.inp = since.inp + tonumber(x)
    since.out = since.out + tonumber(y)
  end
  since.tot = since.inp + since.out
  -- Nothing in flight, nothing granted since it counted: the provider's count is the whole
  -- state, and the level may rise to it (see InMemoryLimiter.observe).
  quiet = #ids == 0 and redis.call('ZCOUNT', KEYS[4], '(' .. fmt(now), '+inf') == 0
    and num(st, 'd2', -1) <= now - age_ms
end
local f = num(st, 'f', 1)
for i, d in ipairs(DIMS) do
  local rem, adv, reset = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local lvl = num(st, 'p:' .. d[1], nil)
  if rem ~= '' and lvl ~= nil then
    -- Never hold more than the provider's bucket will have at any point before its reset
    -- (see tidegate.core.limits.resync_target), brought from when it counted up to now.
    local q = limit(st, d[2]) * f
    local rate = q / window_ms
    local target = tonumber(rem)
    if adv ~= '' and reset ~= '' then
      local deficit = rate * tonumber(reset) - (tonumber(adv) - tonumber(rem))
      if deficit > 0 then
        target = tonumber(rem) - deficit
      elseif exact then -- the fraction a whole remaining count rounds away, from the reset
        local held = tonumber(adv) - tonumber(adv) * (tonumber(reset) + margin_ms) / window_ms
        target = math.max(target, math.min(tonumber(rem) + 1.0, held))
      end
    end
    local counted = target
    if since then target = target + rate * age_ms - since[d[1]] end
    if margin_ms > 0 then target = target - rate * margin_ms end
    lvl = math.min(lvl, target)
    if quiet then -- up to the count as it was, less the margin (see InMemoryLimiter.observe)
      lvl = math.max(lvl, math.min(q * burst_ms / window_ms, counted - rate * margin_ms))
    end
    put(st, 'p:' .. d[1], lvl)
  end
end
save(st)
return 1
