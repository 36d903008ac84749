"""Work handed off the request path and done in batches by one background thread.

A request adds an item and goes on; the thread wakes, lets ``linger_s`` pass so that concurrent
requests join the batch, and hands everything gathered to ``write`` (at most ``max_batch`` at a
time). Used by the API for what need not happen before its answer: broker sends and their
marks (core/outbox.py), and the wake-ups of event streams.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Batches(Generic[T]):
    """``write`` gets each batch and returns how many items it handled; it should report its
    own failures, since whatever it raises is only logged (the items are then dropped)."""

    def __init__(self, write: Callable[[list[T]], int], *, name: str, linger_s: float = 0.0,
                 max_batch: int = 500) -> None:
        self.write = write
        self.name = name
        self.linger_s = linger_s
        self.max_batch = max_batch
        self._pending: list[T] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, item: T) -> None:
        self.add_all((item,))

    def add_all(self, items: Iterable[T]) -> None:
        with self._lock:
            if self._closed:  # shutting down: do it now rather than drop it
                now = list(items)
            else:
                # Only the item that finds nothing pending wakes the thread: the others join
                # what it will take (flush drains until nothing is left), and Event.set per
                # request was a measurable cost.
                wake = not self._pending
                self._pending.extend(items)
                now = []
                if self._thread is None:  # started on first use: a fork never inherits it
                    self._thread = threading.Thread(target=self._run, name=self.name,
                                                    daemon=True)
                    self._thread.start()
        if now:
            self._write(now)
        elif wake:
            self._wake.set()

    def flush(self) -> int:
        """Write everything pending now; returns how many items were handled."""
        handled = 0
        while True:
            with self._lock:
                batch, self._pending = (self._pending[:self.max_batch],
                                        self._pending[self.max_batch:])
            if not batch:
                return handled
            handled += self._write(batch)

    def close(self) -> None:
        """Stop the thread, then write what is left (a graceful shutdown loses nothing)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                closed = self._closed
            if closed:
                return
            if self.linger_s:
                time.sleep(self.linger_s)  # let concurrent requests join this batch
            self.flush()

    def _write(self, batch: list[T]) -> int:
        try:
            return self.write(batch)
        except Exception:
            log.warning("%s: a batch of %d failed", self.name, len(batch), exc_info=True)
            return 0
