"""Recording that a job's message was sent, off the submit path, in batches.

`dispatched_at` only spares the sweep a re-send: a row still unmarked after the sweep's grace
(10 s) is sent again, and a second message for a row is harmless (the claim is a conditional
UPDATE, so a duplicate delivery finds the row taken and does nothing). So the mark need not be
written before the 202, nor one transaction per job: a thread writes the marks that gathered
in the last few milliseconds in one transaction. If the process dies first, the sweep re-sends
those jobs, exactly as it would after a failed mark.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from .ports import JobStore

log = logging.getLogger(__name__)


class DispatchMarks:
    def __init__(self, store: JobStore, *, linger_s: float = 0.005, max_batch: int = 500) -> None:
        self.store = store
        self.linger_s = linger_s  # how long the thread lets marks gather before writing them
        self.max_batch = max_batch
        self._pending: list[tuple[str, int, datetime]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, job_id: str, *, attempt: int, version: datetime) -> None:
        with self._lock:
            if self._closed:  # shutting down: write it now rather than drop it
                pending = [(job_id, attempt, version)]
            else:
                self._pending.append((job_id, attempt, version))
                pending = []
                if self._thread is None:  # started on first use: a fork never inherits it
                    self._thread = threading.Thread(target=self._run, name="dispatch-marks",
                                                    daemon=True)
                    self._thread.start()
        if pending:
            self._write(pending)
        else:
            self._wake.set()

    def flush(self) -> int:
        """Write every pending mark now; returns how many rows were marked."""
        marked = 0
        while True:
            with self._lock:
                batch, self._pending = (self._pending[:self.max_batch],
                                        self._pending[self.max_batch:])
            if not batch:
                return marked
            marked += self._write(batch)

    def close(self) -> None:
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
            time.sleep(self.linger_s)  # let concurrent submits join this batch
            self.flush()

    def _write(self, batch: list[tuple[str, int, datetime]]) -> int:
        try:
            return self.store.mark_dispatched_many(batch)
        except Exception:
            # The messages are out; unmarked rows cost at most one duplicate from the sweep.
            log.warning("recording %d sent job(s) failed; the sweep re-sends them", len(batch),
                        exc_info=True)
            return 0
