"""The Redis TypeGate: runs at once and starts per minute, on the server's clock; a slot is
released at the end and expires when nobody renews it."""

from __future__ import annotations

import time

import redis

from tidegate.adapters.type_limits import RedisTypeGate
from tidegate.core.type_limits import TypeLimit


def test_concurrency_then_starts_per_minute(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    gate = RedisTypeGate(client)
    both = TypeLimit(per_minute=3, concurrency=2)
    assert gate.acquire("t", "a", both) is None
    assert gate.acquire("t", "b", both) is None
    wait = gate.acquire("t", "c", both)
    assert wait is not None and 0 < wait <= 1.0  # a slot: ask again soon
    assert gate.running("t") == 2
    gate.release("t", "a")
    assert gate.acquire("t", "c", both) is None  # the third start of the minute
    gate.release("t", "b")
    wait = gate.acquire("t", "d", both)  # a slot is free, but the minute has had 3 starts
    assert wait is not None and 55 < wait <= 60.01
    assert gate.running("t") == 1  # refused: nothing counted
    # another type is another limit
    assert gate.acquire("other", "d", both) is None
    client.close()


def test_an_unrenewed_slot_frees_itself(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    gate = RedisTypeGate(client, slot_ttl_s=0.3)
    one = TypeLimit(concurrency=1)
    assert gate.acquire("t", "crashed", one) is None
    assert gate.acquire("t", "next", one) is not None
    gate.renew("t", "crashed")
    time.sleep(0.5)  # its worker died: no renewal
    assert gate.acquire("t", "next", one) is None
    client.close()
