"""Ports: what the core needs from the outside world. Adapters and in-memory fakes implement them."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from .decision import QuotaWait
from .models import ApiKey, EventNote, Job, JobEvent, Page, TenantSettings, Usage, UsageRow
from .statuses import Status


class JobStore(Protocol):
    """The source of truth. Every status change is one conditional UPDATE; ``False``/``None``
    means the row was not in the expected state and nothing was written."""

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert the job; with an idempotency key already used by the tenant, return the
        existing job (with its ``request_fingerprint``) and ``False``."""
        ...

    def by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        """The tenant's job submitted with this Idempotency-Key, or None."""
        ...

    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        """The job, or None. A row that cannot be decoded or sent back as JSON comes back as
        an ``unreadable`` job (core.jsonsafe), never as an exception."""
        ...

    def list(self, *, tenant: str | None, status: Status | None = None, type: str | None = None,
             limit: int = 50, after: tuple[datetime, str] | None = None) -> Page:
        """Newest first, strictly after the ``(created_at, id)`` position ``after``. One
        unreadable row is shown as such; it never fails the page."""
        ...

    def now(self) -> datetime:
        """The database's clock. Leases, ``not_before``, deadlines and quota waits are stamped
        and compared on it, so hosts whose clocks disagree still agree on them."""
        ...

    def mark_dispatched(self, job_id: str, *, attempt: int, version: datetime) -> bool:
        """Record that a message was sent for the waiting row read at ``version`` (its
        ``updated_at``); a row that moved on since (claimed, parked again) is left alone."""
        ...

    def mark_dispatched_many(self, marks: Sequence[tuple[str, int, datetime]]) -> int:
        """``mark_dispatched`` for many ``(job_id, attempt, version)`` at once, in one
        transaction; returns how many rows it marked."""
        ...

    def claim(self, job_id: str, *, owner: str, lease_s: float) -> Job | None:
        """queued|retrying (``not_before`` passed, not cancel-requested, not past its deadline)
        -> running, attempt+1, lease for ``lease_s``; writes the ``claimed`` event."""
        ...

    def renew_lease(self, job_id: str, *, attempt: int, owner: str,
                    lease_s: float) -> tuple[bool, bool]:
        """Extend a running job's lease. Returns (still ours, cancel requested)."""
        ...

    def update_progress(self, job_id: str, *, attempt: int, progress: int, message: str,
                        checkpoint: dict[str, Any] | None = None,
                        usage_delta: Usage | None = None,
                        note: EventNote | None = None) -> bool:
        """Write progress, checkpoint and usage of the running ``attempt`` (and ``note``, a
        ``progress`` event, in the same transaction). ``False`` when the row moved on."""
        ...

    def add_event(self, job_id: str, *, attempt: int, note: EventNote) -> bool:
        """Append an event that changes nothing else (``llm_call``, ``quota_wait``) while
        ``attempt`` is running; ``False`` when the row moved on."""
        ...

    def finish(self, job_id: str, *, attempt: int, status: Status, result: Any = None,
               error_code: str | None = None, error_message: str | None = None,
               usage_delta: Usage | None = None, delay_s: float | None = None,
               refund_attempt: bool = False, quota_wait: QuotaWait = "keep",
               lease_expired: bool = False, note: EventNote | None = None,
               progress: tuple[int, str] | None = None) -> Status | None:
        """running(attempt) -> status, with its event (``note``, by default the status) in
        the same transaction. Returns the status written, or None when the row moved on.
        ``progress`` (percent, message): the attempt's last report, not written yet, written
        with the outcome (its ``progress`` event first).

        ``retrying`` (due after ``delay_s``) is written as ``cancelled`` when the row carries a
        cancel request and as ``failed``/``expired`` past its deadline: a row never waits
        for nothing. ``refund_attempt`` gives the attempt back (quota waits);
        ``lease_expired`` (the sweep) writes only if the lease is still expired then."""
        ...

    def request_cancel(self, job_id: str, *, tenant: str | None) -> Job | None:
        """Waiting -> cancelled at once; running -> cancel_requested. Returns the new row."""
        ...

    def requeue(self, job_id: str, *, from_status: Status, attempt: int,
                reset_attempts: bool = False, lease_expired: bool = False,
                note: EventNote | None = None) -> Job | None:
        """from_status(attempt) -> queued, with its event. Returns the new row (which is
        ``cancelled`` or ``failed``/``expired`` instead when it may not wait, as in
        :meth:`finish`). ``reset_attempts`` (a replay) also clears the error, the cancel
        request, the deadline and the quota wait."""
        ...

    def close_waiting(self, *, job_id: str | None = None,
                      limit: int = 500) -> Sequence[tuple[str, Status]]:
        """Waiting rows that may not wait: cancel-requested -> cancelled, past their deadline
        -> failed/expired, each with its event. Returns (id, new status) per row ended."""
        ...

    def expired_leases(self, limit: int = 100) -> Sequence[Job]: ...

    def undispatched(self, *, grace_s: float, redispatch_after_s: float,
                     overdue_before: Mapping[str, datetime] | None = None,
                     limit: int = 500) -> Sequence[Job]:
        """Waiting jobs whose message may be missing: never dispatched (and changed more than
        ``grace_s`` ago), or dispatched and due but overdue. On a queue named in
        ``overdue_before`` (the database's clock) a job sent before that time is overdue;
        on any other queue, one sent more than ``redispatch_after_s`` ago."""
        ...

    def purge(self, *, finished_before: datetime, failed_before: datetime) -> int: ...

    def events(self, job_id: str, *, after_id: int = 0) -> builtins.list[JobEvent]: ...

    def count_by_status(self, *, tenant: str | None = None) -> dict[str, int]:
        """Jobs per status: one tenant's, or every tenant's (None)."""
        ...

    def fold_counts(self) -> int:
        """Housekeeping the counts above may need (the SQL store folds the deltas its triggers
        append on PostgreSQL); the sweep calls it. Returns how many count rows it touched."""
        ...

    def count_waiting(self, tenant: str) -> int:
        """The tenant's queued and retrying jobs (the max-queued limit)."""
        ...

    def count_running(self, tenant: str) -> int:
        """The tenant's running jobs (the running cap)."""
        ...

    def ping(self) -> None: ...

    def add_late_usage(self, job_id: str, usage: Usage) -> bool:
        """Add an abandoned call's usage, whatever the job's status (the provider billed it):
        to the totals and to ``late_usage``. ``False`` if there is no such job."""
        ...

    def fail_waiting(self, job_id: str, *, code: str, message: str) -> bool:
        """queued|retrying -> failed with this error, and its ``failed`` event: a job whose
        delivery keeps failing before any attempt could start."""
        ...

    def expire_leases_of(self, owner: str) -> int:
        """End now the leases of the running jobs ``owner`` holds (the owner is known to be
        dead), so that the next sweep takes them over. Returns how many."""
        ...


