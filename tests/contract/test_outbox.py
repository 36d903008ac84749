"""The API sends new jobs and records the sends in batches, after its answer (core/outbox.py):
on every store, a batch marks exactly the rows still as they were sent; a batch the broker
refused marks nothing, so the sweep sends those jobs; nothing waits forever."""

from __future__ import annotations

import time

from tidegate.core.batches import Batches
from tidegate.core.memory import InMemoryDispatcher
from tidegate.core.outbox import SendOutbox

from .test_store_contract import claim, make_job


class Counting:
    """The store and the broker, counting the batches that reach them."""

    def __init__(self, store) -> None:
        self.store, self.writes = store, []
        self.broker, self.sends = InMemoryDispatcher(), []

    def mark_dispatched_many(self, marks):
        self.writes.append(len(marks))
        return self.store.mark_dispatched_many(marks)

    def send_many(self, sends):
        self.sends.append(len(sends))
        self.broker.send_many(sends)


def test_one_send_and_one_write_for_a_batch_leaving_claimed_rows_alone(store) -> None:
    created = [store.create(make_job())[0] for _ in range(5)]
    claim(store, created[0])  # a worker got there before the mark was written
    counting = Counting(store)
    outbox = SendOutbox(counting, counting, linger_s=60)  # the thread would wait: flush now
    for job in created:
        outbox.add(job)
    assert outbox.flush() == 4
    assert counting.sends == [5] and counting.writes == [5]
    assert [(j, q) for j, q, _ in counting.broker.sent] == [(j.id, "medium") for j in created]
    assert store.get(created[0].id).dispatched_at is None  # the claimed row keeps its state
    assert all(store.get(j.id).dispatched_at is not None for j in created[1:])
    outbox.close()


def test_the_thread_sends_soon_and_close_sends_the_rest(store) -> None:
    broker = InMemoryDispatcher()
    outbox = SendOutbox(broker, store, linger_s=0.001)
    job, _ = store.create(make_job())
    outbox.add(job)
    deadline = time.monotonic() + 10
    while store.get(job.id).dispatched_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.get(job.id).dispatched_at is not None and len(broker.sent) == 1
    slow = SendOutbox(broker, store, linger_s=60)
    waiting, _ = store.create(make_job())
    slow.add(waiting)
    slow.close()  # a graceful shutdown sends what is pending
    assert store.get(waiting.id).dispatched_at is not None
    outbox.close()
    late, _ = store.create(make_job())
    outbox.add(late)  # after close: sent at once
    assert store.get(late.id).dispatched_at is not None
    assert [j for j, _, _ in broker.sent] == [job.id, waiting.id, late.id]


def test_a_refused_send_marks_nothing_and_is_logged(store, caplog) -> None:
    broker = InMemoryDispatcher()
    broker.down = True
    outbox = SendOutbox(broker, store, linger_s=60)
    job, _ = store.create(make_job())
    outbox.add(job)
    assert outbox.flush() == 0
    assert "stay queued for the sweep" in caplog.text
    assert store.get(job.id).dispatched_at is None  # the sweep's look finds it
    outbox.close()


def test_a_failed_mark_is_logged_not_raised(store, caplog) -> None:
    class Broken:
        def mark_dispatched_many(self, marks):
            raise OSError("database gone")

    outbox = SendOutbox(InMemoryDispatcher(), Broken(), linger_s=60)  # type: ignore[arg-type]
    job, _ = store.create(make_job())
    outbox.add(job)
    assert outbox.flush() == 0
    assert "the sweep re-sends them" in caplog.text
    outbox.close()


def test_batches_cap_their_size_and_survive_a_failing_write(caplog) -> None:
    seen: list[list[int]] = []

    def write(batch: list[int]) -> int:
        seen.append(batch)
        if 0 in batch:
            raise RuntimeError("boom")
        return len(batch)

    batches: Batches[int] = Batches(write, name="test", linger_s=60, max_batch=3)
    batches.add_all(range(1, 8))
    assert batches.flush() == 7 and seen == [[1, 2, 3], [4, 5, 6], [7]]
    batches.add(0)
    assert batches.flush() == 0 and "test: a batch of 1 failed" in caplog.text
    batches.close()
