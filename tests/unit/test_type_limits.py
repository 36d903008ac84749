"""Job type limits in the runner: a run over its type's limit steps back without spending
an attempt, with an event; settings override a type's declaration field by field."""

from __future__ import annotations

from datetime import timedelta

from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.models import utcnow
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.core.type_limits import TypeLimit, limits_for

from .fixtures import make_registry


class Gate:
    """Refuses while ``wait_s`` is set; records what it was asked."""

    def __init__(self) -> None:
        self.wait_s: float | None = 3.0
        self.held: set[str] = set()
        self.asked: list[tuple[str, TypeLimit]] = []

    def acquire(self, job_type: str, token: str, limit: TypeLimit) -> float | None:
        self.asked.append((job_type, limit))
        if self.wait_s is None:
            self.held.add(token)
        return self.wait_s

    def renew(self, job_type: str, token: str) -> None:
        pass

    def release(self, job_type: str, token: str) -> None:
        self.held.discard(token)


def test_over_the_limit_waits_without_an_attempt_then_runs() -> None:
    now = [utcnow()]
    store, registry = InMemoryJobStore(clock=lambda: now[0]), make_registry([])
    gate = Gate()
    limit = limits_for(registry, {"ok": TypeLimit(per_minute=5, concurrency=1)})
    runner = Runner(store, registry, worker_id="w1", config=RunnerConfig(heartbeat_s=0.05),
                    type_gate=gate, type_limit=limit)
    job, _ = JobService(store, InMemoryDispatcher(), registry).submit(
        tenant="t", type="ok", input={"n": 1})
    out = runner.run(job.id)
    assert out.kind == "retry" and 3.0 <= out.delay_s <= 3.75
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.attempts == 0
    [ev] = [e for e in store.events(job.id) if e.kind == "retrying"]
    assert ev.detail["code"] == "job_type_limit" and ev.detail["counts_as_attempt"] is False
    gate.wait_s = None
    now[0] += timedelta(seconds=5)  # its delay is over
    assert runner.run(job.id).kind == "succeeded"
    assert store.get(job.id).attempts == 1 and gate.held == set()  # the slot went back
    assert gate.asked[0] == ("ok", TypeLimit(5, 1))


def test_types_without_limits_never_ask() -> None:
    store, registry = InMemoryJobStore(), make_registry([])
    gate = Gate()
    runner = Runner(store, registry, worker_id="w1", type_gate=gate,
                    type_limit=limits_for(registry, {}))
    job, _ = JobService(store, InMemoryDispatcher(), registry).submit(
        tenant="t", type="ok", input={"n": 1})
    assert runner.run(job.id).kind == "succeeded" and gate.asked == []


def test_settings_override_the_declaration_field_by_field() -> None:
    from pydantic import BaseModel

    from tidegate.core.registry import Registry

    class In(BaseModel):
        pass

    reg = Registry()
    reg.job_type("chat", input_model=In, priority="high", per_minute=10, concurrency=4)(
        lambda ctx: None)
    limit = limits_for(reg, {"chat": TypeLimit(concurrency=2)})
    assert limit("chat") == TypeLimit(per_minute=10, concurrency=2)
    assert not limit("other")
