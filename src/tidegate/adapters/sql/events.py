"""Reading the event log for streams: the whole log in id order, one job's, one tenant's.

Events are returned as the SSE wire dicts (``id, job_id, type, tenant, kind, at, attempt,
status, detail``), ready to be serialised.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ...core.events import TERMINAL_KINDS
from ...core.models import utcnow
from .store import _guard, _raw_json, _read_detail
from .tables import job_events

Event = dict[str, Any]

__all__ = ["TERMINAL_KINDS", "Event", "EventLog", "wire"]


class EventLog:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        self._columns = [_raw_json(c, dialect) if c.name == "detail" else c
                         for c in job_events.c]

    @_guard
    def last_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(job_events.c.id))).scalar() or 0)

    def _fetch(self, *where: Any, limit: int) -> list[Event]:
        q = sa.select(*self._columns).where(*where).order_by(job_events.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [wire(r) for r in rows]

    @_guard
    def tail(self, after_id: int, *, limit: int = 1000) -> list[Event]:
        """Every job's events after ``after_id``, in id order."""
        return self._fetch(job_events.c.id > after_id, limit=limit)

    @_guard
    def for_job(self, job_id: str, *, after_id: int, upto_id: int | None = None,
                limit: int = 1000) -> list[Event]:
        where = [job_events.c.job_id == job_id, job_events.c.id > after_id]
        if upto_id is not None:
            where.append(job_events.c.id <= upto_id)
        return self._fetch(*where, limit=limit)

    @_guard
    def for_tenant(self, tenant: str | None, *, after_id: int, upto_id: int | None = None,
                   type: str | None = None, status: str | None = None,
                   limit: int = 1000) -> list[Event]:
        """Events of ``tenant``'s jobs (None: every tenant's) after ``after_id``."""
        where = [job_events.c.id > after_id]
        if tenant is not None:
            where.append(job_events.c.tenant == tenant)
        if upto_id is not None:
            where.append(job_events.c.id <= upto_id)
        if type is not None:
            where.append(job_events.c.type == type)
        if status is not None:
            where.append(job_events.c.status == status)
        return self._fetch(*where, limit=limit)


def wire(r: Any) -> Event:
    at = r.at or utcnow()
    return {"id": int(r.id), "job_id": r.job_id, "type": r.type, "tenant": r.tenant,
            "kind": r.kind, "at": at.isoformat().replace("+00:00", "Z"),
            "attempt": int(r.attempt), "status": r.status, "detail": _read_detail(r.detail)}
