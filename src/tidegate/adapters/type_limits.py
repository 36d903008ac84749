"""The TypeGate port on Redis: job types' starts per minute and runs at once, for all workers.

Keys (built by ``join_key``, one pair per job type):
  ``tg:jt:run:<type>``    zset: job id -> expiry (server ms); a slot not renewed expires
  ``tg:jt:starts:<type>`` zset: start id -> start time (server ms), the sliding minute
One Lua script checks both limits and counts the start in both, or in neither, on the Redis
server's clock (one clock for every machine).
"""

from __future__ import annotations

import uuid

import redis

from ..core.type_limits import SLOT_TTL_S, TypeLimit
from .redis_keys import join_key

RUNNING = "tg:jt:run"
STARTS = "tg:jt:starts"
# A run waiting for a slot of a type at its concurrency asks again after about this: how
# soon a running one ends is not known.
SLOT_POLL_MS = 1000

# KEYS: [running zset, starts zset]
# ARGV: [job id, concurrency (0: none), per minute (0: none), slot ttl ms, start id,
#        ms to wait for a slot]
# -> 0 if the run may start (counted), else milliseconds to wait (nothing counted)
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local conc, rpm, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local wait = 0
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= conc then
    wait = tonumber(ARGV[6])
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= rpm then
    -- the start that leaves the window and makes room for this one
    local first = redis.call('ZRANGE', KEYS[2], n - rpm, n - rpm, 'WITHSCORES')
    wait = math.max(wait, tonumber(first[2]) + 60000 - now + 1)
  end
end
if wait > 0 then return wait end
if conc > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
if rpm > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], 61000)
end
return 0
"""

# KEYS: [running zset]  ARGV: [job id, slot ttl ms] -> 1 if the slot was still held
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""


class RedisTypeGate:
    def __init__(self, client: redis.Redis, *, slot_ttl_s: float = SLOT_TTL_S) -> None:
        self.client = client
        self.ttl_ms = int(slot_ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def acquire(self, job_type: str, token: str, limit: TypeLimit) -> float | None:
        waited = int(self._acquire(
            keys=[join_key(RUNNING, job_type), join_key(STARTS, job_type)],
            args=[token, limit.concurrency or 0, limit.per_minute or 0, self.ttl_ms,
                  f"{token}:{uuid.uuid4().hex[:8]}", SLOT_POLL_MS]))
        return None if waited == 0 else waited / 1000

    def renew(self, job_type: str, token: str) -> None:
        self._renew(keys=[join_key(RUNNING, job_type)], args=[token, self.ttl_ms])

    def release(self, job_type: str, token: str) -> None:
        self.client.zrem(join_key(RUNNING, job_type), token)

    def running(self, job_type: str) -> int:
        """Slots held now (expired ones included until the next start): for reports."""
        return int(self.client.zcard(join_key(RUNNING, job_type)))
