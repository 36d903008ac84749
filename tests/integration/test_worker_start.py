"""A worker's start and its deliveries: it refuses a broken configuration before saying "ready",
sizes its database pool from its concurrency, keeps retrying a lost broker, warns about
RabbitMQ's consumer timeout, stamps itself alive, and never drops a delivery that fails."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.services import AMQP_URL, REDIS_URL
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.errors import Unavailable
from tidegate.core.statuses import Status
from tidegate.wiring import build_container

from .helpers import running_worker, settings_for, wait_until


def tidegate(*args: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    return subprocess.run([sys.executable, "-m", "tidegate", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_worker_refuses_to_start_with_a_broken_llm_config(tmp_path: Path, redis_url: str) -> None:
    toml = tmp_path / "llm.toml"
    toml.write_text('[defaults]\nmodle = "openai:gpt-4o-mini"\n')
    started = time.monotonic()
    # Before the fix the worker started, said "ready" and failed every job: this timed out.
    res = tidegate("worker", env={"TIDEGATE_LLM_CONFIG": str(toml),
                                  "TIDEGATE_REDIS_URL": redis_url,
                                  "TIDEGATE_DATA_DIR": str(tmp_path)}, timeout_s=45)
    assert res.returncode != 0
    err = "".join(res.stderr.split())  # rich wraps long lines, even inside a path
    assert str(toml) in err and "defaults.modle" in err, res.stderr
    assert "ready" not in res.stderr
    assert time.monotonic() - started < 45


def test_worker_refuses_to_start_with_a_missing_job_module(tmp_path: Path,
                                                           redis_url: str) -> None:
    res = tidegate("worker", env={"TIDEGATE_JOB_MODULES": "no_such_jobs_module",
                                  "TIDEGATE_REDIS_URL": redis_url,
                                  "TIDEGATE_DATA_DIR": str(tmp_path)}, timeout_s=45)
    assert res.returncode != 0
    assert "no_such_jobs_module" in res.stderr


def test_pool_exhaustion_is_unavailable(sqlite_db: str) -> None:
    """Every pooled connection busy: the store says Unavailable (the delivery is sent again
    later), not an unexpected error that dropped the message."""
    engine = sa.create_engine(sqlite_db, pool_size=1, max_overflow=0, pool_timeout=0.2)
    store = SqlJobStore(engine)
    with engine.connect() as held:
        held.execute(sa.text("SELECT 1"))
        with pytest.raises(Unavailable, match="pool"):
            store.get("anything")
    assert store.get("anything") is None
    engine.dispose()


@pytest.mark.parametrize("pool,at_least", [("threads", 16), ("prefork", 1)])
def test_database_pool_is_sized_from_the_concurrency(tmp_path: Path, sqlite_db: str,
                                                     pool: str, at_least: int) -> None:
    from tidegate.worker import runtime

    settings = settings_for(tmp_path, database_url=sqlite_db, broker_url=REDIS_URL,
                            redis_url=REDIS_URL, worker_concurrency=16, worker_pool=pool)
    runtime.configure(settings)
    try:
        engine = runtime.get_runtime().container.engine
        # each running job and its heartbeat hold one connection each
        assert engine.pool.size() + engine.pool._max_overflow >= 2 * at_least + 2
        assert engine.pool.size() <= at_least + runtime.DB_POOL_HEADROOM
    finally:
        runtime.configure(settings)


def test_worker_retries_a_lost_broker_forever_and_warns_about_consumer_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tidegate.worker.app import consumer_timeout_warning, create_worker_app

    amqp = settings_for(tmp_path, broker_url=AMQP_URL, redis_url=REDIS_URL)
    assert consumer_timeout_warning(amqp) is None  # the defaults fit RabbitMQ's default
    assert amqp.job_time_limit_s + 60 < 1800
    with caplog.at_level(logging.WARNING, logger="tidegate.worker.app"):
        app = create_worker_app(settings_for(tmp_path, broker_url=AMQP_URL,
                                             redis_url=REDIS_URL, job_time_limit_s=1800))
    assert app.conf.broker_connection_max_retries is None
    assert any("consumer_timeout" in r.getMessage() and "1860s" in r.getMessage()
               for r in caplog.records), caplog.text
    longer = settings_for(tmp_path, broker_url=AMQP_URL, redis_url=REDIS_URL,
                          job_time_limit_s=3000, broker_consumer_timeout_s=7200)
    assert consumer_timeout_warning(longer) is None
    on_redis = settings_for(tmp_path, broker_url=REDIS_URL, job_time_limit_s=3600)
    assert consumer_timeout_warning(on_redis) is None


def test_a_running_worker_is_alive_for_the_health_check(tmp_path: Path, redis_url: str,
                                                        sqlite_db: str) -> None:
    from tidegate.adapters.liveness import LivenessRegistry

    env = {"TIDEGATE_REDIS_URL": redis_url, "TIDEGATE_DATA_DIR": str(tmp_path)}
    res = tidegate("worker", "--check", env=env)
    assert res.returncode == 1 and "no worker process" in res.stderr
    settings = settings_for(tmp_path, database_url=sqlite_db, broker_url=redis_url,
                            redis_url=redis_url)
    import redis

    client = redis.Redis.from_url(settings.state_redis())
    me = f"{socket.gethostname()}/{os.getpid()}"
    with running_worker(settings):
        # stamped from the start, before any job
        wait_until(lambda: me in LivenessRegistry(client).fresh(), timeout_s=5)
        res = tidegate("worker", "--check", env=env)
        assert res.returncode == 0, res.stderr
        assert str(os.getpid()) in res.stdout
    client.close()


def test_a_delivery_failing_before_the_claim_is_retried_then_fails_the_job(
        tmp_path: Path, broker_url: str, sqlite_db: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not `Unavailable`, so not a reason to wait: sent again a few times, then the job ends
    `failed` with `delivery_failed` instead of waiting for the scheduler's re-send (600 s)."""
    from tidegate.worker import app as worker_app

    monkeypatch.setattr(worker_app, "DELIVERY_BACKOFF_BASE_S", 0.1, raising=False)
    calls: list[str] = []
    real_claim = SqlJobStore.claim

    def broken_claim(self: SqlJobStore, job_id: str, **kw: object) -> object:
        if job_id == doomed.id:
            calls.append(job_id)
            raise RuntimeError("claim exploded")
        return real_claim(self, job_id, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlJobStore, "claim", broken_claim)
    settings = settings_for(tmp_path, database_url=sqlite_db, broker_url=broker_url,
                            redis_url=REDIS_URL)
    container = build_container(settings)
    # Submitted before the worker starts: `broken_claim` must know the doomed id before any
    # delivery of it can arrive.
    doomed, _ = container.service.submit(tenant="t", type="echo", input={"text": "x"})
    fine, _ = container.service.submit(tenant="t", type="echo", input={"text": "y"})
    with running_worker(settings, concurrency=2):
        wait_until(lambda: container.store.get(doomed.id).status.terminal, timeout_s=30)
        wait_until(lambda: container.store.get(fine.id).status.terminal, timeout_s=10)
    got = container.store.get(doomed.id)
    assert got.status is Status.FAILED and got.error_code == "delivery_failed"
    assert "RuntimeError: claim exploded" in got.error_message
    assert len(calls) == worker_app.DELIVERY_ATTEMPTS
    assert [e.kind for e in container.store.events(doomed.id)][-1] == "failed"
    assert container.store.get(fine.id).status is Status.SUCCEEDED
    container.close()