class AccountStore(Protocol):
    """API keys, tenant settings and usage: the governance tables beside the jobs."""

    def add_key(self, key: ApiKey, key_hash: str) -> None: ...

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked and expired ones included."""
        ...

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def keys_by_prefix(self, prefix: str) -> builtins.list[ApiKey]: ...

    def list_keys(self, *, tenant: str | None = None) -> builtins.list[ApiKey]: ...

    def revoke_key(self, key_id: str, *, at: datetime) -> bool:
        """Revoke an unrevoked key; False when there is none."""
        ...

    def expire_key(self, key_id: str, *, at: datetime) -> bool:
        """Set an unrevoked key to expire at ``at`` unless it expires sooner already."""
        ...

    def touch_key(self, key_id: str, *, at: datetime, address: str | None) -> None: ...

    def keys_generation(self) -> object:
        """A value that changes whenever any key is created, revoked or re-expired (not when
        one is used): caches compare it to know they are stale."""
        ...

    def get_tenant(self, name: str) -> TenantSettings | None: ...

    def put_tenant(self, settings: TenantSettings) -> None: ...

    def list_tenants(self) -> builtins.list[TenantSettings]: ...

    def add_usage(self, *, tenant: str, day: date, type: str, lane: str, usage: Usage,
                  requests: int = 1, reused: int = 0, saved: Usage | None = None) -> None:
        """Add to the day's usage: ``requests`` calls made for ``usage``; ``reused`` calls
        answered by another call's answer, which would have cost ``saved``."""
        ...

    def usage_since(self, tenant: str, since: date) -> Usage:
        """The tenant's usage on ``since`` and every day after (budgets rebuild from it)."""
        ...

    def usage_report(self, *, tenant: str | None, start: date, end: date,
                     group_by: Sequence[str]) -> builtins.list[UsageRow]:
        """Sums over days ``start``..``end`` (inclusive), grouped by any of tenant, type,
        lane, day."""
        ...


class Dispatcher(Protocol):
    """Hands a job id to the broker queue. Raises :class:`~.errors.Unavailable` when it cannot.
    ``label`` (the job's type and tenant) is for monitoring only (Flower shows it); workers
    read nothing but the id."""

    def send(self, job_id: str, *, queue: str, countdown_s: float = 0.0,
             label: Mapping[str, str] | None = None) -> None: ...

    def send_many(self, sends: Sequence[tuple[str, str, Mapping[str, str] | None]]) -> None:
        """Send each (job id, queue, label) now, in as few round trips as the broker allows.
        If it raises Unavailable, any of them may or may not have been sent."""
        ...

    def ping(self) -> None: ...


class DeliveryFrontier(Protocol):
    """How far each queue's deliveries have got, shared by every worker: the latest send time
    (epoch seconds, the sender's clock) of a message whose job a worker claimed. Queues are
    first in, first out, so a job still waiting whose message was sent well before that
    time lost its message (see :mod:`.sweep`)."""

    def advance(self, queue: str, sent_at: float) -> None: ...

    def read(self) -> dict[str, tuple[float, float]]:
        """Per queue: (the frontier's send time, seconds since it last moved)."""
        ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...
