"""Runs one delivery of one job: claim the row, keep the lease alive, call the handler,
write the outcome with a conditional UPDATE. Framework-free; the Celery task is a thin shell."""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from .backoff import DEFAULT_BASE_S, DEFAULT_CAP_S, full_jitter
from .context import JobContext
from .decision import CANCELLED, Again, Facts, decide
from .errors import (
    InvalidInput,
    JobCancelled,
    JobFailed,
    LeaseLost,
    RetryLater,
    Unavailable,
    UnknownJobType,
    WorkerStopping,
    public_summary,
)
from .jsonsafe import find_problem, storable_text
from .models import EventNote, Job, TenantSettings, Usage
from .ports import JobStore
from .registry import Registry
from .statuses import WAITING, Status
from .type_limits import TypeGate, TypeLimit

log = logging.getLogger(__name__)

RUNNING_CAP_DELAY_S = 2.0  # a job over its tenant's running cap comes back after about this

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the task shell must do next: nothing, or send the job again after ``delay_s``."""

    kind: str  # "succeeded" | "failed" | "cancelled" | "retry" | "skipped" | "lost"
    delay_s: float = 0.0
    queue: str = ""
    job_type: str = ""
    # For a delay that runs from when it was decided (a quota wait): when (time.monotonic())
    # the job is due again, so the send's countdown leaves out the time spent until then.
    due_at: float | None = None

    def countdown_s(self, now: float | None = None) -> float:
        """The countdown to send the job again with, at ``now`` (``time.monotonic()``)."""
        if self.due_at is None:
            return self.delay_s
        return max(0.0, self.due_at - (time.monotonic() if now is None else now))


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    lease_s: float = 30.0
    # Also how fast a running job learns it was cancelled.
    heartbeat_s: float = 2.0
    backoff_base_s: float = DEFAULT_BASE_S
    backoff_cap_s: float = DEFAULT_CAP_S
    # How long a job may wait for provider quota in a row, unless its type says otherwise.
    max_quota_wait_s: float = 3600.0


class Runner:
    """Reads no clock of its own: leases are durations the store stamps on the database's
    clock, and retry decisions compare row times with ``JobStore.now``."""

    def __init__(self, store: JobStore, registry: Registry, *, worker_id: str,
                 config: RunnerConfig | None = None, services: dict[str, Any] | None = None,
                 time_limit_errors: tuple[type[BaseException], ...] = (),
                 tenant_settings: Callable[[str], TenantSettings | None] | None = None,
                 type_gate: TypeGate | None = None,
                 type_limit: Callable[[str], TypeLimit] | None = None) -> None:
        self.store = store
        # Job types' own limits (starts a minute, runs at once), shared through ``type_gate``.
        self.type_gate = type_gate
        self.type_limit = type_limit
        # A tenant's running cap is checked after each claim (None: no tenant limits).
        self.tenant_settings = tenant_settings
        self.registry = registry
        self.worker_id = worker_id
        self.config = config or RunnerConfig()
        self.services = services or {}
        # What the worker raises when an attempt runs out of time (Celery's soft limit).
        self.time_limit_errors = time_limit_errors
        # Set when the worker's shutdown grace is over; handlers stop at their next checkpoint.
        self.stopping = threading.Event()

    def run(self, job_id: str, *, on_claim: Callable[[Job], None] | None = None) -> Outcome:
        """``on_claim`` learns the attempt this delivery claimed (the threads pool's time
        limit pins itself to it)."""
        job = self.store.claim(job_id, owner=self.worker_id, lease_s=self.config.lease_s)
        if job is None:
            return self._not_claimed(job_id)
        if on_claim is not None:
            on_claim(job)
        cap = self._running_cap(job)
        if cap is not None:
            return replace(self._over_cap(job, cap), job_type=job.type)
        limit = self._limit_of(job.type)
        if limit:
            wait = self._type_wait(job, limit)
            if wait is not None:
                return replace(self._over_type_limit(job, limit, wait), job_type=job.type)
        try:
            return replace(self._execute(job), job_type=job.type)
        finally:
            if limit.concurrency is not None:
                self._release_type_slot(job)

    def _limit_of(self, job_type: str) -> TypeLimit:
        if self.type_gate is None or self.type_limit is None:
            return TypeLimit()
        return self.type_limit(job_type)

    def _type_wait(self, job: Job, limit: TypeLimit) -> float | None:
        """Seconds until the job type's limits let this run start; None: it starts now."""
        assert self.type_gate is not None
        try:
            return self.type_gate.acquire(job.type, job.id, limit)
        except Exception:  # the shared state is unreachable: run it rather than bounce it
            log.warning("job type limits of %s not checked", job.type, exc_info=True)
            return None

    def _release_type_slot(self, job: Job) -> None:
        assert self.type_gate is not None
        try:
            self.type_gate.release(job.type, job.id)
        except Exception:  # the slot frees itself once unrenewed (SLOT_TTL_S)
            log.warning("job %s: its %s slot was not released", job.id, job.type,
                        exc_info=True)

    def _over_type_limit(self, job: Job, limit: TypeLimit, wait_s: float) -> Outcome:
        """Hand the job back until the type's limit would let it start, without spending
        its attempt, as a quota wait does."""
        delay = max(0.05, wait_s) * (1.0 + 0.25 * random.random())  # spread the returns
        return self._step_back(job, delay, "job_type_limit",
                               f"job type {job.type!r} may start {limit.describe()}; waiting",
                               "job type limit")

    def _running_cap(self, job: Job) -> int | None:
        """The tenant's running cap if this claim took it over the cap, else None. The count
        includes this job; two claims racing for the last slot may both step back (the
        jittered delay splits them), never both run past it."""
        if self.tenant_settings is None:
            return None
        try:
            settings = self.tenant_settings(job.tenant)
            if settings is None or settings.max_running is None:
                return None
            if self.store.count_running(job.tenant) <= settings.max_running:
                return None
        except Unavailable:
            return None  # the database blinked: run it rather than bounce it
        return settings.max_running

    def _over_cap(self, job: Job, cap: int) -> Outcome:
        """Hand the job back for a short, jittered while, without spending its attempt: the
        tenant's other jobs hold its running slots (as a quota wait does, but no quota clock
        runs: the tenant's own load is not the provider's)."""
        delay = RUNNING_CAP_DELAY_S * (0.5 + random.random())
        return self._step_back(job, delay, "tenant_running_cap",
                               f"tenant {job.tenant!r} runs {cap} jobs at most; waiting for a "
                               "slot", "tenant running cap")

    def _step_back(self, job: Job, delay: float, code: str, message: str,
                   reason: str) -> Outcome:
        """Back to waiting for ``delay`` seconds with the attempt refunded, and an event."""
        written = self._write(
            job_id=job.id, attempt=job.attempts, status=Status.RETRYING, error_code=code,
            error_message=message, delay_s=delay, refund_attempt=True,
            note=EventNote("retrying", {"reason": reason, "code": code,
                                        "delay_s": round(delay, 3),
                                        "counts_as_attempt": False}))
        return self._outcome(written, delay, job)

    def max_quota_wait_s(self, job_type: str) -> float:
        if job_type in self.registry:
            own = self.registry.get(job_type).max_quota_wait_s
            if own is not None:
                return own
        return self.config.max_quota_wait_s

    def backoff(self, attempt: int) -> float:
        return full_jitter(attempt, base_s=self.config.backoff_base_s,
                           cap_s=self.config.backoff_cap_s)

    def _execute(self, job: Job) -> Outcome:
        job_id = job.id
        attempt = job.attempts
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
        # In a copy of this thread's context: its log lines carry the job's fields too.
        beat = threading.Thread(target=contextvars.copy_context().run,
                                args=(self._heartbeat, ctx, stop),
                                name=f"lease-{job_id[:8]}", daemon=True)
        beat.start()
        returned = False
        try:
            try:
                result = job_type.handler(ctx)
                returned = True
            finally:
                stop.set()
                beat.join(timeout=5)
                if not returned:  # the last report is written before the outcome
                    self._flush_progress(ctx)
        except LeaseLost:
            self._bill_late(job_id, ctx.take_unflushed_usage())
            log.warning("job %s attempt %d stopped: its row moved on (lease taken over, or the "
                        "attempt was ended by the time limit)", job_id, attempt)
            return Outcome("lost")
        except WorkerStopping:
            return self._hand_back(job, ctx)
        except JobCancelled:
            return self._cancelled(job_id, ctx)
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
                self.backoff(attempt),
                reason="time limit" if timed_out else "handler raised",
                error_code="time_limit" if timed_out else "handler_error",
                error_message="the attempt ran past the job time limit" if timed_out
                else f"{public_summary(exc)} (the worker log has the details)"))
        return self._ended(job, ctx, result)

    def _ended(self, job: Job, ctx: JobContext[Any], result: Any) -> Outcome:
        """The handler returned: the outcome, with the last progress report in its write."""
        job_id, attempt = job.id, job.attempts
        if ctx.cancelled:  # cancelled while the last step ran: cancellation wins over result
            self._flush_progress(ctx)
            return self._cancelled(job_id, ctx)
        if (problem := find_problem(result)) is not None:
            # Refused by PostgreSQL (NUL, lone surrogates, NaN): retrying would only pay for
            # the same result again, so the job ends with what is wrong with it.
            self._flush_progress(ctx)
            self._finish(job_id, attempt, Status.FAILED, ctx=ctx, error=(
                "unstorable_result", f"the result cannot be stored: {problem[0] or 'result'} "
                f"{problem[1]}"))
            return Outcome("failed")
        if self._finish(job_id, attempt, Status.SUCCEEDED, ctx=ctx, result=result,
                        progress=ctx.take_pending_progress()):
            return Outcome("succeeded")
        return Outcome("lost")

    def _write(self, **kw: Any) -> Status | None:
        """The final write of an attempt, retried through a short database outage: giving up
        would throw a finished result away and run the job again once its lease expires."""
        if isinstance(kw.get("error_message"), str):
            kw["error_message"] = storable_text(kw["error_message"])
        written = self._through_outage(lambda: self.store.finish(**kw), kw.get("job_id"))
        if written is None:
            self._bill_late(kw["job_id"], kw.get("usage_delta"))
        return written

    def _bill_late(self, job_id: str, delta: Usage | None) -> None:
        """Usage of an attempt whose write lost its race: the provider billed it anyway."""
        if delta is None or delta == Usage():
            return
        try:
            self.store.add_late_usage(job_id, delta)
        except Exception:  # the row's totals miss it; say so rather than fail the delivery
            log.warning("job %s: could not record %s as late usage", job_id, delta,
                        exc_info=True)

    def _through_outage(self, fn: Callable[[], T], job_id: object) -> T:
        deadline = time.monotonic() + self.config.lease_s
        delay = 0.2
        while True:
            try:
                return fn()
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("job %s: database unavailable for the final write; retrying",
                            job_id)
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    def _hand_back(self, job: Job, ctx: JobContext[Any]) -> Outcome:
        """Shutdown: give the job back to the queue without spending its attempt."""
        written = self._write(job_id=job.id, attempt=ctx.attempt, status=Status.RETRYING,
                              error_code="worker_stopping",
                              error_message="handed back by a stopping worker", delay_s=0.0,
                              usage_delta=ctx.take_unflushed_usage(), refund_attempt=True,
                              note=EventNote("handed_back", {"worker": self.worker_id}))
        return self._outcome(written, 0.0, job)

    def _not_claimed(self, job_id: str) -> Outcome:
        """A duplicate, early or stale delivery: say whether it should come back later."""
        job = self.store.get(job_id)
        if job is None:
            log.warning("message for unknown job %s dropped", job_id)
            return Outcome("skipped")
        if job.status in WAITING:
            # A row that may not wait (cancel requested, deadline passed) ends here.
            for _, status in self.store.close_waiting(job_id=job_id):
                return Outcome("cancelled" if status is Status.CANCELLED else "failed",
                               job_type=job.type)
            if not job.cancel_requested and job.not_before is not None:
                # Early (the broker's ETA runs on another clock than the database's). Even
                # if not_before has passed by now, the claim just refused it as early:
                # acknowledging this message would leave the job to the 600 s re-send.
                now = self.store.now()
                return Outcome("retry", max(0.05, (job.not_before - now).total_seconds()),
                               job.priority.value)
        return Outcome("skipped")

    def _retry(self, job: Job, ctx: JobContext[Any], exc: RetryLater) -> Outcome:
        # A quota wait runs from the limiter's answer: what unwinding the handler took is off.
        again = Again(exc.remaining_s(), exc.error_code, exc.error_message, exc.reason,
                      counts_as_attempt=exc.counts_as_attempt,
                      progressed=ctx.usage != Usage())  # a provider call was granted
        now = self._through_outage(self.store.now, job.id)
        decision = decide(Facts.of(job, attempt=ctx.attempt, cancelled=ctx.cancelled), again,
                          now=now, max_quota_wait_s=self.max_quota_wait_s(job.type))
        written = self._write(job_id=job.id, attempt=ctx.attempt,
                              usage_delta=ctx.take_unflushed_usage(), **decision.finish_args())
        outcome = self._outcome(written, decision.delay_s, job)
        due = exc.due_at()
        if outcome.kind == "retry" and due is not None:
            outcome = replace(outcome, due_at=due)
        return outcome

    @staticmethod
    def _outcome(written: Status | None, delay_s: float, job: Job) -> Outcome:
        if written is None:
            return Outcome("lost")
        if written is Status.RETRYING:
            return Outcome("retry", delay_s, job.priority.value)
        return Outcome(written.value)

    def _cancelled(self, job_id: str, ctx: JobContext[Any]) -> Outcome:
        self._finish(job_id, ctx.attempt, Status.CANCELLED, ctx=ctx, error=CANCELLED)
        return Outcome("cancelled")

    def _finish(self, job_id: str, attempt: int, status: Status, *,
                ctx: JobContext[Any] | None = None, result: Any = None,
                error: tuple[str, str] | None = None,
                progress: tuple[int, str] | None = None) -> bool:
        written = self._write(job_id=job_id, attempt=attempt, status=status, result=result,
                              progress=progress, error_code=error[0] if error else None,
                              error_message=error[1] if error else None,
                              usage_delta=ctx.take_unflushed_usage() if ctx else None,
                              note=EventNote(status.value, {"code": error[0]} if error else {}))
        if written is None:
            log.warning("job %s attempt %d: outcome %s not written (row moved on)",
                        job_id, attempt, status.value)
        return written is not None

    @staticmethod
    def _flush_progress(ctx: JobContext[Any]) -> None:
        try:
            ctx.flush_progress()
        except LeaseLost:
            pass  # the outcome's own write finds the row moved on too
        except Exception:  # the final write retries through an outage; this is only progress
            log.warning("job %s: last progress not written", ctx.job_id, exc_info=True)

    def _heartbeat(self, ctx: JobContext[Any], stop: threading.Event) -> None:
        """Renew the lease and learn about cancellation (one conditional UPDATE per beat);
        between beats, write a coalesced progress report that is still pending."""
        interval = min(self.config.heartbeat_s, self.config.lease_s / 3)
        next_beat = time.monotonic() + interval
        while not stop.wait(min(ctx.progress_every_s, max(0.0, next_beat - time.monotonic()))):
            if ctx.progress_pending:
                self._flush_progress(ctx)
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            try:
                ours, cancel = self.store.renew_lease(
                    ctx.job_id, attempt=ctx.attempt, owner=self.worker_id,
                    lease_s=self.config.lease_s)
            except Exception:  # the database blinked; the lease has slack, try again
                log.warning("lease renewal for job %s failed", ctx.job_id, exc_info=True)
                continue
            if not ours:
                ctx.lease_lost.set()
                return
            if self._limit_of(ctx.job_type).concurrency is not None:
                self._renew_type_slot(ctx)
            if cancel:
                ctx.cancel_event.set()

    def _renew_type_slot(self, ctx: JobContext[Any]) -> None:
        assert self.type_gate is not None
        try:
            self.type_gate.renew(ctx.job_type, ctx.job_id)
        except Exception:  # the slot has SLOT_TTL_S of slack; try again next beat
            log.warning("job %s: its %s slot was not renewed", ctx.job_id, ctx.job_type,
                        exc_info=True)
