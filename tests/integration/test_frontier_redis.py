"""The delivery frontier on Redis: per queue it only moves forward, and says how long ago it
last moved on the Redis server's clock."""

from __future__ import annotations

import time

import redis

from tidegate.adapters.frontier import RedisFrontier


def test_it_moves_forward_only_and_ages_on_the_servers_clock(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    frontier = RedisFrontier(client)
    assert frontier.read() == {}
    frontier.advance("high", 1000.25)
    frontier.advance("medium", 50.0)
    time.sleep(0.3)
    frontier.advance("high", 999.0)  # an older message claimed late: no move
    read = frontier.read()
    assert read["high"][0] == 1000.25 and read["medium"][0] == 50.0
    assert 0.25 < read["high"][1] < 5  # not moved by the late one
    frontier.advance("high", 1001.5)
    sent, moved_ago = frontier.read()["high"]
    assert sent == 1001.5 and 0 <= moved_ago < 0.25
    assert set(frontier.read()) == {"high", "medium"}
    client.close()


def test_two_workers_racing_keep_the_latest(redis_url: str) -> None:
    import threading

    frontier = RedisFrontier(redis.Redis.from_url(redis_url))
    sends = [float(i) for i in range(400)]

    def claim(part: list[float]) -> None:
        mine = RedisFrontier(redis.Redis.from_url(redis_url))
        for sent in part:
            mine.advance("low", sent)

    threads = [threading.Thread(target=claim, args=(sends[i::4][::-1],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert frontier.read()["low"][0] == 399.0
