"""Is a Redis fit to hold Tidegate's state? A Redis that evicts keys under memory pressure
silently drops leases' liveness stamps, limiter state, reservations and, as the broker, queued
messages. Production Redis for Tidegate runs with ``maxmemory-policy noeviction`` (and AOF
persistence): a full Redis then refuses writes, loudly, instead of forgetting."""

from __future__ import annotations

import contextlib
import logging

import redis

from ..config import Settings, redact
from .redis_client import redis_client

log = logging.getLogger(__name__)


def eviction_policy(client: redis.Redis) -> str | None:
    """The server's maxmemory-policy (from INFO, which a restricted ACL user may run when
    CONFIG is denied), or None when the server does not say."""
    policy = client.info("memory").get("maxmemory_policy")
    return policy.decode() if isinstance(policy, bytes) else policy


def redis_urls(settings: Settings) -> dict[str, str]:
    """The Redis servers this process would use, by role."""
    urls: dict[str, str] = {}
    # (no Redis configured: a test, or RabbitMQ without a state Redis)
    with contextlib.suppress(Exception):
        urls["shared state"] = settings.state_redis()
    try:
        broker = settings.broker()
    except Exception:
        broker = ""
    if broker.startswith(("redis://", "rediss://")):
        urls["broker"] = broker
    return urls


def warn_if_evicting(settings: Settings) -> list[str]:
    """Log a WARNING for each Redis of this process that may evict keys; returns them. An
    unreachable Redis is left to the process's own start-up checks."""
    warnings = []
    for role, url in redis_urls(settings).items():
        try:
            client = redis_client(url, socket_timeout=3, socket_connect_timeout=3)
            try:
                policy = eviction_policy(client)
            finally:
                client.close()
        except redis.RedisError as exc:
            log.debug("eviction policy of %s not read: %s", redact(url), exc)
            continue
        if policy is not None and policy != "noeviction":
            warnings.append(
                f"the {role} Redis ({redact(url)}) has maxmemory-policy {policy}: under memory "
                "pressure it drops keys Tidegate needs (leases' liveness, rate limits, "
                "reservations, queued messages); set `maxmemory-policy noeviction` (and "
                "`appendonly yes`) on it")
    for warning in warnings:
        log.warning("%s", warning)
    return warnings
