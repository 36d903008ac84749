"""Ports: what the core needs from the outside world. Adapters and in-memory fakes implement them."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from .models import ApiKey, Job, JobEvent, Page, Usage
from .statuses import Status


class JobStore(Protocol):
    """The source of truth. Every status change is one conditional UPDATE; ``False``/``None``
    means the row was not in the expected state and nothing was written."""

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert the job; with an idempotency key already used by the tenant, return the
        existing job and ``False``."""
        ...

    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None: ...

    def list(self, *, tenant: str | None, status: Status | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> Page: ...

    def mark_dispatched(self, job_id: str, at: datetime) -> None: ...

    def claim(self, job_id: str, *, owner: str, lease_until: datetime,
              now: datetime) -> Job | None:
        """queued|retrying (and not_before passed, not cancel-requested) -> running, attempt+1."""
        ...

    def renew_lease(self, job_id: str, *, attempt: int, owner: str,
                    lease_until: datetime) -> tuple[bool, bool]:
        """Extend a running job's lease. Returns (still ours, cancel requested)."""
        ...

    def update_progress(self, job_id: str, *, attempt: int, progress: int, message: str,
                        checkpoint: dict[str, Any] | None = None,
                        usage_delta: Usage | None = None) -> bool: ...

    def finish(self, job_id: str, *, attempt: int, status: Status, now: datetime,
               result: Any = None, error_code: str | None = None,
               error_message: str | None = None, usage_delta: Usage | None = None,
               not_before: datetime | None = None, refund_attempt: bool = False) -> bool:
        """running(attempt) -> status. ``refund_attempt`` gives the attempt back (quota waits)."""
        ...

    def request_cancel(self, job_id: str, *, tenant: str | None, now: datetime) -> Job | None:
        """Waiting -> cancelled at once; running -> cancel_requested. Returns the new row."""
        ...

    def requeue(self, job_id: str, *, from_status: Status, attempt: int, now: datetime,
                reset_attempts: bool = False) -> bool: ...

    def expired_leases(self, now: datetime, limit: int = 100) -> Sequence[Job]: ...

    def undispatched(self, *, older_than: datetime, redispatch_before: datetime,
                     now: datetime, limit: int = 500) -> Sequence[Job]:
        """Waiting jobs whose message may be missing: never dispatched, or dispatched before
        ``redispatch_before`` and due."""
        ...

    def purge(self, *, finished_before: datetime, failed_before: datetime) -> int: ...

    def add_event(self, event: JobEvent) -> None: ...

    def events(self, job_id: str, *, after_id: int = 0) -> builtins.list[JobEvent]: ...

    def count_by_status(self) -> dict[str, int]: ...

    # API keys
    def add_key(self, key: ApiKey, key_hash: str) -> None: ...

    def tenant_for_key(self, key_hash: str) -> str | None: ...

    def list_keys(self) -> builtins.list[ApiKey]: ...

    def ping(self) -> None: ...

    def fail_waiting(self, job_id: str, *, code: str, message: str, now: datetime) -> bool:
        """queued|retrying -> failed with this error, and its ``failed`` event: a job whose
        delivery keeps failing before any attempt could start."""
        ...

    def expire_leases_of(self, owner: str, *, now: datetime) -> int:
        """End now the leases of the running jobs ``owner`` holds (the owner is known to be
        dead), so that the next sweep takes them over. Returns how many."""
        ...


class Dispatcher(Protocol):
    """Hands a job id to the broker queue. Raises :class:`~.errors.Unavailable` when it cannot."""

    def send(self, job_id: str, *, queue: str, countdown_s: float = 0.0) -> None: ...

    def ping(self) -> None: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...
