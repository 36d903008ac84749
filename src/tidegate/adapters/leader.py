"""A Redis leader lock: at most one `tidegate beat` schedules, the others stand by."""

from __future__ import annotations

import uuid

import redis

# KEYS: [lock key]  ARGV: [token, ttl_ms]  -> 1 if we hold (and extended) the lock
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: [lock key]  ARGV: [token]  -> 1 if we held and released it
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, key: str, *, ttl_s: float = 30.0) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.held = False

    def acquire_or_renew(self) -> bool:
        """Take the lock if free, extend it if ours. Returns whether we lead now."""
        if self.held and self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def release(self) -> None:
        if self.held:
            self._release(keys=[self.key], args=[self.token])
            self.held = False
