-- configure: set a lane's configured limits (they win over learned ones, field by field).
-- KEYS: 1 h (lane hash)
-- ARGV: 1 now_ms ('' = Redis TIME)  2 window_ms  3 burst_ms
--       4 rpm  5 input_tpm  6 output_tpm  7 tpm  8 concurrency   ('' = not configured)
-- Returns: 1
local now = clock(ARGV[1])
local window_ms, burst_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local st = load(KEYS[1])
refill(st, now, window_ms, burst_ms) -- at the old limits, up to now
for i, field in ipairs(LIMIT_FIELDS) do
  if ARGV[3 + i] == '' then drop(st, 'c:' .. field) else put(st, 'c:' .. field, ARGV[3 + i]) end
end
reconcile(st, window_ms, burst_ms)
save(st)
return 1
