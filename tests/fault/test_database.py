"""PostgreSQL fails under load: a restart of the server, and every connection killed."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.services import PG_URL

from .harness import Ledger, Stack, conclude, wait_for

pytestmark = pytest.mark.slow

WORK = {"sleep_s": 0.6, "steps": 3}


def keep_submitting(ledger: Ledger, stack: Stack, stop: threading.Event) -> threading.Thread:
    """Submit a job every 0.25 s until told to stop; a 503 or a dropped connection is fine
    (nothing was accepted), a 202 goes in the ledger."""

    def run() -> None:
        with stack.client(timeout_s=15) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.TransportError):
                    ledger.submit(client, "fault_work", WORK)
                stop.wait(0.25)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_outage(request: pytest.FixtureRequest, stack: Stack, scenario: str,
               outage: Callable[[], Any]) -> None:
    stack.start_all(concurrency=2)
    ledger = Ledger(stack)
    with stack.client() as client:
        for _ in range(6):
            assert ledger.submit(client, "fault_work", WORK)
    wait_for(lambda: sum(r["status"] == "running" for r in stack.rows(ledger.accepted)
                         .values()) == 2, 20, "two jobs running")
    stop = threading.Event()
    thread = keep_submitting(ledger, stack, stop)
    time.sleep(0.5)
    fault_at = time.monotonic()
    outage()
    time.sleep(1.0)
    stop.set()
    thread.join(20)
    conclude(request, ledger, scenario, since=fault_at, timeout_s=45,
             refused=dict(ledger.refused))


def test_postgresql_restart_during_a_run(request: pytest.FixtureRequest,
                                         stack_factory: Callable[..., Stack],
                                         private_pg: Any) -> None:
    """6a. The PostgreSQL server restarts (fast shutdown, two seconds down) while jobs run
    and are submitted: submissions during the outage get 503, every accepted job ends."""
    stack = stack_factory("redis", database_url=private_pg.url)

    def restart() -> None:
        private_pg.stop("fast")
        time.sleep(2)
        private_pg.start()

    run_outage(request, stack, "6a PostgreSQL restart", restart)


def test_postgresql_connections_killed(request: pytest.FixtureRequest,
                                       stack_factory: Callable[..., Stack]) -> None:
    """6b. Every connection to the job database is killed (pg_terminate_backend), three
    times in a second, while jobs run and are submitted."""
    stack = stack_factory("amqp")
    name = stack.database_url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    request.addfinalizer(admin.dispose)

    def kill_connections() -> None:
        for _ in range(3):
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :db AND pid <> pg_backend_pid()"),
                             {"db": name})
            time.sleep(0.4)

    run_outage(request, stack, "6b PG connections killed", kill_connections)
