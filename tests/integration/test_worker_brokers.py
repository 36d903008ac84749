"""Jobs flow through a real Celery worker on Redis and on RabbitMQ, with SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import REDIS_URL
from tidegate.core.statuses import Status
from tidegate.wiring import build_container

from .helpers import running_worker, settings_for, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        from tidegate.adapters.sql import make_engine
        from tidegate.adapters.sql.migrate import upgrade

        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        upgrade(make_engine(url))
        return url
    request.getfixturevalue("pg_store")  # migrated and emptied
    return request.getfixturevalue("pg_database")


def test_jobs_run_to_completion(tmp_path: Path, broker_url: str, database_url: str) -> None:
    settings = settings_for(tmp_path, database_url=database_url, broker_url=broker_url,
                            redis_url=REDIS_URL)
    container = build_container(settings)
    with running_worker(settings):
        jobs = [container.service.submit(tenant="t", type="echo",
                                         input={"text": f"n{i}", "sleep_s": 0.2, "steps": 2},
                                         priority=p)[0]
                for i, p in enumerate(["high", "medium", "low", None])]
        wait_until(lambda: all(container.store.get(j.id).status.terminal for j in jobs))
    for i, job in enumerate(jobs):
        got = container.store.get(job.id)
        assert got.status is Status.SUCCEEDED, got.error
        assert got.result["text"] == f"n{i}" and got.attempts == 1
    container.close()


def test_cancel_stops_a_running_job(tmp_path: Path, broker_url: str) -> None:
    from tidegate.adapters.sql import make_engine
    from tidegate.adapters.sql.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(make_engine(url))
    settings = settings_for(tmp_path, database_url=url, broker_url=broker_url,
                            redis_url=REDIS_URL, heartbeat_s=0.2)
    container = build_container(settings)
    with running_worker(settings):
        job, _ = container.service.submit(tenant="t", type="echo",
                                          input={"sleep_s": 60, "steps": 60})
        wait_until(lambda: container.store.get(job.id).status is Status.RUNNING)
        container.service.cancel(job.id, tenant="t")
        wait_until(lambda: container.store.get(job.id).status.terminal, timeout_s=10)
    assert container.store.get(job.id).status is Status.CANCELLED
    container.close()
