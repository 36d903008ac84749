"""Schedules: periodic jobs (cron or every N seconds) and which of their slots are due.

A *slot* is the instant a schedule is due, computed from its definition alone (a cron
expression in its time zone, or ``anchor + k * every_s``), never from when a scheduler woke
up. Every scheduler therefore names the same slot the same way, and the database keeps one
run per (schedule, slot): that is what makes a slot run exactly once across two schedulers,
a failover or clocks that disagree (the scheduler reads the database's clock, too).

``missed`` says what happens to slots older than the grace window (the scheduler was down):
``once`` runs the latest of them once, ``skip`` drops them. Slots inside the window always
run, each once, so a failover (seconds) skips nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import Conflict, InvalidInput, TidegateError, Unavailable, shorten
from .keys import validate_tenant
from .models import Job, new_job_id, utcnow
from .registry import Registry
from .statuses import Priority

Missed = Literal["skip", "once"]
MISSED: tuple[Missed, ...] = ("skip", "once")
FIELDS = ("name", "tenant", "cron", "every_s", "timezone", "type", "input", "priority",
          "missed")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MIN_EVERY_S = 1
# A slot's scheduler may have to enumerate this many due slots in one pass, at most.
MAX_SLOTS_PER_PASS = 1000


class ScheduleConflict(Conflict):
    code = "schedule_exists"


class ManagedBySettings(Conflict):
    """The schedule comes from the settings file: change it there."""

    code = "managed_by_settings"


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    tenant: str
    name: str
    type: str
    input: dict[str, Any]
    cron: str | None = None
    every_s: int | None = None
    timezone: str = "UTC"
    priority: Priority | None = None
    missed: Missed = "once"
    source: Literal["api", "settings"] = "api"
    created_at: datetime = field(default_factory=utcnow)
    # The latest slot handled (run, refused or skipped): the scheduler starts after it.
    cursor: datetime | None = None
    last_run_at: datetime | None = None
    last_slot: datetime | None = None
    last_job_id: str | None = None
    last_error: str | None = None

    def definition(self) -> dict[str, Any]:
        """What the schedule does, as given (to compare a settings entry with its row)."""
        return {"cron": self.cron, "every_s": self.every_s, "timezone": self.timezone,
                "type": self.type, "input": self.input,
                "priority": None if self.priority is None else self.priority.value,
                "missed": self.missed}

    def slots_after(self, after: datetime) -> Iterator[datetime]:
        """Due instants strictly after ``after``, in order, as UTC."""
        if self.every_s is not None:
            step = timedelta(seconds=self.every_s)
            k = max(0, int((after - self.created_at) // step) + 1)
            while True:
                yield self.created_at + k * step
                k += 1
        assert self.cron is not None
        local = after.astimezone(ZoneInfo(self.timezone))
        for at in CronSim(self.cron, local):
            yield at.astimezone(UTC)

    def slot_at_or_before(self, at: datetime) -> datetime | None:
        """The latest due instant at or before ``at`` (None before the first)."""
        if self.every_s is not None:
            if at < self.created_at:
                return None
            step = timedelta(seconds=self.every_s)
            return self.created_at + int((at - self.created_at) // step) * step
        assert self.cron is not None
        # CronSim's reverse walk starts strictly before its start: begin one microsecond on.
        local = (at + timedelta(microseconds=1)).astimezone(ZoneInfo(self.timezone))
        prev = next(CronSim(self.cron, local, reverse=True), None)
        return None if prev is None else prev.astimezone(UTC)

    def next_run(self, now: datetime) -> datetime | None:
        start = max(now, self.cursor or self.created_at)
        return next(iter(self.slots_after(start)), None)


def due(schedule: Schedule, now: datetime, *, grace_s: float) -> tuple[list[datetime], datetime]:
    """The slots to run now, oldest first, and the cursor once they are handled."""
    cursor = schedule.cursor or schedule.created_at
    if now <= cursor:
        return [], cursor
    window = max(cursor, now - timedelta(seconds=grace_s))
    run: list[datetime] = []
    if window > cursor and schedule.missed == "once":
        late = schedule.slot_at_or_before(window)
        if late is not None and late > cursor:
            run.append(late)
    for slot in schedule.slots_after(window):
        if slot > now or len(run) >= MAX_SLOTS_PER_PASS:
            break
        run.append(slot)
    return run, max(run[-1] if run else cursor, window if window > cursor else cursor)


def slot_key(schedule: Schedule, slot: datetime) -> str:
    """The idempotency key of a slot's job (unique per tenant in the job table, too)."""
    return f"schedule:{schedule.id}:{slot.astimezone(UTC).isoformat()}"


