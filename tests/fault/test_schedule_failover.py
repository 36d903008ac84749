"""Schedules across a failover: two real `tidegate beat`, the leader killed in the middle of a
slot (its transaction written, not committed). The other takes over and every slot runs
exactly once: no slot twice, none skipped, on PostgreSQL and on SQLite."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from .harness import Stack, wait_for

pytestmark = pytest.mark.slow

LEADS = "scheduler is the leader"
EVERY_S = 2
SETTINGS_TOML = f"""
[schedules.tick]
every_s = {EVERY_S}
type = "echo"
input = {{ text = "tick" }}
priority = "low"
tenant = "ops"
"""


def _sqlite(tmp_path: Path) -> str:
    from tidegate.adapters.sql import make_engine
    from tidegate.adapters.sql.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'beat.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_leader_killed_mid_slot_every_slot_runs_once(
        request: pytest.FixtureRequest, stack_factory: Callable[..., Stack], tmp_path: Path,
        database: str) -> None:
    from tidegate.adapters.sql.tables import jobs, schedule_runs, schedules

    config = tmp_path / "settings.toml"
    config.write_text(SETTINGS_TOML)
    mark = tmp_path / "stalled"
    url = request.getfixturevalue("pg_db") if database == "postgresql" else _sqlite(tmp_path)
    stack = stack_factory("redis", database_url=url, env={
        "TIDEGATE_LLM_CONFIG": str(config),
        "TIDEGATE_JOB_MODULES": "tidegate_fault_jobs,tidegate_fault_beat",
        "TIDEGATE_FAULT_STALL_FIRE": "3", "TIDEGATE_FAULT_STALL_MARK": str(mark)})
    beats = [stack.start_beat(wait=False), stack.start_beat(wait=False)]
    leader = wait_for(lambda: next((b for b in beats if LEADS in b.text()), None), 40,
                      "a leader")
    standby = beats[1 - beats.index(leader)]
    wait_for(lambda: "stalled mid-slot" in leader.text(), 30, "the leader stalled mid-slot")
    stalled_key = mark.read_text()
    leader.signal_group(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: LEADS in standby.text(), 40, "the standby took over")
    takeover_s = time.monotonic() - killed_at

    def runs() -> list[tuple]:
        with stack.engine.connect() as conn:
            return list(conn.execute(sa.select(schedule_runs.c.slot, schedule_runs.c.job_id)
                                     .order_by(schedule_runs.c.slot)))

    # a few slots after the takeover too
    settled = len(runs()) + 4
    wait_for(lambda: len(runs()) >= settled, 30, "slots after the takeover")
    standby.signal_group(signal.SIGTERM)
    assert standby.wait(15) is not None
    with stack.engine.connect() as conn:
        created_at = conn.execute(sa.select(schedules.c.created_at)).scalar_one()
        made = list(conn.execute(sa.select(jobs.c.id, jobs.c.idempotency_key, jobs.c.schedule,
                                           jobs.c.tenant)))
    got = runs()
    slots = [slot for slot, _ in got]
    # every slot from the first to the last, each once: none twice, none skipped
    expected = [created_at + timedelta(seconds=EVERY_S * k) for k in range(1, len(slots) + 1)]
    assert slots == expected, (slots, expected)
    # one job per run row, each the schedule's, of its tenant; the stalled slot's too
    assert sorted(j for _, j in got) == sorted(r.id for r in made)
    assert len({r.idempotency_key for r in made}) == len(made)
    assert {(r.schedule, r.tenant) for r in made} == {("tick", "ops")}
    assert stalled_key in {r.idempotency_key for r in made}
    print(f"\nschedule failover ({database}): {len(slots)} slots, each once; the leader "
          f"killed mid-slot at slot {stalled_key.split(':', 2)[2]}, standby led after "
          f"{takeover_s:.1f} s")
