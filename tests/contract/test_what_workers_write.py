"""What a worker writes must be storable on every store, and what it cannot write must still
end the job: found in review, where PostgreSQL refused a result and the job re-ran to its cap."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.memory import InMemoryDispatcher
from tidegate.core.models import Usage
from tidegate.core.registry import Registry
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.core.sweep import SweepConfig, Sweeper

from .test_store_contract import claim, make_job, set_columns


class Nothing(BaseModel):
    pass


def _registry() -> Registry:
    reg = Registry()

    @reg.job_type("nan_result", input_model=Nothing, priority="medium", max_attempts=3)
    def nan_result(ctx: JobContext[Nothing]) -> dict[str, Any]:
        return {"score": float("nan"), "text": "ok"}

    @reg.job_type("nul_error", input_model=Nothing, priority="medium", max_attempts=1)
    def nul_error(ctx: JobContext[Nothing]) -> None:
        ctx.progress(10, "read \x00 and \ud800 from the provider")
        raise ValueError("provider said \x00\ud800")

    @reg.job_type("nul_checkpoint", input_model=Nothing, priority="medium", max_attempts=3)
    def nul_checkpoint(ctx: JobContext[Nothing]) -> None:
        ctx.save("section", "text with \x00")

    return reg


def _run(store, job_type: str):
    registry = _registry()
    service = JobService(store, InMemoryDispatcher(), registry)
    runner = Runner(store, registry, worker_id="w1", config=RunnerConfig(heartbeat_s=0.05))
    job, _ = service.submit(tenant="t", type=job_type, input={})
    return runner.run(job.id), store.get(job.id)


def test_a_result_that_cannot_be_stored_fails_at_once(store) -> None:
    outcome, job = _run(store, "nan_result")
    assert outcome.kind == "failed" and job.attempts == 1  # not run again to the cap
    assert (job.status, job.error_code) == (Status.FAILED, "unstorable_result")
    assert "score" in job.error_message and "NaN" in job.error_message


def test_a_checkpoint_that_cannot_be_stored_fails_at_once(store) -> None:
    outcome, job = _run(store, "nul_checkpoint")
    assert outcome.kind == "failed" and job.error_code == "unstorable_result"


def test_error_and_progress_text_is_made_storable(store) -> None:
    outcome, job = _run(store, "nul_error")
    assert outcome.kind == "failed" and job.status is Status.FAILED
    assert job.error_message.startswith("ValueError: provider said \ufffd")
    assert job.message.startswith("read \ufffd and ")
    job.error_message.encode("utf-8")  # sendable


def test_usage_of_an_attempt_whose_write_lost_its_race_is_billed_late(store) -> None:
    job, _ = store.create(make_job())
    claim(store, job)
    ctx: JobContext[Nothing] = JobContext(
        job_id=job.id, tenant="acme", job_type="echo", attempt=1, max_attempts=3,
        input=Nothing(), store=store, checkpoint={}, progress_every_s=0)  # written at once
    ctx.add_usage(Usage(100, 20, 5_000))
    set_columns(store, job.id, attempts=2)  # a newer attempt owns the row now
    with pytest.raises(Exception, match=job.id):
        ctx.progress(50, "half")
    got = store.get(job.id)
    assert (got.usage.input_tokens, got.late_usage.input_tokens) == (100, 100)
    assert got.usage.cost_nanos == 5_000


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_a_row_that_cannot_be_decoded_never_stops_the_sweep(store) -> None:
    """One undecodable waiting row made every sweep raise, so nothing was re-sent any more."""
    bad, _ = store.create(make_job())
    fine, _ = store.create(make_job())
    from sqlalchemy import text

    # SQLite: input that is not JSON at all; PostgreSQL (JSONB checks JSON): a priority no
    # version of Tidegate wrote.
    sql = ("UPDATE tg_jobs SET input = '{not json' WHERE id = :id"
           if store.engine.dialect.name == "sqlite"
           else "UPDATE tg_jobs SET priority = 'urgent' WHERE id = :id")
    with store.engine.begin() as conn:
        conn.execute(text(sql), {"id": bad.id})
    dispatcher = InMemoryDispatcher()
    service = JobService(store, dispatcher, _registry())
    report = Sweeper(service, SweepConfig(dispatch_grace_s=0)).sweep()
    assert {s[0] for s in dispatcher.sent} >= {fine.id}
    assert report.redispatched >= 1
    # Its delivery ends it: no attempt can run what cannot be read.
    assert claim(store, bad) is None
    got = store.get(bad.id)
    assert (got.status, got.error_code) == (Status.FAILED, "unreadable")
    assert claim(store, fine) is not None
