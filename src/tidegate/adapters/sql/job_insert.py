"""The statements that write a new job: its row, its `submitted` event, its webhook outbox.

They are built once per store with bound parameters, so SQLAlchemy compiles each once and
every submit only binds values (building a statement per call cost more than running it).
On PostgreSQL a submit without a webhook of its own is ONE statement (data-modifying CTEs)
sent in autocommit: one round trip where BEGIN, three INSERTs and COMMIT took five. A single
statement is atomic, so the event and its deliveries exist exactly when the row does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ...core.models import Job
from .tables import job_events, jobs, webhook_deliveries, webhook_endpoints

# Every column a new row is written with; the rest take their server defaults or NULL.
ROW_COLUMNS = (
    "id", "tenant", "type", "status", "priority", "input", "metadata", "idempotency_key",
    "request_fingerprint", "progress", "message", "attempts", "max_attempts", "checkpoint",
    "cancel_requested", "created_at", "updated_at", "input_tokens", "output_tokens",
    "cost_nano_usd", "unpriced", "late_input_tokens", "late_output_tokens",
    "late_cost_nano_usd", "expires_at", "schedule",
)
SUBMITTED = "submitted"


def row_params(job: Job) -> dict[str, Any]:
    """The bound values of a new row (``j_<column>``) and of its `submitted` event."""
    detail: dict[str, Any] = {"priority": job.priority.value}
    if job.schedule is not None:
        detail["schedule"] = job.schedule
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
        "expires_at": job.expires_at, "schedule": job.schedule,
    }
    return {f"j_{k}": v for k, v in values.items()} | {"e_detail": detail}


def _bind(name: str, column: Any) -> Any:
    return sa.bindparam(name, type_=column.type)


def _deliveries(event_id: Any, job_id: Any, tenant: Any, at: Any) -> Any:
    """Queue the event's webhook deliveries: one per live endpoint of the tenant (or of this
    job) that wants `submitted` events. The same rule as every other event's (store._note)."""
    ep = webhook_endpoints
    return webhook_deliveries.insert().from_select(
        ["endpoint_id", "job_id", "event_id", "kind", "status", "attempts", "next_attempt_at",
         "created_at"],
        sa.select(ep.c.id, job_id, event_id, sa.literal(SUBMITTED, sa.String),
                  sa.literal("pending", sa.String), sa.literal(0, sa.Integer), at, at)
        .where(ep.c.revoked_at.is_(None), ep.c.tenant == tenant,
               sa.or_(ep.c.job_id.is_(None), ep.c.job_id == job_id),
               sa.or_(ep.c.kinds == "*", ep.c.kinds.contains(f",{SUBMITTED},"))))


class JobInserts:
    """``read``: the columns a row is returned as (the store's ``_read_columns``)."""

    def __init__(self, read: list[Any]) -> None:
        row = {c: _bind(f"j_{c}", jobs.c[c]) for c in ROW_COLUMNS}
        # In a transaction (SQLite; a job with its own webhook; a schedule's slot):
        self.row = jobs.insert().values(row).returning(*read)
        self.event = job_events.insert().values(
            job_id=row["id"], kind=sa.literal(SUBMITTED, sa.String), attempt=0,
            at=row["created_at"], detail=_bind("e_detail", job_events.c.detail),
            tenant=row["tenant"], type=row["type"], status=row["status"],
        ).returning(job_events.c.id)
        self.deliveries = _deliveries(
            _bind("e_id", job_events.c.id), _bind("j_id", jobs.c.id),
            _bind("j_tenant", jobs.c.tenant), _bind("j_created_at", jobs.c.created_at))
        # All three in one statement (PostgreSQL).
        new_job = jobs.insert().values(row).returning(*read).cte("new_job")
        new_event = job_events.insert().from_select(
            ["job_id", "kind", "attempt", "at", "detail", "tenant", "type", "status"],
            sa.select(new_job.c.id, sa.literal(SUBMITTED, sa.String),
                      sa.literal(0, sa.Integer), new_job.c.created_at,
                      _bind("e_detail", job_events.c.detail), new_job.c.tenant,
                      new_job.c.type, new_job.c.status),
        ).returning(job_events.c.id, job_events.c.job_id, job_events.c.tenant,
                    job_events.c.at).cte("new_event")
        outbox = _deliveries(new_event.c.id, new_event.c.job_id, new_event.c.tenant,
                             new_event.c.at).cte("new_deliveries")
        self.all_in_one = sa.select(new_job).add_cte(new_event, outbox)

    def event_in_transaction(self, conn: sa.Connection, params: dict[str, Any]) -> None:
        """The `submitted` event and its deliveries, in the transaction that wrote the row."""
        event_id = conn.execute(self.event, params).scalar_one()
        conn.execute(self.deliveries, {**params, "e_id": event_id})