def parse(values: Mapping[str, Any], *, tenant: str, registry: Registry,
          validation_context: Mapping[str, Any] | None = None,
          source: Literal["api", "settings"] = "api") -> Schedule:
    """A Schedule from public fields; InvalidInput naming the first wrong field."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown schedule field(s): {', '.join(sorted(unknown))}; known: "
                           + ", ".join(FIELDS))
    name = values.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput("name: 1-100 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit")
    try:
        validate_tenant(tenant)
    except ValueError as exc:
        raise InvalidInput(f"tenant: {exc}") from None
    cron, every_s = values.get("cron"), values.get("every_s")
    if (cron is None) == (every_s is None):
        raise InvalidInput("give exactly one of cron (e.g. \"0 2 * * *\") or every_s")
    tz = values.get("timezone") or "UTC"
    if not isinstance(tz, str) or len(tz) > 64:
        raise InvalidInput("timezone: an IANA time zone name such as Europe/Paris")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone: unknown time zone {shorten(tz)} (use an IANA name such "
                           "as UTC or Europe/Paris)") from None
    if cron is not None:
        if not isinstance(cron, str) or len(cron) > 200:
            raise InvalidInput("cron: a cron expression such as \"0 2 * * *\"")
        try:
            next(iter(CronSim(cron, datetime.now(zone))))
        except (CronSimError, StopIteration) as exc:
            raise InvalidInput(f"cron: invalid expression {shorten(cron)}: "
                               f"{exc or 'it never fires'}") from None
    if every_s is not None and (isinstance(every_s, bool) or not isinstance(every_s, int)
                                or every_s < MIN_EVERY_S):
        raise InvalidInput(f"every_s: a whole number of seconds, {MIN_EVERY_S} or more")
    job_type = registry.get(str(values.get("type")))  # UnknownJobType lists the known ones
    raw_input = values.get("input", {})
    validated = job_type.validate(raw_input, validation_context)
    priority = values.get("priority")
    prio: Priority | None = None
    if priority is not None:
        try:
            prio = Priority(priority)
        except ValueError:
            raise InvalidInput("priority: high, medium or low") from None
    missed = values.get("missed") or "once"
    if missed not in MISSED:
        raise InvalidInput("missed: skip (drop slots the scheduler missed) or once (run the "
                           "latest missed slot once)")
    return Schedule(id=new_job_id(), tenant=tenant, name=name, type=job_type.name,
                    input=validated.model_dump(mode="json"), cron=cron, every_s=every_s,
                    timezone=tz, priority=prio, missed=missed, source=source)


def to_public(s: Schedule, now: datetime | None = None) -> dict[str, Any]:
    return {"name": s.name, "tenant": s.tenant, **s.definition(), "source": s.source,
            "created_at": s.created_at, "last_run_at": s.last_run_at,
            "last_slot": s.last_slot, "last_job_id": s.last_job_id,
            "last_error": s.last_error, "next_run_at": s.next_run(now or utcnow())}


class ScheduleStore(Protocol):
    def now(self) -> datetime: ...

    def list_schedules(self, *, tenant: str | None = None) -> list[Schedule]: ...

    def get_schedule(self, tenant: str, name: str) -> Schedule | None: ...

    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Insert; ScheduleConflict if the tenant has one of that name."""
        ...

    def replace_definition(self, schedule: Schedule) -> None:
        """Update what an existing (tenant, name) does, keeping its id, cursor and runs."""
        ...

    def delete_schedule(self, tenant: str, name: str) -> bool: ...

    def fire(self, schedule: Schedule, slot: datetime, job: Job | None, *,
             error: str | None = None) -> bool:
        """In one transaction: record the (schedule, slot) run, create ``job`` (if any) and
        advance the cursor. False (nothing written) if the slot already has its run."""
        ...

    def advance(self, schedule: Schedule, cursor: datetime) -> None:
        """Move the cursor forward (never back) past slots that were skipped."""
        ...


