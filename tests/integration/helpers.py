"""Build settings and a running worker for integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tidegate.config import Settings


def settings_for(tmp_path: Path, *, database_url: str | None = None,
                 broker_url: str | None = None, redis_url: str | None = None,
                 **kw: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, database_url=database_url,  # type: ignore[call-arg]
                    broker_url=broker_url, redis_url=redis_url, **kw)


@contextmanager
def running_worker(settings: Settings, *, concurrency: int = 4) -> Iterator[object]:
    """A real Celery worker (threads pool) in this process, consuming high, medium and low."""
    from celery.contrib.testing.worker import start_worker

    from tidegate.worker.app import create_worker_app

    app = create_worker_app(settings)
    with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                      queues=["high", "medium", "low"], loglevel="WARNING",
                      shutdown_timeout=30) as w:
        yield w


def wait_until(check: Callable[[], bool], timeout_s: float = 30, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s}s")
