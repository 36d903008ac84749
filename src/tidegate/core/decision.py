"""How an attempt that did not succeed ends: the one decision behind the runner's retries, the
threads pool's time limit and the sweep's expired leases.

Given what the row says (attempts, cancel request, deadline, quota wait) and what happened (the
attempt asked to run again later, or its worker vanished), :func:`decide` returns the transition
to write: ``cancelled``, ``failed`` with a code (the attempt cap's, ``expired`` or
``quota_timeout``), ``retrying`` after a delay, or ``queued`` again at once (a lost worker).

The store re-checks the two facts that can change between the read and the write, in the
UPDATE itself and on the database's clock: a row never parks in a waiting status while it
carries a cancel request or its deadline has passed (see :data:`CANCELLED` and
:data:`EXPIRED`, which both sides write).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from .models import EventNote, Job
from .statuses import Status

CANCELLED = ("cancelled", "cancelled on request")
EXPIRED = ("expired", "the job's deadline passed before it finished")

# What a transition does with ``quota_wait_since``: leave it, start a fresh wait now, keep the
# running wait's start (or start one), or forget it.
QuotaWait = Literal["keep", "start", "continue", "clear"]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the row said when the attempt's end was decided."""

    attempt: int
    max_attempts: int
    cancel_requested: bool = False
    expires_at: datetime | None = None
    quota_wait_since: datetime | None = None

    @classmethod
    def of(cls, job: Job, *, attempt: int | None = None, cancelled: bool = False) -> Facts:
        return cls(attempt=job.attempts if attempt is None else attempt,
                   max_attempts=job.max_attempts,
                   cancel_requested=job.cancel_requested or cancelled,
                   expires_at=job.expires_at, quota_wait_since=job.quota_wait_since)


@dataclass(frozen=True, slots=True)
class Again:
    """What happened: the attempt wants the job to run again after ``delay_s``."""

    delay_s: float
    code: str
    message: str
    reason: str = ""
    # False for waiting on provider quota: waiting is not failing (DESIGN.md invariant 4).
    counts_as_attempt: bool = True
    # A provider call was granted during the attempt: any quota wait so far has ended.
    progressed: bool = False
    # The worker is gone (expired lease): back to the queue at once, the attempt stays spent.
    requeue: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    error_code: str | None
    error_message: str | None
    note: EventNote
    delay_s: float = 0.0
    refund_attempt: bool = False
    quota_wait: QuotaWait = "keep"

    def finish_args(self) -> dict[str, Any]:
        """The keyword arguments of ``JobStore.finish`` that write this decision."""
        return {"status": self.status, "error_code": self.error_code,
                "error_message": self.error_message, "note": self.note,
                "delay_s": self.delay_s if self.status is Status.RETRYING else None,
                "refund_attempt": self.refund_attempt, "quota_wait": self.quota_wait}


def _ended(status: Status, code: str, message: str, **detail: Any) -> Decision:
    return Decision(status, code, message, EventNote(status.value, {"code": code, **detail}))


def decide(facts: Facts, again: Again, *, now: datetime, max_quota_wait_s: float) -> Decision:
    """``now`` is the database's clock (``JobStore.now``): it is compared with times the
    database stamped."""
    if facts.cancel_requested:
        return _ended(Status.CANCELLED, *CANCELLED)
    if facts.expires_at is not None and now >= facts.expires_at:
        return _ended(Status.FAILED, *EXPIRED)
    if again.counts_as_attempt and facts.attempt >= facts.max_attempts:
        return _ended(Status.FAILED, again.code,
                      f"{again.message} (after {facts.attempt} attempts)", **again.detail)
    quota_wait: QuotaWait
    if again.counts_as_attempt:
        quota_wait = "clear" if again.progressed else "keep"
    else:
        waiting_since = None if again.progressed else facts.quota_wait_since
        if waiting_since is not None:
            waited = (now - waiting_since).total_seconds()
            if waited >= max_quota_wait_s:
                timeout = _ended(Status.FAILED, "quota_timeout",
                                 f"waited {waited:.0f}s for provider quota (at most "
                                 f"{max_quota_wait_s:g}s): {again.message}")
                return replace(timeout, refund_attempt=True)  # waiting is still no attempt
        quota_wait = "start" if again.progressed else "continue"
    if again.requeue:
        return Decision(Status.QUEUED, again.code, again.message,
                        EventNote("requeued", {"reason": again.reason, **again.detail}),
                        quota_wait=quota_wait)
    return Decision(
        Status.RETRYING, again.code, again.message,
        EventNote("retrying", {"reason": again.reason, "delay_s": round(again.delay_s, 3),
                               "code": again.code,
                               "counts_as_attempt": again.counts_as_attempt, **again.detail}),
        delay_s=again.delay_s, refund_attempt=not again.counts_as_attempt,
        quota_wait=quota_wait)
