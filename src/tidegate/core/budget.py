"""Budgets: tokens and dollars a tenant may spend per UTC day and month, enforced before spend.

A call reserves its estimate before it is made and settles its actual usage after, in one
atomic step against everything the tenant's other jobs have spent or reserved, so concurrent
jobs can never overspend together by more than what calls use beyond their estimates. The
persisted usage (``AccountStore.usage_since``) is the truth a lost counter is rebuilt from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from .models import NANOS_PER_USD, TenantSettings


@dataclass(frozen=True, slots=True)
class Period:
    name: str  # "daily" | "monthly"
    key: str  # "d:2026-12-02" | "m:2026-12": part of the counter's name
    start: date  # first day counted
    resets_at: datetime  # when the next period starts
    limit_tokens: int | None
    limit_nanos: int | None

    @property
    def limited(self) -> bool:
        return self.limit_tokens is not None or self.limit_nanos is not None


def periods(settings: TenantSettings, now: datetime) -> list[Period]:
    """The tenant's budget periods that have a limit, for the UTC day and month of ``now``."""
    now = now.astimezone(UTC)
    today = now.date()
    month_start = today.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    found = [
        Period("daily", f"d:{today.isoformat()}", today,
               datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC),
               settings.daily_tokens, settings.daily_nano_usd),
        Period("monthly", f"m:{month_start:%Y-%m}", month_start,
               datetime.combine(next_month, datetime.min.time(), UTC),
               settings.monthly_tokens, settings.monthly_nano_usd)]
    return [p for p in found if p.limited]


@dataclass(frozen=True, slots=True)
class Left:
    """What is left of one period's budget (None: that dimension has no limit)."""

    period: Period
    tokens: int | None
    nanos: int | None

    def fits(self, tokens: int, nanos: int) -> bool:
        return ((self.tokens is None or tokens <= self.tokens)
                and (self.nanos is None or nanos <= self.nanos))


def describe(left: list[Left]) -> dict[str, object]:
    """The ``remaining`` of a budget_exceeded error: each limited budget's amount left."""
    out: dict[str, object] = {}
    for item in left:
        if item.tokens is not None:
            out[f"{item.period.name}_tokens"] = max(0, item.tokens)
        if item.nanos is not None:
            out[f"{item.period.name}_usd"] = round(max(0, item.nanos) / NANOS_PER_USD, 9)
    return out


class Budget(Protocol):
    """The shared budget counters (Redis in production)."""

    def reserve(self, settings: TenantSettings, rid: str, *, tokens: int, nanos: int,
                ttl_s: float, now: datetime) -> list[Left] | None:
        """Reserve the estimate if it fits every limited period; None when granted, else
        what is left of each period (nothing was reserved)."""
        ...

    def settle(self, settings: TenantSettings, rid: str, *, tokens: int, nanos: int,
               now: datetime) -> None:
        """Replace the reservation by the actual usage."""
        ...

    def refund(self, settings: TenantSettings, rid: str, *, now: datetime) -> None:
        """Drop the reservation: the call was not made (or cost nothing)."""
        ...

    def left(self, settings: TenantSettings, *, now: datetime) -> list[Left]:
        """What is left now of each limited period, reservations counted as spent."""
        ...
