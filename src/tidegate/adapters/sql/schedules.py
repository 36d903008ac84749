"""The ScheduleStore port on SQLAlchemy Core: schedules, and one run row per (schedule, slot)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...core.models import Job
from ...core.schedules import Schedule, ScheduleConflict
from ...core.statuses import Priority
from .accounts import guard
from .store import SqlJobStore
from .tables import schedule_runs, schedules

_DEFINITION = ("type", "input", "cron", "every_s", "timezone", "priority", "missed", "source")


def _schedule(r: Any) -> Schedule:
    return Schedule(id=r.id, tenant=r.tenant, name=r.name, type=r.type, input=r.input or {},
                    cron=r.cron, every_s=r.every_s, timezone=r.timezone,
                    priority=None if r.priority is None else Priority(r.priority),
                    missed=r.missed, source=r.source, created_at=r.created_at,
                    cursor=r.cursor, last_run_at=r.last_run_at, last_slot=r.last_slot,
                    last_job_id=r.last_job_id, last_error=r.last_error)


def _values(s: Schedule) -> dict[str, Any]:
    return {"type": s.type, "input": s.input, "cron": s.cron, "every_s": s.every_s,
            "timezone": s.timezone, "priority": None if s.priority is None else s.priority.value,
            "missed": s.missed, "source": s.source}


class SqlScheduleStore:
    def __init__(self, jobs: SqlJobStore) -> None:
        self.jobs = jobs  # its engine, and the job insert a slot's run is written beside
        self.engine = jobs.engine

    def now(self) -> datetime:
        return self.jobs.now()

    @guard
    def list_schedules(self, *, tenant: str | None = None) -> builtins.list[Schedule]:
        q = sa.select(schedules).order_by(schedules.c.tenant, schedules.c.name)
        if tenant is not None:
            q = q.where(schedules.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(q)]

    @guard
    def get_schedule(self, tenant: str, name: str) -> Schedule | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(schedules).where(
                schedules.c.tenant == tenant, schedules.c.name == name)).first()
        return None if r is None else _schedule(r)

    @guard
    def add_schedule(self, schedule: Schedule) -> Schedule:
        try:
            with self.engine.begin() as conn:
                conn.execute(schedules.insert().values(
                    id=schedule.id, tenant=schedule.tenant, name=schedule.name,
                    created_at=schedule.created_at, **_values(schedule)))
        except sa.exc.IntegrityError:
            raise ScheduleConflict(f"tenant {schedule.tenant!r} already has a schedule named "
                                   f"{schedule.name!r}; delete it first") from None
        return schedule

    @guard
    def replace_definition(self, schedule: Schedule) -> None:
        with self.engine.begin() as conn:
            conn.execute(schedules.update().where(schedules.c.id == schedule.id)
                         .values(**_values(schedule)))

    @guard
    def delete_schedule(self, tenant: str, name: str) -> bool:
        with self.engine.begin() as conn:
            sid = conn.execute(sa.select(schedules.c.id).where(
                schedules.c.tenant == tenant, schedules.c.name == name)).scalar_one_or_none()
            if sid is None:
                return False
            conn.execute(schedule_runs.delete().where(schedule_runs.c.schedule_id == sid))
            conn.execute(schedules.delete().where(schedules.c.id == sid))
        return True

    @guard
    def fire(self, schedule: Schedule, slot: datetime, job: Job | None, *,
             error: str | None = None) -> bool:
        at = self.jobs.now()
        try:
            with self.jobs._begin() as conn:
                # The run row first: a second scheduler on the same slot fails here, on the
                # primary key, and its whole transaction (job included) is rolled back.
                conn.execute(schedule_runs.insert().values(
                    schedule_id=schedule.id, slot=slot, job_id=None if job is None else job.id,
                    error=error, created_at=at))
                if job is not None:
                    self.jobs.insert_job(conn, job)
                s = schedules.c
                conn.execute(schedules.update().where(s.id == schedule.id).values(
                    cursor=sa.case((sa.or_(s.cursor.is_(None), s.cursor < slot), slot),
                                   else_=s.cursor),
                    last_run_at=at, last_slot=slot, last_error=error,
                    last_job_id=None if job is None else job.id))
        except sa.exc.IntegrityError:
            return False
        return True

    @guard
    def advance(self, schedule: Schedule, cursor: datetime) -> None:
        s = schedules.c
        with self.engine.begin() as conn:
            conn.execute(schedules.update().where(
                s.id == schedule.id, sa.or_(s.cursor.is_(None), s.cursor < cursor))
                .values(cursor=cursor))

    @guard
    def runs(self, schedule_id: str) -> builtins.list[tuple[datetime, str | None, str | None]]:
        """Every recorded (slot, job_id, error) of a schedule, oldest first (tests, support)."""
        r = schedule_runs.c
        with self.engine.connect() as conn:
            return [(row.slot, row.job_id, row.error) for row in conn.execute(
                sa.select(r.slot, r.job_id, r.error).where(r.schedule_id == schedule_id)
                .order_by(r.slot))]
