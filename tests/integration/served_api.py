"""`tidegate api` as operators run it: Gunicorn with Uvicorn workers, a real process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tidegate.embedded import free_port

TIDEGATE = str(Path(sys.executable).with_name("tidegate"))


def api_env(data_dir: Path, *, database_url: str, redis_url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDEGATE_", "PROMETHEUS_"))}
    env.update(TIDEGATE_DATA_DIR=str(data_dir), TIDEGATE_DATABASE_URL=database_url,
               TIDEGATE_REDIS_URL=redis_url, TIDEGATE_SIMULATOR="off", **more)
    return env


@contextmanager
def gunicorn_api(env: dict[str, str], *, workers: int = 2,
                 extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `tidegate api --workers N` and yield its URL and master process once it answers."""
    port = free_port()
    log = open(Path(env["TIDEGATE_DATA_DIR"]) / f"api-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([TIDEGATE, "api", "--port", str(port), "--workers", str(workers),
                             *extra], env=env, cwd=env["TIDEGATE_DATA_DIR"], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log.name)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_name: str,
                 timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tidegate api exited: {Path(log_name).read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"tidegate api did not answer: {Path(log_name).read_text()}")


def worker_pids(master: int) -> set[int]:
    """The Gunicorn master's children (its workers)."""
    kids: set[int] = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        kids |= {int(k) for k in (task / "children").read_text().split()}
    return kids
