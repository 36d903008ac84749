"""PostgreSQL: a worker's claim and an attempt's outcome, each in ONE statement.

A transition was BEGIN, the conditional UPDATE, the event's INSERT, its webhook outbox's
INSERT and COMMIT: five round trips, with SQLAlchemy building (and computing the cache key
of) each statement anew. Here the UPDATE, still conditional (``WHERE id AND status AND
attempt``), and the inserts that follow from its RETURNING rows are data-modifying CTEs of one
statement sent in autocommit, built once per shape with bound parameters. One statement is
atomic: the event and its deliveries exist exactly when the transition does, and the row's
lock is held until that statement commits, so one job's events stay numbered in commit order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import sqlalchemy as sa

from ...core.decision import QuotaWait
from ...core.statuses import TERMINAL, WAITING, Status
from .tables import JSONType, UTCDateTime, job_events, jobs, webhook_deliveries, webhook_endpoints

_WAITING = [s.value for s in WAITING]
EVENT_COLUMNS = ["job_id", "kind", "attempt", "at", "detail", "tenant", "type", "status"]


def now() -> Any:
    return sa.cast(sa.func.now(), UTCDateTime())


def later(name: str) -> Any:
    """The database's now plus the bound number of seconds ``name``."""
    return sa.cast(sa.func.now() + sa.func.make_interval(
        0, 0, 0, 0, 0, 0, sa.bindparam(name, type_=sa.Float())), UTCDateTime())


def _bind(name: str, type_: Any) -> Any:
    return sa.bindparam(name, type_=type_)


def deliveries(event: Any) -> Any:
    """The webhook outbox of the events just inserted (``event``: their RETURNING rows): one
    delivery per live endpoint of the tenant, or of the job, that wants the event's kind. The
    same rule as store._note's."""
    ep = webhook_endpoints.c
    return webhook_deliveries.insert().from_select(
        ["endpoint_id", "job_id", "event_id", "kind", "status", "attempts",
         "next_attempt_at", "created_at"],
        sa.select(ep.id, event.c.job_id, event.c.id, event.c.kind,
                  sa.literal("pending", sa.String), sa.literal(0, sa.Integer), event.c.at,
                  event.c.at)
        .where(ep.revoked_at.is_(None), ep.tenant == event.c.tenant,
               sa.or_(ep.job_id.is_(None), ep.job_id == event.c.job_id),
               sa.or_(ep.kinds == "*", ep.kinds.contains(
                   sa.literal(",", sa.String) + event.c.kind + sa.literal(",", sa.String)))))


def _with_events(changed: Any, events: Any, *returned: Any) -> Any:
    """SELECT ``returned`` of the ``changed`` CTE, inserting ``events`` (a SELECT of
    EVENT_COLUMNS plus an ``ord`` column, in the order they happen) and their outbox."""
    ordered = events.subquery("new_events")
    event = job_events.insert().from_select(
        EVENT_COLUMNS, sa.select(*[ordered.c[c] for c in EVENT_COLUMNS])
        .order_by(ordered.c.ord)).returning(
        job_events.c.id, job_events.c.job_id, job_events.c.kind, job_events.c.tenant,
        job_events.c.at).cte("event")
    outbox = deliveries(event).cte("outbox")
    return sa.select(*returned).select_from(changed).add_cte(event, outbox)


class FinishShape(NamedTuple):
    """What decides the statement of an outcome; the values themselves are bound."""

    status: Status
    result_null: bool
    usage: bool
    unpriced: bool
    delay: bool
    quota_wait: QuotaWait
    refund: bool
    lease_expired: bool
    progress: bool


