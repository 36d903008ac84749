"""How soon a connection notices that the host at its other end is gone.

A host that loses the network (a cut cable, a dead machine, a dropped NAT entry) closes
nothing: its peers' sockets stay open, and by the kernel's defaults a silent peer is given up
after two hours of idleness, or after about fifteen minutes of unanswered retransmissions.
Meanwhile a Redis reply is awaited forever, a PostgreSQL client waits on a query that will
never answer, and the server keeps the vanished client's session with the row locks of its
open transaction. Every client connection Tidegate opens (PostgreSQL, the shared Redis, the
Redis broker) therefore probes an idle peer and gives up on unacknowledged data within
``DEAD_PEER_S``; the AMQP broker connection has its own heartbeats (TIDEGATE_BROKER_HEARTBEAT_S)
and py-amqp's keepalive defaults. Servers should do the same for their clients (see the
operations guide: PostgreSQL's tcp_keepalives_* and idle_in_transaction_session_timeout,
Redis's tcp-keepalive), since only they can free what a vanished client held.
"""

from __future__ import annotations

import socket
from typing import Any

KEEPALIVE_IDLE_S = 10  # idle this long, then probe
KEEPALIVE_INTERVAL_S = 5  # between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is dropped
# Data sent and not acknowledged this long: the connection is dropped (TCP_USER_TIMEOUT).
USER_TIMEOUT_S = 30
# The longest a dead peer goes unnoticed on an idle connection.
DEAD_PEER_S = KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT
# A PostgreSQL session that sits inside a transaction this long is ended by the server: its
# client vanished (or its COMMIT was lost on the way), and the transaction's row locks would
# otherwise hold up the sweep and the other workers until the server's keepalives give up.
# Tidegate's own transactions are a few statements long, never waiting on anything else.
IDLE_IN_TRANSACTION_S = 10.0
# redis-py checks a pooled connection with a PING before using it after this much idleness.
REDIS_HEALTH_CHECK_S = 15

# Linux's number for TCP_USER_TIMEOUT, for Pythons built without the constant.
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


def tcp_keepalive_options() -> dict[int, int]:
    """``{TCP option: value}`` for a client socket: redis-py's ``socket_keepalive_options``
    (which it applies with setsockopt at the IPPROTO_TCP level)."""
    opts = {_TCP_USER_TIMEOUT: USER_TIMEOUT_S * 1000}
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
                        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
                        ("TCP_KEEPCNT", KEEPALIVE_COUNT)):
        if hasattr(socket, name):  # Linux; macOS names some of them differently
            opts[getattr(socket, name)] = value
    return opts


def redis_client_options() -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis`` (and ``redis.asyncio.Redis``)."""
    return {"socket_keepalive": True, "socket_keepalive_options": tcp_keepalive_options(),
            "health_check_interval": REDIS_HEALTH_CHECK_S}


def dead_client_settings(*, idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S,
                         options: str | None = None) -> dict[str, Any]:
    """libpq connection parameters (psycopg ``connect_args``): keepalives and a user timeout
    on the client's socket, so a query to a vanished server fails instead of hanging; and,
    for the server's side, the session's idle-in-transaction timeout (0: the server's own),
    appended to the URL's own ``options`` if it has any."""
    args: dict[str, Any] = {"keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE_S,
                            "keepalives_interval": KEEPALIVE_INTERVAL_S,
                            "keepalives_count": KEEPALIVE_COUNT,
                            "tcp_user_timeout": USER_TIMEOUT_S * 1000}
    if idle_in_transaction_s > 0:
        ms = max(1, int(idle_in_transaction_s * 1000))
        args["options"] = " ".join(filter(None, [
            options, f"-c idle_in_transaction_session_timeout={ms}"]))
    return args
