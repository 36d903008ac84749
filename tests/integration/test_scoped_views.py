"""Aggregate views are scoped: queue counts, worker names, lanes, usage, and the metrics
token; `tidegate usage` prints the usage report from a real API server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.models import Usage

from .helpers import running_worker, settings_for, wait_until


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[tuple]:
    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url,
                            metrics_token="scrape-me", queues_cache_s=0)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    keys = {"admin": create_key(store, tenant="ops", secret=settings.secret_key,
                                scope="admin")[0],
            "acme": create_key(store, tenant="acme", secret=settings.secret_key)[0],
            "zeta": create_key(store, tenant="zeta", secret=settings.secret_key,
                               scope="read")[0]}
    today = datetime.now(UTC).date()
    for tenant, day, typ, u in (("acme", today, "chat", Usage(100, 50, 1_000)),
                                ("acme", today - timedelta(days=1), "report", Usage(10, 5, 20)),
                                ("zeta", today, "chat", Usage(7, 3, 9))):
        store.add_usage(tenant=tenant, day=day, type=typ, lane="openai:gpt-4o-mini", usage=u)
        store.add_usage(tenant=tenant, day=day, type=typ, lane="openai:gpt-4o-mini", usage=u)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in keys.items()}, \
            settings, keys
    engine.dispose()


def test_queue_counts_are_the_callers_own_and_worker_names_admin_only(env) -> None:
    client, h, settings, _ = env
    client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"])
    client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"])
    assert client.get("/v1/queues", headers=h["acme"]).json()["jobs_by_status"]["queued"] == 2
    assert client.get("/v1/queues", headers=h["zeta"]).json()["jobs_by_status"]["queued"] == 0
    assert client.get("/v1/queues", headers=h["admin"]).json()["jobs_by_status"]["queued"] == 2
    with running_worker(settings, concurrency=1):
        wait_until(lambda: client.get("/v1/queues", headers=h["admin"]).json()["workers"])
        admin_names = [w["name"] for w in client.get("/v1/queues", headers=h["admin"]).json()[
            "workers"]]
        tenant_names = [w["name"] for w in client.get("/v1/queues", headers=h["zeta"]).json()[
            "workers"]]
    host = socket.gethostname()
    assert any(host in n for n in admin_names)
    assert tenant_names == ["worker-1"]


def test_limits_show_configured_lanes_to_tenants(env) -> None:
    client, h, _, _ = env
    import redis as redis_lib

    from tidegate.adapters.limiter import RedisLimiter
    from tidegate.core.limits import LaneLimits

    limiter = RedisLimiter(redis_lib.Redis.from_url(str(client.app.state.container.settings
                                                        .state_redis())))
    limiter.configure("openai:gpt-4o-mini", LaneLimits(rpm=100))
    limiter.acquire("gemini:unconfigured", input_tokens=1, output_tokens=1, priority="high",
                    holder="h", ttl_s=5)
    tenant_view = [x["lane"] for x in client.get("/v1/limits", headers=h["zeta"]).json()["lanes"]]
    admin_view = [x["lane"] for x in client.get("/v1/limits", headers=h["admin"]).json()["lanes"]]
    assert tenant_view == ["openai:gpt-4o-mini"]
    assert set(admin_view) == {"openai:gpt-4o-mini", "gemini:unconfigured"}


def test_metrics_can_require_a_token(env) -> None:
    client, h, _, _ = env
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=h["admin"]).status_code == 401  # an API key is not it
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and "tidegate_jobs" in r.text


def test_usage_is_everyones_for_admins_and_own_for_others(env) -> None:
    client, h, _, _ = env
    mine = client.get("/v1/usage", params={"group_by": "tenant,type"}, headers=h["acme"])
    assert mine.status_code == 200, mine.text
    rows = mine.json()["rows"]
    month_start = datetime.now(UTC).date().replace(day=1)
    yesterday_counts = datetime.now(UTC).date() - timedelta(days=1) >= month_start
    expected = [{"tenant": "acme", "type": "chat", "requests": 2, "input_tokens": 200,
                 "output_tokens": 100}]
    if yesterday_counts:
        expected.append({"tenant": "acme", "type": "report", "requests": 2,
                         "input_tokens": 20, "output_tokens": 10})
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert rows[0]["cost_usd"] == pytest.approx(2e-6)
    everyone = client.get("/v1/usage", params={"group_by": "tenant"},
                          headers=h["admin"]).json()["rows"]
    assert {r["tenant"] for r in everyone} == {"acme", "zeta"}
    # a tenant cannot ask for another's: the filter is the admin's only
    theirs = client.get("/v1/usage", params={"tenant": "acme"}, headers=h["zeta"]).json()
    assert {r["tenant"] for r in theirs["rows"]} == {"zeta"}
    today = datetime.now(UTC).date().isoformat()
    by_day = client.get("/v1/usage", params={"from": today, "to": today, "group_by": "day,lane"},
                        headers=h["admin"]).json()["rows"]
    assert by_day == [{"tenant": None, "type": None, "lane": "openai:gpt-4o-mini", "day": today,
                       "requests": 4, "input_tokens": 214, "output_tokens": 106,
                       "cost_usd": 2.018e-06, "reused_requests": 0, "saved_input_tokens": 0,
                       "saved_output_tokens": 0, "saved_cost_usd": 0.0}]
    for bad in ({"group_by": "color"}, {"from": today, "to": "2000-01-01"}):
        assert client.get("/v1/usage", params=bad, headers=h["admin"]).status_code == 422


def _serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def test_cli_usage_prints_a_table(env, tmp_path: Path) -> None:
    _, _, settings, keys = env
    url, server, thread = _serve(create_app(settings))
    try:
        cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")},
                   "TIDEGATE_URL": url, "TIDEGATE_API_KEY": keys["admin"],
                   "TIDEGATE_DATA_DIR": str(tmp_path), "COLUMNS": "160"}
        done = subprocess.run([sys.executable, "-m", "tidegate", "usage", "--group-by",
                               "tenant,type"], env=cli_env, capture_output=True, text=True,
                              timeout=60)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "acme" in done.stdout and "zeta" in done.stdout and "chat" in done.stdout


def test_open_event_streams_are_capped_per_tenant(env) -> None:
    import httpx

    client, h, settings, keys = env
    client.put("/v1/tenants/acme", json={"max_streams": 1}, headers=h["admin"])
    job = client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"]).json()["job_id"]
    url, server, thread = _serve(create_app(settings))
    try:
        with httpx.Client(base_url=url, headers=h["acme"], timeout=10) as http:
            with http.stream("GET", f"/v1/jobs/{job}/events") as first:
                assert first.status_code == 200
                lines = first.iter_lines()
                next(lines)  # it is open
                second = http.get(f"/v1/jobs/{job}/events")
                assert second.status_code == 429, second.text
                assert second.json()["error"]["code"] == "rate_limited"
                assert "Retry-After" in second.headers
                http.delete(f"/v1/jobs/{job}")  # the job ends: so does the first stream
                assert any("event: cancelled" in line for line in lines)
            # its slot is free again: the server gives it back as its stream ends, which may
            # come a moment after the client has read the last event
            give_back = time.monotonic() + 5
            while (third := http.get(f"/v1/jobs/{job}/events")).status_code == 429 \
                    and time.monotonic() < give_back:
                time.sleep(0.05)
            assert third.status_code == 200, third.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_revoked_keys_open_stream_is_closed(env) -> None:
    import httpx

    client, h, settings, _ = env
    plain, record = create_key(client.app.state.container.store, tenant="acme",
                               secret=settings.secret_key, scope="read")
    job = client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"]).json()["job_id"]
    url, server, thread = _serve(create_app(settings))
    try:
        with httpx.Client(base_url=url, timeout=10) as http, http.stream(
                "GET", f"/v1/jobs/{job}/events",
                headers={"Authorization": f"Bearer {plain}"}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            next(lines)
            assert client.post(f"/v1/keys/{record.prefix}/revoke",
                               headers=h["admin"]).status_code == 200
            started = time.monotonic()
            rest = list(lines)  # the server ends the stream
            assert time.monotonic() - started < 3
        assert any('"unauthorized"' in line for line in rest), rest
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_me_names_the_keys_tenant_and_scope_and_jobs_carry_their_tenant(env) -> None:
    client, h, _, _ = env
    assert client.get("/v1/me", headers=h["zeta"]).json() == {
        "tenant": "zeta", "scope": "read", "key_id": ANY}
    assert client.get("/v1/me", headers=h["admin"]).json()["scope"] == "admin"
    assert client.get("/v1/me").status_code == 401
    job = client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"]).json()
    assert client.get(f"/v1/jobs/{job['job_id']}", headers=h["acme"]).json()["tenant"] == "acme"
    assert [j["tenant"] for j in client.get("/v1/jobs", headers=h["admin"]).json()["jobs"]] \
        == ["acme"]


def test_an_admins_event_stream_follows_every_tenant_and_a_tenants_only_its_own(env) -> None:
    import httpx

    from .live_api import read_events

    client, h, settings, _ = env
    beta = create_key(client.app.state.container.store, tenant="beta",
                      secret=settings.secret_key)[0]
    a = client.post("/v1/jobs", json={"type": "echo"}, headers=h["acme"]).json()["job_id"]
    b = client.post("/v1/jobs", json={"type": "echo"},
                    headers={"Authorization": f"Bearer {beta}"}).json()["job_id"]
    url, server, thread = _serve(create_app(settings))
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            http.headers.update(h["admin"])
            seen = read_events(http, "/v1/events", last_event_id=0, stop_after=2, timeout_s=10)
            assert {(e["job_id"], e["tenant"]) for e in seen} == {(a, "acme"), (b, "beta")}
            http.headers.update(h["acme"])
            own = read_events(http, "/v1/events", last_event_id=0, stop_after=1, timeout_s=10)
            assert [e["job_id"] for e in own] == [a]
            # live too: the admin's stream gets a later event of either tenant
            http.headers.update(h["admin"])
            head = seen[-1]["id"]
            client.delete(f"/v1/jobs/{b}", headers={"Authorization": f"Bearer {beta}"})
            live = read_events(http, "/v1/events", last_event_id=head, stop_after=1,
                               timeout_s=10)
            assert live[0]["job_id"] == b and live[0]["tenant"] == "beta"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
