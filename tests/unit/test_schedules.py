"""Schedules: validation of every field, and which slots are due (cron in a time zone,
every_s, missed slots skipped or run once)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tidegate.core.errors import InvalidInput, UnknownJobType
from tidegate.core.schedules import Schedule, due, parse, settings_schedules
from tidegate.jobs import load_builtin_jobs

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def sched(**kw: object) -> Schedule:
    base = {"id": "s1", "tenant": "acme", "name": "n", "type": "echo", "input": {},
            "created_at": T0}
    return Schedule(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("values", "message"), [
    ({"cron": "61 * * * *"}, "cron: invalid expression"),
    ({"cron": "every day"}, "cron: invalid expression"),
    ({"cron": "* * * * *", "every_s": 5}, "exactly one of cron"),
    ({}, "exactly one of cron"),
    ({"every_s": 0}, "every_s"),
    ({"every_s": 1.5}, "every_s"),
    ({"every_s": 5, "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
    ({"every_s": 5, "missed": "twice"}, "missed:"),
    ({"every_s": 5, "priority": "urgent"}, "priority:"),
    ({"every_s": 5, "input": {"text": 5}}, "invalid input for job type 'echo'"),
    ({"every_s": 5, "colour": "red"}, "unknown schedule field"),
    ({"every_s": 5, "name": "bad name!"}, "name:"),
])
def test_invalid_fields_are_named(values: dict[str, object], message: str) -> None:
    registry = load_builtin_jobs()
    with pytest.raises(InvalidInput, match=message):
        parse({"name": "n", "type": "echo", "input": {"text": "hi"}, **values},
              tenant="acme", registry=registry)


def test_unknown_type_lists_known_ones() -> None:
    with pytest.raises(UnknownJobType, match="known types:.*echo"):
        parse({"name": "n", "type": "nope", "every_s": 5}, tenant="acme",
              registry=load_builtin_jobs())


def test_every_s_slots_are_anchored_at_creation() -> None:
    s = sched(every_s=10)
    slots, cursor = due(s, T0 + timedelta(seconds=35), grace_s=300)
    assert slots == [T0 + timedelta(seconds=k) for k in (10, 20, 30)]
    assert cursor == T0 + timedelta(seconds=30)
    assert due(replace(s, cursor=cursor), T0 + timedelta(seconds=39), grace_s=300) == (
        [], cursor)


def test_cron_in_a_time_zone_across_dst() -> None:
    # 02:30 New York does not exist on 2026-03-08 (DST starts); cronsim fires it at 03:00.
    s = sched(cron="30 2 * * *", timezone="America/New_York",
              created_at=datetime(2026, 3, 6, 12, tzinfo=UTC))
    slots, _ = due(s, datetime(2026, 3, 9, 12, tzinfo=UTC), grace_s=10 * 86400)
    assert [x.isoformat() for x in slots] == [
        "2026-03-07T07:30:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]


@pytest.mark.parametrize(("missed", "expected"), [
    ("skip", [T0 + timedelta(hours=5)]),
    ("once", [T0 + timedelta(hours=4), T0 + timedelta(hours=5)]),
])
def test_missed_slots_skip_or_once(missed: str, expected: list[datetime]) -> None:
    # Hourly; the scheduler was away 5 h 10 min; the grace window is 30 min: the slots at
    # 1..4 h are missed (once: the latest of them runs), 5 h is within the window.
    s = sched(cron="0 * * * *", missed=missed)
    slots, cursor = due(s, T0 + timedelta(hours=5, minutes=10), grace_s=1800)
    assert slots == expected
    assert cursor == T0 + timedelta(hours=5)


def test_settings_table_is_validated_with_its_entry_named() -> None:
    registry = load_builtin_jobs()
    [ok] = settings_schedules({"nightly": {"cron": "0 2 * * *", "type": "echo",
                                           "input": {"text": "x"}, "tenant": "ops"}},
                              registry=registry, default_tenant="default")
    assert (ok.tenant, ok.name, ok.source) == ("ops", "nightly", "settings")
    with pytest.raises(InvalidInput, match="schedules.bad: cron"):
        settings_schedules({"bad": {"cron": "nope", "type": "echo"}}, registry=registry,
                           default_tenant="default")
