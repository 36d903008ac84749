"""Runs one delivery of one job: claim the row, keep the lease alive, call the handler,
write the outcome with a conditional UPDATE. Framework-free; the Celery task is a thin shell."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .backoff import full_jitter
from .context import JobContext
from .errors import (
    InvalidInput,
    JobCancelled,
    JobFailed,
    LeaseLost,
    RetryLater,
    Unavailable,
    UnknownJobType,
    WorkerStopping,
)
from .models import Job, JobEvent, utcnow
from .ports import JobStore
from .registry import Registry
from .statuses import WAITING, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the task shell must do next: nothing, or send the job again after ``delay_s``."""

    kind: str  # "succeeded" | "failed" | "cancelled" | "retry" | "skipped" | "lost"
    delay_s: float = 0.0
    queue: str = ""
    job_type: str = ""


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    lease_s: float = 30.0
    # Also how fast a running job learns it was cancelled.
    heartbeat_s: float = 2.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 120.0


class Runner:
    def __init__(self, store: JobStore, registry: Registry, *, worker_id: str,
                 config: RunnerConfig | None = None, clock: Callable[[], datetime] = utcnow,
                 services: dict[str, Any] | None = None,
                 time_limit_errors: tuple[type[BaseException], ...] = ()) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.config = config or RunnerConfig()
        self.clock = clock
        self.services = services or {}
        # What the worker raises when an attempt runs out of time (Celery's soft limit).
        self.time_limit_errors = time_limit_errors
        # Set when the worker's shutdown grace is over; handlers stop at their next checkpoint.
        self.stopping = threading.Event()

    def _event(self, job_id: str, kind: str, attempt: int, **detail: Any) -> None:
        try:
            self.store.add_event(JobEvent(job_id, kind, self.clock(), attempt, detail))
        except Exception:  # history is best effort; the row already holds the truth
            log.exception("could not record %s event for job %s", kind, job_id)

    def run(self, job_id: str) -> Outcome:
        now = self.clock()
        job = self.store.claim(job_id, owner=self.worker_id,
                               lease_until=now + timedelta(seconds=self.config.lease_s), now=now)
        if job is None:
            return self._not_claimed(job_id, now)
        return replace(self._execute(job), job_type=job.type)

    def _execute(self, job: Job) -> Outcome:
        job_id = job.id
        attempt = job.attempts
        self._event(job_id, "claimed", attempt, worker=self.worker_id)
        try:
            job_type = self.registry.get(job.type)
            validated = job_type.validate(job.input)
        except (UnknownJobType, InvalidInput) as exc:
            self._finish(job_id, attempt, Status.FAILED, error=(exc.code, exc.message))
            return Outcome("failed")
        ctx: JobContext[Any] = JobContext(
            job_id=job_id, tenant=job.tenant, job_type=job.type, attempt=attempt,
            max_attempts=job.max_attempts, input=validated, store=self.store,
            checkpoint=job.checkpoint, services=self.services, stopping=self.stopping,
            priority=job.priority.value)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, stop),
                                name=f"lease-{job_id[:8]}", daemon=True)
        beat.start()
        try:
            result = job_type.handler(ctx)
        except LeaseLost:
            log.warning("job %s attempt %d stopped: its row moved on (lease taken over, or the "
                        "attempt was ended by the time limit)", job_id, attempt)
            return Outcome("lost")
        except WorkerStopping:
            return self._hand_back(job_id, ctx)
        except JobCancelled:
            self._finish(job_id, attempt, Status.CANCELLED, ctx=ctx,
                         error=("cancelled", "cancelled on request"))
            return Outcome("cancelled")
        except JobFailed as exc:
            self._finish(job_id, attempt, Status.FAILED, ctx=ctx, error=(exc.code, exc.message))
            return Outcome("failed")
        except RetryLater as exc:
            return self._retry(job, ctx, exc)
        except Exception as exc:  # an unexpected handler error: retry with backoff up to the cap
            timed_out = isinstance(exc, self.time_limit_errors)
            if not timed_out:
                log.exception("job %s attempt %d raised", job_id, attempt)
            return self._retry(job, ctx, RetryLater(
                full_jitter(attempt, base_s=self.config.backoff_base_s,
                            cap_s=self.config.backoff_cap_s),
                reason="time limit" if timed_out else "handler raised",
                error_code="time_limit" if timed_out else "handler_error",
                error_message="the attempt ran past the job time limit" if timed_out
                else f"{type(exc).__name__}: {exc}"[:500]))
        finally:
            stop.set()
            beat.join(timeout=5)
        if ctx.cancelled:  # cancelled while the last step ran: cancellation wins over result
            self._finish(job_id, attempt, Status.CANCELLED, ctx=ctx,
                         error=("cancelled", "cancelled on request"))
            return Outcome("cancelled")
        if self._finish(job_id, attempt, Status.SUCCEEDED, ctx=ctx, result=result):
            return Outcome("succeeded")
        return Outcome("lost")

    def _write(self, **kw: Any) -> bool:
        """The final write of an attempt, retried through a short database outage: giving up
        would throw a finished result away and run the job again once its lease expires."""
        deadline = time.monotonic() + self.config.lease_s
        delay = 0.2
        while True:
            try:
                return self.store.finish(**kw)
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("job %s: database unavailable for the final write; retrying",
                            kw.get("job_id"))
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    def _hand_back(self, job_id: str, ctx: JobContext[Any]) -> Outcome:
        """Shutdown: give the job back to the queue without spending its attempt."""
        ok = self._write(job_id=job_id, attempt=ctx.attempt, status=Status.RETRYING,
                         now=self.clock(), error_code="worker_stopping",
                         error_message="handed back by a stopping worker",
                         usage_delta=ctx.take_unflushed_usage(), refund_attempt=True)
        if not ok:
            return Outcome("lost")
        self._event(job_id, "handed_back", ctx.attempt, worker=self.worker_id)
        job = self.store.get(job_id)
        return Outcome("retry", 0.0, job.priority.value if job else "medium")

    def _not_claimed(self, job_id: str, now: datetime) -> Outcome:
        """A duplicate, early or stale delivery: say whether it should come back later."""
        job = self.store.get(job_id)
        if job is None:
            log.warning("message for unknown job %s dropped", job_id)
            return Outcome("skipped")
        if job.status in WAITING and not job.cancel_requested and job.not_before \
                and job.not_before > now:
            return Outcome("retry", (job.not_before - now).total_seconds(), job.priority.value)
        return Outcome("skipped")

    def _retry(self, job: Any, ctx: JobContext[Any], exc: RetryLater) -> Outcome:
        attempt = ctx.attempt
        if ctx.cancelled:
            self._finish(job.id, attempt, Status.CANCELLED, ctx=ctx,
                         error=("cancelled", "cancelled on request"))
            return Outcome("cancelled")
        if exc.counts_as_attempt and attempt >= job.max_attempts:
            self._finish(job.id, attempt, Status.FAILED, ctx=ctx,
                         error=(exc.error_code, f"{exc.error_message} (after {attempt} attempts)"))
            return Outcome("failed")
        not_before = self.clock() + timedelta(seconds=exc.delay_s)
        ok = self._write(job_id=job.id, attempt=attempt, status=Status.RETRYING,
                         now=self.clock(), error_code=exc.error_code,
                         error_message=exc.error_message,
                         usage_delta=ctx.take_unflushed_usage(), not_before=not_before,
                         refund_attempt=not exc.counts_as_attempt)
        if not ok:
            return Outcome("lost")
        self._event(job.id, "retrying", attempt, reason=exc.reason, delay_s=round(exc.delay_s, 3),
                    code=exc.error_code, counts_as_attempt=exc.counts_as_attempt)
        return Outcome("retry", exc.delay_s, job.priority.value)

    def _finish(self, job_id: str, attempt: int, status: Status, *,
                ctx: JobContext[Any] | None = None, result: Any = None,
                error: tuple[str, str] | None = None) -> bool:
        ok = self._write(job_id=job_id, attempt=attempt, status=status, now=self.clock(),
                         result=result, error_code=error[0] if error else None,
                         error_message=error[1] if error else None,
                         usage_delta=ctx.take_unflushed_usage() if ctx else None)
        if ok:
            detail = {"code": error[0]} if error else {}
            self._event(job_id, status.value, attempt, **detail)
        else:
            log.warning("job %s attempt %d: outcome %s not written (row moved on)",
                        job_id, attempt, status.value)
        return ok

    def _heartbeat(self, ctx: JobContext[Any], stop: threading.Event) -> None:
        """Renew the lease and learn about cancellation; one conditional UPDATE per beat."""
        interval = min(self.config.heartbeat_s, self.config.lease_s / 3)
        while not stop.wait(interval):
            try:
                ours, cancel = self.store.renew_lease(
                    ctx.job_id, attempt=ctx.attempt, owner=self.worker_id,
                    lease_until=self.clock() + timedelta(seconds=self.config.lease_s))
            except Exception:  # the database blinked; the lease has slack, try again
                log.warning("lease renewal for job %s failed", ctx.job_id, exc_info=True)
                continue
            if not ours:
                ctx.lease_lost.set()
                return
            if cancel:
                ctx.cancel_event.set()
