"""The examples in examples/, each run against a running Tidegate (`tidegate up`: API, worker,
scheduler, provider simulator) the way their README says to run them."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse

from tests.e2e.harness import Up
from tests.integration.live_api import serve_in_thread
from tidegate.client import Client

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tidegate-up")]


@pytest.fixture
def tidegate_env(up: Up, monkeypatch: pytest.MonkeyPatch) -> Up:
    monkeypatch.setenv("TIDEGATE_URL", up.url)
    monkeypatch.setenv("TIDEGATE_API_KEY", up.key)
    return up


def test_flask_generate_and_status(tidegate_env: Up) -> None:
    flask_app = importlib.reload(importlib.import_module("examples.flask_app"))
    web = flask_app.app.test_client()
    assert web.post("/generate", json={}).status_code == 400
    first = web.post("/generate", json={"startup": "Acme Tidal"},
                     headers={"Idempotency-Key": "click-1"})
    again = web.post("/generate", json={"startup": "Acme Tidal"},
                     headers={"Idempotency-Key": "click-1"})
    assert first.status_code == again.status_code == 202
    job_id = first.get_json()["job_id"]
    assert again.get_json()["job_id"] == job_id  # a double click is one job
    deadline, seen = time.monotonic() + 90, set()
    while time.monotonic() < deadline:
        body = web.get(f"/status/{job_id}").get_json()
        seen.add(body["progress"])
        if body["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.3)
    assert body["status"] == "succeeded", body
    assert "## Market" in body["result"]["report"] and body["progress"] == 100
    assert len(seen) > 2  # the frontend's bar moved
    assert web.get("/status/nope").status_code == 404
    flask_app.tidegate.close()


@pytest.fixture
def progress_app(tidegate_env: Up) -> Iterator[str]:
    module = importlib.reload(importlib.import_module("examples.fastapi_progress"))
    with serve_in_thread(module.app) as url:
        yield url


def test_fastapi_streams_progress_to_the_browser_and_resumes(progress_app: str) -> None:
    with httpx.Client(base_url=progress_app, timeout=30) as web:
        assert "EventSource" in web.get("/").text
        job_id = web.post("/reports", json={"startup": "Acme Tidal"}).json()["job_id"]
        assert web.get("/reports/nope/progress").status_code == 404
        first: list[tuple[str, dict]] = []
        with connect_sse(web, "GET", f"/reports/{job_id}/progress") as source:
            for sse in source.iter_sse():
                first.append((sse.id, json.loads(sse.data)))
                if sse.event == "progress":
                    break  # the browser's tab is closed mid-run
        rest: list[tuple[str, dict]] = []
        with connect_sse(web, "GET", f"/reports/{job_id}/progress",
                         headers={"Last-Event-ID": first[-1][0]}) as source:
            for sse in source.iter_sse():
                rest.append((sse.id, json.loads(sse.data)))
    ids = [int(i) for i, _ in first + rest]
    assert ids == sorted(set(ids))  # nothing repeated after the reconnect
    kinds = [d["kind"] for _, d in first + rest]
    assert kinds[-1] == "succeeded" and "## Market" in rest[-1][1]["report"]
    percents = [d["percent"] for _, d in first + rest if d["kind"] == "progress"]
    assert percents == sorted(percents) and len(percents) > 2


def test_the_openai_script_through_the_front_door(tidegate_env: Up) -> None:
    out = subprocess.run([sys.executable, "-m", "examples.openai_front_door", "One?", "Two?"],
                         cwd=REPO, env=tidegate_env.env | {"TIDEGATE_API_KEY": tidegate_env.key},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "> One?" in out.stdout and "> Two?" in out.stdout
    answers = [b.split("\n", 1)[1].strip() for b in out.stdout.split("> ")[1:]]
    assert all(answers), out.stdout


def test_the_guides_job_type_runs_in_a_deployment(up: Up) -> None:
    with Client(up.url, api_key=up.key) as tg:
        job = tg.submit("company_brief", {"company": "Acme Tidal",
                                          "questions": ["What does it sell?"]})
        done = tg.wait(job.job_id, timeout=60)
        assert done.status == "succeeded", done.error
        assert done.result["brief"] and done.result["brief_lane"] == "openai:gpt-4o-mini"
        kinds = [e.kind for e in tg.history(job.job_id)]
    assert "progress" in kinds and "llm_call" in kinds


def test_a_job_type_from_an_installed_packages_entry_point(up: Up) -> None:
    with Client(up.url, api_key=up.key) as tg:
        job = tg.submit("acme_shout", {"text": "hello"})
        assert job.priority == "low"
        done = tg.wait(job.job_id, timeout=60)
    assert done.status == "succeeded" and done.result == {"text": "HELLO"}
