"""Every Redis client Tidegate opens comes from here, so that each one notices a vanished
server (see dead_peer.py) and none is built with ad-hoc socket options."""

from __future__ import annotations

from typing import Any

import redis

from .dead_peer import redis_client_options


def redis_client(url: str, *, socket_timeout: float, socket_connect_timeout: float,
                 **kwargs: Any) -> redis.Redis:
    """A client for ``url``; ``socket_timeout`` bounds each reply, the dead-peer probes the
    idle connections."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                socket_connect_timeout=socket_connect_timeout,
                                **{**redis_client_options(), **kwargs})
