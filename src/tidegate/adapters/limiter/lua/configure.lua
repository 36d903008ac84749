-- configure: set a lane's configured limits (they win over learned ones, field by field).
-- KEYS: 1 h (lane hash)
-- ARGV: 1 now_ms ('' = Redis TIME)  2 window_ms  3 burst_ms
--       4 rpm  5 input_tpm  6 output_tpm  7 tpm  8 concurrency   ('' = not configured)
--       9 stamp of these limits (tidegate.core.limits.LaneLimits.stamp)
-- Returns: 1
local now = clock(ARGV[1])
local window_ms, burst_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local st = load(KEYS[1])
set_configured(st, now, window_ms, burst_ms, {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]},
               ARGV[9])
save(st)
return 1
