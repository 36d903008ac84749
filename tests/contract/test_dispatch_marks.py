"""The API records sent jobs in batches, off the request path (core/dispatch_marks.py): on every
store, a batch marks exactly the rows still as they were sent, and nothing waits forever."""

from __future__ import annotations

import time

from tidegate.core.dispatch_marks import DispatchMarks

from .test_store_contract import claim, make_job


class Counting:
    """The store, counting the batch writes that reach it."""

    def __init__(self, store) -> None:
        self.store, self.writes = store, []

    def mark_dispatched_many(self, marks):
        self.writes.append(len(marks))
        return self.store.mark_dispatched_many(marks)


def test_one_write_marks_a_batch_and_leaves_claimed_rows_alone(store) -> None:
    created = [store.create(make_job())[0] for _ in range(5)]
    claim(store, created[0])  # a worker got there before the mark was written
    counting = Counting(store)
    marks = DispatchMarks(counting, linger_s=60)  # the thread would wait a minute: flush now
    for job in created:
        marks.add(job.id, attempt=job.attempts, version=job.updated_at)
    assert marks.flush() == 4
    assert counting.writes == [5]
    assert store.get(created[0].id).dispatched_at is None  # the claimed row keeps its state
    assert all(store.get(j.id).dispatched_at is not None for j in created[1:])
    marks.close()


def test_the_thread_writes_marks_soon_and_close_writes_the_rest(store) -> None:
    marks = DispatchMarks(store, linger_s=0.001)
    job, _ = store.create(make_job())
    marks.add(job.id, attempt=0, version=job.updated_at)
    deadline = time.monotonic() + 10
    while store.get(job.id).dispatched_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.get(job.id).dispatched_at is not None
    marks.close()
    late, _ = store.create(make_job())
    marks.add(late.id, attempt=0, version=late.updated_at)  # after close: written at once
    assert store.get(late.id).dispatched_at is not None


def test_a_failed_write_is_logged_not_raised(store, caplog) -> None:
    class Broken:
        def mark_dispatched_many(self, marks):
            raise OSError("database gone")

    marks = DispatchMarks(Broken(), linger_s=60)  # type: ignore[arg-type]
    job, _ = store.create(make_job())
    marks.add(job.id, attempt=0, version=job.updated_at)
    assert marks.flush() == 0
    assert "the sweep re-sends them" in caplog.text
    marks.close()
