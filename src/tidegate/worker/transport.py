"""The worker's Redis transport: kombu's, with a lost connection handled so no message strands.

Two things go wrong in kombu's Redis transport when the broker goes away under a worker.

A lost connection is not reported as one. When the Redis broker goes away while the worker
waits on the queues and a job is running (its message unacknowledged, with late acks), kombu's
cleanup of the lost connection detaches the channel's transport before the channel is done
with it. Anything that channel does next (putting the unacknowledged message back as it
closes, or acknowledging that message when the job finishes after the reconnect) then fails
with ``AttributeError: 'NoneType' object has no attribute 'hostname'`` instead of a connection
error. Celery tolerates connection errors there but treats anything else as unrecoverable, so
the worker process exited. Raising the connection error kombu would have raised lets Celery
log it and reconnect.

The messages the worker held are stranded. Redis keeps a delivered message in its
``unacked`` hash until it is acknowledged or put back, and puts it back by itself only after
the visibility timeout (hours, as it must exceed the longest job). On a lost connection Celery
forgets the messages it held but had not started (above all the ones waiting for their
countdown: a quota or job type limit wait), and the closing channel cannot put them back, the
broker being unreachable. Their jobs stayed ``queued`` until the scheduler's late re-send.
Here the closing channel remembers their delivery tags, and the next channel of this process
that reaches the broker puts them back in their queues at once. A message put back whose job
is running or finished is a duplicate delivery, which the worker drops as any other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# What a channel that lost its broker raises (ours and redis-py's).
LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class Stranded:
    """Delivery tags this process held when its broker connection was lost, to put back."""

    def __init__(self) -> None:
        self._tags: dict[str, None] = {}  # insertion-ordered: put back in delivery order
        self._lock = threading.Lock()

    def keep(self, tags: Iterable[str]) -> None:
        with self._lock:
            self._tags.update(dict.fromkeys(tags))

    def take(self) -> list[str]:
        with self._lock:
            tags, self._tags = list(self._tags), {}
        return tags

    def __bool__(self) -> bool:
        return bool(self._tags)


STRANDED = Stranded()


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except LOST:
            # Putting a tag back that another channel already did is a no-op, so keep all.
            STRANDED.keep(self._delivered)
            if self._delivered:
                log.warning("broker connection lost holding %d messages; they go back to "
                            "their queues once the broker is reachable", len(self._delivered))
            self._delivered.clear()
            raise


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)

    def _brpop_start(self, timeout: Any = None) -> Any:
        # Every wait on the queues starts here, so a channel that reaches the broker after a
        # lost one puts the stranded messages back before it takes new ones.
        if STRANDED:
            self.put_back_stranded()
        return super()._brpop_start(timeout)

    def put_back_stranded(self) -> int:
        tags = STRANDED.take()
        for done, tag in enumerate(tags):
            try:
                self.qos.restore_by_tag(tag, client=self.client)
            except LOST:
                STRANDED.keep(tags[done:])
                raise
        if tags:
            log.warning("put back %d messages held when the broker connection was lost",
                        len(tags))
        return len(tags)


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
