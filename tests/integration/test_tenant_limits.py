"""Tenant settings and the limits they set: priorities, submissions per minute, waiting jobs
(at submit, over the real API and Redis) and running jobs (in a real worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.statuses import Status
from tidegate.wiring import build_container

from .helpers import running_worker, settings_for, wait_until


@pytest.fixture
def api(tmp_path: Path, redis_url: str) -> Iterator[tuple]:
    settings = settings_for(tmp_path, redis_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    admin, _ = create_key(store, tenant="ops", secret=settings.secret_key, scope="admin")
    acme, _ = create_key(store, tenant="acme", secret=settings.secret_key)
    zeta, _ = create_key(store, tenant="zeta", secret=settings.secret_key)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, *({"Authorization": f"Bearer {k}"} for k in (admin, acme, zeta))
    engine.dispose()


def test_settings_are_put_read_and_listed_with_their_use(api) -> None:
    client, admin, acme, _ = api
    r = client.put("/v1/tenants/acme", json={"submit_rpm": 30, "priorities": ["medium", "low"],
                                             "daily_usd": 2.5, "weight": 2}, headers=admin)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["submit_rpm"], got["priorities"], got["daily_usd"], got["weight"]) == (
        30, ["medium", "low"], 2.5, 2.0)
    assert got["used"] == {"daily_tokens": 0, "monthly_tokens": 0, "daily_usd": 0.0,
                           "monthly_usd": 0.0}
    # only the fields sent change; null removes a limit
    got = client.put("/v1/tenants/acme", json={"daily_usd": None}, headers=admin).json()
    assert got["daily_usd"] is None and got["submit_rpm"] == 30
    assert [t["name"] for t in client.get("/v1/tenants", headers=admin).json()] == ["acme"]
    assert client.get("/v1/tenants/nobody", headers=admin).status_code == 404
    for bad in ({"submit_rpm": -1}, {"priorities": ["urgent"]}, {"weight": 0},
                {"unknown": 1}):
        r = client.put("/v1/tenants/acme", json=bad, headers=admin)
        assert r.status_code == 422 or bad == {"unknown": 1}, (bad, r.text)
    assert client.put("/v1/tenants/acme", json={}, headers=acme).status_code == 403


def test_a_tenant_may_be_refused_high_priority(api) -> None:
    client, admin, acme, zeta = api
    client.put("/v1/tenants/acme", json={"priorities": ["medium", "low"]}, headers=admin)
    r = client.post("/v1/jobs", json={"type": "echo", "priority": "high"}, headers=acme)
    assert r.status_code == 403 and r.json()["error"]["code"] == "priority_not_allowed"
    assert client.post("/v1/jobs", json={"type": "echo"}, headers=acme).status_code == 202
    assert client.post("/v1/jobs", json={"type": "echo", "priority": "high"},
                       headers=zeta).status_code == 202


def test_submissions_per_minute_answer_429_with_retry_after(api) -> None:
    client, admin, acme, zeta = api
    client.put("/v1/tenants/acme", json={"submit_rpm": 3}, headers=admin)
    for _ in range(3):
        assert client.post("/v1/jobs", json={"type": "echo"}, headers=acme).status_code == 202
    r = client.post("/v1/jobs", json={"type": "echo"}, headers=acme)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert client.post("/v1/jobs", json={"type": "echo"}, headers=zeta).status_code == 202


def test_waiting_jobs_are_capped(api) -> None:
    client, admin, acme, _ = api
    client.put("/v1/tenants/acme", json={"max_queued": 2}, headers=admin)
    ids = [client.post("/v1/jobs", json={"type": "echo"}, headers=acme).json()["job_id"]
           for _ in range(2)]
    r = client.post("/v1/jobs", json={"type": "echo"}, headers=acme)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in r.headers
    # a replay of an accepted submit (same Idempotency-Key) still answers with its job
    key = {**acme, "Idempotency-Key": "k1"}
    client.delete(f"/v1/jobs/{ids[1]}", headers=acme)
    first = client.post("/v1/jobs", json={"type": "echo"}, headers=key)
    again = client.post("/v1/jobs", json={"type": "echo"}, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert first.json()["job_id"] == again.json()["job_id"]
    client.delete(f"/v1/jobs/{ids[0]}", headers=acme)  # one fewer waiting: room again
    assert client.post("/v1/jobs", json={"type": "echo"}, headers=acme).status_code == 202


def _run_spans(store: SqlJobStore, job_id: str) -> tuple[float, float]:
    """(claimed, succeeded) of the attempt that ran: the claim right before success."""
    events = store.events(job_id)
    done = next(e for e in events if e.kind == "succeeded")
    claimed = [e for e in events if e.kind == "claimed" and e.id < done.id][-1]
    return claimed.at.timestamp(), done.at.timestamp()


def test_the_running_cap_hands_jobs_back_without_spending_attempts(
        tmp_path: Path, redis_url: str) -> None:
    """One tenant's long jobs cannot hold every worker slot: over its cap a job is handed
    back for a moment, attempt refunded, and another tenant's job runs meanwhile."""
    from tidegate.core.models import TenantSettings

    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url)
    container = build_container(settings)
    upgrade(container.engine)
    container.store.put_tenant(TenantSettings(name="bulk", max_running=1))
    bulk = [container.service.submit(tenant="bulk", type="echo",
                                     input={"sleep_s": 1.5, "steps": 3})[0] for _ in range(3)]
    with running_worker(settings, concurrency=3):
        vip, _ = container.service.submit(tenant="vip", type="echo", priority="high",
                                          input={"text": "now"})
        wait_until(lambda: all(container.store.get(j.id).status.terminal
                               for j in [*bulk, vip]), timeout_s=60)
    jobs = [container.store.get(j.id) for j in bulk]
    assert all(j.status is Status.SUCCEEDED and j.attempts == 1 for j in jobs)
    spans = sorted(_run_spans(container.store, j.id) for j in bulk)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.05, spans  # never two of its jobs running at once
    kinds = [e.detail.get("code") for j in bulk for e in container.store.events(j.id)]
    assert "tenant_running_cap" in kinds
    assert container.store.get(vip.id).finished_at.timestamp() < spans[-1][1]
    container.close()


def test_cli_tenants_set_and_list(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tidegate.core.models import Usage

    settings = settings_for(tmp_path)
    engine = make_engine(settings.database)
    upgrade(engine)
    from datetime import UTC, datetime

    SqlJobStore(engine).add_usage(tenant="acme", day=datetime.now(UTC).date(), type="chat",
                                  lane="openai:gpt-4o-mini", usage=Usage(1200, 34, 500_000_000))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")},
           "TIDEGATE_DATA_DIR": str(tmp_path), "COLUMNS": "250"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tidegate", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    done = cli("tenants", "set", "acme", "--submit-rpm", "5", "--priorities", "medium,low",
               "--daily-tokens", "10000", "--daily-usd", "1.5", "--max-running", "2",
               "--weight", "3")
    assert done.returncode == 0, done.stderr
    got = SqlJobStore(engine).get_tenant("acme")
    assert (got.submit_rpm, got.priorities, got.daily_nano_usd, got.max_running, got.weight) \
        == (5, ("medium", "low"), 1_500_000_000, 2, 3.0)
    assert cli("tenants", "set", "acme", "--clear", "daily_usd").returncode == 0
    assert SqlJobStore(engine).get_tenant("acme").daily_nano_usd is None
    listing = cli("tenants", "list").stdout
    assert "acme" in listing and "1,234/10,000" in listing and "medium,low" in listing
    engine.dispose()
