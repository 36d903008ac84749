"""Quick checks of the worker guards the fault scenarios led to (no processes, no services):
the time limit for pools Celery cannot time out, and a Redis channel whose transport is gone."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.registry import Registry
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.worker.timelimit import TimeLimit


class Nothing(BaseModel):
    pass


def make(max_attempts: int = 2) -> tuple[Any, InMemoryJobStore, InMemoryDispatcher, Registry]:
    registry = Registry()

    @registry.job_type("hang", input_model=Nothing, priority="medium", max_attempts=max_attempts)
    def hang(ctx: JobContext[Nothing]) -> str:
        ctx.sleep(30)
        return "woke up"

    store, dispatcher = InMemoryJobStore(), InMemoryDispatcher()
    service = JobService(store, dispatcher, registry)
    runner = Runner(store, registry, worker_id="host/1",
                    config=RunnerConfig(lease_s=3, heartbeat_s=0.1))
    rt = SimpleNamespace(container=SimpleNamespace(store=store, service=service), runner=runner)
    return rt, store, dispatcher, registry


def test_time_limit_retries_a_hung_attempt_and_frees_the_handler() -> None:
    rt, store, dispatcher, _ = make()
    job, _ = rt.container.service.submit(tenant="t", type="hang", input={})
    outcome: list[Any] = []
    started = time.monotonic()
    with TimeLimit(rt, job.id, 0.5) as limit:
        thread = threading.Thread(
            target=lambda: outcome.append(rt.runner.run(job.id, on_claim=limit.pin)))
        thread.start()
        thread.join(10)
    assert outcome and outcome[0].kind == "lost"  # the handler stopped and wrote nothing
    assert time.monotonic() - started < 5
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.error_code == "time_limit"
    assert got.attempts == 1 and got.not_before is not None
    assert dispatcher.sent[-1][0] == job.id  # sent again, after the backoff
    assert [e.kind for e in store.events(job.id)][-1] == "retrying"


def test_time_limit_fails_the_last_attempt() -> None:
    rt, store, _, _ = make(max_attempts=1)
    job, _ = rt.container.service.submit(tenant="t", type="hang", input={})
    claimed = store.claim(job.id, owner="host/1", lease_s=30)
    limit = TimeLimit(rt, job.id, 1)
    limit.pin(claimed)
    assert limit.expire()
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "time_limit"


def test_time_limit_leaves_other_workers_and_finished_jobs_alone() -> None:
    rt, store, _, _ = make()
    job, _ = rt.container.service.submit(tenant="t", type="hang", input={})
    assert not TimeLimit(rt, job.id, 1).expire()  # not running
    store.claim(job.id, owner="elsewhere/9", lease_s=30)
    assert not TimeLimit(rt, job.id, 1).expire()  # an attempt this delivery did not claim
    assert store.get(job.id).status is Status.RUNNING


def test_time_limit_never_ends_a_newer_attempt_of_the_same_process() -> None:
    # Two threads of one process share the lease owner: the timer of attempt 1 (whose
    # delivery lost the job, e.g. to the sweep) must not end attempt 2, run by a sibling.
    rt, store, _, _ = make(max_attempts=3)
    job, _ = rt.container.service.submit(tenant="t", type="hang", input={})
    first = store.claim(job.id, owner="host/1", lease_s=30)
    limit = TimeLimit(rt, job.id, 1)
    limit.pin(first)
    store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="x", error_message="y",
                 delay_s=0)
    second = store.claim(job.id, owner="host/1", lease_s=30)  # same process, next attempt
    assert second is not None and second.attempts == 2
    assert not limit.expire()
    got = store.get(job.id)
    assert got.status is Status.RUNNING and got.attempts == 2


def test_redis_channel_without_its_transport_raises_a_connection_error() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tidegate.worker.transport import Channel

    channel = Channel.__new__(Channel)  # only what _connparams reads
    channel.connection = SimpleNamespace(client=None)
    with pytest.raises(RedisConnectionError):
        channel._connparams()
