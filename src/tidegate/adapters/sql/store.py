"""SqlJobStore: the JobStore port on SQLAlchemy Core. Every transition is one conditional UPDATE."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa

from ...core.errors import Unavailable
from ...core.memory import decode_cursor, encode_cursor
from ...core.models import ApiKey, Job, JobEvent, Page, Usage
from ...core.statuses import TERMINAL, WAITING, Priority, Status, check_transition
from .tables import api_keys, job_events, jobs

P = ParamSpec("P")
R = TypeVar("R")

_WAITING = [s.value for s in WAITING]


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn 'cannot reach the database' into Unavailable, which the API answers with 503."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise Unavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
        except sa.exc.TimeoutError as exc:  # every pooled connection busy: wait and retry
            raise Unavailable("database connection pool exhausted") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("database connection lost") from exc
            raise

    return wrapper


def _row_to_job(r: Any) -> Job:
    return Job(
        id=r.id, tenant=r.tenant, type=r.type, priority=Priority(r.priority), input=r.input,
        status=Status(r.status), metadata=r.metadata or {}, idempotency_key=r.idempotency_key,
        progress=r.progress, message=r.message, result=r.result, error_code=r.error_code,
        error_message=r.error_message, attempts=r.attempts, max_attempts=r.max_attempts,
        usage=Usage(r.input_tokens, r.output_tokens, r.cost_usd), checkpoint=r.checkpoint or {},
        cancel_requested=r.cancel_requested, lease_owner=r.lease_owner,
        lease_expires_at=r.lease_expires_at, not_before=r.not_before,
        dispatched_at=r.dispatched_at, created_at=r.created_at, updated_at=r.updated_at,
        started_at=r.started_at, finished_at=r.finished_at)


def _usage_values(delta: Usage | None) -> dict[str, Any]:
    if delta is None or (not delta.input_tokens and not delta.output_tokens
                         and not delta.cost_usd):
        return {}
    return {"input_tokens": jobs.c.input_tokens + delta.input_tokens,
            "output_tokens": jobs.c.output_tokens + delta.output_tokens,
            "cost_usd": jobs.c.cost_usd + delta.cost_usd}


class SqlJobStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- jobs ---------------------------------------------------------------------------
    @_guard
    def create(self, job: Job) -> tuple[Job, bool]:
        values = {
            "id": job.id, "tenant": job.tenant, "type": job.type, "status": job.status.value,
            "priority": job.priority.value, "input": job.input, "metadata": job.metadata,
            "idempotency_key": job.idempotency_key, "progress": 0, "message": "",
            "attempts": 0, "max_attempts": job.max_attempts, "checkpoint": {},
            "cancel_requested": False, "created_at": job.created_at,
            "updated_at": job.updated_at, "input_tokens": 0, "output_tokens": 0,
            "cost_usd": 0.0,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(jobs.insert().values(**values))
                conn.execute(job_events.insert().values(
                    job_id=job.id, kind="submitted", attempt=0, at=job.created_at,
                    detail={"priority": job.priority.value}))
        except sa.exc.IntegrityError:
            if job.idempotency_key is None:
                raise
            existing = self._by_idempotency_key(job.tenant, job.idempotency_key)
            if existing is None:  # pragma: no cover - the winner's row vanished (purged)
                raise
            return existing, False
        return self.get(job.id) or job, True

    def _by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(
                jobs.c.tenant == tenant, jobs.c.idempotency_key == key)).first()
        return _row_to_job(row) if row else None

    @_guard
    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        q = sa.select(jobs).where(jobs.c.id == job_id)
        if tenant is not None:
            q = q.where(jobs.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _row_to_job(row) if row else None

    @_guard
    def list(self, *, tenant: str | None, status: Status | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> Page:
        q = sa.select(jobs)
        if tenant is not None:
            q = q.where(jobs.c.tenant == tenant)
        if status is not None:
            q = q.where(jobs.c.status == status.value)
        if type is not None:
            q = q.where(jobs.c.type == type)
        if cursor:
            at, cid = decode_cursor(cursor)
            q = q.where(sa.or_(jobs.c.created_at < at,
                               sa.and_(jobs.c.created_at == at, jobs.c.id < cid)))
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_row_to_job(r) for r in conn.execute(q)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1]) if more and rows else None)

    @_guard
    def mark_dispatched(self, job_id: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(dispatched_at=at))

    @_guard
    def claim(self, job_id: str, *, owner: str, lease_until: datetime,
              now: datetime) -> Job | None:
        with self.engine.begin() as conn:
            res = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status.in_(_WAITING),
                       jobs.c.cancel_requested.is_(False),
                       sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now))
                .values(status=Status.RUNNING.value, attempts=jobs.c.attempts + 1,
                        lease_owner=owner, lease_expires_at=lease_until, updated_at=now,
                        started_at=sa.func.coalesce(jobs.c.started_at, now)))
            if res.rowcount != 1:
                return None
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
        return _row_to_job(row)

    def _running(self, job_id: str, attempt: int) -> Any:
        return sa.and_(jobs.c.id == job_id, jobs.c.status == Status.RUNNING.value,
                       jobs.c.attempts == attempt)

    @_guard
    def renew_lease(self, job_id: str, *, attempt: int, owner: str,
                    lease_until: datetime) -> tuple[bool, bool]:
        with self.engine.begin() as conn:
            row = conn.execute(
                jobs.update().where(self._running(job_id, attempt), jobs.c.lease_owner == owner)
                .values(lease_expires_at=lease_until)
                .returning(jobs.c.cancel_requested)).first()
        return (row is not None, bool(row and row.cancel_requested))

    @_guard
    def update_progress(self, job_id: str, *, attempt: int, progress: int, message: str,
                        checkpoint: dict[str, Any] | None = None,
                        usage_delta: Usage | None = None) -> bool:
        values: dict[str, Any] = dict(_usage_values(usage_delta))
        if progress >= 0:
            values["progress"] = progress
        if message:
            values["message"] = message
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        stmt = jobs.update().where(self._running(job_id, attempt))
        if not values:  # still tell the caller whether the row is ours
            values["attempts"] = jobs.c.attempts
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    @_guard
    def finish(self, job_id: str, *, attempt: int, status: Status, now: datetime,
               result: Any = None, error_code: str | None = None,
               error_message: str | None = None, usage_delta: Usage | None = None,
               not_before: datetime | None = None, refund_attempt: bool = False) -> bool:
        check_transition(Status.RUNNING, status)
        values: dict[str, Any] = {
            "status": status.value, "updated_at": now, "lease_owner": None,
            "lease_expires_at": None, "not_before": not_before, **_usage_values(usage_delta)}
        if status is Status.SUCCEEDED:
            values.update(result=result, progress=100, error_code=None, error_message=None)
        else:
            values.update(error_code=error_code, error_message=error_message)
        if status in TERMINAL:
            values["finished_at"] = now
        if status is Status.RETRYING:  # the next send is due; the sweep watches for it
            values["dispatched_at"] = None
        if refund_attempt:
            values["attempts"] = jobs.c.attempts - 1
        with self.engine.begin() as conn:
            return conn.execute(
                jobs.update().where(self._running(job_id, attempt)).values(**values)
            ).rowcount == 1

    @_guard
    def request_cancel(self, job_id: str, *, tenant: str | None, now: datetime) -> Job | None:
        owned = [jobs.c.id == job_id] + ([jobs.c.tenant == tenant] if tenant else [])
        with self.engine.begin() as conn:
            res = conn.execute(jobs.update().where(*owned, jobs.c.status.in_(_WAITING)).values(
                status=Status.CANCELLED.value, finished_at=now, updated_at=now,
                error_code="cancelled", error_message="cancelled on request"))
            if res.rowcount != 1:
                res = conn.execute(jobs.update().where(
                    *owned, jobs.c.status == Status.RUNNING.value).values(
                    cancel_requested=True, updated_at=now))
            if res.rowcount != 1:
                return None
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
            conn.execute(job_events.insert().values(job_id=job_id, kind="cancel_requested",
                                                    attempt=row.attempts, at=now, detail={}))
        return _row_to_job(row)

    @_guard
    def requeue(self, job_id: str, *, from_status: Status, attempt: int, now: datetime,
                reset_attempts: bool = False) -> bool:
        check_transition(from_status, Status.QUEUED)
        values: dict[str, Any] = {
            "status": Status.QUEUED.value, "lease_owner": None, "lease_expires_at": None,
            "not_before": None, "finished_at": None, "dispatched_at": None, "updated_at": now}
        if reset_attempts:
            values.update(attempts=0, error_code=None, error_message=None)
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(
                jobs.c.id == job_id, jobs.c.status == from_status.value,
                jobs.c.attempts == attempt).values(**values)).rowcount == 1

    @_guard
    def expired_leases(self, now: datetime, limit: int = 100) -> Sequence[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(
                jobs.c.status == Status.RUNNING.value, jobs.c.lease_expires_at < now,
            ).limit(limit)).all()
        return [_row_to_job(r) for r in rows]

    @_guard
    def undispatched(self, *, older_than: datetime, redispatch_before: datetime,
                     now: datetime, limit: int = 500) -> Sequence[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(
                jobs.c.status.in_(_WAITING), jobs.c.cancel_requested.is_(False),
                sa.or_(
                    sa.and_(jobs.c.dispatched_at.is_(None), jobs.c.updated_at < older_than),
                    sa.and_(jobs.c.dispatched_at < redispatch_before,
                            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now))),
            ).order_by(jobs.c.created_at).limit(limit)).all()
        return [_row_to_job(r) for r in rows]

    @_guard
    def purge(self, *, finished_before: datetime, failed_before: datetime) -> int:
        doomed = sa.select(jobs.c.id).where(sa.or_(
            sa.and_(jobs.c.status.in_([Status.SUCCEEDED.value, Status.CANCELLED.value]),
                    jobs.c.finished_at < finished_before),
            sa.and_(jobs.c.status == Status.FAILED.value, jobs.c.finished_at < failed_before)))
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(doomed.limit(5000))]
            if not ids:
                return 0
            conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
            return conn.execute(jobs.delete().where(jobs.c.id.in_(ids))).rowcount

    # -- events -------------------------------------------------------------------------
    @_guard
    def add_event(self, event: JobEvent) -> None:
        with self.engine.begin() as conn:
            conn.execute(job_events.insert().values(
                job_id=event.job_id, kind=event.kind, attempt=event.attempt, at=event.at,
                detail=event.detail))

    @_guard
    def events(self, job_id: str, *, after_id: int = 0) -> builtins.list[JobEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(job_events).where(
                job_events.c.job_id == job_id, job_events.c.id > after_id,
            ).order_by(job_events.c.id)).all()
        return [JobEvent(r.job_id, r.kind, r.at, r.attempt, r.detail or {}, r.id) for r in rows]

    @_guard
    def count_by_status(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        with self.engine.connect() as conn:
            for status, n in conn.execute(
                    sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)):
                counts[status] = n
        return counts

    # -- API keys -----------------------------------------------------------------------
    @_guard
    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(
                id=key.id, tenant=key.tenant, prefix=key.prefix, key_hash=key_hash,
                created_at=key.created_at, revoked_at=key.revoked_at))

    @_guard
    def tenant_for_key(self, key_hash: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys.c.tenant).where(
                api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))).first()
        return row.tenant if row else None

    @_guard
    def list_keys(self) -> builtins.list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [ApiKey(r.id, r.tenant, r.prefix, r.created_at, r.revoked_at) for r in rows]

    @_guard
    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- delivery failures and dead workers ---------------------------------------------
    @_guard
    def fail_waiting(self, job_id: str, *, code: str, message: str, now: datetime) -> bool:
        for src in WAITING:
            check_transition(src, Status.FAILED)
        with self.engine.begin() as conn:
            row = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(_WAITING))
                .values(status=Status.FAILED.value, error_code=code, error_message=message,
                        finished_at=now, updated_at=now, not_before=None, lease_owner=None,
                        lease_expires_at=None)
                .returning(jobs.c.attempts)).first()
            if row is None:
                return False
            conn.execute(job_events.insert().values(job_id=job_id, kind="failed",
                                                    attempt=row.attempts, at=now,
                                                    detail={"code": code}))
        return True

    @_guard
    def expire_leases_of(self, owner: str, *, now: datetime) -> int:
        # Just before `now`, so that a sweep at `now` already counts them as expired.
        with self.engine.begin() as conn:
            return int(conn.execute(
                jobs.update().where(jobs.c.status == Status.RUNNING.value,
                                    jobs.c.lease_owner == owner,
                                    jobs.c.lease_expires_at >= now)
                .values(lease_expires_at=now - timedelta(seconds=1))).rowcount)
