"""Job types' own limits across real worker processes: runs at once and starts per minute
hold for all workers together, and waiting for them spends no attempt."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from .harness import Ledger, Stack, conclude

pytestmark = pytest.mark.slow


def test_concurrency_and_starts_per_minute_hold_across_workers(
        request: pytest.FixtureRequest, stack_factory: Callable[..., Stack],
        tmp_path: Path) -> None:
    # The type declares 3 at once and 30 a minute; the settings lower both (2, and 4).
    config = tmp_path / "settings.toml"
    config.write_text("[job_limits.fault_limited]\nconcurrency = 2\nper_minute = 4\n")
    stack = stack_factory("redis", env={"TIDEGATE_LLM_CONFIG": str(config)})
    stack.start_all(workers=3, concurrency=2, beat=False)  # 6 slots, 3 processes
    from tidegate.adapters.sql.tables import job_events

    ledger = Ledger(stack)
    submitted_at = time.monotonic()
    with stack.client() as http:
        ids = [ledger.submit(http, "fault_limited", {"sleep_s": 1.5, "steps": 3})
               for _ in range(6)]
    verdict = conclude(request, ledger, "type limits", since=submitted_at, timeout_s=120)
    assert verdict.statuses == {"succeeded": 6}
    runs = {e["job"]: {} for e in stack.exec_log.entries()}
    for e in stack.exec_log.entries():
        runs[e["job"]][e["ev"]] = e["t"]
    # at most 2 running at any instant, across the 3 processes
    edges = sorted([(r["start"], 1) for r in runs.values()]
                   + [(r["end"], -1) for r in runs.values()])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2, peak
    assert len({e["pid"] for e in stack.exec_log.entries()}) > 1  # shared, not per process
    starts = sorted(r["start"] for r in runs.values())
    # 4 starts in the first minute, the 5th and 6th only once the first ones leave it
    assert starts[3] - starts[0] < 30
    assert starts[4] - starts[0] >= 59.5 and starts[5] - starts[1] >= 59.5, starts
    rows = stack.rows(ids)
    assert all(r["attempts"] == 1 for r in rows.values()), rows
    with stack.engine.connect() as conn:
        details = conn.execute(sa.select(job_events.c.detail).where(
            job_events.c.job_id.in_(ids), job_events.c.kind == "retrying")).scalars().all()
    waits = [d for d in details if d.get("code") == "job_type_limit"]
    assert waits and all(d["counts_as_attempt"] is False for d in waits)
    print(f"\ntype limits: peak {peak} running over 3 workers; starts at "
          f"{[round(s - starts[0], 1) for s in starts]} s; {len(waits)} waits, none an attempt")
