"""Budgets enforced before spend, across many worker processes, against real PostgreSQL,
Redis and the provider simulator; and rebuilt from the database when Redis loses them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.services import fresh_pg_database, need
from tidegate.adapters.budget import RedisBudget
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import usage as usage_table
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.llm import Message
from tidegate.core.models import TenantSettings, Usage
from tidegate.providers.simulator import run_in_thread
from tidegate.providers.simulator.config import fast_test_config
from tidegate.providers.tokens import estimate_messages_tokens
from tidegate.wiring import build_container

from .helpers import settings_for, wait_until

WORKERS = 3
CONCURRENCY = 6
JOBS = 48
MAX_OUT = 60
BUDGET_TOKENS = 1500


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tidegate", "worker", "-c", str(CONCURRENCY),
                             "--loglevel", "WARNING"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_many_workers_of_one_tenant_never_overspend_by_more_than_one_call(
        tmp_path: Path, redis_url: str) -> None:
    need(redis_url, 6379, "Redis")
    sim_url, stop_sim = run_in_thread(fast_test_config(
        latency_min_ms=50, latency_max_ms=250, output_tokens_min=MAX_OUT,
        output_tokens_max=MAX_OUT))
    with fresh_pg_database() as db:
        settings = settings_for(tmp_path, database_url=db, redis_url=redis_url,
                                broker_url=redis_url)
        container = build_container(settings)
        upgrade(container.engine)
        container.store.put_tenant(TenantSettings(name="spender", daily_tokens=BUDGET_TOKENS))
        text = "Tell me about tidal energy."
        jobs = [container.service.submit(tenant="spender", type="chat", input={
            "message": f"{text} ({i})", "max_output_tokens": MAX_OUT})[0] for i in range(JOBS)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        env.update({"TIDEGATE_DATABASE_URL": db, "TIDEGATE_REDIS_URL": redis_url,
                    "TIDEGATE_BROKER_URL": redis_url, "TIDEGATE_SIMULATOR_URL": sim_url,
                    "TIDEGATE_DATA_DIR": str(tmp_path)})
        procs = [_start_worker(env, tmp_path / f"worker{i}.log") for i in range(WORKERS)]
        try:
            wait_until(lambda: all(container.store.get(j.id).status.terminal for j in jobs),
                       timeout_s=120, every_s=0.5)
        finally:
            _stop(procs)
        done = [container.store.get(j.id) for j in jobs]
        ok = [j for j in done if j.status.value == "succeeded"]
        refused = [j for j in done if j.error_code == "budget_exceeded"]
        assert len(ok) + len(refused) == JOBS, [(j.status, j.error_code) for j in done]
        assert ok and refused
        spent_jobs = sum(j.usage.input_tokens + j.usage.output_tokens for j in done)
        with container.engine.connect() as conn:
            spent_rows = conn.execute(sa.select(
                sa.func.sum(usage_table.c.input_tokens + usage_table.c.output_tokens))).scalar()
        assert spent_rows == spent_jobs  # the persisted usage is the jobs' usage
        one_call = estimate_messages_tokens(
            (Message("user", f"{text} ({JOBS})"),)) + MAX_OUT
        over = spent_jobs - BUDGET_TOKENS
        print(f"\nbudget {BUDGET_TOKENS} tokens, {WORKERS} workers x {CONCURRENCY} slots, "
              f"{JOBS} jobs: spent {spent_jobs} ({len(ok)} calls made, {len(refused)} refused)"
              f"; over budget by {over} tokens; one call's estimate {one_call} tokens")
        assert over <= one_call
        assert "budget" in refused[0].error_message and "resets at" in refused[0].error_message
        # A submit whose input alone does not fit what is left answers 429 budget_exceeded
        # with what is left and when it resets. (Submit counts only the input: how much is
        # left depends on how the concurrent holds settled, so size the input to exceed it.)
        left = max(0, BUDGET_TOKENS - spent_jobs)
        key, _ = create_key(container.store, tenant="spender", secret=settings.secret_key)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            r = client.post("/v1/jobs", json={"type": "chat", "input": {
                "message": "word " * (left + 10)}},
                            headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["code"] == "budget_exceeded" and "daily_tokens" in err["remaining"]
        assert datetime.fromisoformat(err["resets_at"]) > datetime.now(UTC)
        assert int(r.headers["Retry-After"]) >= 1
        container.close()
    stop_sim()


def test_lost_counters_are_rebuilt_from_the_database(tmp_path: Path, redis_url: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    store = SqlJobStore(engine)
    client = redis.Redis.from_url(redis_url)
    budget = RedisBudget(client, store)
    now = datetime.now(UTC)
    s = TenantSettings(name="acme", daily_tokens=1000, monthly_nano_usd=5_000_000_000)
    store.add_usage(tenant="acme", day=now.date(), type="chat", lane="openai:gpt-4o-mini",
                    usage=Usage(300, 100, 1_000_000_000))
    left = {x.period.name: x for x in budget.left(s, now=now)}
    assert (left["daily"].tokens, left["monthly"].nanos) == (600, 4_000_000_000)
    assert budget.reserve(s, "r1", tokens=500, nanos=0, ttl_s=60, now=now) is None
    refused = budget.reserve(s, "r2", tokens=200, nanos=0, ttl_s=60, now=now)
    assert refused is not None and refused[0].tokens == 100  # r1's hold counts as spent
    budget.settle(s, "r1", tokens=450, nanos=0, now=now)
    store.add_usage(tenant="acme", day=now.date(), type="chat", lane="openai:gpt-4o-mini",
                    usage=Usage(400, 50, 0))
    assert budget.left(s, now=now)[0].tokens == 150
    client.flushdb()  # Redis lost everything: the database's usage is the truth
    assert budget.left(s, now=now)[0].tokens == 150
    # an expired hold (its worker died mid-call) stops counting
    assert budget.reserve(s, "r3", tokens=100, nanos=0, ttl_s=0.01, now=now) is None
    later = datetime.fromtimestamp(now.timestamp() + 1, UTC)
    assert budget.left(s, now=later)[0].tokens == 150
    budget.refund(s, "r3", now=later)
    engine.dispose()


def test_a_running_job_stops_at_the_call_that_would_exceed_its_budget(
        tmp_path: Path, redis_url: str) -> None:
    """A 7-call report (about 900 tokens on the fast simulator) on a 700-token budget: the calls that fit are made and billed,
    the next one is not made, and the job fails at once with budget_exceeded."""
    from tidegate.core.statuses import Status

    from .helpers import running_worker

    sim_url, stop_sim = run_in_thread(fast_test_config())
    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url,
                            simulator_url=sim_url)
    container = build_container(settings)
    upgrade(container.engine)
    container.store.put_tenant(TenantSettings(name="thrifty", daily_tokens=700))
    job, _ = container.service.submit(tenant="thrifty", type="startup_report",
                                      input={"startup": "TideCo"})
    try:
        with running_worker(settings, concurrency=1):
            wait_until(lambda: container.store.get(job.id).status.terminal, timeout_s=90)
    finally:
        stop_sim()
    done = container.store.get(job.id)
    assert done.status is Status.FAILED and done.error_code == "budget_exceeded", done.usage
    assert done.attempts == 1  # permanent: not retried
    spent = done.usage.input_tokens + done.usage.output_tokens
    assert 0 < spent <= 700
    calls = [e for e in container.store.events(job.id) if e.kind == "failed"]
    assert calls and calls[-1].detail["code"] == "budget_exceeded"
    assert container.store.usage_since("thrifty", datetime.now(UTC).date()) == done.usage
    container.close()
