"""The worker's Redis transport: kombu's, with a lost connection reported as a connection error.

When the Redis broker goes away while the worker waits on the queues and a job is running
(its message unacknowledged, with late acks), kombu's cleanup of the lost connection detaches
the channel's transport before the channel is done with it. Anything that channel does next
(putting the unacknowledged message back as it closes, or acknowledging that message when the
job finishes after the reconnect) then fails with ``AttributeError: 'NoneType' object has no
attribute 'hostname'`` instead of a connection error. Celery tolerates connection errors there
but treats anything else as unrecoverable, so the worker process exited. Raising the
connection error kombu would have raised lets Celery log it and reconnect; the message stays
unacknowledged in Redis, and its job is recovered through its lease as usual.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
