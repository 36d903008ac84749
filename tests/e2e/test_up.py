"""`tidegate up` as a user runs it: a subprocess on free ports with its own data directory."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import AMQP_URL, REDIS_URL, fresh_pg_database, need

from .harness import Up, start_up, stop_up, wait_job

pytestmark = pytest.mark.slow


def exercise(up: Up) -> None:
    with up.http() as client:
        r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "via http"}})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["result"]["text"] == "via http"

        done = up.cli("submit", "echo", "--input", '{"text": "via cli", "sleep_s": 1}', "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "succeeded" in done.stdout and "via cli" in done.stdout

        job_id = up.cli("submit", "echo", "--input", '{"sleep_s": 30}').stdout.split()[-1]
        cancel = up.cli("cancel", job_id)
        assert cancel.returncode == 0, cancel.stderr
        assert wait_job(client, job_id)["status"] == "cancelled"

        listing = up.cli("jobs", "--limit", "5")
        assert listing.returncode == 0 and "echo" in listing.stdout
        queues = up.cli("queues")
        assert queues.returncode == 0 and "medium" in queues.stdout, queues.stderr
        shown = up.cli("status", job_id, "--json")
        assert json.loads(shown.stdout)["status"] == "cancelled"
        missing = up.cli("status", "no-such-job")
        assert missing.returncode == 1 and "not found" in missing.stderr


def test_up_embedded(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        exercise(up)
        log = up.log.read_text()
        assert "API key" in log and "/docs" in log
    finally:
        code = stop_up(up)
    assert code == 0, up.log.read_text()[-2000:]
    assert "stopped" in up.log.read_text()
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists()
    data = tmp_path / "data"  # every tenant's data: private to the owner, whoever wrote it
    modes = {str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode)
             for p in [data, *data.rglob("*")]}
    assert {"api_key", "tidegate.db", "redis/appendonly.aof"} <= set(modes), modes
    assert all(m == (0o700 if (data / p).is_dir() else 0o600) for p, m in modes.items()), modes


def test_up_restarts_a_crashed_child(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        import re

        api_started = re.compile(r"^api\s+\| INFO:\s+Started server process \[(\d+)\]", re.M)
        pids = [int(p) for p in api_started.findall(up.log.read_text())]
        assert pids, "API pid not in the log"
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = up.log.read_text()
            if "api exited" in text and len(api_started.findall(text)) >= 2:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the API was not restarted:\n" + up.log.read_text()[-2000:])
        with up.http() as client:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            assert client.get("/healthz").status_code == 200
    finally:
        assert stop_up(up) == 0


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


def test_up_on_postgresql_and_rabbitmq(tmp_path: Path, pg_url: str) -> None:
    need(AMQP_URL, 5672, "RabbitMQ")
    need(REDIS_URL, 6379, "Redis")
    up = start_up(tmp_path, {"TIDEGATE_DATABASE_URL": pg_url, "TIDEGATE_BROKER_URL": AMQP_URL,
                             "TIDEGATE_REDIS_URL": REDIS_URL})
    try:
        log = up.log.read_text()
        assert "(embedded)" not in log and "amqp://guest:***@" in log
        assert "redis  |" not in log  # nothing embedded was started
        exercise(up)
    finally:
        assert stop_up(up) == 0
