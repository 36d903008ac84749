"""The Redis broker transport lists what each worker process holds unacknowledged, so the
scheduler can put back exactly a dead worker's messages (worker/transport.py), on a real Redis
through kombu."""

from __future__ import annotations

import redis
from kombu import Connection, Exchange, Queue

from tidegate.worker.runtime import worker_id
from tidegate.worker.transport import held_key, restore_held

TRANSPORT = "tidegate.worker.transport:RedisTransport"


def _queue() -> Queue:
    return Queue("held-test", Exchange("held-test", type="direct"), routing_key="held-test")


def test_a_dead_owners_messages_go_back_and_nothing_else(redis_url: str) -> None:
    queue = _queue()
    raw = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport=TRANSPORT) as worker:
        channel = worker.channel()
        bound = queue(channel)
        bound.declare()
        producer = worker.Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="held-test")
        first, second = bound.get(no_ack=False), bound.get(no_ack=False)
        assert first is not None and second is not None
        key = held_key(channel.unacked_key, worker_id())
        assert raw.smembers(key) == {first.delivery_tag.encode(), second.delivery_tag.encode()}
        first.ack()  # a finished job's message is no longer held
        assert raw.smembers(key) == {second.delivery_tag.encode()}
        assert raw.ttl(key) > 0  # a set nobody restores does not stay for ever

        # The process "dies" holding `second`: another process puts it back.
        with Connection(redis_url) as scheduler:
            assert restore_held(scheduler.default_channel, worker_id()) == 1
            assert restore_held(scheduler.default_channel, "other-host/1") == 0
        assert not raw.exists(key)
        assert raw.hlen(channel.unacked_key) == 0
        again = sorted(m.payload["n"] for m in iter(lambda: bound.get(no_ack=True), None))
        assert again == [1, 2]  # the held one is back, the acknowledged one is not
        bound.delete()
