"""The sweep recovers stranded jobs and never writes twice."""

from __future__ import annotations

from datetime import timedelta

from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.models import utcnow
from tidegate.core.registry import Registry
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.core.sweep import SweepConfig, Sweeper

from .fixtures import make_registry


def setup(max_attempts: int = 3):
    store, dispatcher = InMemoryJobStore(), InMemoryDispatcher()
    registry: Registry = make_registry([])
    service = JobService(store, dispatcher, registry)
    return store, dispatcher, service, Sweeper(service, SweepConfig(dispatch_grace_s=0))


def expire(store: InMemoryJobStore, job_id: str) -> None:
    now = utcnow()
    store.claim(job_id, owner="dead-worker", lease_until=now - timedelta(seconds=1), now=now)


def test_expired_lease_is_requeued_and_resent() -> None:
    store, dispatcher, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    expire(store, job.id)
    report = sweeper.sweep()
    assert report.requeued == 1
    assert store.get(job.id).status is Status.QUEUED
    assert [s[0] for s in dispatcher.sent] == [job.id, job.id]
    assert "requeued" in [e.kind for e in store.events(job.id)]


def test_worker_lost_after_the_cap() -> None:
    store, _, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="boom", input={})  # max_attempts=2
    for _ in range(2):
        expire(store, job.id)
        sweeper.sweep()
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "worker_lost"


def test_cancel_requested_on_a_dead_worker_ends_cancelled() -> None:
    store, _, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    expire(store, job.id)
    store.request_cancel(job.id, tenant="t", now=utcnow())
    assert sweeper.sweep().cancelled == 1
    assert store.get(job.id).status is Status.CANCELLED


def test_undispatched_jobs_are_sent_when_the_broker_returns() -> None:
    store, dispatcher, service, sweeper = setup()
    dispatcher.down = True
    job, _ = service.submit(tenant="t", type="ok", input={})
    assert sweeper.sweep().dispatch_failed == 1
    dispatcher.down = False
    assert sweeper.sweep().redispatched == 1
    assert dispatcher.sent == [(job.id, "high", 0.0)]
    assert sweeper.sweep().redispatched == 0  # once dispatched, left alone


def test_two_sweeps_racing_requeue_once() -> None:
    store, dispatcher, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    expire(store, job.id)
    other = Sweeper(service, SweepConfig(dispatch_grace_s=0))
    stale = store.expired_leases(utcnow())
    assert sweeper.sweep().requeued == 1
    # the second sweep read the same stale row; its conditional update loses
    assert not store.requeue(stale[0].id, from_status=Status.RUNNING, attempt=1, now=utcnow())
    assert other.sweep().requeued == 0


def test_purge_by_retention() -> None:
    store, _, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    store.claim(job.id, owner="w", lease_until=utcnow() + timedelta(seconds=30), now=utcnow())
    store.finish(job.id, attempt=1, status=Status.SUCCEEDED, now=utcnow() - timedelta(days=8))
    assert sweeper.purge() == 1


def test_a_dead_workers_jobs_are_taken_over_before_their_leases_run_out() -> None:
    store, dispatcher, service, sweeper = setup()
    mine, _ = service.submit(tenant="t", type="ok", input={})
    other, _ = service.submit(tenant="t", type="ok", input={})
    now = utcnow()
    store.claim(mine.id, owner="host/1", lease_until=now + timedelta(seconds=30), now=now)
    store.claim(other.id, owner="host/2", lease_until=now + timedelta(seconds=30), now=now)
    assert sweeper.sweep().requeued == 0
    assert sweeper.recover_dead_workers({"host/1", "host/9"}) == 1
    assert store.get(mine.id).status is Status.QUEUED
    assert store.get(other.id).status is Status.RUNNING
    assert [s[0] for s in dispatcher.sent].count(mine.id) == 2  # submitted, then sent again
    assert sweeper.recover_dead_workers({"host/1"}) == 0
