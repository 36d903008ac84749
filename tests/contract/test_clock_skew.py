"""Hosts whose clocks disagree by seconds still agree on leases and schedules: those are
stamped and compared on the database's clock (PostgreSQL's now(); SQLite lives on one host, so
there the process clock is the database's)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.fixtures import make_registry
from tidegate.core.memory import InMemoryDispatcher
from tidegate.core.models import utcnow
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status
from tidegate.core.sweep import SweepConfig, Sweeper

SKEWS = [timedelta(seconds=5), timedelta(seconds=-5)]


def skewed(by: timedelta):
    return lambda: utcnow() + by


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request):
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_store")


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_skewed_hosts_agree_on_leases_and_schedules(sql_store, skew) -> None:
    registry = make_registry([])
    dispatcher = InMemoryDispatcher()
    api = JobService(sql_store, dispatcher, registry, clock=skewed(skew))
    sweeper = Sweeper(JobService(sql_store, dispatcher, registry, clock=skewed(-skew)),
                      SweepConfig(dispatch_grace_s=0), clock=skewed(-skew))
    worker = Runner(sql_store, registry, worker_id="w", config=RunnerConfig(lease_s=3))

    job, _ = api.submit(tenant="t", type="ok", input={}, deadline_s=3)
    assert not sweeper.sweep().expired  # the deadline is 3 s on the database's clock
    claimed = sql_store.claim(job.id, owner="w", lease_s=3)  # a fresh 3 s lease
    assert claimed is not None
    report = sweeper.sweep()
    assert (report.requeued, report.worker_lost, report.expired) == (0, 0, 0)
    assert sql_store.get(job.id).status is Status.RUNNING  # the lease was not stolen
    assert sql_store.renew_lease(job.id, attempt=1, owner="w", lease_s=3) == (True, False)
    assert not sql_store.expired_leases()

    # parked for 3 s: neither an early delivery nor the sweep's redispatch jumps the wait
    sql_store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="x",
                     error_message="x", delay_s=3)
    assert worker.run(job.id).kind == "retry"
    assert sql_store.get(job.id).status is Status.RETRYING


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_on_postgresql_the_process_clock_does_not_matter(pg_store, skew, monkeypatch) -> None:
    from tidegate.adapters.sql import store as store_module

    registry = make_registry([])
    service = JobService(pg_store, InMemoryDispatcher(), registry)
    job, _ = service.submit(tenant="t", type="ok", input={})
    monkeypatch.setattr(store_module, "utcnow", skewed(skew))  # this host's clock is off
    assert pg_store.claim(job.id, owner="w", lease_s=3) is not None
    assert not pg_store.expired_leases()
    pg_store.finish(job.id, attempt=1, status=Status.RETRYING, error_code="x",
                    error_message="x", delay_s=3)
    assert pg_store.claim(job.id, owner="w", lease_s=3) is None  # not before its time
    row = pg_store.get(job.id)
    db_now = pg_store.now()
    assert abs((db_now - utcnow()).total_seconds()) < 1  # now() is the server's, not ours
    assert timedelta(seconds=2) < row.not_before - db_now <= timedelta(seconds=3)