class PgTransitions:
    """``read``: the columns a claimed row is returned as (the store's ``_read_columns``);
    ``ended_instead``: the store's SET values that park a row or end it (cancel, deadline)."""

    def __init__(self, read: list[Any], ended_instead: Callable[..., dict[str, Any]]) -> None:
        self._ended_instead = ended_instead
        self.claim = self._claim(read)
        self._finish: dict[FinishShape, Any] = {}

    @staticmethod
    def _claim(read: list[Any]) -> Any:
        at = now()
        claimed = (
            jobs.update()
            .where(jobs.c.id == _bind("job_id", jobs.c.id.type), jobs.c.status.in_(_WAITING),
                   jobs.c.cancel_requested.is_(False),
                   sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= at),
                   sa.or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > at))
            .values(status=Status.RUNNING.value, attempts=jobs.c.attempts + 1,
                    lease_owner=_bind("owner", jobs.c.lease_owner.type),
                    lease_expires_at=later("lease_s"), updated_at=at,
                    started_at=sa.func.coalesce(jobs.c.started_at, at))
            .returning(*read).cte("claimed"))
        events = sa.select(
            claimed.c.id.label("job_id"), sa.literal("claimed", sa.String).label("kind"),
            claimed.c.attempts.label("attempt"), claimed.c.updated_at.label("at"),
            _bind("detail", JSONType).label("detail"), claimed.c.tenant.label("tenant"),
            claimed.c.type.label("type"), claimed.c.status.label("status"),
            sa.literal(0, sa.Integer).label("ord"))
        return _with_events(claimed, events, *claimed.c)

    def finish(self, shape: FinishShape) -> Any:
        stmt = self._finish.get(shape)
        if stmt is None:
            stmt = self._finish[shape] = self._build_finish(shape)
        return stmt

    def _build_finish(self, shape: FinishShape) -> Any:
        status = shape.status
        at = now()
        not_before = later("delay_s") if shape.delay else None
        error = (_bind("error_code", jobs.c.error_code.type),
                 _bind("error_message", jobs.c.error_message.type))
        values: dict[str, Any] = {
            "status": status.value, "updated_at": at, "lease_owner": None,
            "lease_expires_at": None,
            "not_before": not_before if not_before is not None else sa.null()}
        if shape.usage:
            values.update(
                input_tokens=jobs.c.input_tokens + _bind("d_input", sa.BigInteger()),
                output_tokens=jobs.c.output_tokens + _bind("d_output", sa.BigInteger()),
                cost_nano_usd=jobs.c.cost_nano_usd + _bind("d_cost", sa.BigInteger()))
        if shape.unpriced:
            values["unpriced"] = True
        if shape.quota_wait != "keep":
            values["quota_wait_since"] = {
                "start": at, "clear": sa.null(),
                "continue": sa.func.coalesce(jobs.c.quota_wait_since, at)}[shape.quota_wait]
        if shape.progress:  # the attempt's last report, written with its outcome
            values["message"] = _bind("p_message", jobs.c.message.type)
            values["progress"] = _bind("p_percent", jobs.c.progress.type)
        if status is Status.SUCCEEDED:
            values.update(result=sa.null() if shape.result_null else _bind("result", JSONType),
                          progress=100, error_code=None, error_message=None)
        else:
            values.update(error_code=error[0], error_message=error[1])
        if status in TERMINAL:
            values["finished_at"] = at
        if status is Status.RETRYING:
            values["dispatched_at"] = None
            values.update(self._ended_instead(status.value, at, not_before=not_before,
                                              error=error))
        if shape.refund:
            values["attempts"] = jobs.c.attempts - 1
        where = [jobs.c.id == _bind("job_id", jobs.c.id.type),
                 jobs.c.status == Status.RUNNING.value,
                 jobs.c.attempts == _bind("attempt", sa.Integer())]
        if shape.lease_expired:
            where.append(jobs.c.lease_expires_at < at)
        changed = (jobs.update().where(*where).values(**values)
                   .returning(jobs.c.id, jobs.c.status, jobs.c.error_code,
                              jobs.c.error_message, jobs.c.tenant, jobs.c.type,
                              jobs.c.updated_at).cte("changed"))
        attempt = _bind("attempt", sa.Integer())
        wanted = changed.c.status == status.value
        # A retry may have been written as cancelled or failed/expired instead (decided by
        # the UPDATE itself): then the event says what was written, as store._written_note.
        kind = sa.case((wanted, _bind("kind", sa.String())), else_=changed.c.status)
        detail = sa.case(
            (wanted, sa.cast(_bind("detail", JSONType), JSONType)),
            (changed.c.status == Status.FAILED.value, sa.func.jsonb_build_object(
                "code", changed.c.error_code,
                "message", sa.func.coalesce(changed.c.error_message, ""))),
            else_=sa.func.jsonb_build_object("code", changed.c.error_code))
        outcome = sa.select(
            changed.c.id.label("job_id"), kind.label("kind"), attempt.label("attempt"),
            changed.c.updated_at.label("at"), detail.label("detail"),
            changed.c.tenant.label("tenant"), changed.c.type.label("type"),
            changed.c.status.label("status"), sa.literal(1, sa.Integer).label("ord"))
        events = outcome
        if shape.progress:
            # Written while the attempt ran: the job was running right after it.
            report = sa.select(
                changed.c.id.label("job_id"), sa.literal("progress", sa.String).label("kind"),
                attempt.label("attempt"), changed.c.updated_at.label("at"),
                sa.cast(_bind("p_detail", JSONType), JSONType).label("detail"),
                changed.c.tenant.label("tenant"), changed.c.type.label("type"),
                sa.literal(Status.RUNNING.value, sa.String).label("status"),
                sa.literal(0, sa.Integer).label("ord"))
            events = sa.union_all(report, outcome)
        return _with_events(changed, events, changed.c.status, changed.c.error_code)
