"""Use cases behind the API and CLI: submit, read, list, cancel, replay."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .cursors import cursor_key, decode_cursor, encode_cursor
from .errors import (
    AlreadyTerminal,
    DeadlineUnmeetable,
    IdempotencyMismatch,
    InvalidInput,
    InvalidRequest,
    NotFound,
    Unavailable,
    shorten,
)
from .eta import Estimator, Eta, eta_json
from .jsonsafe import readable, require_storable, text_problem
from .models import CursorPage, EventNote, Job, new_job_id, utcnow
from .outbox import SendOutbox, label_of
from .ports import Dispatcher, JobStore
from .registry import Registry
from .statuses import TERMINAL, Priority, Status
from .tenants import Estimate, TenantGate

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
MAX_DEADLINE_S = 366 * 86400
# What submit does when the first estimate misses the job's deadline.
DEADLINE_ACTIONS = ("refuse", "warn")
# Parameters of submit() that say who asks and under which key, not what is asked.
_NOT_THE_REQUEST = ("self", "tenant", "idempotency_key", "webhook_secret")


def request_fingerprint(request: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a submit request: what an Idempotency-Key promises."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def input_estimate(data: Any) -> Estimate:
    """The least a job will cost: its input's text sent once (about 4 characters a token).
    Dollars are not estimated at submit: an exhausted dollar budget refuses any job."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    return Estimate(tokens=max(1, len(text) // 4))


