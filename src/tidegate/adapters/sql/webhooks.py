"""WebhookStore: endpoints (a tenant's defaults, a job's own) and the delivery outbox.

Delivery rows are written by the job store in the same transaction as their event (see
``SqlJobStore._note``), so a committed event always has its deliveries. A sender claims a due
row by pushing its ``next_attempt_at`` forward (one conditional UPDATE): a sender that dies
mid-send leaves the row to come back after that lease, and sends are at-least-once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ...core.events import DEFAULT_WEBHOOK_KINDS
from ...core.models import utcnow
from ..webhook_secrets import SecretBox
from .events import Event, wire
from .store import _guard, _raw_json
from .tables import job_events, webhook_deliveries, webhook_endpoints

D = webhook_deliveries.c
E = webhook_endpoints.c


def kinds_column(kinds: list[str] | None) -> str:
    """``None``: the end of the job; ``["*"]``: every event."""
    if not kinds:
        kinds = list(DEFAULT_WEBHOOK_KINDS)
    return "*" if "*" in kinds else "," + ",".join(sorted(set(kinds))) + ","


def kinds_list(column: str) -> list[str]:
    return ["*"] if column == "*" else [k for k in column.split(",") if k]


def delivery_id(row_id: int) -> str:
    return f"dlv_{row_id}"


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery, ready to send."""

    id: int
    attempts: int  # including this one
    created_at: datetime
    url: str
    secrets: list[str]  # the current secret first, then one still valid after a rotation
    event: Event


def endpoint_public(r: Any) -> dict[str, Any]:
    return {"id": r.id, "url": r.url, "events": kinds_list(r.kinds), "job_id": r.job_id,
            "created_at": r.created_at}


class WebhookStore:
    def __init__(self, engine: sa.Engine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box

    # -- endpoints ---------------------------------------------------------------------------
    @_guard
    def add_endpoint(self, *, tenant: str, url: str, kinds: list[str] | None,
                     secret: str) -> dict[str, Any]:
        values = {"id": uuid.uuid4().hex, "tenant": tenant, "job_id": None, "url": url,
                  "kinds": kinds_column(kinds), "secret": self.box.seal(secret),
                  "created_at": utcnow()}
        with self.engine.begin() as conn:
            conn.execute(webhook_endpoints.insert().values(**values))
        return endpoint_public(_Obj(values))

    @_guard
    def list_endpoints(self, *, tenant: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_endpoints).where(
                E.tenant == tenant, E.job_id.is_(None), E.revoked_at.is_(None),
            ).order_by(E.created_at)).all()
        return [endpoint_public(r) for r in rows]

    @_guard
    def remove_endpoint(self, *, tenant: str, endpoint_id: str) -> bool:
        """No new deliveries for it; those already queued are still sent."""
        with self.engine.begin() as conn:
            return conn.execute(webhook_endpoints.update().where(
                E.id == endpoint_id, E.tenant == tenant, E.job_id.is_(None),
                E.revoked_at.is_(None)).values(revoked_at=utcnow())).rowcount == 1

    @_guard
    def rotate(self, *, tenant: str, endpoint_id: str, secret: str,
               overlap_s: float) -> dict[str, Any] | None:
        """A new secret; the old one still signs (beside it) for ``overlap_s``."""
        with self.engine.begin() as conn:
            row = conn.execute(webhook_endpoints.update().where(
                E.id == endpoint_id, E.tenant == tenant, E.revoked_at.is_(None),
            ).values(previous_secret=E.secret, secret=self.box.seal(secret),
                     previous_until=utcnow() + timedelta(seconds=overlap_s))
                .returning(*webhook_endpoints.c)).first()
        return None if row is None else endpoint_public(row)

    # -- deliveries --------------------------------------------------------------------------
    @_guard
    def claim_due(self, *, limit: int, lease_s: float) -> list[Due]:
        now = utcnow()
        dialect = self.engine.dialect.name
        detail = _raw_json(job_events.c.detail, dialect)
        q = (sa.select(D.id, D.attempts, D.created_at, D.next_attempt_at, E.url, E.secret,
                       E.previous_secret, E.previous_until, job_events.c.id.label("event_id"),
                       job_events.c.job_id, job_events.c.kind, job_events.c.at,
                       job_events.c.attempt, job_events.c.tenant, job_events.c.type,
                       job_events.c.status, detail)
             .join(webhook_endpoints, E.id == D.endpoint_id)
             .join(job_events, job_events.c.id == D.event_id)
             .where(D.status == "pending", D.next_attempt_at <= now)
             .order_by(D.next_attempt_at).limit(limit))
        claimed: list[Due] = []
        with self.engine.begin() as conn:
            for r in conn.execute(q).all():
                won = conn.execute(webhook_deliveries.update().where(
                    D.id == r.id, D.status == "pending", D.next_attempt_at == r.next_attempt_at,
                ).values(next_attempt_at=now + timedelta(seconds=lease_s),
                         attempts=D.attempts + 1, last_attempt_at=now)).rowcount == 1
                if not won:
                    continue  # another sender has it
                keys = [self.box.open(r.secret)]
                if r.previous_secret and r.previous_until and r.previous_until > now:
                    keys.append(self.box.open(r.previous_secret))
                event = wire(_Obj({"id": r.event_id, "job_id": r.job_id, "kind": r.kind,
                                   "at": r.at, "attempt": r.attempt, "tenant": r.tenant,
                                   "type": r.type, "status": r.status, "detail": r.detail}))
                claimed.append(Due(r.id, r.attempts + 1, r.created_at, r.url,
                                   [k for k in keys if k is not None], event))
        return claimed

    @_guard
    def record(self, row_id: int, *, delivered: bool, response_status: int | None,
               error: str | None, retry_at: datetime | None) -> None:
        """The outcome of one attempt: delivered, to retry at ``retry_at``, or (neither)
        given up."""
        values: dict[str, Any] = {"response_status": response_status,
                                  "last_error": None if delivered else (error or "")[:500]}
        if delivered:
            values.update(status="delivered", delivered_at=utcnow())
        elif retry_at is not None:
            values.update(next_attempt_at=retry_at)
        else:
            values.update(status="failed")
        with self.engine.begin() as conn:
            conn.execute(webhook_deliveries.update().where(D.id == row_id).values(**values))

    @_guard
    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_deliveries, E.url).join(
                webhook_endpoints, E.id == D.endpoint_id).where(D.job_id == job_id)
                .order_by(D.id)).all()
        return [{"delivery_id": delivery_id(r.id), "event_id": r.event_id, "kind": r.kind,
                 "endpoint_id": r.endpoint_id, "url": r.url, "status": r.status,
                 "attempts": r.attempts, "next_attempt_at":
                 r.next_attempt_at if r.status == "pending" else None,
                 "last_attempt_at": r.last_attempt_at, "delivered_at": r.delivered_at,
                 "response_status": r.response_status, "last_error": r.last_error,
                 "created_at": r.created_at} for r in rows]

    @_guard
    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(
                sa.select(D.status, sa.func.count()).group_by(D.status))}


class _Obj:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
