"""The wake-up that tells API processes new events were committed: one Redis PUBLISH.

It carries no event: a subscriber that misses one still reads every event from the table, on
its next wake-up or on its poll timer. So a publish may fail (Redis down, slow) at no cost but
latency, and it never holds up the transition that wrote the event.
"""

from __future__ import annotations

import logging
import time

import redis

from .redis_client import redis_client
from .redis_keys import EVENTS_CHANNEL

log = logging.getLogger(__name__)

# After a failed publish, skip publishing this long instead of paying a timeout per write.
BACKOFF_S = 5.0


class EventPublisher:
    def __init__(self, url: str, *, channel: str = EVENTS_CHANNEL) -> None:
        self._client = redis_client(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.channel = channel
        self._quiet_until = 0.0

    def __call__(self, job_ids: list[str]) -> None:
        if time.monotonic() < self._quiet_until:
            return
        try:
            self._client.publish(self.channel, ",".join(dict.fromkeys(job_ids)))
        except redis.RedisError as exc:
            self._quiet_until = time.monotonic() + BACKOFF_S
            log.warning("event wake-up not published (%s); streams poll meanwhile",
                        type(exc).__name__)

    def close(self) -> None:
        self._client.close()
