"""SqlJobStore: the JobStore port on SQLAlchemy Core. Every transition is one conditional UPDATE."""

from __future__ import annotations

import builtins
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa

from ...core.errors import Unavailable
from ...core.jsonsafe import find_problem, readable, unreadable
from ...core.models import ApiKey, Job, JobEvent, Page, Usage
from ...core.statuses import TERMINAL, WAITING, Priority, Status, check_transition
from .tables import api_keys, job_events, jobs

P = ParamSpec("P")
R = TypeVar("R")

_WAITING = [s.value for s in WAITING]

log = logging.getLogger(__name__)


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn 'cannot reach the database' into Unavailable, which the API answers with 503."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise Unavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("database connection lost") from exc
            raise

    return wrapper


def _row_to_job(r: Any) -> Job:
    return Job(
        id=r.id, tenant=r.tenant, type=r.type, priority=Priority(r.priority), input=r.input,
        status=Status(r.status), metadata=r.metadata or {}, idempotency_key=r.idempotency_key,
        request_fingerprint=r.request_fingerprint,
        progress=r.progress, message=r.message, result=r.result, error_code=r.error_code,
        error_message=r.error_message, attempts=r.attempts, max_attempts=r.max_attempts,
        usage=Usage(r.input_tokens, r.output_tokens, r.cost_nano_usd, r.unpriced),
        late_usage=Usage(r.late_input_tokens, r.late_output_tokens, r.late_cost_nano_usd),
        checkpoint=r.checkpoint or {},
        cancel_requested=r.cancel_requested, lease_owner=r.lease_owner,
        lease_expires_at=r.lease_expires_at, not_before=r.not_before,
        dispatched_at=r.dispatched_at, created_at=r.created_at, updated_at=r.updated_at,
        started_at=r.started_at, finished_at=r.finished_at)


# Reads that show jobs to clients fetch the JSON columns undecoded and decode them here, one
# row at a time: a value the driver cannot decode would otherwise fail the whole result.
_JSON_COLUMNS = ("input", "metadata", "result", "checkpoint")


def _raw_json(column: Any, dialect: str) -> Any:
    if dialect == "postgresql":  # JSONB's text form (exact numbers), not psycopg's decoding
        return sa.cast(column, sa.Text).label(column.name)
    # SQLite keeps the JSON text itself; no CAST, which would print a top-level REAL with 15
    # digits (a column of type JSON has numeric affinity, so a bare number is stored as one).
    return sa.type_coerce(column, sa.Text).label(column.name)


def _read_columns(dialect: str) -> list[Any]:
    return [_raw_json(c, dialect) if c.name in _JSON_COLUMNS else c for c in jobs.c]


