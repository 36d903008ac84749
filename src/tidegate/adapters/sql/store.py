"""SqlJobStore: the JobStore port on SQLAlchemy Core. Every transition is one conditional UPDATE."""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from ...core.decision import CANCELLED, EXPIRED, QuotaWait
from ...core.errors import ConfigurationError
from ...core.jsonsafe import find_problem, readable, unreadable
from ...core.models import EventNote, Job, JobEvent, Page, Usage, utcnow
from ...core.statuses import TERMINAL, WAITING, Priority, Status, check_transition
from .accounts import SqlAccounts, guard
from .job_insert import JobInserts, row_params
from .pg_transitions import FinishShape, PgTransitions
from .tables import (
    JSONType,
    UTCDateTime,
    job_count_deltas,
    job_counts,
    job_events,
    jobs,
    webhook_deliveries,
    webhook_endpoints,
)

_WAITING = [s.value for s in WAITING]

log = logging.getLogger(__name__)


_guard = guard


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
        started_at=r.started_at, finished_at=r.finished_at, expires_at=r.expires_at,
        quota_wait_since=r.quota_wait_since, schedule=getattr(r, "schedule", None))


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


def _progress_note(progress: tuple[int, str]) -> EventNote:
    return EventNote("progress", {"percent": progress[0], "message": progress[1]})


def _quota_wait_values(what: QuotaWait, now: Any) -> dict[str, Any]:
    if what == "keep":
        return {}
    return {"quota_wait_since": {"start": now, "clear": None,
                                 "continue": sa.func.coalesce(jobs.c.quota_wait_since, now),
                                 }[what]}


# The connection-info key under which a transaction collects the jobs it wrote events for.
_NOTED = "tg_noted_jobs"


