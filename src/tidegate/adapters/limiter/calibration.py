"""Calibrated token estimates over Redis: one hash per lane, shared by every worker.

Key layout (``P`` = prefix, default ``tg:lim:``, as the limiter's, so a lane's keys share one
Redis Cluster slot): ``P{lane}:cal`` HASH, field ``<direction>:<class>`` -> ``"ratio samples"``.
The update is one Lua script (read, weigh, write), so two workers settling at once both count.
Reads are cached per process for ``cache_s``: a call's estimate needs no extra round trip
under load, and a ratio changes slowly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from tidegate.core.limits.calibration import (
    ALPHA,
    CLASSES,
    DIRECTIONS,
    RATIO_MAX,
    RATIO_MIN,
    ContentClass,
    Direction,
    Ratio,
)
from tidegate.core.limits.port import validate_lane

# KEYS: [1] the lane's calibration hash
# ARGV: [1] field "<direction>:<class>", [2] sample ratio (clamped by the caller), [3] alpha
# Returns the new "ratio samples".
_LEARN = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local x = tonumber(ARGV[2])
local r, n = x, 1
if old then
  local sp = string.find(old, ' ')
  local o, on = tonumber(string.sub(old, 1, sp - 1)), tonumber(string.sub(old, sp + 1))
  if on and on > 0 then
    r = o + tonumber(ARGV[3]) * (x - o)
    n = on + 1
  end
end
local v = string.format('%.6f %d', r, n)
redis.call('HSET', KEYS[1], ARGV[1], v)
return v
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse(raw: str) -> Ratio | None:
    try:
        ratio, samples = raw.split(" ")
        return Ratio(float(ratio), int(samples))
    except ValueError:
        return None


class RedisCalibrator:
    """``tidegate.core.limits.calibration.Calibrator`` over Redis."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "tg:lim:",
                 cache_s: float = 1.0) -> None:
        self._r = redis_client
        self._prefix = prefix
        self._cache_s = cache_s
        self._learn = redis_client.register_script(_LEARN)
        self._cache: dict[str, tuple[float, dict[tuple[Direction, ContentClass], Ratio]]] = {}
        self._lock = threading.Lock()

    def _key(self, lane: str) -> str:
        return f"{self._prefix}{{{lane}}}:cal"

    def ratio(self, lane: str, direction: Direction, cls: ContentClass) -> Ratio | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(lane)
        if hit is None or now - hit[0] > self._cache_s:
            hit = (now, self.ratios(lane))
            with self._lock:
                self._cache[lane] = hit
        return hit[1].get((direction, cls))

    def learn(self, lane: str, direction: Direction, cls: ContentClass, *, estimate: int,
              actual: int) -> None:
        validate_lane(lane)
        if estimate <= 0 or actual <= 0:
            return
        sample = min(RATIO_MAX, max(RATIO_MIN, actual / estimate))
        raw = _s(self._learn(keys=[self._key(lane)],
                             args=[f"{direction}:{cls}", repr(sample), repr(ALPHA)]))
        learned = _parse(raw)
        with self._lock:  # this process sees its own lesson at once
            hit = self._cache.get(lane)
            if hit is not None and learned is not None:
                hit[1][(direction, cls)] = learned

    def ratios(self, lane: str) -> dict[tuple[Direction, ContentClass], Ratio]:
        validate_lane(lane)
        raw = {_s(k): _s(v) for k, v in self._r.hgetall(self._key(lane)).items()}
        out: dict[tuple[Direction, ContentClass], Ratio] = {}
        for d in DIRECTIONS:
            for c in CLASSES:
                r = _parse(raw[f"{d}:{c}"]) if f"{d}:{c}" in raw else None
                if r is not None:
                    out[(d, c)] = r
        return out