def _enum_or(enum: Any, value: Any, default: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        return default


def _read_job(r: Any) -> Job:
    """A row selected with ``_read_columns`` as a Job; a row that cannot be decoded, or that
    could not be sent back as JSON, as an ``unreadable`` one. Never raises."""
    fields = dict(r._mapping)
    problems: list[str] = []
    for name in _JSON_COLUMNS:
        raw = fields[name]
        if not isinstance(raw, str | bytes):
            continue  # a bare number SQLite stored as one (numeric affinity), or NULL
        try:
            fields[name] = json.loads(raw)
        except ValueError:
            problems.append(f"{name} is not valid JSON")
            fields[name] = None
    row = SimpleNamespace(**fields)
    try:
        job = _row_to_job(row)
    except Exception as exc:  # a status, priority or count no version of Tidegate wrote
        problems.append(f"the row does not fit the job model ({type(exc).__name__})")
        job = Job(id=row.id, tenant=row.tenant, type=str(row.type),
                  priority=_enum_or(Priority, row.priority, Priority.MEDIUM),
                  status=_enum_or(Status, row.status, Status.FAILED), input={},
                  attempts=row.attempts if isinstance(row.attempts, int) else 0,
                  max_attempts=row.max_attempts if isinstance(row.max_attempts, int) else 0,
                  created_at=row.created_at, updated_at=row.updated_at,
                  started_at=row.started_at, finished_at=row.finished_at)
    if problems:
        log.warning("job %s is unreadable: %s", row.id, "; ".join(problems))
        return unreadable(job, "; ".join(problems))
    return readable(job)


def _usage_values(delta: Usage | None) -> dict[str, Any]:
    if not delta:
        return {}
    values: dict[str, Any] = {
        "input_tokens": jobs.c.input_tokens + delta.input_tokens,
        "output_tokens": jobs.c.output_tokens + delta.output_tokens,
        "cost_nano_usd": jobs.c.cost_nano_usd + delta.cost_nanos}
    if delta.unpriced:
        values["unpriced"] = True
    return values


def _read_detail(raw: Any) -> dict[str, Any]:
    try:
        detail = json.loads(raw) if isinstance(raw, str | bytes) else raw or {}
    except ValueError:
        return {"unreadable": "not valid JSON"}
    if not isinstance(detail, dict):
        return {"unreadable": "not an object"}
    problem = find_problem(detail)
    return detail if problem is None else {"unreadable": f"{problem[0]} {problem[1]}"}


class SqlJobStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._read = _read_columns(engine.dialect.name)

    def _select_readable(self) -> Any:
        return sa.select(*self._read)

    # -- jobs ---------------------------------------------------------------------------
    @_guard
    def create(self, job: Job) -> tuple[Job, bool]:
        values = {
            "id": job.id, "tenant": job.tenant, "type": job.type, "status": job.status.value,
            "priority": job.priority.value, "input": job.input, "metadata": job.metadata,
            "idempotency_key": job.idempotency_key,
            "request_fingerprint": job.request_fingerprint, "progress": 0, "message": "",
            "attempts": 0, "max_attempts": job.max_attempts, "checkpoint": {},
            "cancel_requested": False, "created_at": job.created_at,
            "updated_at": job.updated_at, "input_tokens": 0, "output_tokens": 0,
            "cost_nano_usd": 0, "unpriced": False, "late_input_tokens": 0,
            "late_output_tokens": 0, "late_cost_nano_usd": 0,
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
            row = conn.execute(self._select_readable().where(
                jobs.c.tenant == tenant, jobs.c.idempotency_key == key)).first()
        return _read_job(row) if row else None

    @_guard
    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        q = self._select_readable().where(jobs.c.id == job_id)
        if tenant is not None:
            q = q.where(jobs.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _read_job(row) if row else None

    @_guard
    def list(self, *, tenant: str | None, status: Status | None = None, type: str | None = None,
             limit: int = 50, after: tuple[datetime, str] | None = None) -> Page:
        q = self._select_readable()
        if tenant is not None:
            q = q.where(jobs.c.tenant == tenant)
        if status is not None:
            q = q.where(jobs.c.status == status.value)
        if type is not None:
            q = q.where(jobs.c.type == type)
        if after is not None:
            at, cid = after
            q = q.where(sa.or_(jobs.c.created_at < at,
                               sa.and_(jobs.c.created_at == at, jobs.c.id < cid)))
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_read_job(r) for r in conn.execute(q)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)

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
        dialect = self.engine.dialect.name
        columns = [_raw_json(c, dialect) if c.name == "detail" else c for c in job_events.c]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*columns).where(
                job_events.c.job_id == job_id, job_events.c.id > after_id,
            ).order_by(job_events.c.id)).all()
        return [JobEvent(r.job_id, r.kind, r.at, r.attempt, _read_detail(r.detail), r.id)
                for r in rows]

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

    @_guard
    def add_late_usage(self, job_id: str, usage: Usage) -> bool:
        values = {**_usage_values(usage),
                  "late_input_tokens": jobs.c.late_input_tokens + usage.input_tokens,
                  "late_output_tokens": jobs.c.late_output_tokens + usage.output_tokens,
                  "late_cost_nano_usd": jobs.c.late_cost_nano_usd + usage.cost_nanos}
        with self.engine.begin() as conn:
            return conn.execute(
                jobs.update().where(jobs.c.id == job_id).values(**values)).rowcount == 1
