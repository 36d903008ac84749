"""The sweep recovers stranded jobs and never writes twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

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
    store.claim(job_id, owner="dead-worker", lease_s=-1)  # a lease that already ran out


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
    store.request_cancel(job.id, tenant="t")
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
    stale = store.expired_leases()
    assert sweeper.sweep().requeued == 1
    # the second sweep read the same stale row; its conditional update loses
    assert not store.requeue(stale[0].id, from_status=Status.RUNNING, attempt=1,
                             lease_expired=True)
    assert other.sweep().requeued == 0


def test_purge_by_retention() -> None:
    store, _, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    store.claim(job.id, owner="w", lease_s=30)
    store.finish(job.id, attempt=1, status=Status.SUCCEEDED)
    store._jobs[job.id].finished_at = utcnow() - timedelta(days=8)
    assert sweeper.purge() == 1


def renewing_between_read_and_write(store: InMemoryJobStore) -> None:
    """The sweep reads the expired leases, then the worker renews before the sweep writes."""
    read = store.expired_leases

    def expired_leases(limit: int = 100):
        stale = read(limit)
        for job in stale:
            assert store.renew_lease(job.id, attempt=job.attempts, owner=job.lease_owner,
                                     lease_s=30) == (True, job.cancel_requested)
        return stale

    store.expired_leases = expired_leases  # type: ignore[method-assign]


@pytest.mark.parametrize("type_, cancel", [("ok", False), ("boom", False), ("ok", True)])
def test_a_lease_renewed_after_the_sweep_read_it_stays_with_its_worker(type_, cancel) -> None:
    store, dispatcher, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type=type_, input={})
    if type_ == "boom":  # max_attempts=2: the sweep would fail it with worker_lost
        expire(store, job.id)
        sweeper.sweep()
    expire(store, job.id)
    if cancel:
        store.request_cancel(job.id, tenant="t")
    renewing_between_read_and_write(store)
    report = sweeper.sweep()
    assert (report.requeued, report.worker_lost, report.cancelled) == (0, 0, 0)
    got = store.get(job.id)
    assert got.status is Status.RUNNING and got.lease_owner == "dead-worker"


def test_a_cancel_racing_the_requeue_ends_cancelled() -> None:
    store, dispatcher, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    expire(store, job.id)
    read = store.expired_leases

    def cancel_after_read(limit: int = 100):
        stale = read(limit)
        store.request_cancel(job.id, tenant="t")  # the DELETE lands between read and write
        return stale

    store.expired_leases = cancel_after_read  # type: ignore[method-assign]
    assert sweeper.sweep().cancelled == 1
    assert store.get(job.id).status is Status.CANCELLED
    assert [s[0] for s in dispatcher.sent] == [job.id]  # not sent again


def test_a_waiting_row_that_still_carries_a_cancel_request_is_cancelled() -> None:
    # e.g. parked by a version that did not fold the cancel into its write
    store, _, service, sweeper = setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    store._jobs[job.id].cancel_requested = True
    assert sweeper.sweep().cancelled == 1
    got = store.get(job.id)
    assert got.status is Status.CANCELLED and got.error_code == "cancelled"
    assert store.events(job.id)[-1].kind == "cancelled"


def test_waiting_rows_past_their_deadline_fail_expired() -> None:
    clock = FakeClock()
    store, dispatcher = InMemoryJobStore(clock=clock), InMemoryDispatcher()
    service = JobService(store, dispatcher, make_registry([]), clock=clock)
    sweeper = Sweeper(service, SweepConfig(dispatch_grace_s=0), clock=clock)
    job, _ = service.submit(tenant="t", type="ok", input={}, deadline_s=60)
    assert store.get(job.id).expires_at == clock.now + timedelta(seconds=60)
    clock.now += timedelta(seconds=59)
    assert sweeper.sweep().expired == 0
    clock.now += timedelta(seconds=2)
    assert sweeper.sweep().expired == 1
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "expired"
    assert got.finished_at == clock.now


def test_an_expired_lease_past_the_deadline_fails_expired() -> None:
    clock = FakeClock()
    store, dispatcher = InMemoryJobStore(clock=clock), InMemoryDispatcher()
    service = JobService(store, dispatcher, make_registry([]), clock=clock)
    sweeper = Sweeper(service, SweepConfig(dispatch_grace_s=0), clock=clock)
    job, _ = service.submit(tenant="t", type="ok", input={}, deadline_s=10)
    store.claim(job.id, owner="dead", lease_s=5)
    clock.now += timedelta(seconds=11)
    assert sweeper.sweep().expired == 1
    assert store.get(job.id).error_code == "expired"


class FakeClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


def test_a_dead_workers_jobs_are_taken_over_before_their_leases_run_out() -> None:
    store, dispatcher, service, sweeper = setup()
    mine, _ = service.submit(tenant="t", type="ok", input={})
    other, _ = service.submit(tenant="t", type="ok", input={})
    store.claim(mine.id, owner="host/1", lease_s=30)
    store.claim(other.id, owner="host/2", lease_s=30)
    assert sweeper.sweep().requeued == 0
    assert sweeper.recover_dead_workers({"host/1", "host/9"}) == 1
    assert store.get(mine.id).status is Status.QUEUED
    assert store.get(other.id).status is Status.RUNNING
    assert [s[0] for s in dispatcher.sent].count(mine.id) == 2  # submitted, then sent again
    assert sweeper.recover_dead_workers({"host/1"}) == 0


def frontier_setup():
    """A store, a sweep reading a delivery frontier, and one clock for both (seconds)."""
    from tidegate.core.memory import InMemoryFrontier

    clock = FakeClock()
    store, dispatcher = InMemoryJobStore(clock=clock), InMemoryDispatcher()
    service = JobService(store, dispatcher, make_registry([]), clock=clock)
    frontier = InMemoryFrontier(clock=lambda: clock.now.timestamp())
    sweeper = Sweeper(service, SweepConfig(dispatch_grace_s=0, redispatch_after_s=600,
                                           behind_s=30), clock=clock, frontier=frontier)
    return clock, store, dispatcher, service, frontier, sweeper


def test_a_backlog_waiting_its_turn_is_never_sent_twice() -> None:
    clock, store, dispatcher, service, frontier, sweeper = frontier_setup()
    backlog = [service.submit(tenant="t", type="ok", input={})[0] for _ in range(5)]
    for minute in range(1, 31):  # half an hour: the queue moves, slowly
        clock.now += timedelta(seconds=60)
        frontier.advance("high", clock.now.timestamp() - 1800 + minute)  # older messages
        assert sweeper.sweep().redispatched == 0
    assert [s[0] for s in dispatcher.sent] == [j.id for j in backlog]  # each sent once


def test_a_message_lost_behind_the_frontier_is_sent_again_at_once() -> None:
    clock, store, dispatcher, service, frontier, sweeper = frontier_setup()
    lost, _ = service.submit(tenant="t", type="ok", input={})
    sent_at = clock.now.timestamp()
    clock.now += timedelta(seconds=20)
    frontier.advance("high", clock.now.timestamp())  # a later message claimed: 20 s later
    assert sweeper.sweep().redispatched == 0  # within behind_s: claims may run out of order
    clock.now += timedelta(seconds=15)
    frontier.advance("high", sent_at + 31)
    assert sweeper.sweep().redispatched == 1
    assert [s[0] for s in dispatcher.sent] == [lost.id, lost.id]
    assert sweeper.sweep().redispatched == 0  # sent again just now: behind the frontier no more
    # another queue's frontier says nothing about this one
    medium, _ = service.submit(tenant="t", type="ok", input={}, priority="medium")
    clock.now += timedelta(seconds=100)
    frontier.advance("high", clock.now.timestamp())
    assert sweeper.sweep().redispatched == 1  # the high job again, not the medium one
    assert [s[0] for s in dispatcher.sent].count(medium.id) == 1  # its submit only


def test_a_queue_that_stopped_moving_gets_the_long_wait() -> None:
    clock, store, dispatcher, service, frontier, sweeper = frontier_setup()
    frontier.advance("high", clock.now.timestamp() - 5)
    job, _ = service.submit(tenant="t", type="ok", input={})
    clock.now += timedelta(seconds=599)
    assert sweeper.sweep().redispatched == 0  # nothing claimed since, but not long enough
    clock.now += timedelta(seconds=2)
    assert sweeper.sweep().redispatched == 1  # no claims for 600 s: every message lost?
    assert [s[0] for s in dispatcher.sent] == [job.id, job.id]


def test_a_job_waiting_for_its_countdown_is_not_overdue() -> None:
    clock, store, dispatcher, service, frontier, sweeper = frontier_setup()
    job, _ = service.submit(tenant="t", type="ok", input={})
    store.claim(job.id, owner="w", lease_s=30)
    store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="planned",
                 error_message="later", delay_s=120)
    service.dispatch(store.get(job.id), countdown_s=120)
    clock.now += timedelta(seconds=60)
    frontier.advance("high", clock.now.timestamp())
    assert sweeper.sweep().redispatched == 0  # its message waits in a worker for its time
