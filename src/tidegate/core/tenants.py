"""Tenant limits at submit: allowed priorities, submissions per minute, queued jobs, budgets.

Settings are read through a short per-process cache (``cache_s``): a change made over the API
applies to every process within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from .budget import Budget, describe, periods
from .errors import (
    BudgetExceeded,
    InvalidInput,
    PriorityNotAllowed,
    TooManyRequests,
    Unavailable,
)
from .keys import validate_tenant
from .limits import MAX_WEIGHT, MIN_WEIGHT
from .models import NANOS_PER_USD, TenantSettings, utcnow
from .ports import AccountStore, JobStore
from .statuses import Priority

# Upper bounds within what the database holds (counts in 32 bits, tokens and nano-dollars in
# 64) and exact as JSON numbers (doubles), whoever parses them.
MAX_COUNT = 10**9  # below 2**31, and far from where a float of it rounds
MAX_TOKENS = 10**15
MAX_USD = 1e9  # a period's dollars: times 1e9 nano-dollars, still within 64 bits
_COUNTS = ("submit_rpm", "max_queued", "max_running", "max_streams")

# What `tidegate tenants set` and PUT /v1/tenants/{name} accept, and their unit conversion.
PUBLIC_FIELDS = ("submit_rpm", "max_queued", "max_running", "max_streams", "priorities",
                 "daily_tokens", "monthly_tokens", "daily_usd", "monthly_usd", "weight")


class SubmitRate(Protocol):
    def hit(self, tenant: str, rpm: int) -> float | None:
        """Count one submission in the sliding minute; None if allowed, else seconds until
        one would be (nothing counted)."""
        ...


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a job is expected to cost at least, checked against the budget left at submit."""

    tokens: int = 0
    nanos: int = 0


def settings_from_public(name: str, values: dict[str, Any],
                         base: TenantSettings | None = None) -> TenantSettings:
    """Apply public fields (dollars as numbers, priorities as a list or comma string) to
    ``base``. A field given as None clears that limit; a field left out keeps its value."""
    try:
        validate_tenant(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    unknown = set(values) - set(PUBLIC_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown tenant setting(s): {', '.join(sorted(unknown))}")
    out = base or TenantSettings(name=name)
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            changes[{"daily_usd": "daily_nano_usd", "monthly_usd": "monthly_nano_usd"}.get(
                key, key)] = None
            continue
        if key == "priorities":
            items = value.split(",") if isinstance(value, str) else list(value)
            items = [str(p).strip() for p in items if str(p).strip()]
            bad = [p for p in items if p not in {q.value for q in Priority}]
            if bad or not items:
                raise InvalidInput("priorities: give one or more of high, medium, low")
            changes["priorities"] = tuple(dict.fromkeys(items))
        elif key in ("daily_usd", "monthly_usd"):
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 <= value <= MAX_USD):
                raise InvalidInput(f"{key}: a number of dollars, from 0 to {MAX_USD:g}")
            changes[key.replace("_usd", "_nano_usd")] = round(value * NANOS_PER_USD)
        elif key == "weight":
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not MIN_WEIGHT <= value <= MAX_WEIGHT):
                raise InvalidInput(f"weight: a number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}")
            changes["weight"] = float(value)
        else:
            top = MAX_COUNT if key in _COUNTS else MAX_TOKENS
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise InvalidInput(f"{key}: a whole number from 0 to {top}")
            changes[key] = value
    return replace(out, **changes, updated_at=utcnow())


def settings_to_public(s: TenantSettings) -> dict[str, Any]:
    def usd(n: int | None) -> float | None:
        return None if n is None else n / NANOS_PER_USD

    return {"name": s.name, "submit_rpm": s.submit_rpm, "max_queued": s.max_queued,
            "max_running": s.max_running, "max_streams": s.max_streams,
            "priorities": list(s.priorities) if s.priorities is not None else None,
            "daily_tokens": s.daily_tokens, "monthly_tokens": s.monthly_tokens,
            "daily_usd": usd(s.daily_nano_usd), "monthly_usd": usd(s.monthly_nano_usd),
            "weight": s.weight, "updated_at": s.updated_at}


class TenantGate:
    """Reads tenant settings (cached) and applies the limits that guard a submit."""

    def __init__(self, accounts: AccountStore, *, rate: SubmitRate | None = None,
                 budget: Budget | None = None, cache_s: float = 2.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.accounts = accounts
        self.rate = rate
        self.budget = budget
        self.cache_s = cache_s
        self.clock = clock
        self._cache: dict[str, tuple[TenantSettings | None, float]] = {}
        self._lock = threading.Lock()

    def settings(self, tenant: str) -> TenantSettings | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and now - hit[1] < self.cache_s:
            return hit[0]
        try:
            found = self.accounts.get_tenant(tenant)
        except Unavailable:
            if hit is None:
                raise
            return hit[0]  # the database blinked: the last settings read still hold
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[tenant] = (found, now)
        return found

    def weight(self, tenant: str) -> float:
        """The tenant's share of a lane (default 1). A database that cannot be read and was
        never read for this tenant gives the default: a share is not worth failing a call."""
        try:
            s = self.settings(tenant)
        except Unavailable:
            return 1.0
        return 1.0 if s is None or s.weight is None else s.weight

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._cache.pop(tenant, None)

    def check_submit(self, store: JobStore, *, tenant: str, priority: Priority,
                     estimate: Estimate = Estimate()) -> None:
        """Raise Forbidden / TooManyRequests / BudgetExceeded if the tenant may not submit
        this now. The rate is counted last, so a refused submit does not use it up."""
        s = self.settings(tenant)
        if s is None:
            return
        if s.priorities is not None and priority.value not in s.priorities:
            raise PriorityNotAllowed(f"tenant {tenant!r} may not submit {priority.value}-priority jobs "
                            f"(allowed: {', '.join(s.priorities)})")
        if s.max_queued is not None and store.count_waiting(tenant) >= s.max_queued:
            raise TooManyRequests(f"tenant {tenant!r} has {s.max_queued} jobs waiting, its "
                                  "maximum; submit again when some have started",
                                  retry_after_s=5)
        if self.budget is not None and s.has_budget:
            left = self.budget.left(s, now=self.clock())
            short = [x for x in left if not x.fits(max(1, estimate.tokens), estimate.nanos)
                     or (x.nanos is not None and x.nanos <= 0)]
            if short:
                raise budget_exceeded(tenant, left, short[0].period.resets_at,
                                      "what is left does not cover this job's estimate")
        if s.submit_rpm is not None and self.rate is not None:
            wait = self.rate.hit(tenant, s.submit_rpm)
            if wait is not None:
                raise TooManyRequests(f"tenant {tenant!r} may submit {s.submit_rpm} jobs per "
                                      "minute", retry_after_s=wait)


def budget_exceeded(tenant: str, left: list[Any], resets_at: datetime,
                    why: str) -> BudgetExceeded:
    retry = max(1.0, (resets_at - utcnow()).total_seconds())
    return BudgetExceeded(f"tenant {tenant!r} budget exceeded: {why} (resets at "
                          f"{resets_at.isoformat()})", retry_after_s=retry,
                          details={"remaining": describe(left),
                                   "resets_at": resets_at.isoformat()})


__all__ = ["MAX_COUNT", "MAX_TOKENS", "MAX_USD", "Estimate", "SubmitRate", "TenantGate", "periods",
           "settings_from_public",
           "settings_to_public", "budget_exceeded"]
