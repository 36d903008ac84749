"""The runner's outcomes on an in-memory store and dispatcher."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidegate.core.errors import AlreadyTerminal, InvalidInput, NotFound, UnknownJobType
from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.models import utcnow
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status

from .fixtures import Anything, make_registry


@pytest.fixture
def env():
    calls: list[str] = []
    store, dispatcher = InMemoryJobStore(), InMemoryDispatcher()
    registry = make_registry(calls)
    service = JobService(store, dispatcher, registry)
    runner = Runner(store, registry, worker_id="w1",
                    config=RunnerConfig(lease_s=30, heartbeat_s=0.05, backoff_base_s=0.01))
    return service, runner, store, dispatcher, calls


def test_submit_validates_and_dispatches(env) -> None:
    service, runner, store, dispatcher, _ = env
    job, created = service.submit(tenant="t", type="ok", input={"n": 2})
    assert created and job.priority.value == "high"
    assert dispatcher.sent == [(job.id, "high", 0.0)]
    assert store.get(job.id).dispatched_at is not None
    with pytest.raises(UnknownJobType):
        service.submit(tenant="t", type="nope", input={})
    with pytest.raises(InvalidInput, match="n"):
        service.submit(tenant="t", type="ok", input={"n": "x"})
    with pytest.raises(InvalidInput, match="priority"):
        service.submit(tenant="t", type="ok", input={}, priority="urgent")


def test_success_writes_result_progress_and_history(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="ok", input={"n": 21}, priority="low")
    assert runner.run(job.id).kind == "succeeded"
    got = store.get(job.id)
    assert got.status is Status.SUCCEEDED and got.result == {"n": 42} and got.attempts == 1
    assert [e.kind for e in store.events(job.id)] == ["submitted", "claimed", "succeeded"]
    assert runner.run(job.id).kind == "skipped"  # a duplicate delivery does nothing
    assert calls == ["ok"]


def test_handler_errors_retry_then_fail_at_the_cap(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="boom", input={})
    first = runner.run(job.id)
    assert first.kind == "retry" and first.queue == "medium"
    assert store.get(job.id).status is Status.RETRYING
    # deliver again once due
    store._jobs[job.id].not_before = utcnow() - timedelta(seconds=1)
    assert runner.run(job.id).kind == "failed"
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "handler_error"
    assert "after 2 attempts" in got.error_message and calls == ["boom", "boom"]


def test_permanent_error_fails_at_once(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="bad", input={})
    assert runner.run(job.id).kind == "failed"
    assert store.get(job.id).error == {"code": "provider_rejected", "message": "401 bad key"}


def test_waiting_for_quota_is_not_an_attempt(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    for _ in range(2):
        out = runner.run(job.id)
        assert out.kind == "retry" and out.delay_s == 5
        assert store.get(job.id).attempts == 0
        store._jobs[job.id].not_before = None
    assert runner.run(job.id).kind == "succeeded"  # max_attempts=1 was never spent


def test_early_delivery_is_sent_back_for_later(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    runner.run(job.id)
    out = runner.run(job.id)  # arrives before not_before
    assert out.kind == "retry" and 0 < out.delay_s <= 5


def test_checkpoints_resume_after_a_crash(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="steps", input={})
    assert runner.run(job.id).kind == "retry"
    store._jobs[job.id].not_before = None
    assert runner.run(job.id).kind == "succeeded"
    assert calls == ["a", "b", "b", "c"]  # "a" was not repeated
    assert store.get(job.id).result == ["a-result", "b-result", "c-result"]


def test_cancel_checkpoint_ends_cancelled(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="cancel_me", input={})
    assert runner.run(job.id).kind == "cancelled"
    assert store.get(job.id).status is Status.CANCELLED


def test_cancel_and_retry_through_the_service(env) -> None:
    service, runner, store, dispatcher, _ = env
    job, _ = service.submit(tenant="t", type="ok", input={})
    with pytest.raises(NotFound):
        service.cancel(job.id, tenant="someone-else")
    assert service.cancel(job.id, tenant="t").status is Status.CANCELLED
    assert runner.run(job.id).kind == "skipped"  # never starts
    with pytest.raises(AlreadyTerminal):
        service.cancel(job.id, tenant="t")
    failed, _ = service.submit(tenant="t", type="bad", input={})
    runner.run(failed.id)
    with pytest.raises(AlreadyTerminal):
        service.retry(job.id, tenant="t")
    replayed = service.retry(failed.id, tenant="t")
    assert replayed.status is Status.QUEUED and replayed.attempts == 0
    assert dispatcher.sent[-1][0] == failed.id


def test_broker_down_still_accepts(env) -> None:
    service, _, store, dispatcher, _ = env
    dispatcher.down = True
    job, created = service.submit(tenant="t", type="ok", input={})
    assert created and store.get(job.id).dispatched_at is None


def test_stopping_worker_hands_the_job_back(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="steps", input={})
    runner.stopping.set()
    out = runner.run(job.id)
    assert out.kind == "retry" and out.delay_s == 0
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.attempts == 0  # the attempt is not spent
    assert got.lease_owner is None and calls == ["a"]
    assert "handed_back" in [e.kind for e in store.events(job.id)]


def test_final_write_survives_a_database_blip(env) -> None:
    from tidegate.core.errors import Unavailable

    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="ok", input={"n": 1})
    real_finish, failures = store.finish, [2]

    def flaky_finish(**kw):
        if failures[0]:
            failures[0] -= 1
            raise Unavailable("database unavailable")
        return real_finish(**kw)

    store.finish = flaky_finish
    assert runner.run(job.id).kind == "succeeded"  # the result was not thrown away
    assert store.get(job.id).result == {"n": 2}


def test_time_limit_errors_get_their_own_code(env) -> None:
    service, _, store, _, _ = env

    class SoftLimit(Exception):
        pass

    timed = Runner(store, service.registry, worker_id="w", time_limit_errors=(SoftLimit,),
                   config=RunnerConfig(heartbeat_s=0.05))

    @service.registry.job_type("slowpoke", input_model=Anything, priority="low",
                               max_attempts=1)
    def slowpoke(ctx):
        raise SoftLimit()

    job, _ = service.submit(tenant="t", type="slowpoke", input={})
    assert timed.run(job.id).kind == "failed"
    assert store.get(job.id).error_code == "time_limit"
