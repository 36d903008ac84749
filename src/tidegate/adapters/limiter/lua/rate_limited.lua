-- rate_limited: a provider 429 pauses the lane for everybody and cuts its rate factor.
-- KEYS: 1 h (lane hash)
-- ARGV: 1 now_ms ('' = Redis TIME)  2 pause_ms  3 decrease  4 min_factor  5 cut_cooldown_ms
--       6 window_ms  7 burst_ms
-- Returns: paused_until_ms (never earlier than before)
local now = clock(ARGV[1])
local window_ms, burst_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local st = load(KEYS[1])
refill(st, now, window_ms, burst_ms) -- the time before the cut refills at the old rate
local pause = math.max(num(st, 'pause', 0), now + tonumber(ARGV[2]))
put(st, 'pause', pause)
local cut = num(st, 'cut', nil)
if cut == nil or now - cut >= tonumber(ARGV[5]) then
  put(st, 'f', round_factor(math.max(tonumber(ARGV[4]), num(st, 'f', 1) * tonumber(ARGV[3]))))
  put(st, 'cut', now)
end
put(st, 'rec', now) -- this window is not a successful one
reconcile(st, window_ms, burst_ms)
save(st)
return fmt(pause)
