"""Worker liveness in the shared Redis: how the scheduler learns within seconds that a worker died.

A job's lease (30 s) is renewed in the database; waiting for it to run out made a SIGKILLed
worker's jobs wait about 40 s (lease, then the next sweep). Instead every process that owns
leases (its lease owner id is ``hostname/pid``: the worker with the threads or solo pool, each
pool child with prefork) stamps itself every ``REFRESH_S`` into one sorted set, scored with the
Redis server's clock (one clock for all machines, so no skew between hosts). The scheduler asks
for the members not stamped for ``STALE_S`` (one Lua call per tick, no database query) and
expires those owners' leases at once; the lease stays the fallback for workers that never
stamp (an older version) or when Redis is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

from .redis_client import redis_client
from .redis_keys import WORKERS_ALIVE

log = logging.getLogger(__name__)

REFRESH_S = 1.0
# Missing stamps for this long mark an owner as a suspect (the scheduler then confirms it).
STALE_S = 4.0
# ... and stale on every check for this long in a row makes it dead. After a Redis restart (or
# an outage) every stamp is old at once, and the live workers stamp again within REFRESH_S.
CONFIRM_S = 3.0

# KEYS: [zset]  ARGV: [owner]  -> server time in ms
_STAMP = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
return ms
"""
# KEYS: [zset]  ARGV: [stale_ms]  -> owners last stamped more than stale_ms ago
_STALE = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (ms - tonumber(ARGV[1])))
"""
# KEYS: [zset]  ARGV: [stale_ms]  -> owners stamped within stale_ms
_FRESH = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], ms - tonumber(ARGV[1]), '+inf')
"""


class LivenessRegistry:
    """The sorted set of lease owners and when each last said it was alive."""

    def __init__(self, client: redis.Redis, key: str = WORKERS_ALIVE) -> None:
        self.client = client
        self.key = key
        self._stamp = client.register_script(_STAMP)
        self._stale = client.register_script(_STALE)
        self._fresh = client.register_script(_FRESH)

    def stamp(self, owner: str) -> None:
        self._stamp(keys=[self.key], args=[owner])

    def stale(self, stale_s: float = STALE_S) -> set[str]:
        return {_text(m) for m in self._stale(keys=[self.key], args=[int(stale_s * 1000)])}

    def fresh(self, stale_s: float = STALE_S) -> set[str]:
        return {_text(m) for m in self._fresh(keys=[self.key], args=[int(stale_s * 1000)])}

    def forget(self, owners: Iterable[str]) -> None:
        owners = list(owners)
        if owners:
            self.client.zrem(self.key, *owners)


class DeadWorkerWatch:
    """The scheduler's view: owners whose stamps stopped, confirmed over several checks."""

    def __init__(self, registry: LivenessRegistry, *, stale_s: float = STALE_S,
                 confirm_s: float = CONFIRM_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.stale_s = stale_s
        self.confirm_s = confirm_s
        self.clock = clock
        self.suspects: dict[str, float] = {}  # owner -> when first seen stale

    def check(self) -> set[str]:
        """The owners known dead now (one Redis call). Raises redis.RedisError."""
        try:
            stale = self.registry.stale(self.stale_s)
        except redis.RedisError:
            self.suspects.clear()  # continuity is lost: start over once Redis answers
            raise
        now = self.clock()
        self.suspects = {owner: self.suspects.get(owner, now) for owner in stale}
        return {owner for owner, since in self.suspects.items()
                if now - since >= self.confirm_s}

    def reset(self) -> None:
        self.suspects.clear()

    def forget(self, owners: Iterable[str]) -> None:
        """Their jobs were taken over: stop reporting them."""
        owners = set(owners)
        self.registry.forget(owners)
        for owner in owners:
            self.suspects.pop(owner, None)


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member


class LivenessBeacon:
    """A daemon thread stamping one owner every REFRESH_S until stopped."""

    def __init__(self, url: str, owner: str, *, refresh_s: float = REFRESH_S) -> None:
        self.owner = owner
        self.refresh_s = refresh_s
        self.client = redis_client(url, socket_timeout=2, socket_connect_timeout=2)
        self.registry = LivenessRegistry(self.client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def start(self) -> LivenessBeacon:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failing = False
        while True:
            try:
                self.registry.stamp(self.owner)
                if failing:
                    log.info("liveness: stamping %s again", self.owner)
                failing = False
            except redis.RedisError as exc:
                if not failing:  # once per outage; the lease still protects the jobs
                    log.warning("liveness: cannot reach the shared Redis (%s)",
                                type(exc).__name__)
                failing = True
            if self._stop.wait(self.refresh_s):
                return
