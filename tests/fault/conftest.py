"""Fixtures of the fault suite: owned processes, private services, a stack per test.

The services a scenario breaks are private to it (their own ports and directories); the
others are the machine's shared ones when they can be (a fresh PostgreSQL database per test).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.services import PG_URL, need

from .harness import ProcSet, RabbitServer, RedisServer, Stack

BROKERS = ["redis", "amqp"]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcSet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    ps = ProcSet(logs)
    yield ps
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if failed:
        print("\n" + ps.tails())
    ps.close()


# -- PostgreSQL: a migrated template on the shared server, one copy per test -------------------
@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    from tidegate.adapters.sql import make_engine
    from tidegate.adapters.sql.migrate import upgrade

    need(PG_URL, 5432, "PostgreSQL")
    name = f"tgfault_tmpl_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{PG_URL.rsplit('/', 1)[0]}/{name}")
    upgrade(engine)
    engine.dispose()
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_db(pg_template: str, procs: ProcSet) -> Iterator[str]:
    name = f"tgfault_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        procs.close()  # the processes go before their database does
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- RabbitMQ: one private node for the session (scenarios may stop and restart it) ------------
@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    root = tmp_path_factory.mktemp("rabbit")
    logs = root / "logs"
    logs.mkdir()
    ps = ProcSet(logs)
    try:
        server = RabbitServer(ps, root).start()
        yield server
    finally:
        ps.close()


@pytest.fixture
def stack_factory(request: pytest.FixtureRequest, procs: ProcSet,
                  tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(broker: str, *, database_url: str | None = None,
             env: dict[str, str] | None = None, redis: RedisServer | None = None) -> Stack:
        redis = redis or RedisServer(procs, tmp_path).start()
        if broker == "redis":
            broker_url = redis.url
        else:
            server: RabbitServer = request.getfixturevalue("rabbit")
            if server.proc is None or not server.proc.alive():
                server.start()
            server.purge()
            broker_url = server.url
        rabbit = server if broker != "redis" else None
        if database_url is None:
            database_url = request.getfixturevalue("pg_db")
        stack = Stack(procs, tmp_path, broker=broker, broker_url=broker_url,
                      redis_url=redis.url, database_url=database_url, env=env)
        stack.redis = redis  # type: ignore[attr-defined]
        stack.rabbit = rabbit  # type: ignore[attr-defined]
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()


@pytest.fixture
def private_pg(procs: ProcSet) -> Iterator[Any]:
    """A private PostgreSQL cluster (migrated), for scenarios that restart the database."""
    from tidegate.adapters.sql import make_engine
    from tidegate.adapters.sql.migrate import upgrade

    from .harness import PgCluster

    pg = PgCluster()
    try:
        pg.init()
        pg.start()
        engine = make_engine(pg.url)
        upgrade(engine)
        engine.dispose()
        yield pg
    finally:
        procs.close()  # the processes go before their database does
        pg.destroy()
