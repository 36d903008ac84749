-- observe: adopt the limits a provider advertises and drain the pacer to what it says is left.
-- KEYS: 1 h (lane hash)
-- ARGV: 1 now_ms ('' = Redis TIME)  2 window_ms  3 burst_ms
--       4 learned rpm  5 learned input_tpm  6 learned output_tpm  7 learned tpm
--       8.. for each bucket req, inp, out, tot: remaining, advertised limit, reset_ms
--       ('' = not given)
-- Returns: 1
local now = clock(ARGV[1])
local window_ms, burst_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local st = load(KEYS[1])
refill(st, now, window_ms, burst_ms) -- at the old limits, up to now
for i = 1, 4 do
  if ARGV[3 + i] ~= '' then put(st, 'l:' .. LIMIT_FIELDS[i], ARGV[3 + i]) end
end
reconcile(st, window_ms, burst_ms)
local f = num(st, 'f', 1)
for i, d in ipairs(DIMS) do
  local rem, adv, reset = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local lvl = num(st, 'p:' .. d[1], nil)
  if rem ~= '' and lvl ~= nil then
    -- Never hold more than the provider's bucket will have at any point before its reset
    -- (see tidegate.core.limits.resync_target).
    local target = tonumber(rem)
    if adv ~= '' and reset ~= '' then
      local rate = limit(st, d[2]) * f / window_ms
      local deficit = rate * tonumber(reset) - (tonumber(adv) - tonumber(rem))
      if deficit > 0 then target = tonumber(rem) - deficit end
    end
    put(st, 'p:' .. d[1], math.min(lvl, target))
  end
end
save(st)
return 1