class JobMaker(Protocol):
    def prepare(self, *, tenant: str, type: str, input: Any, priority: str | None,
                idempotency_key: str | None, schedule: str | None) -> Job: ...

    def dispatch(self, job: Job, *, countdown_s: float = 0.0) -> bool: ...


class ScheduleRunner:
    """What `tidegate beat` does each pass while it leads: run every due slot once."""

    def __init__(self, store: ScheduleStore, jobs: JobMaker, *, grace_s: float = 300.0,
                 log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.grace_s = grace_s
        self.log = log or (lambda _m: None)

    def run_due(self) -> int:
        """Create the jobs of every due slot; returns how many were created."""
        now = self.store.now()  # one clock for every scheduler: the database's
        created = 0
        for schedule in self.store.list_schedules():
            slots, cursor = due(schedule, now, grace_s=self.grace_s)
            for slot in slots:
                created += self._fire(schedule, slot)
            if cursor > (schedule.cursor or schedule.created_at):
                self.store.advance(schedule, cursor)
        return created

    def _fire(self, schedule: Schedule, slot: datetime) -> int:
        job: Job | None = None
        error: str | None = None
        try:
            job = self.jobs.prepare(
                tenant=schedule.tenant, type=schedule.type, input=schedule.input,
                priority=None if schedule.priority is None else schedule.priority.value,
                idempotency_key=slot_key(schedule, slot), schedule=schedule.name)
        except Unavailable:
            raise  # the database or Redis blinked: this slot is tried again next pass
        except TidegateError as exc:
            # Refused like a submit would be (budget, rate, a type gone): the slot is used
            # up and says why, rather than being tried again every pass.
            error = f"{exc.code}: {exc.message}"
        if not self.store.fire(schedule, slot, job, error=error):
            return 0  # another scheduler ran this slot
        if job is None:
            self.log(f"schedule {schedule.tenant}/{schedule.name} slot {slot.isoformat()} "
                     f"refused: {error}")
            return 0
        self.jobs.dispatch(job)  # a failed send is the sweep's: the row is committed
        return 1


def settings_schedules(table: Mapping[str, Any], *, registry: Registry,
                       validation_context: Mapping[str, Any] | None = None,
                       default_tenant: str) -> list[Schedule]:
    """The ``[schedules.<name>]`` entries of the settings file, validated (InvalidInput
    names the entry)."""
    out = []
    for name, entry in _plain(table).items():
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"schedules.{name}: a table of fields")
        values = {k: v for k, v in entry.items() if k != "tenant"}
        try:
            s = parse({"name": name, **values}, tenant=str(entry.get("tenant", default_tenant)),
                      registry=registry, validation_context=validation_context,
                      source="settings")
        except InvalidInput as exc:
            raise InvalidInput(f"schedules.{name}: {exc.message}") from None
        out.append(s)
    return out


def _plain(value: Any) -> Any:
    """TOML read with exact decimals, made JSON-plain (a job's input is stored as JSON)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def sync_settings(store: ScheduleStore, wanted: list[Schedule]) -> None:
    """Make the settings file's schedules exist as written; ones removed from the file go."""
    existing = {(s.tenant, s.name): s for s in store.list_schedules()}
    names = {(s.tenant, s.name) for s in wanted}
    for s in wanted:
        have = existing.get((s.tenant, s.name))
        if have is None:
            store.add_schedule(s)
        elif have.definition() != s.definition() or have.source != "settings":
            store.replace_definition(replace(have, **{
                k: getattr(s, k) for k in ("cron", "every_s", "timezone", "type", "input",
                                           "priority", "missed", "source")}))
    for key, have in existing.items():
        if have.source == "settings" and key not in names:
            store.delete_schedule(*key)
