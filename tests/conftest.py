"""Shared fixtures: stores (in-memory, SQLite, PostgreSQL) and brokers (Redis, RabbitMQ)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.services import AMQP_URL, REDIS_URL, ensure_amqp_vhost, fresh_pg_database, need
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import metadata
from tidegate.core.memory import InMemoryJobStore


def pytest_configure(config: pytest.Config) -> None:
    ensure_amqp_vhost()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with fresh_pg_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def _truncate(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tidegate.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SqlJobStore]:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield SqlJobStore(engine)
    engine.dispose()


@pytest.fixture
def pg_store(pg_database: str) -> Iterator[SqlJobStore]:
    engine = make_engine(pg_database)
    _truncate(engine)
    yield SqlJobStore(engine)
    engine.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> object:
    """One test body, every JobStore: the in-memory fake and both SQL databases."""
    if request.param == "memory":
        return InMemoryJobStore()
    return request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_store")


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Every broker Tidegate supports, with its queues emptied first."""
    url = REDIS_URL if request.param == "redis" else AMQP_URL
    need(url, 6379 if request.param == "redis" else 5672, request.param)
    _purge(url)
    return url


@pytest.fixture
def redis_url() -> str:
    need(REDIS_URL, 6379, "Redis")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared test Redis; its keys go afterwards."""
    import uuid

    import redis

    need(REDIS_URL, 6379, "Redis")
    p = f"tg:test:{uuid.uuid4().hex[:12]}:"
    yield p
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=p + "*", count=1000):
        client.delete(key)
    client.close()


def _purge(url: str) -> None:
    from kombu import Connection

    from tidegate.core.statuses import QUEUES

    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()
        return
    with Connection(url, connect_timeout=3) as conn:
        channel = conn.channel()
        for q in QUEUES:
            try:
                channel.queue_purge(q)
            except Exception:
                channel = conn.channel()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                kids = [int(k) for k in (task / "children").read_text().split()]
                found += kids
                todo += kids
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A safety net: a process a test started and failed to stop must not outlive the run
    (it would hold CI's output pipe open). Stopped by PID, and reported."""
    import os
    import signal

    leftovers = _descendants(os.getpid())
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        print(f"\nkilled {len(leftovers)} process(es) left behind by tests: {leftovers}")


# -- the fault suite's summary: here, because under xdist only this conftest reaches the
# controller process that prints the terminal summary
def _recorded(terminalreporter: Any) -> list[dict[str, Any]]:
    """Each scenario's ledger row, from the test reports: under pytest-xdist the scenarios ran in
    worker processes, and only their reports (with user_properties) reach this one."""
    rows = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            rows += [json.loads(v) for k, v in getattr(report, "user_properties", ())
                     if k == "fault_result"]
    return rows


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = _recorded(terminalreporter)
    if not results:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault scenarios: ledger and recovery")
    tr.write_line("(one JSON line per scenario in fault_results.jsonl under the basetemp,"
                  " or each xdist worker's)")
    tr.write_line(f"{'scenario':<34} {'broker':<7} {'accepted':>8} {'lost':>4} {'dup':>3} "
                  f"{'regr':>4} {'exec/cap':>8} {'recovery':>9}  statuses")
    for r in results:
        rec = "-" if r.get("recovery_s") is None else f"{r['recovery_s']:.1f}s"
        tr.write_line(f"{r['scenario']:<34} {r['broker']:<7} {r['accepted']:>8} {r['lost']:>4} "
                      f"{r['duplicates']:>3} {r['regressions']:>4} "
                      f"{str(r['max_exec']) + '/' + str(r['cap']):>8} {rec:>9}  "
                      f"{json.dumps(r['statuses'])}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Captured output can hold lone surrogates (tests feed them in on purpose, and the product
    logs what it refused); pytest-xdist must send each report as UTF-8, so escape them."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]
