"""Progress is coalesced: a handler reporting a thousand times a second writes a few rows,
and the last report is always written, before the outcome."""

from __future__ import annotations

import time

from tidegate.core.context import JobContext
from tidegate.core.memory import InMemoryJobStore
from tidegate.core.models import Job, new_job_id
from tidegate.core.registry import Registry
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.statuses import Priority

from .fixtures import Anything


def _running(store: InMemoryJobStore) -> Job:
    job, _ = store.create(Job(id=new_job_id(), tenant="t", type="x", priority=Priority.LOW,
                              input={}))
    claimed = store.claim(job.id, owner="w", lease_s=30)
    assert claimed is not None
    return claimed


def test_a_thousand_reports_a_second_write_a_handful_and_the_last_one() -> None:
    store = InMemoryJobStore()
    job = _running(store)
    ctx: JobContext[dict] = JobContext(job_id=job.id, tenant="t", job_type="x", attempt=1,
                                       max_attempts=3, input={}, store=store, checkpoint={},
                                       progress_every_s=0.1)
    started = time.monotonic()
    for i in range(1, 1001):
        ctx.progress(i / 10, f"item {i}")
        time.sleep(0.0005)
    elapsed = time.monotonic() - started
    ctx.flush_progress()
    progress = [e for e in store.events(job.id) if e.kind == "progress"]
    assert len(progress) <= elapsed / 0.1 + 2, (len(progress), elapsed)
    assert progress[-1].detail == {"percent": 100, "message": "item 1000"}
    got = store.get(job.id)
    assert (got.progress, got.message) == (100, "item 1000")
    ctx.flush_progress()  # nothing pending: nothing written
    assert len([e for e in store.events(job.id) if e.kind == "progress"]) == len(progress)


def test_the_runner_writes_the_last_progress_before_the_outcome() -> None:
    store = InMemoryJobStore()
    registry = Registry()

    @registry.job_type("burst", input_model=Anything, priority="low")
    def burst(ctx: JobContext[dict]) -> str:
        for i in range(500):
            ctx.progress(i / 5, f"{i}")
        ctx.progress(99, "almost")
        return "done"

    job, _ = store.create(Job(id=new_job_id(), tenant="t", type="burst",
                              priority=Priority.LOW, input={}))
    runner = Runner(store, registry, worker_id="w", config=RunnerConfig(heartbeat_s=0.5))
    assert runner.run(job.id).kind == "succeeded"
    kinds = [(e.kind, e.detail.get("message")) for e in store.events(job.id)]
    assert kinds[-2:] == [("progress", "almost"), ("succeeded", None)]
    assert sum(1 for k, _ in kinds if k == "progress") < 10
