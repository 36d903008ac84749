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

# Under pytest-xdist each worker process (gw0, gw1, ...) gets its own Redis database and
# RabbitMQ vhost, so tests that flush a database or purge the fixed queue names never reach
# into another worker's run. The databases count up from the configured one (12-15 by default;
# Tidegate's own environments use 0-11).
WORKER_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
XDIST = "PYTEST_XDIST_WORKER" in os.environ


def _per_worker_redis(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db or 0) + WORKER_INDEX}"


def _per_worker_amqp(url: str) -> str:
    if not XDIST:
        return url
    base, _, vhost = url.rpartition("/")
    return f"{base}/{vhost or 'tidegate-test'}-gw{WORKER_INDEX}"


PG_URL = os.environ.get("TIDEGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = _per_worker_redis(os.environ.get("TIDEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/12"))
AMQP_URL = _per_worker_amqp(os.environ.get("TIDEGATE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))


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


def ensure_amqp_vhost() -> None:
    """Create this xdist worker's vhost on the shared RabbitMQ (idempotent), with the URL's
    user allowed in it. Uses `rabbitmqctl` on this host; without it, the vhost must exist."""
    if not XDIST:
        return
    import shutil
    import subprocess
    from urllib.parse import unquote

    parts = urlsplit(AMQP_URL)
    vhost, user = unquote(parts.path.removeprefix("/")), parts.username or "guest"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1"):
        return
    subprocess.run([ctl, "add_vhost", vhost], capture_output=True, timeout=60)
    subprocess.run([ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                   capture_output=True, timeout=60)