class SqlJobStore(SqlAccounts):
    """``on_events`` is called after each commit that wrote events, with the jobs' ids: a
    wake-up for live streams (adapters/event_bus.py). It must not raise; a missed call only
    delays delivery, since readers also poll the table."""

    def __init__(self, engine: sa.Engine, *,
                 on_events: Callable[[builtins.list[str]], None] | None = None,
                 seal: Callable[[str], str] | None = None) -> None:
        self.engine = engine
        self.seal = seal  # encrypts webhook secrets (adapters/webhook_secrets.py)
        self._read = _read_columns(engine.dialect.name)
        self._pg = engine.dialect.name == "postgresql"
        self.on_events = on_events
        self._inserts = JobInserts(self._read)
        self._pg_transitions = PgTransitions(self._read, self._ended_instead) if self._pg else None

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """``engine.begin()``, then the ``on_events`` wake-up once the events are committed."""
        noted: builtins.list[str] = []
        with self.engine.begin() as conn:
            conn.info[_NOTED] = noted
            try:
                yield conn
            finally:
                conn.info.pop(_NOTED, None)
        if noted and self.on_events is not None:
            try:
                self.on_events(noted)
            except Exception:  # a wake-up only: the readers' poll finds the events anyway
                log.debug("event wake-up failed", exc_info=True)

    def _select_readable(self) -> Any:
        return sa.select(*self._read)

    # -- jobs ---------------------------------------------------------------------------
    @_guard
    def create(self, job: Job) -> tuple[Job, bool]:
        params = row_params(job)
        try:
            if self._pg and not job.webhook:
                row = self._create_in_one_statement(job, params)
            else:
                with self._begin() as conn:
                    row = self._write_new(conn, job, params)
        except sa.exc.IntegrityError:
            if job.idempotency_key is None:
                raise
            existing = self.by_idempotency_key(job.tenant, job.idempotency_key)
            if existing is None:  # pragma: no cover - the winner's row vanished (purged)
                raise
            return existing, False
        # RETURNING hands back the row as stored (the version mark_dispatched compares), so
        # there is no second read.
        return _read_job(row), True

    def _create_in_one_statement(self, job: Job, params: dict[str, Any]) -> Any:
        row = self._one_statement(self._inserts.all_in_one, params)
        assert row is not None  # an INSERT without a conflict returns its row
        self._wake([job.id])
        return row

    def _one_statement(self, stmt: Any, params: dict[str, Any]) -> Any:
        """Run one statement in autocommit (PostgreSQL): atomic on its own, one round trip.
        Returns its first row, or None."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(stmt, params).first()

    def _wake(self, job_ids: builtins.list[str]) -> None:
        if self.on_events is not None:
            try:
                self.on_events(job_ids)
            except Exception:  # a wake-up only, as in _begin
                log.debug("event wake-up failed", exc_info=True)

    def insert_job(self, conn: sa.Connection, job: Job) -> Job:
        """Insert the row, its webhook and its `submitted` event in the caller's transaction
        (the schedule store writes a slot's run beside it)."""
        return _read_job(self._write_new(conn, job, row_params(job)))

    def _write_new(self, conn: sa.Connection, job: Job, params: dict[str, Any]) -> Any:
        row = conn.execute(self._inserts.row, params).one()
        if job.webhook:
            self._add_job_webhook(conn, job)
        self._inserts.event_in_transaction(conn, params)
        noted = conn.info.get(_NOTED)
        if noted is not None:
            noted.append(job.id)
        return row

    def _add_job_webhook(self, conn: sa.Connection, job: Job) -> None:
        from .webhooks import kinds_column

        hook = job.webhook or {}
        if self.seal is None:
            raise ConfigurationError("this job store cannot keep webhook secrets")
        conn.execute(webhook_endpoints.insert().values(
            id=hook["id"], tenant=job.tenant, job_id=job.id, url=hook["url"],
            kinds=kinds_column(hook.get("events")),
            secret=self.seal(hook["secret"]), created_at=job.created_at))

    @_guard
    def by_idempotency_key(self, tenant: str, key: str) -> Job | None:
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
            # A row-value comparison is one index range (the OR form made PostgreSQL filter
            # every newer row: 40 ms for a page 50,000 rows deep, against 0.1 ms).
            q = q.where(sa.tuple_(jobs.c.created_at, jobs.c.id) < sa.tuple_(
                sa.bindparam(None, at, type_=jobs.c.created_at.type),
                sa.bindparam(None, cid, type_=jobs.c.id.type)))
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_read_job(r) for r in conn.execute(q)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)

    # -- time -----------------------------------------------------------------------------
    # Leases, not_before, deadlines and quota waits are stamped and compared on ONE clock: on
    # PostgreSQL the server's (now(), computed in SQL), so workers, sweeps and API hosts whose
    # clocks disagree still agree on them. SQLite is a file on this host, so every process
    # using it runs on this machine and the process clock IS the database's clock.
    def _at(self, base: datetime, offset_s: float = 0.0) -> Any:
        """The database's now (+ offset) as an SQL expression; ``base`` is SQLite's now."""
        if self._pg:
            expr: Any = sa.func.now()
            if offset_s:
                expr = expr + sa.literal(timedelta(seconds=offset_s), sa.Interval())
            return sa.cast(expr, UTCDateTime())
        return sa.literal(base + timedelta(seconds=offset_s), UTCDateTime())

    @_guard
    def now(self) -> datetime:
        if not self._pg:
            return utcnow()
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.now())).scalar_one()
        return value.astimezone(UTC)

    def _note(self, conn: sa.Connection, job_id: str, attempt: Any, note: EventNote,
              at: Any) -> None:
        """Append the event, with the job's tenant, type and (new) status copied from its row
        in this same transaction, and queue its webhook deliveries (the outbox) beside it.

        Every caller has just written the job's row, so it holds that row's lock until commit:
        one job's events are numbered in the order they commit."""
        if note.kind == Status.FAILED.value and "message" not in note.detail:
            message = conn.execute(sa.select(jobs.c.error_message)
                                   .where(jobs.c.id == job_id)).scalar_one_or_none()
            note = EventNote(note.kind, {**note.detail, "message": message or ""})
        if not isinstance(attempt, sa.ColumnElement):
            attempt = sa.literal(attempt, sa.Integer)
        if not isinstance(at, sa.ColumnElement):
            at = sa.literal(at, UTCDateTime())
        source = sa.select(
            jobs.c.id, sa.literal(note.kind, sa.String), attempt, at,
            sa.literal(note.detail, JSONType), jobs.c.tenant, jobs.c.type, jobs.c.status,
        ).where(jobs.c.id == job_id)
        event_id = conn.execute(job_events.insert().from_select(
            ["job_id", "kind", "attempt", "at", "detail", "tenant", "type", "status"], source,
        ).returning(job_events.c.id)).scalar_one_or_none()
        if event_id is None:  # pragma: no cover - the job row vanished within the transaction
            return
        ep = webhook_endpoints.c
        tenant = sa.select(jobs.c.tenant).where(jobs.c.id == job_id).scalar_subquery()
        conn.execute(webhook_deliveries.insert().from_select(
            ["endpoint_id", "job_id", "event_id", "kind", "status", "attempts",
             "next_attempt_at", "created_at"],
            sa.select(ep.id, sa.literal(job_id, sa.String), sa.literal(event_id, sa.BigInteger),
                      sa.literal(note.kind, sa.String), sa.literal("pending", sa.String),
                      sa.literal(0, sa.Integer), at, at)
            .where(ep.revoked_at.is_(None), ep.tenant == tenant,
                   sa.or_(ep.job_id.is_(None), ep.job_id == job_id),
                   sa.or_(ep.kinds == "*", ep.kinds.contains(f",{note.kind},")))))
        noted = conn.info.get(_NOTED)
        if noted is not None:
            noted.append(job_id)

    def _may_not_wait(self, now: Any) -> tuple[Any, Any]:
        """(cancel requested, deadline passed): a row in either state never parks waiting."""
        return (jobs.c.cancel_requested.is_(True),
                sa.and_(jobs.c.expires_at.is_not(None), jobs.c.expires_at <= now))

    def _ended_instead(self, wait_status: Any, now: Any, *, not_before: Any = None,
                       error: tuple[Any, Any] = (None, None),
                       finished_at: Any = None) -> dict[str, Any]:
        """SET values that write ``wait_status``, or cancelled / failed-expired when the row
        may not wait (decided by the UPDATE itself, so a racing cancel is never lost)."""
        cancel, expired = self._may_not_wait(now)
        no_time = sa.cast(sa.null(), UTCDateTime())  # a typed NULL: PostgreSQL needs one

        def pick(on_cancel: Any, on_expired: Any, otherwise: Any) -> Any:
            return sa.case((cancel, on_cancel), (expired, on_expired), else_=otherwise)

        if not_before is None:
            not_before = no_time
        if finished_at is None:
            finished_at = no_time

        return {
            "status": pick(Status.CANCELLED.value, Status.FAILED.value, wait_status),
            "error_code": pick(CANCELLED[0], EXPIRED[0], error[0]),
            "error_message": pick(CANCELLED[1], EXPIRED[1], error[1]),
            "finished_at": pick(now, now, finished_at),
            "not_before": pick(no_time, no_time, not_before),
        }

    @staticmethod
    def _written_note(written: Status, wanted: Status, note: EventNote,
                      error_code: str | None) -> EventNote:
        return note if written is wanted else EventNote(written.value, {"code": error_code})

    @_guard
    def mark_dispatched(self, job_id: str, *, attempt: int, version: datetime) -> bool:
        return self.mark_dispatched_many([(job_id, attempt, version)]) == 1

    @_guard
    def mark_dispatched_many(self, marks: Sequence[tuple[str, int, datetime]]) -> int:
        if not marks:
            return 0
        # One statement for the batch: a row value IN list, so the count is exact.
        stmt = jobs.update().where(
            sa.tuple_(jobs.c.id, jobs.c.attempts, jobs.c.updated_at).in_(list(marks)),
            jobs.c.status.in_(_WAITING),
        ).values(dispatched_at=self._at(utcnow()))
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    @_guard
    def claim(self, job_id: str, *, owner: str, lease_s: float) -> Job | None:
        if self._pg_transitions is not None:
            return self._claim_in_one_statement(job_id, owner=owner, lease_s=lease_s)
        base = utcnow()
        now = self._at(base)
        with self._begin() as conn:
            row = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status.in_(_WAITING),
                       jobs.c.cancel_requested.is_(False),
                       sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
                       sa.or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > now))
                .values(status=Status.RUNNING.value, attempts=jobs.c.attempts + 1,
                        lease_owner=owner, lease_expires_at=self._at(base, lease_s),
                        updated_at=now, started_at=sa.func.coalesce(jobs.c.started_at, now))
                .returning(*self._read)).first()
            if row is None:
                return None
            job = _read_job(row)
            if job.error_code == "unreadable" and row.error_code != "unreadable":
                # Its input cannot even be decoded: no attempt can run it, and raising here
                # would bring the same message back for ever. It ends here, with the reason.
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                    status=Status.FAILED.value, error_code="unreadable",
                    error_message=job.error_message, finished_at=now, updated_at=now,
                    lease_owner=None, lease_expires_at=None))
                self._note(conn, job_id, row.attempts, EventNote("failed", {"code": "unreadable"}),
                           now)
                return None
            self._note(conn, job_id, row.attempts, EventNote("claimed", {"worker": owner}), now)
        return job

    def _claim_in_one_statement(self, job_id: str, *, owner: str, lease_s: float) -> Job | None:
        assert self._pg_transitions is not None
        row = self._one_statement(self._pg_transitions.claim, {
            "job_id": job_id, "owner": owner, "lease_s": float(lease_s),
            "detail": {"worker": owner}})
        if row is None:
            return None
        self._wake([job_id])
        job = _read_job(row)
        if job.error_code == "unreadable" and row.error_code != "unreadable":
            # Its input cannot even be decoded: no attempt can run it, and raising here would
            # bring the same message back for ever. It ends here, with the reason (a
            # conditional write of the attempt just claimed, as any outcome).
            self.finish(job_id, attempt=row.attempts, status=Status.FAILED,
                        error_code="unreadable", error_message=job.error_message,
                        note=EventNote("failed", {"code": "unreadable"}))
            return None
        return job

    def _running(self, job_id: str, attempt: int) -> Any:
        return sa.and_(jobs.c.id == job_id, jobs.c.status == Status.RUNNING.value,
                       jobs.c.attempts == attempt)

    @_guard
    def renew_lease(self, job_id: str, *, attempt: int, owner: str,
                    lease_s: float) -> tuple[bool, bool]:
        with self._begin() as conn:
            row = conn.execute(
                jobs.update().where(self._running(job_id, attempt), jobs.c.lease_owner == owner)
                .values(lease_expires_at=self._at(utcnow(), lease_s))
                .returning(jobs.c.cancel_requested)).first()
        return (row is not None, bool(row and row.cancel_requested))

    @_guard
    def update_progress(self, job_id: str, *, attempt: int, progress: int, message: str,
                        checkpoint: dict[str, Any] | None = None,
                        usage_delta: Usage | None = None,
                        note: EventNote | None = None) -> bool:
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
        with self._begin() as conn:
            if conn.execute(stmt.values(**values)).rowcount != 1:
                return False
            if note is not None:
                self._note(conn, job_id, attempt, note, self._at(utcnow()))
        return True

    @_guard
    def add_event(self, job_id: str, *, attempt: int, note: EventNote) -> bool:
        """An event that changes nothing but the history (an LLM call, a quota wait), written
        only while ``attempt`` is the job's running attempt. The no-op UPDATE takes the row's
        lock, so the job's events stay numbered in commit order."""
        with self._begin() as conn:
            if conn.execute(jobs.update().where(self._running(job_id, attempt))
                            .values(attempts=jobs.c.attempts)).rowcount != 1:
                return False
            self._note(conn, job_id, attempt, note, self._at(utcnow()))
        return True

    @_guard
    def finish(self, job_id: str, *, attempt: int, status: Status, result: Any = None,
               error_code: str | None = None, error_message: str | None = None,
               usage_delta: Usage | None = None, delay_s: float | None = None,
               refund_attempt: bool = False, quota_wait: QuotaWait = "keep",
               lease_expired: bool = False, note: EventNote | None = None,
               progress: tuple[int, str] | None = None) -> Status | None:
        check_transition(Status.RUNNING, status)
        if self._pg_transitions is not None:
            return self._finish_in_one_statement(
                job_id, attempt=attempt, status=status, result=result, error_code=error_code,
                error_message=error_message, usage_delta=usage_delta, delay_s=delay_s,
                refund_attempt=refund_attempt, quota_wait=quota_wait,
                lease_expired=lease_expired, note=note or EventNote(status.value),
                progress=progress)
        base = utcnow()
        now = self._at(base)
        not_before = None if delay_s is None else self._at(base, delay_s)
        values: dict[str, Any] = {
            "status": status.value, "updated_at": now, "lease_owner": None,
            "lease_expires_at": None, "not_before": not_before, **_usage_values(usage_delta),
            **_quota_wait_values(quota_wait, now)}
        if status is Status.SUCCEEDED:
            values.update(result=result, progress=100, error_code=None, error_message=None)
        else:
            values.update(error_code=error_code, error_message=error_message)
        if status in TERMINAL:
            values["finished_at"] = now
        if status is Status.RETRYING:  # the next send is due; the sweep watches for it
            values["dispatched_at"] = None
            values.update(self._ended_instead(status.value, now, not_before=not_before,
                                              error=(error_code, error_message)))
        if refund_attempt:
            values["attempts"] = jobs.c.attempts - 1
        if progress is not None:  # the attempt's last report, written with its outcome
            values["message"] = progress[1]
            if status is not Status.SUCCEEDED:
                values["progress"] = progress[0]
        where = [self._running(job_id, attempt)]
        if lease_expired:  # the sweep: a lease renewed since it was read is left alone
            where.append(jobs.c.lease_expires_at < now)
        with self._begin() as conn:
            if progress is not None:  # its event comes first; this takes the row's lock
                if conn.execute(jobs.update().where(*where)
                                .values(attempts=jobs.c.attempts)).rowcount != 1:
                    return None
                self._note(conn, job_id, attempt, _progress_note(progress), now)
            row = conn.execute(jobs.update().where(*where).values(**values)
                               .returning(jobs.c.status, jobs.c.error_code)).first()
            if row is None:
                return None
            written = Status(row.status)
            self._note(conn, job_id, attempt, self._written_note(
                written, status, note or EventNote(status.value), row.error_code), now)
        return written

    def _finish_in_one_statement(self, job_id: str, *, attempt: int, status: Status,
                                 result: Any, error_code: str | None,
                                 error_message: str | None, usage_delta: Usage | None,
                                 delay_s: float | None, refund_attempt: bool,
                                 quota_wait: QuotaWait, lease_expired: bool, note: EventNote,
                                 progress: tuple[int, str] | None) -> Status | None:
        assert self._pg_transitions is not None
        shape = FinishShape(
            status=status, result_null=result is None, usage=bool(usage_delta),
            unpriced=bool(usage_delta and usage_delta.unpriced), delay=delay_s is not None,
            quota_wait=quota_wait, refund=refund_attempt, lease_expired=lease_expired,
            progress=progress is not None)
        detail = note.detail
        if note.kind == Status.FAILED.value and "message" not in detail:
            detail = {**detail, "message": error_message or ""}  # as _note adds it
        params: dict[str, Any] = {
            "job_id": job_id, "attempt": attempt, "kind": note.kind, "detail": detail,
            "error_code": error_code, "error_message": error_message}
        if not shape.result_null:
            params["result"] = result
        if shape.usage:
            assert usage_delta is not None
            params.update(d_input=usage_delta.input_tokens, d_output=usage_delta.output_tokens,
                          d_cost=usage_delta.cost_nanos)
        if delay_s is not None:
            params["delay_s"] = float(delay_s)
        if progress is not None:
            note_p = _progress_note(progress)
            params.update(p_percent=progress[0], p_message=progress[1], p_detail=note_p.detail)
        row = self._one_statement(self._pg_transitions.finish(shape), params)
        if row is None:
            return None
        self._wake([job_id])
        return Status(row.status)

    @_guard
    def request_cancel(self, job_id: str, *, tenant: str | None) -> Job | None:
        owned = [jobs.c.id == job_id] + ([jobs.c.tenant == tenant] if tenant else [])
        now = self._at(utcnow())
        waiting = jobs.c.status.in_(_WAITING)
        # One UPDATE: a worker parking the job between two statements cannot slip through.
        with self._begin() as conn:
            row = conn.execute(jobs.update().where(
                *owned, jobs.c.status.in_([*_WAITING, Status.RUNNING.value])).values(
                status=sa.case((waiting, Status.CANCELLED.value), else_=jobs.c.status),
                finished_at=sa.case((waiting, now), else_=jobs.c.finished_at),
                error_code=sa.case((waiting, CANCELLED[0]), else_=jobs.c.error_code),
                error_message=sa.case((waiting, CANCELLED[1]), else_=jobs.c.error_message),
                cancel_requested=sa.case((waiting, jobs.c.cancel_requested), else_=sa.true()),
                updated_at=now).returning(*jobs.c)).first()
            if row is None:
                return None
            self._note(conn, job_id, row.attempts, EventNote("cancel_requested"), now)
            if row.status == Status.CANCELLED.value:  # it was waiting: ended at once
                self._note(conn, job_id, row.attempts,
                           EventNote("cancelled", {"code": CANCELLED[0]}), now)
        return _row_to_job(row)

    @_guard
    def requeue(self, job_id: str, *, from_status: Status, attempt: int,
                reset_attempts: bool = False, lease_expired: bool = False,
                note: EventNote | None = None) -> Job | None:
        check_transition(from_status, Status.QUEUED)
        now = self._at(utcnow())
        values: dict[str, Any] = {
            "lease_owner": None, "lease_expires_at": None, "dispatched_at": None,
            "updated_at": now}
        if reset_attempts:  # a replay: a fresh start, nothing left that could stop it
            values.update(status=Status.QUEUED.value, attempts=0, error_code=None,
                          error_message=None, cancel_requested=False, expires_at=None,
                          quota_wait_since=None, not_before=None, finished_at=None)
        else:
            values.update(self._ended_instead(Status.QUEUED.value, now,
                                              error=(jobs.c.error_code, jobs.c.error_message)))
        where = [jobs.c.id == job_id, jobs.c.status == from_status.value,
                 jobs.c.attempts == attempt]
        if lease_expired:
            where.append(jobs.c.lease_expires_at < now)
        with self._begin() as conn:
            row = conn.execute(jobs.update().where(*where).values(**values)
                               .returning(*jobs.c)).first()
            if row is None:
                return None
            written = Status(row.status)
            self._note(conn, job_id, row.attempts, self._written_note(
                written, Status.QUEUED, note or EventNote("requeued"), row.error_code), now)
        return _row_to_job(row)

    @_guard
    def close_waiting(self, *, job_id: str | None = None,
                      limit: int = 500) -> Sequence[tuple[str, Status]]:
        now = self._at(utcnow())
        cancel, expired = self._may_not_wait(now)
        doomed = sa.select(jobs.c.id).where(jobs.c.status.in_(_WAITING), sa.or_(cancel, expired))
        if job_id is not None:
            doomed = doomed.where(jobs.c.id == job_id)
        with self._begin() as conn:
            rows = conn.execute(jobs.update().where(
                jobs.c.id.in_(doomed.limit(limit).scalar_subquery()),
                jobs.c.status.in_(_WAITING), sa.or_(cancel, expired),
            ).values(updated_at=now, **self._ended_instead(jobs.c.status, now))
                .returning(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.error_code)).all()
            for r in rows:
                self._note(conn, r.id, r.attempts,
                           EventNote(r.status, {"code": r.error_code}), now)
        return [(r.id, Status(r.status)) for r in rows]

    @_guard
    def expired_leases(self, limit: int = 100) -> Sequence[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._select_readable().where(
                jobs.c.status == Status.RUNNING.value,
                jobs.c.lease_expires_at < self._at(utcnow()),
            ).limit(limit)).all()
        return [_read_job(r) for r in rows]

    @_guard
    def undispatched(self, *, grace_s: float, redispatch_after_s: float,
                     overdue_before: Mapping[str, datetime] | None = None,
                     limit: int = 500) -> Sequence[Job]:
        base = utcnow()
        now = self._at(base)
        waiting = (jobs.c.status.in_(_WAITING), jobs.c.cancel_requested.is_(False))
        overdue = overdue_before or {}
        # One query for the never sent and one per queue for the overdue, each an ordered
        # range of its own partial index that stops at ``limit`` (one query with an OR sorted
        # every match first: 110 ms with 100,000 jobs waiting).
        never = self._select_readable().where(
            *waiting, jobs.c.dispatched_at.is_(None),
            jobs.c.updated_at < self._at(base, -grace_s),
        ).order_by(jobs.c.updated_at).limit(limit)
        late = [self._select_readable().where(
            *waiting, jobs.c.priority == queue.value,
            jobs.c.dispatched_at < (sa.literal(overdue[queue.value], UTCDateTime())
                                    if queue.value in overdue
                                    else self._at(base, -redispatch_after_s)),
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
        ).order_by(jobs.c.dispatched_at) for queue in Priority]
        with self.engine.connect() as conn:
            rows = conn.execute(never).all()
            for query in late:
                if len(rows) >= limit:
                    break
                rows += conn.execute(query.limit(limit - len(rows))).all()
        return [_read_job(r) for r in rows]

    @_guard
    def purge(self, *, finished_before: datetime, failed_before: datetime) -> int:
        doomed = sa.select(jobs.c.id).where(sa.or_(
            sa.and_(jobs.c.status.in_([Status.SUCCEEDED.value, Status.CANCELLED.value]),
                    jobs.c.finished_at < finished_before),
            sa.and_(jobs.c.status == Status.FAILED.value, jobs.c.finished_at < failed_before)))
        with self._begin() as conn:
            ids = [r.id for r in conn.execute(doomed.limit(5000))]
            if not ids:
                return 0
            conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
            conn.execute(webhook_deliveries.delete().where(
                webhook_deliveries.c.job_id.in_(ids)))
            conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.job_id.in_(ids)))
            return conn.execute(jobs.delete().where(jobs.c.id.in_(ids))).rowcount

    # -- events -------------------------------------------------------------------------
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
    def count_by_status(self, *, tenant: str | None = None) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for status, n in self._counts(tenant).items():
            counts[status] = n
        return counts

    @_guard
    def count_waiting(self, tenant: str) -> int:
        counts = self._counts(tenant)
        return sum(counts.get(s, 0) for s in _WAITING)

    @_guard
    def count_running(self, tenant: str) -> int:
        return self._counts(tenant).get(Status.RUNNING.value, 0)

    def _counts(self, tenant: str | None) -> dict[str, int]:
        """Jobs per status from the trigger-kept counts and the deltas not folded yet, in one
        statement (one snapshot: a fold moving rows from one to the other is seen whole)."""
        folded = sa.select(job_counts.c.status, job_counts.c.n.label("n"))
        pending = sa.select(job_count_deltas.c.status, job_count_deltas.c.delta.label("n"))
        if tenant is not None:
            folded = folded.where(job_counts.c.tenant == tenant)
            pending = pending.where(job_count_deltas.c.tenant == tenant)
        both = sa.union_all(folded, pending).subquery()
        q = sa.select(both.c.status, sa.func.sum(both.c.n)).group_by(both.c.status)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(q)}

    @_guard
    def fold_counts(self) -> int:
        if self.engine.dialect.name != "postgresql":
            return 0  # SQLite's triggers write the counts themselves
        with self.engine.begin() as conn:
            # Rows are locked in (tenant, status) order: two folds at once never deadlock.
            return conn.execute(sa.text(
                "WITH moved AS (DELETE FROM tg_job_count_deltas RETURNING tenant, status, delta),"
                " summed AS (SELECT tenant, status, sum(delta) AS n FROM moved"
                "            GROUP BY tenant, status ORDER BY tenant, status)"
                " INSERT INTO tg_job_counts (tenant, status, n) SELECT tenant, status, n"
                " FROM summed ON CONFLICT (tenant, status)"
                " DO UPDATE SET n = tg_job_counts.n + excluded.n")).rowcount or 0

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
        with self._begin() as conn:
            return conn.execute(
                jobs.update().where(jobs.c.id == job_id).values(**values)).rowcount == 1

    # -- delivery failures and dead workers ---------------------------------------------
    @_guard
    def fail_waiting(self, job_id: str, *, code: str, message: str) -> bool:
        for src in WAITING:
            check_transition(src, Status.FAILED)
        now = self._at(utcnow())
        with self._begin() as conn:
            row = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(_WAITING))
                .values(status=Status.FAILED.value, error_code=code, error_message=message,
                        finished_at=now, updated_at=now, not_before=None, lease_owner=None,
                        lease_expires_at=None)
                .returning(jobs.c.attempts, jobs.c.updated_at)).first()
            if row is None:
                return False
            self._note(conn, job_id, row.attempts, EventNote("failed", {"code": code}),
                       row.updated_at)
        return True

    @_guard
    def expire_leases_of(self, owner: str) -> int:
        # A second before the database's now, so that the next sweep counts them as expired.
        with self._begin() as conn:
            return int(conn.execute(
                jobs.update().where(jobs.c.status == Status.RUNNING.value,
                                    jobs.c.lease_owner == owner,
                                    jobs.c.lease_expires_at >= self._at(utcnow()))
                .values(lease_expires_at=self._at(utcnow(), -1.0))).rowcount)
