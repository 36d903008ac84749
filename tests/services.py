"""Where the tests find real services, and the rule for when one is missing.

Locally a missing service skips the tests that need it; with TIDEGATE_TEST_REQUIRE_SERVICES=1
(CI) every such skip becomes a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

PG_URL = os.environ.get("TIDEGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TIDEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("TIDEGATE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def require_services() -> bool:
    return os.environ.get("TIDEGATE_TEST_REQUIRE_SERVICES", "") not in ("", "0", "false")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port),
                                      timeout=1):
            return True
    except OSError:
        return False


def need(url: str, default_port: int, what: str) -> None:
    if reachable(url, default_port):
        return
    message = f"{what} is not reachable at {url}"
    if require_services():
        pytest.fail(message + " (TIDEGATE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test session; dropped afterwards."""
    import sqlalchemy as sa

    need(PG_URL, 5432, "PostgreSQL")
    name = f"tidegate_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
