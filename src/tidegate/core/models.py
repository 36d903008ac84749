"""The job record and its companions, as plain dataclasses the store maps to rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .statuses import Priority, Status


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


NANOS_PER_USD = 1_000_000_000


def usd_to_nanos(usd: Decimal) -> int:
    """Whole nano-dollars (1e-9 USD), the unit money is summed and stored in: exact integers."""
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0  # USD x 1e9, exact
    # Some call's model had no price: ``cost_nanos`` is not the whole cost, so none is shown.
    unpriced: bool = False

    @classmethod
    def of(cls, input_tokens: int, output_tokens: int, cost_usd: Decimal | None) -> Usage:
        """One call's usage; ``cost_usd`` None means its model has no price."""
        return cls(input_tokens, output_tokens,
                   0 if cost_usd is None else usd_to_nanos(cost_usd), cost_usd is None)

    @property
    def cost_usd(self) -> Decimal | None:
        """The exact cost in USD, or None when part of it is unknown (never a false zero)."""
        return None if self.unpriced else Decimal(self.cost_nanos).scaleb(-9)

    def public_cost_usd(self) -> float | None:
        """For JSON: a number rounded to the nano-dollar, or None when unpriced."""
        return None if self.unpriced else round(self.cost_nanos / NANOS_PER_USD, 9)

    def add(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_nanos + other.cost_nanos,
            self.unpriced or other.unpriced,
        )

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.cost_nanos or self.unpriced)


@dataclass(slots=True)
class Job:
    id: str
    tenant: str
    type: str
    priority: Priority
    input: dict[str, Any]
    status: Status = Status.QUEUED
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_fingerprint: str | None = None  # SHA-256 of the submit request (idempotency)
    progress: int = 0
    message: str = ""
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    usage: Usage = field(default_factory=Usage)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    not_before: datetime | None = None
    dispatched_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The part of ``usage`` from calls that returned after the job had stopped waiting for
    # them (cancel, shutdown, time limit, lost lease): billed all the same.
    late_usage: Usage = field(default_factory=Usage)
    # The caller's deadline (submit's deadline_s / deadline_at): past it a waiting job, or an
    # attempt that ends in a retry, fails `expired` instead of waiting again. A replay has none.
    expires_at: datetime | None = None
    # Since when the job has been parked for provider quota without a call being granted.
    quota_wait_since: datetime | None = None
    # Only on submit: the job's own webhook endpoint, created with the row
    # (``id``, ``url``, ``events`` or None for the default kinds, ``secret`` in plain text).
    webhook: dict[str, Any] | None = None
    # The name of the schedule that created this job (its tenant's), or None.
    schedule: str | None = None
    # Only on submit, never stored: the first estimate (core.eta.Eta) and what the caller is
    # warned of (``{"code", "message"}``, e.g. a deadline the estimate misses).
    eta: Any = None
    warnings: list[dict[str, str]] = field(default_factory=list)

    @property
    def deadline_at(self) -> datetime | None:
        """The deadline as planners read it (the ETA's check at submit): one stored time,
        the one the job expires at."""
        return self.expires_at

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: str
    kind: str  # submitted, claimed, progress, retrying, succeeded, failed, cancelled, ...
    at: datetime
    attempt: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class EventNote:
    """The history entry a transition writes in the same transaction as the change."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    prefix: str  # the first characters, shown in listings so a key can be recognised
    created_at: datetime
    revoked_at: datetime | None = None
    scope: str = "submit"  # core.keys.Scope
    name: str = ""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    rotated_from: str | None = None  # the id of the key this one replaced

    def valid_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """A tenant's limits and budgets; None means no such limit."""

    name: str
    submit_rpm: int | None = None
    max_queued: int | None = None
    max_running: int | None = None
    max_streams: int | None = None
    priorities: tuple[str, ...] | None = None  # allowed priorities; None: all
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    daily_nano_usd: int | None = None
    monthly_nano_usd: int | None = None
    weight: float | None = None  # share of a lane against other tenants (default 1)
    updated_at: datetime | None = None

    @property
    def has_budget(self) -> bool:
        return any(v is not None for v in (self.daily_tokens, self.monthly_tokens,
                                            self.daily_nano_usd, self.monthly_nano_usd))


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a usage report: the grouping's values, then the sums."""

    group: dict[str, str]
    requests: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    # Calls answered without a provider call (llm/reuse.py), and what they would have cost.
    reused_requests: int = 0
    saved: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class Page:
    """One page from the store, newest first; ``next_after`` is the (created_at, id) to pass
    as ``after`` for the next page, None on the last one. Clients see it only as a signed
    cursor (core.cursors)."""

    jobs: list[Job]
    next_after: tuple[datetime, str] | None


@dataclass(frozen=True, slots=True)
class CursorPage:
    jobs: list[Job]
    next_cursor: str | None
