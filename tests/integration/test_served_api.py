"""`tidegate api` under Gunicorn: graceful HUP reload, metrics summed over its workers, access
logs, and the multiprocess files cleaned up at exit."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.services import REDIS_URL, need

from .helpers import wait_until
from .served_api import api_env, gunicorn_api, worker_pids


def _healthz_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r'tidegate_http_requests_total\{method="GET",route="/healthz",'
                      r'status="200"\} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_hup_reloads_workers_and_metrics_add_up(tmp_path: Path) -> None:
    need(REDIS_URL, 6379, "Redis")
    env = api_env(tmp_path, database_url=f"sqlite:///{tmp_path / 'tg.db'}", redis_url=REDIS_URL)
    with gunicorn_api(env, workers=2, extra=("--max-requests", "500", "--max-requests-jitter",
                                             "50", "--timeout", "20")) as (url, master):
        metric_dirs = list(tmp_path.glob("metrics-api-*"))
        assert len(metric_dirs) == 1, "two workers count in multiprocess files"
        wait_until(lambda: len(worker_pids(master.pid)) == 2, timeout_s=30)
        before = _healthz_count(url)
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(20):  # new connections: both workers answer some
                assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
        assert _healthz_count(url) == before + 20  # summed over the workers

        old = worker_pids(master.pid)
        master.send_signal(signal.SIGHUP)
        wait_until(lambda: (pids := worker_pids(master.pid)).isdisjoint(old) and len(pids) == 2,
                   timeout_s=60, every_s=0.2)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        # The old workers' counts stay in the sum after they exited.
        assert _healthz_count(url) >= before + 21
    time.sleep(0.2)
    assert not metric_dirs[0].exists(), "the master removes its multiprocess files at exit"
    log = next(tmp_path.glob("api-*.log")).read_text()
    assert '"GET /healthz HTTP/1.1" 200' in log  # access log on stdout
    assert "handling signal: hup" in log.lower()
