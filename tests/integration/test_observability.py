"""Metrics and structured logs of real processes: the API's request and submission counters,
and a prefork worker whose job counters add up over its pool's children and whose JSON log
lines name each job's lifecycle, with secrets redacted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.config import Settings
from tidegate.core.keys import create_key
from tidegate.embedded import free_port
from tidegate.wiring import build_container

from .helpers import settings_for, wait_until


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def api_settings_and_key(tmp_path: Path, redis_url: str) -> tuple[Settings, str]:
    """Settings over a migrated SQLite store, and an API key of tenant `acme`."""
    settings = settings_for(tmp_path, redis_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    key, _ = create_key(SqlJobStore(engine), tenant="acme", secret=settings.secret_key)
    engine.dispose()
    return settings, key


def test_api_counts_submissions_and_requests_by_route(tmp_path: Path, redis_url: str) -> None:
    settings, key = api_settings_and_key(tmp_path, redis_url)
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        before = samples(client.get("/metrics").text)
        first = client.post("/v1/jobs", json={"type": "echo", "priority": "low"},
                            headers={**auth, "Idempotency-Key": "k1"})
        again = client.post("/v1/jobs", json={"type": "echo", "priority": "low"},
                            headers={**auth, "Idempotency-Key": "k1"})
        assert first.json()["job_id"] == again.json()["job_id"]
        client.get(f"/v1/jobs/{first.json()['job_id']}", headers=auth)
        client.get("/v1/jobs/no-such-job", headers=auth)
        client.get("/no/such/path")
        after = samples(client.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # A repeated Idempotency-Key made no new job: one submission.
    assert delta("tidegate_jobs_submitted_total", type="echo", priority="low") == 1
    assert delta("tidegate_http_requests_total", route="/v1/jobs", method="POST",
                 status="202") == 2
    assert delta("tidegate_http_requests_total", route="/v1/jobs/{job_id}", method="GET",
                 status="200") == 1
    assert delta("tidegate_http_requests_total", route="/v1/jobs/{job_id}", method="GET",
                 status="404") == 1
    assert delta("tidegate_http_requests_total", route="(unmatched)", method="GET",
                 status="404") == 1
    assert delta("tidegate_http_request_duration_seconds_count", route="/v1/jobs/{job_id}",
                 method="GET") == 2
    # The system gauges are still there beside the process counters.
    assert ("tidegate_source_up", frozenset({("source", "database")})) in after


JOBS_MODULE = '''
import logging

from pydantic import BaseModel
from tidegate.core.errors import JobFailed
from tidegate.core.registry import registry


class In(BaseModel):
    pass


@registry.job_type("obs_fails", input_model=In, priority="medium", max_attempts=1)
def obs_fails(ctx):
    raise JobFailed("boom", "cannot reach postgresql://app:hunter2@db.internal/app")


@registry.job_type("obs_flaky", input_model=In, priority="medium", max_attempts=3)
def obs_flaky(ctx):
    logging.getLogger("obs_jobs").info("obs_flaky working")  # a handler's own line
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"ok": True}
'''


@pytest.mark.slow
def test_prefork_worker_counts_over_its_children_and_logs_json(tmp_path: Path,
                                                               redis_url: str) -> None:
    (tmp_path / "obs_jobs.py").write_text(textwrap.dedent(JOBS_MODULE))
    env_settings = {"TIDEGATE_REDIS_URL": redis_url, "TIDEGATE_DATA_DIR": str(tmp_path),
                    "TIDEGATE_JOB_MODULES": "obs_jobs", "TIDEGATE_LOG_FORMAT": "json",
                    "TIDEGATE_RETRY_BACKOFF_BASE_S": "0.1", "TIDEGATE_RETRY_BACKOFF_CAP_S": "0.2"}
    sys.path.insert(0, str(tmp_path))
    try:
        settings = settings_for(tmp_path, redis_url=redis_url, job_modules="obs_jobs")
        container = build_container(settings)
    finally:
        sys.path.remove(str(tmp_path))
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDEGATE_", "PROMETHEUS"))}
    env.update(env_settings, TIDEGATE_WORKER_METRICS_PORT=str(port),
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])))
    log_path = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "tidegate", "worker", "--pool", "prefork",
                             "-c", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log_path.open("w"))
    try:
        service = container.service
        echo = [service.submit(tenant="acme", type="echo", input={"sleep_s": 0.3, "steps": 2})[0]
                for _ in range(4)]
        fails = service.submit(tenant="acme", type="obs_fails", input={})[0]
        flaky = service.submit(tenant="acme", type="obs_flaky", input={})[0]
        ids = [j.id for j in [*echo, fails, flaky]]
        wait_until(lambda: all(container.store.get(i).status.terminal for i in ids), 90, 0.3)

        def scrape() -> dict:
            return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

        wait_until(lambda: value(scrape(), "tidegate_jobs_completed_total", type="obs_flaky")
                   == 1, 10)
        scraped = scrape()
        assert value(scraped, "tidegate_jobs_completed_total", type="echo") == 4
        assert value(scraped, "tidegate_jobs_failed_total", type="obs_fails", code="boom") == 1
        assert value(scraped, "tidegate_jobs_retried_total", type="obs_flaky") == 1
        assert value(scraped, "tidegate_job_duration_seconds_count", type="echo") == 4
        files = list(tmp_path.glob("metrics-*/counter_*.db"))
        assert files, "the prefork worker did not count in multiprocess files"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        container.close()

    text = log_path.read_text()
    assert "hunter2" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    by_event: dict[str, list[dict]] = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    started = {(e["job_id"], e["attempt"]) for e in by_event["task_started"]}
    assert {(j.id, 1) for j in [*echo, fails, flaky]} | {(flaky.id, 2)} <= started
    for e in by_event["task_started"]:
        assert e["tenant"] == "acme" and e["type"] in ("echo", "obs_fails", "obs_flaky")
    assert {e["job_id"] for e in by_event["task_completed"]} == {j.id for j in [*echo, flaky]}
    [failed] = by_event["task_failed"]
    assert failed["job_id"] == fails.id and failed["code"] == "boom"
    assert "postgresql://app:***@db.internal" in failed["error"]
    [retrying] = by_event["task_retrying"]
    assert retrying["job_id"] == flaky.id and retrying["attempt"] == 1
    # Every line of a job names it: the handler's own lines, and the runner's traceback.
    working = by_event["obs_flaky working"]
    assert [(e["job_id"], e["attempt"]) for e in working] == [(flaky.id, 1), (flaky.id, 2)]
    assert all(e["type"] == "obs_flaky" and e["tenant"] == "acme" for e in working)
    ours = {j.id: j.type for j in [*echo, fails, flaky]}
    for line in lines:
        named = [i for i in ours if i in line["event"] or i in line.get("exc", "")]
        if named:
            assert line.get("job_id") == named[0] and line.get("type") == ours[named[0]] \
                and line.get("tenant") == "acme", line
    assert any(flaky.id in line["event"] and "exc" in line for line in lines)
    # Celery's own lines come out as JSON too (every line parsed above).
    assert any(line["logger"].startswith("celery") for line in lines)


def test_job_types_route_and_dashboard_page(tmp_path: Path, redis_url: str) -> None:
    settings, key = api_settings_and_key(tmp_path, redis_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/v1/job-types").status_code == 401
        types = client.get("/v1/job-types", headers={"Authorization": f"Bearer {key}"}).json()
        by_name = {t["name"]: t for t in types["job_types"]}
        report = by_name["startup_report"]
        assert report["priority"] == "medium" and report["max_attempts"] >= 1
        assert report["input_schema"]["required"] == ["startup"]
        assert report["input_schema"]["properties"]["startup"]["maxLength"] == 500
        assert "/v1/job-types" in client.get("/openapi.json").json()["paths"]
        page = client.get("/")  # no key needed: the page signs in itself
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/static/js/main.js">' in page.text
        script = client.get("/static/js/main.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        # Nothing in the dashboard parses HTML from data.
        static = Path(__file__).resolve().parents[2] / "src/tidegate/api/static/js"
        for js in static.rglob("*.js"):
            text = js.read_text()
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, js
            assert "eval(" not in text and "document.write" not in text, js