class JobService:
    def __init__(self, store: JobStore, dispatcher: Dispatcher, registry: Registry, *,
                 clock: Callable[[], datetime] = utcnow, secret: str | None = None,
                 validation_context: Mapping[str, Any] | None = None,
                 gate: TenantGate | None = None,
                 outbox: SendOutbox | None = None,
                 estimator: Estimator | None = None) -> None:
        self.store = store
        # Each waiting job's ETA (core/eta.py), and the check of a deadline at submit.
        self.estimator = estimator
        # Given (the API): new jobs are sent and marked sent in batches after the answer;
        # else at once (the sweep, the CLI, workers, tests).
        self.outbox = outbox
        # Tenant limits at submit (priorities, rate, queued jobs, budgets); None: no limits.
        self.gate = gate
        self.dispatcher = dispatcher
        self.registry = registry
        self.clock = clock
        # Handed to input validation: what a job may ask for depends on the settings.
        self.validation_context = dict(validation_context or {})
        # Every API process of an install must share the secret, or a cursor from one is
        # refused by another; without one (tests, experiments) cursors live in this process.
        self._cursor_key = cursor_key(secret if secret is not None else secrets.token_hex(32))

    def submit(self, *, tenant: str, type: str, input: Any, priority: str | None = None,
               metadata: dict[str, Any] | None = None,
               idempotency_key: str | None = None, deadline_s: float | None = None,
               deadline_at: datetime | None = None, expires_at: datetime | None = None,
               on_deadline_unmeetable: str = "warn",
               webhook: dict[str, Any] | None = None,
               webhook_secret: str | None = None) -> tuple[Job, bool]:
        """Validate, commit the row, then hand the id to the broker.

        Returns (job, created). The row is the promise: if the broker is down the job stays
        queued and undispatched, and the sweep sends it when the broker is back. An
        Idempotency-Key already used with a different request raises IdempotencyMismatch.
        ``deadline_s`` (from now) or ``deadline_at`` (``expires_at``, its older name): the
        job's deadline; past it the job fails with `expired` instead of waiting or retrying.
        ``on_deadline_unmeetable``: what to do when the first estimate misses the deadline. ``webhook`` (``url``, ``events``?, checked by the
        caller) is created with the row, signed with ``webhook_secret``.
        """
        # What an Idempotency-Key promises. Every parameter but the caller and the key belongs
        # here (tests/unit/test_submit_checks.py compares this with the signature).
        request = {"type": type, "input": input, "priority": priority, "metadata": metadata,
                   "deadline_s": deadline_s, "deadline_at": deadline_at,
                   "expires_at": expires_at, "on_deadline_unmeetable": on_deadline_unmeetable,
                   "webhook": webhook}
        require_storable({**request, "idempotency_key": idempotency_key})
        job_type = self.registry.get(type)
        validated = job_type.validate(input, self.validation_context)
        prio = _priority(priority, job_type.priority)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        if on_deadline_unmeetable not in DEADLINE_ACTIONS:
            raise InvalidInput("on_deadline_unmeetable must be one of: "
                               + ", ".join(DEADLINE_ACTIONS))
        deadline = self._deadline(deadline_s, deadline_at, expires_at)
        # A replay of an accepted submit answers with its job: the limits were applied to it.
        fresh = (idempotency_key is None
                 or self.store.by_idempotency_key(tenant, idempotency_key) is None)
        if self.gate is not None and fresh:
            self.gate.check_submit(self.store, tenant=tenant, priority=prio,
                                   estimate=input_estimate(validated.model_dump(mode="json")))
        job_id = new_job_id()
        job = Job(id=job_id, tenant=tenant, type=type, priority=prio,
                  input=validated.model_dump(mode="json", exclude_unset=False),
                  metadata=dict(metadata or {}), idempotency_key=idempotency_key,
                  request_fingerprint=request_fingerprint(request),
                  max_attempts=job_type.max_attempts, created_at=self.clock(),
                  updated_at=self.clock(), expires_at=deadline,
                  webhook=None if webhook is None else {
                      # One own webhook per job: its endpoint has the job's id.
                      **webhook, "id": job_id, "secret": webhook_secret})
        eta, warnings = self._first_estimate(job, refuse=fresh and
                                             on_deadline_unmeetable == "refuse")
        fingerprint = job.request_fingerprint
        job, created = self.store.create(job)
        if not created and job.request_fingerprint not in (None, fingerprint):
            # (A row from before fingerprints has None: it answers the key as it always did.)
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request; "
                "send the same request to get its job, or use a new key")
        if created:
            self.dispatch(job)
            job.eta, job.warnings = eta, warnings
        else:
            job.eta = self.eta_of(job)
        return job, created

    def _first_estimate(self, job: Job, *, refuse: bool) -> tuple[Eta | None, list[dict[str, str]]]:
        """The new job's estimate, and its warnings; raises DeadlineUnmeetable when it misses
        the deadline and the caller asked to be refused (nothing is stored then)."""
        eta = self.estimator.eta_of_new(job) if self.estimator is not None else None
        if eta is None or job.deadline_at is None:
            return eta, []
        late_s = eta.finish_at - job.deadline_at.timestamp()
        if late_s <= 0:
            return eta, []
        finish = datetime.fromtimestamp(eta.finish_at, UTC).isoformat(timespec="seconds")
        message = (f"the estimate finishes at {finish}, {late_s:.0f}s after the deadline "
                   f"(confidence {eta.confidence:g})")
        if refuse:
            raise DeadlineUnmeetable(message + "; nothing was stored",
                                     details={"eta": eta_json(eta)})
        return eta, [{"code": DeadlineUnmeetable.code, "message": message}]

    def eta_of(self, job: Job) -> Eta | None:
        """The job's current estimate: None unless it waits (or when none can be made)."""
        if self.estimator is None or job.status.terminal:
            return None
        try:
            return self.estimator.eta_of(job)
        except Exception:  # advice: never the reason a read fails
            log.warning("no ETA for job %s", job.id, exc_info=True)
            return None

    def prepare(self, *, tenant: str, type: str, input: Any, priority: str | None,
                idempotency_key: str | None, schedule: str | None) -> Job:
        """A scheduled job, validated and passed through the tenant's limits like a submit,
        but not stored: the schedule store writes it with its slot's run in one transaction,
        then ``dispatch`` sends it."""
        job_type = self.registry.get(type)
        validated = job_type.validate(input, self.validation_context)
        prio = _priority(priority, job_type.priority)
        if self.gate is not None:
            self.gate.check_submit(self.store, tenant=tenant, priority=prio,
                                   estimate=input_estimate(validated.model_dump(mode="json")))
        request = {"type": type, "input": input, "priority": priority, "schedule": schedule}
        now = self.clock()
        return Job(id=new_job_id(), tenant=tenant, type=type, priority=prio,
                   input=validated.model_dump(mode="json", exclude_unset=False),
                   idempotency_key=idempotency_key,
                   request_fingerprint=request_fingerprint(request),
                   max_attempts=job_type.max_attempts, created_at=now, updated_at=now,
                   schedule=schedule)

    def _deadline(self, deadline_s: float | None, deadline_at: datetime | None,
                  expires_at: datetime | None) -> datetime | None:
        given = [(name, v) for name, v in (("deadline_s", deadline_s),
                                           ("deadline_at", deadline_at),
                                           ("expires_at", expires_at)) if v is not None]
        if len(given) > 1:
            raise InvalidInput(f"give one deadline, not {' and '.join(n for n, _ in given)}")
        if not given:
            return None
        name, value = given[0]
        if isinstance(value, datetime) and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2030-01-01T12:00:00Z)")
        if deadline_s is not None and not (deadline_s > 0 and math.isfinite(deadline_s)):
            raise InvalidInput("deadline_s must be a positive number of seconds")
        # Measured on the database's clock, which the deadline is later compared against.
        now = self.store.now()
        if deadline_s is not None:
            if deadline_s > MAX_DEADLINE_S:
                raise InvalidInput(f"deadline_s may be at most {MAX_DEADLINE_S} (a year)")
            return now + timedelta(seconds=deadline_s)
        assert isinstance(value, datetime)
        if value <= now:
            raise InvalidInput(f"{name} is in the past")
        return value.astimezone(UTC)

    def dispatch(self, job: Job, *, countdown_s: float = 0.0) -> bool:
        """Send the id of the waiting row ``job`` (as read) to the broker. Returns whether it
        was sent (or handed to the outbox); never raises for a broker or database outage:
        the sweep covers both."""
        if self.outbox is not None and countdown_s <= 0:
            self.outbox.add(job)
            return True
        try:
            self.dispatcher.send(job.id, queue=job.priority.value, countdown_s=countdown_s,
                                 label=label_of(job))
        except Unavailable as exc:
            # Accepted anyway: the sweep re-sends undispatched rows once the broker is back.
            log.warning("broker unavailable, job %s stays queued for the sweep: %s", job.id, exc)
            return False
        # Only if the row is still the one we sent for: a worker that already claimed it
        # (and maybe parked it again, clearing dispatched_at) keeps its own state.
        try:
            self.store.mark_dispatched(job.id, attempt=job.attempts, version=job.updated_at)
        except Exception:
            # The message is out; an unrecorded send costs at most one duplicate from the
            # sweep, which is harmless. The caller's answer (a committed submit) stands.
            log.warning("job %s sent, but recording it failed", job.id, exc_info=True)
        return True

    def get(self, job_id: str, *, tenant: str | None) -> Job:
        # An id no store could hold (NUL, surrogates) names no job; asking PostgreSQL would fail.
        job = self.store.get(job_id, tenant=tenant) if text_problem(job_id) is None else None
        if job is None:
            raise NotFound(f"job {shorten(job_id)} not found")
        return job

    def list(self, *, tenant: str | None, status: str | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> CursorPage:
        st: Status | None = None
        if status is not None:
            try:
                st = Status(status)
            except ValueError:
                raise InvalidInput(f"invalid status {shorten(status)}; use one of: "
                                   + ", ".join(s.value for s in Status)) from None
        if type is not None and text_problem(type):
            raise InvalidRequest(f"type: string {text_problem(type)}")
        if type is not None:
            self.registry.get(type)  # a filter names a job type: an unknown one is a mistake
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500")
        after = decode_cursor(cursor, self._cursor_key) if cursor is not None else None
        page = self.store.list(tenant=tenant, status=st, type=type, limit=limit, after=after)
        return CursorPage(page.jobs, None if page.next_after is None
                          else encode_cursor(page.next_after, self._cursor_key))

    def cancel(self, job_id: str, *, tenant: str | None) -> Job:
        """Cancel is recorded on the row: a waiting job never starts, a running one stops at
        its next checkpoint."""
        job = self.get(job_id, tenant=tenant)
        if job.status in TERMINAL:
            raise AlreadyTerminal(f"job {job_id!r} is already {job.status.value}")
        updated = self.store.request_cancel(job_id, tenant=tenant)
        if updated is None:  # it finished between our read and the update
            job = self.get(job_id, tenant=tenant)
            raise AlreadyTerminal(f"job {job_id!r} is already {job.status.value}")
        return readable(updated)  # the row's content is sent back: it must be sendable

    def retry(self, job_id: str, *, tenant: str | None) -> Job:
        """Replay a dead-lettered (failed) job with a fresh attempt budget (and no deadline:
        the replay is a new request to run it)."""
        job = self.get(job_id, tenant=tenant)
        if job.status is not Status.FAILED:
            raise AlreadyTerminal(
                f"only failed jobs can be retried; job {job_id!r} is {job.status.value}")
        replayed = self.store.requeue(job_id, from_status=Status.FAILED, attempt=job.attempts,
                                      reset_attempts=True, note=EventNote("replayed"))
        if replayed is None:
            raise AlreadyTerminal(f"job {job_id!r} changed while being retried")
        self.dispatch(replayed)
        return replayed


def _priority(priority: str | None, default: Priority) -> Priority:
    if priority is None:
        return default
    try:
        return Priority(priority)
    except ValueError:
        raise InvalidInput(f"invalid priority {shorten(priority)}; use high, medium or low"
                           ) from None