def test_a_delivery_keeps_coming_back_while_the_database_is_unavailable(
        tmp_path: Path, redis_url: str, sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than Celery's default 3 retries: before, the 4th Unavailable failed the task and
    acknowledged its message, and the job waited for the scheduler's re-send (600 s)."""
    from tidegate.worker import app as worker_app

    monkeypatch.setattr(worker_app, "DELIVERY_BACKOFF_BASE_S", 0.05, raising=False)
    calls: list[str] = []
    real_claim = SqlJobStore.claim

    def flaky_claim(self: SqlJobStore, job_id: str, **kw: object) -> object:
        calls.append(job_id)
        if len(calls) <= 6:
            raise Unavailable("database unavailable: OperationalError")
        return real_claim(self, job_id, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlJobStore, "claim", flaky_claim)
    settings = settings_for(tmp_path, database_url=sqlite_db, broker_url=redis_url,
                            redis_url=redis_url)
    container = build_container(settings)
    with running_worker(settings, concurrency=2):
        job, _ = container.service.submit(tenant="t", type="echo", input={"text": "x"})
        wait_until(lambda: container.store.get(job.id).status.terminal, timeout_s=30)
    assert container.store.get(job.id).status is Status.SUCCEEDED
    assert len(calls) == 7
    container.close()


def test_dead_worker_watch_confirms_before_it_reports(redis_url: str) -> None:
    """An owner is reported dead only when its stamps stay old for the whole confirmation
    window while Redis answers: after a Redis restart every stamp is old at once, and live
    workers stamp again within a second."""
    import redis

    from tidegate.adapters.liveness import DeadWorkerWatch, LivenessRegistry

    client = redis.Redis.from_url(redis_url)
    registry = LivenessRegistry(client, key="tg:test:alive")
    now = [100.0]
    watch = DeadWorkerWatch(registry, stale_s=0.2, confirm_s=3.0, clock=lambda: now[0])
    registry.stamp("h/1")
    registry.stamp("h/2")
    assert watch.check() == set()  # fresh
    time.sleep(0.3)
    assert watch.check() == set()  # both stale: suspects only
    now[0] += 2.0
    registry.stamp("h/1")  # h/1 was alive after all (say, after a Redis restart)
    assert watch.check() == set()
    now[0] += 1.5
    assert watch.check() == {"h/2"}
    watch.reset()  # e.g. Redis failed a check: continuity lost, start over
    assert watch.check() == set()
    now[0] += 3.0
    assert watch.check() == {"h/2"}
    watch.forget({"h/2"})
    now[0] += 10
    assert watch.check() == set()  # h/1 is a suspect again, not yet confirmed
    assert registry.fresh(stale_s=60) == {"h/1"}
    client.delete("tg:test:alive")
    client.close()
