"""The hub hands events on strictly in id order: it waits for a missing id (a transaction
still committing), and skips it only once it stayed missing past the grace (rolled back)."""

from __future__ import annotations

import asyncio

from tidegate.api.event_hub import EventHub


class FakeLog:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, event_id: int, job_id: str = "j") -> None:
        self.events.append({"id": event_id, "job_id": job_id, "tenant": "t", "kind": "progress"})
        self.events.sort(key=lambda e: e["id"])

    def last_id(self) -> int:
        return max((e["id"] for e in self.events), default=0)

    def tail(self, after_id: int, *, limit: int = 1000) -> list[dict]:
        return [e for e in self.events if e["id"] > after_id][:limit]


def _ids(queue: asyncio.Queue) -> list[int]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait()["id"])
    return out


def test_a_gap_holds_later_events_back_until_filled_or_old() -> None:
    async def scenario() -> None:
        log = FakeLog()
        hub = EventHub(log, redis_url=None, channel="c", poll_s=0.05, gap_grace_s=0.5)  # type: ignore[arg-type]
        await hub.start()
        sub = hub.subscribe(lambda e: True, job_id="j")
        other = hub.subscribe(lambda e: True, job_id="k")
        log.add(1)
        log.add(3)  # 2 is still committing
        hub.poke()
        await asyncio.sleep(0.2)
        assert _ids(sub.queue) == [1]
        log.add(2)
        await asyncio.sleep(0.2)
        assert _ids(sub.queue) == [2, 3]
        log.add(5)  # 4 never comes (rolled back)
        await asyncio.sleep(0.2)
        assert _ids(sub.queue) == []
        await asyncio.sleep(0.6)
        assert _ids(sub.queue) == [5] and hub.head == 5
        assert _ids(other.queue) == []  # another job's stream sees none of these
        assert hub.open_streams == 2
        hub.unsubscribe(sub)
        hub.unsubscribe(sub)  # twice is harmless
        assert hub.open_streams == 1
        await hub.stop()

    asyncio.run(scenario())


def test_a_slow_stream_is_switched_back_to_the_table() -> None:
    async def scenario() -> None:
        import tidegate.api.event_hub as module

        log = FakeLog()
        hub = EventHub(log, redis_url=None, channel="c", poll_s=0.05)  # type: ignore[arg-type]
        await hub.start()
        old = module.QUEUE_MAX
        module.QUEUE_MAX = 3
        try:
            sub = hub.subscribe(lambda e: True, job_id="j")
            for i in range(1, 6):
                log.add(i)
            hub.poke()
            await asyncio.sleep(0.2)
            assert sub.overflowed and _ids(sub.queue) == [1, 2, 3]
            hub.resubscribe(sub)  # the stream reads (3, head] from the table instead
            assert sub.head == 5 and not sub.overflowed
        finally:
            module.QUEUE_MAX = old
            await hub.stop()

    asyncio.run(scenario())


def test_keys_are_rechecked_once_per_key_for_all_their_streams() -> None:
    async def scenario() -> None:
        from tidegate.core.errors import Unavailable

        asked: list[str] = []
        revoked: set[str] = set()
        down = False

        def key_valid(key_id: str) -> bool:
            asked.append(key_id)
            if down:
                raise Unavailable("the database blinked")
            return key_id not in revoked

        hub = EventHub(FakeLog(), redis_url=None, channel="c", poll_s=0.05,  # type: ignore[arg-type]
                       key_valid=key_valid, recheck_s=0.1)
        await hub.start()
        on_a = [hub.subscribe(lambda e: True, job_id=f"j{i}", key_id="a") for i in range(500)]
        on_b = hub.subscribe(lambda e: True, tenant="t", key_id="b")
        anonymous = hub.subscribe(lambda e: True, tenant="t")  # TIDEGATE_AUTH=off
        try:
            await asyncio.sleep(0.35)
            rounds = asked.count("a")
            assert 2 <= rounds <= 4 and asked.count("b") == rounds  # not 500 a round
            assert not any(s.revoked for s in [*on_a, on_b, anonymous])
            down = True  # an unreachable database revokes nothing
            await asyncio.sleep(0.25)
            assert not any(s.revoked for s in on_a)
            down = False
            revoked.add("a")
            await asyncio.sleep(0.25)
            assert all(s.revoked and s.wake.is_set() for s in on_a)  # woken to end
            assert not on_b.revoked and not anonymous.revoked
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_a_stream_that_subscribes_while_the_idle_hub_moves_on_misses_nothing() -> None:
    """With no stream open the hub only moves its position to the newest id; a stream that
    subscribes while that read is under way must still get every event after its position
    (a resumed stream reads its backlog only up to that position)."""
    import threading

    async def scenario() -> None:
        reading = threading.Event()
        go_on = threading.Event()

        class SlowLastId(FakeLog):
            slow = False

            def last_id(self) -> int:
                if self.slow:
                    reading.set()
                    go_on.wait(5)
                return super().last_id()

        log = SlowLastId()
        log.add(1)
        hub = EventHub(log, redis_url=None, channel="c", poll_s=0.05)  # type: ignore[arg-type]
        await hub.start()
        assert hub.head == 1
        log.slow = True
        log.add(2)  # committed while nobody listens ...
        hub.poke()
        await asyncio.to_thread(reading.wait, 5)  # ... the idle hub is reading the newest id
        sub = hub.subscribe(lambda e: True, job_id="j")  # a stream resuming after id 1
        assert sub.head == 1  # its backlog covers (after, 1]: 2 must come through the queue
        log.slow = False
        go_on.set()
        await asyncio.sleep(0.3)
        assert _ids(sub.queue) == [2]
        await hub.stop()

    asyncio.run(scenario())
