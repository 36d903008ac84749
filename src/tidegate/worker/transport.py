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

A dead worker's messages are stranded as well. A worker killed (SIGKILL, OOM, a handler that
takes its process down, a lost machine) leaves the messages it held in the ``unacked`` hash:
the ones it ran are recovered through their leases, but the ones it had received and not yet
claimed, above all the delayed retries it held for their countdown, waited for the visibility
timeout or the scheduler's blanket re-send (TIDEGATE_REDISPATCH_AFTER_S, ten minutes). So
each process also lists the delivery tags it holds under its lease owner id, in the same
pipeline that records them as unacknowledged (no extra round trip); when the scheduler learns
that an owner died (adapters/liveness.py) it puts exactly that owner's messages back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .runtime import worker_id

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


def held_key(unacked_key: str, owner: str) -> str:
    """The set of delivery tags ``owner`` (a lease owner id) holds unacknowledged."""
    return f"{unacked_key}:held:{owner}"


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    @property
    def held_key(self) -> str:
        # Per call, not cached: a prefork parent and a process that forked keep one channel
        # class but not one pid.
        return held_key(self.unacked_key, worker_id())

    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu's append, with the tag also listed under this process's owner id.
        delivery = message.delivery_info
        held = self.held_key
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}) \
                .hset(self.unacked_key, delivery_tag,
                      dumps([message._raw, delivery["exchange"], delivery["routing_key"]])) \
                .sadd(held, delivery_tag) \
                .expire(held, int(self.visibility_timeout) + 60) \
                .execute()
            super(kombu_redis.QoS, self).append(message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        return super()._remove_from_indices(delivery_tag, pipe).srem(self.held_key,
                                                                    delivery_tag)

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


def restore_held(channel: Any, owner: str) -> int:
    """Put back in their queues the messages a dead ``owner`` held unacknowledged (through a
    kombu Redis channel of the broker); returns how many. Restoring a tag that was acked or
    restored meanwhile is a no-op, and a message put back whose job runs elsewhere is a
    duplicate the claim drops."""
    qos = channel.qos
    key = held_key(qos.unacked_key, owner)
    with channel.conn_or_acquire() as client:
        tags = [t.decode() if isinstance(t, bytes) else t for t in client.smembers(key)]
        for tag in tags:
            qos.restore_by_tag(tag, client=client)
        client.delete(key)
    if tags:
        log.warning("put back %d message(s) held by dead worker %s", len(tags), owner)
    return len(tags)
