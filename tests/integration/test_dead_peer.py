"""Connections notice a vanished peer: the sockets Tidegate opens to PostgreSQL, the shared
Redis and the Redis broker probe an idle peer and time out unacknowledged data, the AMQP
connection heartbeats, and a worker that reconnects to RabbitMQ while the broker still holds
its old connection can declare its control queue again (RESOURCE_LOCKED before)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.services import AMQP_URL, REDIS_URL, need
from tidegate.adapters import dead_peer
from tidegate.adapters.celery_app import create_celery
from tidegate.config import Settings

from .helpers import settings_for

USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


def assert_probes(sock: socket.socket) -> None:
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == dead_peer.KEEPALIVE_IDLE_S
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == dead_peer.KEEPALIVE_COUNT
    assert sock.getsockopt(socket.IPPROTO_TCP, USER_TIMEOUT) == dead_peer.USER_TIMEOUT_S * 1000


def redis_socket(client: Any) -> socket.socket:
    client.ping()
    conn = client.connection_pool.get_connection()
    try:
        return conn._sock.dup()  # type: ignore[no-any-return]
    finally:
        client.connection_pool.release(conn)


def test_postgresql_connections_probe_the_server(pg_database: str) -> None:
    from tidegate.adapters.sql import make_engine

    engine = make_engine(pg_database)
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        sock = socket.socket(fileno=socket.dup(dbapi.fileno()))
        try:
            assert_probes(sock)
        finally:
            sock.close()
    engine.dispose()


def test_a_vanished_clients_open_transaction_is_ended_by_the_server(pg_database: str) -> None:
    """A client that vanishes in the middle of a transaction (its COMMIT lost on the way)
    leaves the server holding the transaction's row locks; a sweep or a claim on those rows
    would wait for as long. The server ends a session idle in a transaction after
    TIDEGATE_DATABASE_IDLE_IN_TRANSACTION_S instead."""
    import time

    import sqlalchemy as sa

    from tidegate.adapters.sql import make_engine

    engine = make_engine(pg_database)
    with engine.connect() as conn:
        shown = conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar_one()
    assert shown == f"{int(dead_peer.IDLE_IN_TRANSACTION_S)}s"
    engine.dispose()
    engine = make_engine(pg_database, idle_in_transaction_s=0.5)
    conn = engine.connect()
    conn.execute(sa.text("SELECT 1"))  # a transaction is open now, and nothing more comes
    time.sleep(1.5)
    with pytest.raises(sa.exc.DBAPIError) as ended:
        conn.execute(sa.text("SELECT 1"))
    assert ended.value.connection_invalidated  # which the store reports as Unavailable
    conn.close()
    engine.dispose()
    unset = make_engine(pg_database, idle_in_transaction_s=0)  # the server's own setting
    with unset.connect() as conn:
        assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")
                            ).scalar_one() == "0"
    unset.dispose()


def test_shared_redis_clients_probe_the_server(tmp_path: Path) -> None:
    need(REDIS_URL, 6379, "Redis")
    from tidegate.adapters.liveness import LivenessBeacon
    from tidegate.wiring import build_container
    from tidegate.worker.runtime import build_services

    settings = settings_for(tmp_path, redis_url=REDIS_URL, broker_url=REDIS_URL)
    container = build_container(settings)
    clients = [container.state_client, build_services(container)["redis"],
               LivenessBeacon(settings.state_redis(), "probe").client]
    for client in clients:
        sock = redis_socket(client)
        try:
            assert_probes(sock)
        finally:
            sock.close()
            client.close()  # type: ignore[attr-defined]
    container.close()


def test_the_redis_broker_connection_probes_the_server(tmp_path: Path) -> None:
    need(REDIS_URL, 6379, "Redis")
    app = create_celery(settings_for(tmp_path, redis_url=REDIS_URL, broker_url=REDIS_URL))
    options = app.conf.broker_transport_options
    assert options["socket_keepalive"] is True
    assert options["health_check_interval"] == dead_peer.REDIS_HEALTH_CHECK_S
    with app.connection_for_read() as conn:
        sock = redis_socket(conn.default_channel.client)
        try:
            assert_probes(sock)
        finally:
            sock.close()


def test_broker_heartbeat_is_a_setting(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, redis_url=REDIS_URL, broker_url=AMQP_URL,
                            broker_heartbeat_s=4)
    assert create_celery(settings).conf.broker_heartbeat == 4
    assert Settings.model_fields["broker_heartbeat_s"].default == 10


def test_a_reconnecting_worker_declares_its_control_queue_again(tmp_path: Path) -> None:
    """The broker still holds the worker's old connection (it has not missed enough
    heartbeats yet) when the worker, back on the network, connects again under the same node
    name: declaring the node's control (pidbox) queue must not fail with RESOURCE_LOCKED,
    which would keep the worker from consuming until the broker drops the old connection."""
    need(AMQP_URL, 5672, "RabbitMQ")
    app = create_celery(settings_for(tmp_path, redis_url=REDIS_URL, broker_url=AMQP_URL))
    node = f"tidegate-probe-{tmp_path.name}@host1"
    queue = app.control.mailbox.get_queue(node)
    with app.connection_for_write() as old, app.connection_for_write() as new:
        held = queue.bind(old.default_channel)
        held.declare()
        held.consume(callback=lambda *a: None)  # the old connection still consumes from it
        try:
            queue.bind(new.default_channel).declare()  # raised ResourceLocked (405) before
        finally:
            held.delete()
    assert not queue.exclusive and queue.auto_delete
    assert queue.expires  # an abandoned node's queue goes on its own
