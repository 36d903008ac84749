"""The job record and its companions, as plain dataclasses the store maps to rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .statuses import Priority, Status


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            round(self.cost_usd + other.cost_usd, 8),
        )


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
    # The client's deadline: past it a waiting job, or an attempt that ends in a retry, fails
    # with `expired`.
    expires_at: datetime | None = None
    # Since when the job has been parked for provider quota without a call being granted.
    quota_wait_since: datetime | None = None

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


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None
