"""In-memory implementations of the ports, shipped for unit tests and experiments.

They follow the same conditional-update semantics as the SQL store; the contract tests run one
body against both.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from .decision import CANCELLED, EXPIRED, QuotaWait
from .jsonsafe import readable
from .models import (
    ApiKey,
    EventNote,
    Job,
    JobEvent,
    Page,
    TenantSettings,
    Usage,
    UsageRow,
    utcnow,
)
from .statuses import TERMINAL, WAITING, Status, check_transition


def _quota_wait(since: datetime | None, what: QuotaWait, now: datetime) -> datetime | None:
    return {"keep": since, "start": now, "continue": since or now, "clear": None}[what]


class InMemoryJobStore:
    """``clock`` plays the database's clock (every host reads the same one)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._events: list[JobEvent] = []
        self._keys: dict[str, tuple[ApiKey, str]] = {}
        self._tenants: dict[str, TenantSettings] = {}
        self._usage: dict[tuple[str, date, str, str], tuple[int, Usage]] = {}
        self._saved: dict[tuple[str, date, str, str], tuple[int, Usage]] = {}  # reused calls
        self._lock = threading.RLock()

    def _copy(self, job: Job) -> Job:
        return copy.deepcopy(job)

    def create(self, job: Job) -> tuple[Job, bool]:
        with self._lock:
            if job.idempotency_key is not None:
                for existing in self._jobs.values():
                    if (existing.tenant, existing.idempotency_key) == (job.tenant,
                                                                       job.idempotency_key):
                        return readable(self._copy(existing)), False
            self._jobs[job.id] = self._copy(job)
            self._events.append(JobEvent(job.id, "submitted", job.created_at, 0,
                                         {"priority": job.priority.value}, len(self._events) + 1))
            return self._copy(job), True

    def by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        with self._lock:
            for existing in self._jobs.values():
                if (existing.tenant, existing.idempotency_key) == (tenant, key):
                    return readable(self._copy(existing))
            return None

    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (tenant is not None and job.tenant != tenant):
                return None
            return readable(self._copy(job))

    def list(self, *, tenant: str | None, status: Status | None = None, type: str | None = None,
             limit: int = 50, after: tuple[datetime, str] | None = None) -> Page:
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if (tenant is None or j.tenant == tenant)
                    and (status is None or j.status == status)
                    and (type is None or j.type == type)]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        if after is not None:
            jobs = [j for j in jobs if (j.created_at, j.id) < after]
        page = jobs[: limit + 1]
        more = len(page) > limit
        page = page[:limit]
        return Page([readable(self._copy(j)) for j in page],
                    (page[-1].created_at, page[-1].id) if more and page else None)

    def now(self) -> datetime:
        return self._clock()

    def _note(self, job: Job, note: EventNote, at: datetime, attempt: int | None = None) -> None:
        if note.kind == Status.FAILED.value and "message" not in note.detail:
            note = EventNote(note.kind, {**note.detail, "message": job.error_message or ""})
        self._events.append(JobEvent(job.id, note.kind, at,
                                     job.attempts if attempt is None else attempt,
                                     dict(note.detail), len(self._events) + 1))

    def mark_dispatched(self, job_id: str, *, attempt: int, version: datetime) -> bool:
        return self.mark_dispatched_many([(job_id, attempt, version)]) == 1

    def mark_dispatched_many(self, marks: Sequence[tuple[str, int, datetime]]) -> int:
        marked = 0
        with self._lock:
            for job_id, attempt, version in marks:
                job = self._jobs.get(job_id)
                if (job is None or job.status not in WAITING or job.attempts != attempt
                        or job.updated_at != version):
                    continue
                job.dispatched_at = self._clock()
                marked += 1
        return marked

    def claim(self, job_id: str, *, owner: str, lease_s: float) -> Job | None:
        with self._lock:
            now = self._clock()
            job = self._jobs.get(job_id)
            if (job is None or job.status not in WAITING or job.cancel_requested
                    or (job.not_before is not None and job.not_before > now)
                    or (job.expires_at is not None and job.expires_at <= now)):
                return None
            job.status = Status.RUNNING
            job.attempts += 1
            job.lease_owner, job.lease_expires_at = owner, now + timedelta(seconds=lease_s)
            job.started_at = job.started_at or now
            job.updated_at = now
            self._note(job, EventNote("claimed", {"worker": owner}), now)
            return self._copy(job)

    def _running(self, job_id: str, attempt: int) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status is not Status.RUNNING or job.attempts != attempt:
            return None
        return job

    def renew_lease(self, job_id: str, *, attempt: int, owner: str,
                    lease_s: float) -> tuple[bool, bool]:
        with self._lock:
            job = self._running(job_id, attempt)
            if job is None or job.lease_owner != owner:
                return False, False
            job.lease_expires_at = self._clock() + timedelta(seconds=lease_s)
            return True, job.cancel_requested

    def update_progress(self, job_id: str, *, attempt: int, progress: int, message: str,
                        checkpoint: dict[str, Any] | None = None,
                        usage_delta: Usage | None = None,
                        note: EventNote | None = None) -> bool:
        with self._lock:
            job = self._running(job_id, attempt)
            if job is None:
                return False
            if note is not None:
                self._note(job, note, self._clock(), attempt)
            if progress >= 0:
                job.progress = progress
            if message:
                job.message = message
            if checkpoint is not None:
                job.checkpoint = copy.deepcopy(checkpoint)
            if usage_delta is not None:
                job.usage = job.usage.add(usage_delta)
            return True

    def add_event(self, job_id: str, *, attempt: int, note: EventNote) -> bool:
        with self._lock:
            job = self._running(job_id, attempt)
            if job is None:
                return False
            self._note(job, note, self._clock(), attempt)
            return True

    def _may_not_wait(self, job: Job, now: datetime) -> Status | None:
        """A row moving to a waiting status that would wait for nothing ends instead."""
        if job.cancel_requested:
            return Status.CANCELLED
        if job.expires_at is not None and job.expires_at <= now:
            return Status.FAILED
        return None

    def _end_instead(self, job: Job, status: Status, now: datetime) -> EventNote:
        job.status, job.finished_at, job.not_before = status, now, None
        job.error_code, job.error_message = CANCELLED if status is Status.CANCELLED else EXPIRED
        return EventNote(status.value, {"code": job.error_code})

    def finish(self, job_id: str, *, attempt: int, status: Status, result: Any = None,
               error_code: str | None = None, error_message: str | None = None,
               usage_delta: Usage | None = None, delay_s: float | None = None,
               refund_attempt: bool = False, quota_wait: QuotaWait = "keep",
               lease_expired: bool = False, note: EventNote | None = None,
               progress: tuple[int, str] | None = None) -> Status | None:
        check_transition(Status.RUNNING, status)
        with self._lock:
            now = self._clock()
            job = self._running(job_id, attempt)
            if job is None or (lease_expired and not (
                    job.lease_expires_at is not None and job.lease_expires_at < now)):
                return None
            note = note or EventNote(status.value)
            if progress is not None:  # the last report first, as the running job made it
                job.progress, job.message = progress
                self._note(job, EventNote("progress", {"percent": progress[0],
                                                       "message": progress[1]}), now, attempt)
            job.status = status
            job.updated_at = now
            job.lease_owner = job.lease_expires_at = None
            if usage_delta is not None:
                job.usage = job.usage.add(usage_delta)
            if status is Status.SUCCEEDED:
                job.result, job.progress = copy.deepcopy(result), 100
                job.error_code = job.error_message = None
            else:
                job.error_code, job.error_message = error_code, error_message
            if status in TERMINAL:
                job.finished_at = now
            job.not_before = None if delay_s is None else now + timedelta(seconds=delay_s)
            if status is Status.RETRYING:  # the next send is due; the sweep watches for it
                job.dispatched_at = None
                instead = self._may_not_wait(job, now)
                if instead is not None:
                    note = self._end_instead(job, instead, now)
            if refund_attempt:
                job.attempts -= 1
            job.quota_wait_since = _quota_wait(job.quota_wait_since, quota_wait, now)
            self._note(job, note, now, attempt)
            return job.status

    def request_cancel(self, job_id: str, *, tenant: str | None) -> Job | None:
        with self._lock:
            now = self._clock()
            job = self._jobs.get(job_id)
            if job is None or (tenant is not None and job.tenant != tenant):
                return None
            if job.status in WAITING:
                job.status, job.finished_at = Status.CANCELLED, now
                job.error_code, job.error_message = CANCELLED
            elif job.status is Status.RUNNING:
                job.cancel_requested = True
            else:
                return None
            job.updated_at = now
            self._note(job, EventNote("cancel_requested"), now)
            if job.status is Status.CANCELLED:
                self._note(job, EventNote("cancelled", {"code": CANCELLED[0]}), now)
            return self._copy(job)

    def requeue(self, job_id: str, *, from_status: Status, attempt: int,
                reset_attempts: bool = False, lease_expired: bool = False,
                note: EventNote | None = None) -> Job | None:
        check_transition(from_status, Status.QUEUED)
        with self._lock:
            now = self._clock()
            job = self._jobs.get(job_id)
            if job is None or job.status is not from_status or job.attempts != attempt:
                return None
            if lease_expired and not (job.lease_expires_at is not None
                                      and job.lease_expires_at < now):
                return None
            note = note or EventNote("requeued")
            job.status = Status.QUEUED
            job.lease_owner = job.lease_expires_at = None
            job.not_before = job.finished_at = job.dispatched_at = None
            job.updated_at = now
            if reset_attempts:
                job.attempts = 0
                job.error_code = job.error_message = None
                job.cancel_requested = False
                job.expires_at = job.quota_wait_since = None
            instead = self._may_not_wait(job, now)
            if instead is not None:
                note = self._end_instead(job, instead, now)
            self._note(job, note, now)
            return self._copy(job)

    def close_waiting(self, *, job_id: str | None = None,
                      limit: int = 500) -> Sequence[tuple[str, Status]]:
        with self._lock:
            now = self._clock()
            ended: list[tuple[str, Status]] = []
            for job in list(self._jobs.values()):
                if len(ended) >= limit:
                    break
                if job.status not in WAITING or (job_id is not None and job.id != job_id):
                    continue
                instead = self._may_not_wait(job, now)
                if instead is not None:
                    job.updated_at = now
                    self._note(job, self._end_instead(job, instead, now), now)
                    ended.append((job.id, instead))
            return ended

    def expired_leases(self, limit: int = 100) -> Sequence[Job]:
        with self._lock:
            now = self._clock()
            return [self._copy(j) for j in self._jobs.values()
                    if j.status is Status.RUNNING and j.lease_expires_at is not None
                    and j.lease_expires_at < now][:limit]

    def undispatched(self, *, grace_s: float, redispatch_after_s: float,
                     overdue_before: Mapping[str, datetime] | None = None,
                     limit: int = 500) -> Sequence[Job]:
        with self._lock:
            now = self._clock()
            older_than = now - timedelta(seconds=grace_s)
            redispatch_before = now - timedelta(seconds=redispatch_after_s)
            overdue = overdue_before or {}
            out = []
            for j in self._jobs.values():
                if j.status not in WAITING or j.cancel_requested:
                    continue
                if j.dispatched_at is None:
                    if j.updated_at < older_than:
                        out.append(j)
                elif j.dispatched_at < overdue.get(j.priority.value, redispatch_before) and \
                        (j.not_before is None or j.not_before <= now):
                    out.append(j)
            return [self._copy(j) for j in out[:limit]]

    def purge(self, *, finished_before: datetime, failed_before: datetime) -> int:
        with self._lock:
            doomed = {j.id for j in self._jobs.values()
                      if j.finished_at is not None
                      and ((j.status is Status.FAILED and j.finished_at < failed_before)
                           or (j.status in (Status.SUCCEEDED, Status.CANCELLED)
                               and j.finished_at < finished_before))}
            for job_id in doomed:
                del self._jobs[job_id]
            self._events = [e for e in self._events if e.job_id not in doomed]
            return len(doomed)

    def events(self, job_id: str, *, after_id: int = 0) -> builtins.list[JobEvent]:
        with self._lock:
            return [e for e in self._events if e.job_id == job_id and (e.id or 0) > after_id]

    def fold_counts(self) -> int:
        return 0  # counted when asked

    def count_by_status(self, *, tenant: str | None = None) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {s.value: 0 for s in Status}
            for j in self._jobs.values():
                if tenant is None or j.tenant == tenant:
                    counts[j.status.value] += 1
            return counts

    def count_waiting(self, tenant: str) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.tenant == tenant
                       and j.status in WAITING)

    def count_running(self, tenant: str) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.tenant == tenant
                       and j.status is Status.RUNNING)

    # -- AccountStore ---------------------------------------------------------------------
    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self._lock:
            self._keys[key_hash] = (key, key_hash)

    def key_for_hash(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            found = self._keys.get(key_hash)
            return found[0] if found else None

    def _key_update(self, key_id: str, check: Callable[[ApiKey], bool], **changes: Any) -> bool:
        with self._lock:
            for h, (k, _) in self._keys.items():
                if k.id == key_id and check(k):
                    self._keys[h] = (dataclasses.replace(k, **changes), h)
                    return True
            return False

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            return next((k for k, _ in self._keys.values() if k.id == key_id), None)

    def keys_by_prefix(self, prefix: str) -> builtins.list[ApiKey]:
        with self._lock:
            return [k for k, _ in self._keys.values() if k.prefix.startswith(prefix)]

    def list_keys(self, *, tenant: str | None = None) -> builtins.list[ApiKey]:
        with self._lock:
            keys = [k for k, _ in self._keys.values() if tenant is None or k.tenant == tenant]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def revoke_key(self, key_id: str, *, at: datetime) -> bool:
        return self._key_update(key_id, lambda k: k.revoked_at is None, revoked_at=at)

    def expire_key(self, key_id: str, *, at: datetime) -> bool:
        return self._key_update(
            key_id, lambda k: k.revoked_at is None and (k.expires_at is None
                                                       or k.expires_at > at), expires_at=at)

    def keys_generation(self) -> object:
        with self._lock:
            return tuple(sorted((k.id, k.revoked_at, k.expires_at) for k, _ in
                                self._keys.values()))

    def touch_key(self, key_id: str, *, at: datetime, address: str | None) -> None:
        self._key_update(key_id, lambda k: True, last_used_at=at, last_used_ip=address)

    def get_tenant(self, name: str) -> TenantSettings | None:
        with self._lock:
            return self._tenants.get(name)

    def put_tenant(self, settings: TenantSettings) -> None:
        with self._lock:
            self._tenants[settings.name] = settings

    def list_tenants(self) -> builtins.list[TenantSettings]:
        with self._lock:
            return sorted(self._tenants.values(), key=lambda t: t.name)

    def add_usage(self, *, tenant: str, day: date, type: str, lane: str, usage: Usage,
                  requests: int = 1, reused: int = 0, saved: Usage | None = None) -> None:
        with self._lock:
            k = (tenant, day, type, lane)
            n, u = self._usage.get(k, (0, Usage()))
            self._usage[k] = (n + requests, u.add(usage))
            r, v = self._saved.get(k, (0, Usage()))
            self._saved[k] = (r + reused, v.add(saved or Usage()))

    def usage_since(self, tenant: str, since: date) -> Usage:
        total = Usage()
        with self._lock:
            for (t, day, _, _), (_, u) in self._usage.items():
                if t == tenant and day >= since:
                    total = total.add(u)
        return total

    def usage_report(self, *, tenant: str | None, start: date, end: date,
                     group_by: Sequence[str]) -> builtins.list[UsageRow]:
        sums: dict[tuple[str, ...], tuple[int, Usage, int, Usage]] = {}
        with self._lock:
            for k, (n, u) in self._usage.items():
                t, day, typ, lane = k
                if (tenant is not None and t != tenant) or not start <= day <= end:
                    continue
                r, v = self._saved.get(k, (0, Usage()))
                fields = {"tenant": t, "type": typ, "lane": lane, "day": day.isoformat()}
                key = tuple(fields[g] for g in group_by)
                m, w, rs, vs = sums.get(key, (0, Usage(), 0, Usage()))
                sums[key] = (m + n, w.add(u), rs + r, vs.add(v))
        return [UsageRow(dict(zip(group_by, key, strict=True)), n, u.input_tokens,
                         u.output_tokens, u.cost_nanos, r, v)
                for key, (n, u, r, v) in sorted(sums.items())]

    def ping(self) -> None:
        return None

    def add_late_usage(self, job_id: str, usage: Usage) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            job.usage = job.usage.add(usage)
            job.late_usage = job.late_usage.add(usage)
            return True

    def fail_waiting(self, job_id: str, *, code: str, message: str) -> bool:
        with self._lock:
            now = self._clock()
            job = self._jobs.get(job_id)
            if job is None or job.status not in WAITING:
                return False
            check_transition(job.status, Status.FAILED)
            job.status, job.error_code, job.error_message = Status.FAILED, code, message
            job.finished_at = job.updated_at = now
            job.not_before = job.lease_owner = job.lease_expires_at = None
            self._note(job, EventNote("failed", {"code": code}), now)
            return True

    def expire_leases_of(self, owner: str) -> int:
        # A second before now, so that the next sweep counts them as expired.
        with self._lock:
            now = self._clock()
            held = [j for j in self._jobs.values()
                    if j.status is Status.RUNNING and j.lease_owner == owner
                    and j.lease_expires_at is not None and j.lease_expires_at >= now]
            for job in held:
                job.lease_expires_at = now - timedelta(seconds=1)
            return len(held)


class InMemoryDispatcher:
    """Records sends; ``down`` simulates a broker outage."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []
        self.down = False

    def send(self, job_id: str, *, queue: str, countdown_s: float = 0.0,
             label: Mapping[str, str] | None = None) -> None:
        from .errors import Unavailable

        if self.down:
            raise Unavailable("broker is down")
        self.sent.append((job_id, queue, countdown_s))

    def send_many(self, sends: Sequence[tuple[str, str, Mapping[str, str] | None]]) -> None:
        for job_id, queue, label in sends:
            self.send(job_id, queue=queue, label=label)

    def ping(self) -> None:
        from .errors import Unavailable

        if self.down:
            raise Unavailable("broker is down")


class InMemoryFrontier:
    """The delivery frontier of one process (tests); ``clock`` says when it last moved."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        import time

        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._queues: dict[str, tuple[float, float]] = {}  # queue -> (sent_at, moved at)

    def advance(self, queue: str, sent_at: float) -> None:
        with self._lock:
            if sent_at > self._queues.get(queue, (float("-inf"), 0.0))[0]:
                self._queues[queue] = (sent_at, self._clock())

    def read(self) -> dict[str, tuple[float, float]]:
        with self._lock:
            now = self._clock()
            return {q: (sent, now - moved) for q, (sent, moved) in self._queues.items()}
