"""Per-key (or per key and model) quotas, as real providers enforce them.

Each limit is a bucket that holds up to ``limit`` units and refills continuously at
``limit / 60`` units per second: never a fixed window, so a client that waits the advertised
``retry-after`` is admitted, and one that hammers is refused however it times its bursts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketState:
    name: str  # "requests" | "tokens" | "input_tokens" | "output_tokens"
    limit: int
    remaining: int
    reset_s: float  # until full again: what OpenAI's x-ratelimit-reset-* means


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    buckets: tuple[BucketState, ...]
    retry_after_s: float = 0.0  # 0 when allowed
    exhausted: str = ""  # the bucket that refused
    never_fits: bool = False  # asked for more than the bucket can ever hold

    def bucket(self, name: str) -> BucketState | None:
        return next((b for b in self.buckets if b.name == name), None)


class Bucket:
    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.level = float(limit)
        self.stamp = now

    @property
    def rate(self) -> float:
        return self.limit / 60.0

    def refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def state(self, name: str) -> BucketState:
        remaining = max(0, math.floor(self.level))
        return BucketState(name, self.limit, remaining, (self.limit - self.level) / self.rate)


class QuotaStore:
    """All buckets of one simulator; thread-safe (the app and test threads both touch it)."""

    def __init__(self, rpm: int, tpm: int, input_tpm: int = 0, output_tpm: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = {"requests": rpm, "tokens": tpm, "input_tokens": input_tpm,
                        "output_tokens": output_tpm}
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, Bucket]] = {}

    def _for(self, scope: str, now: float) -> dict[str, Bucket]:
        got = self._buckets.get(scope)
        if got is None:
            got = {n: Bucket(lim, now) for n, lim in self._limits.items() if lim > 0}
            self._buckets[scope] = got
        return got

    def admit(self, scope: str, input_tokens: int, max_output_tokens: int) -> Admission:
        """Charge one request, or refuse it whole (nothing charged) with how long to wait."""
        cost = {"requests": 1, "tokens": input_tokens + max_output_tokens,
                "input_tokens": input_tokens, "output_tokens": max_output_tokens}
        with self._lock:
            now = self._clock()
            buckets = self._for(scope, now)
            for b in buckets.values():
                b.refill(now)
            for name, b in buckets.items():
                if cost[name] > b.limit:
                    return self._refuse(buckets, name, 60.0, never_fits=True)
            waits = {n: b.wait_for(cost[n]) for n, b in buckets.items()}
            worst = max(waits, key=lambda n: waits[n], default="")
            if worst and waits[worst] > 0:
                return self._refuse(buckets, worst, waits[worst])
            for name, b in buckets.items():
                b.level -= cost[name]
            return Admission(True, self._states(buckets))

    def peek(self, scope: str) -> tuple[BucketState, ...]:
        with self._lock:
            now = self._clock()
            buckets = self._for(scope, now)
            for b in buckets.values():
                b.refill(now)
            return self._states(buckets)

    def _refuse(self, buckets: dict[str, Bucket], name: str, wait: float, *,
                never_fits: bool = False) -> Admission:
        return Admission(False, self._states(buckets), wait, name, never_fits)

    @staticmethod
    def _states(buckets: dict[str, Bucket]) -> tuple[BucketState, ...]:
        return tuple(b.state(n) for n, b in buckets.items())
