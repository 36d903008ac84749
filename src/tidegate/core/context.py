"""What a job handler sees: its input, progress reporting, cancellation and checkpoints.

The stable handler API (documented in docs/job-types.md; names here do not change without a
deprecation): ``ctx.input``, ``ctx.progress(percent, message)``, ``ctx.llm.complete(...)`` and
``ctx.llm.embed(...)``, ``ctx.checkpoint(key, step)`` (with ``ctx.save`` / ``ctx.saved``
underneath), ``ctx.cancelled`` / ``ctx.check()`` / ``ctx.sleep(s)``, and ``ctx.job_id``,
``ctx.tenant``, ``ctx.job_type``, ``ctx.attempt``, ``ctx.max_attempts``, ``ctx.priority``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import JobCancelled, JobFailed, LeaseLost, WorkerStopping
from .jsonsafe import find_problem, storable_text
from .models import EventNote, Usage
from .ports import JobStore

T = TypeVar("T")
V = TypeVar("V")

log = logging.getLogger(__name__)

# A handler may report progress as often as it likes: the row and the event log get at most
# one write per this interval, and the latest report is always written (by the next report,
# the runner's heartbeat, or the end of the attempt). The interval runs from the start of
# the attempt too: a job that reports and ends within it writes its report with its outcome,
# in the outcome's own statement, instead of one write more.
PROGRESS_EVERY_S = 0.25


class JobContext(Generic[T]):
    """Handed to every handler. ``progress`` and ``checkpoint`` are also cancellation points."""

    def __init__(self, *, job_id: str, tenant: str, job_type: str, attempt: int,
                 max_attempts: int, input: T, store: JobStore, checkpoint: dict[str, Any],
                 services: dict[str, Any] | None = None, priority: str = "medium",
                 stopping: threading.Event | None = None,
                 progress_every_s: float = PROGRESS_EVERY_S) -> None:
        self.job_id = job_id
        self.tenant = tenant
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.input = input
        self.priority = priority  # the queue it runs from; the limiter serves high first
        self._store = store
        self._checkpoint = dict(checkpoint)
        self.services = services or {}
        self.cancel_event = threading.Event()
        self.lease_lost = threading.Event()
        # Set by the worker when its shutdown grace is over: stop and hand the job back.
        self.stopping = stopping or threading.Event()
        self.usage = Usage()  # summed over this attempt; flushed with progress and finish
        self._unflushed = Usage()
        self._lock = threading.Lock()
        self.progress_every_s = progress_every_s
        self._pending: tuple[int, str] | None = None  # the latest progress not yet written
        self._last_write = time.monotonic()
        self._write_lock = threading.Lock()  # one progress write at a time, in report order
        self._last_note: dict[str, float] = {}

    # -- cancellation ---------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Raise if the job was cancelled or taken over; call between units of work."""
        if self.lease_lost.is_set():
            raise LeaseLost(self.job_id)
        if self.cancel_event.is_set():
            raise JobCancelled(self.job_id)
        if self.stopping.is_set():
            raise WorkerStopping(self.job_id)

    @property
    def interrupted(self) -> bool:
        """True when the handler should stop at once (cancelled, taken over, shutting down)."""
        return (self.cancel_event.is_set() or self.lease_lost.is_set()
                or self.stopping.is_set())

    def sleep(self, seconds: float) -> None:
        """Sleep, waking within a moment of cancellation or shutdown."""
        deadline = time.monotonic() + max(0.0, seconds)
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            self.cancel_event.wait(min(left, 0.25))
        self.check()

    @property
    def llm(self) -> Any:
        """The LLM gateway bound to this job (``ctx.llm.complete(...)``)."""
        gateway = self.services.get("llm")
        if gateway is None:
            raise RuntimeError("this worker has no LLM gateway configured")
        return gateway.bind(self)

    # -- progress and usage -------------------------------------------------------------
    def add_usage(self, usage: Usage) -> None:
        with self._lock:
            self.usage = self.usage.add(usage)
            self._unflushed = self._unflushed.add(usage)

    def add_late_usage(self, usage: Usage) -> None:
        """Usage of a call that returned after the job stopped waiting for it (the provider
        bills it all the same): written straight to the row, whatever its status."""
        self._store.add_late_usage(self.job_id, usage)

    def take_unflushed_usage(self) -> Usage:
        with self._lock:
            delta, self._unflushed = self._unflushed, Usage()
            return delta

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress; also a cancellation point. Coalesced: see PROGRESS_EVERY_S."""
        self.check()
        pct = max(0, min(100, int(percent)))
        with self._lock:
            self._pending = (pct, storable_text(message))
            due = time.monotonic() - self._last_write >= self.progress_every_s
        if due:
            self.flush_progress()

    def flush_progress(self) -> None:
        """Write the latest progress report not written yet, with its ``progress`` event."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, None
                if pending is None:
                    return
                self._last_write = time.monotonic()
            pct, message = pending
            delta = self.take_unflushed_usage()
            if not self._store.update_progress(
                    self.job_id, attempt=self.attempt, progress=pct, message=message,
                    usage_delta=delta,
                    note=EventNote("progress", {"percent": pct, "message": message})):
                self._lost(delta)

    def take_pending_progress(self) -> tuple[int, str] | None:
        """The latest report not written yet (percent, message), now the caller's to write."""
        with self._write_lock, self._lock:
            pending, self._pending = self._pending, None
            return pending

    @property
    def progress_pending(self) -> bool:
        with self._lock:
            return self._pending is not None

    def event(self, kind: str, detail: dict[str, Any], *,
              min_interval_s: float = 0.0) -> None:
        """Append an event to the job's history (``llm_call``, ``quota_wait``); with
        ``min_interval_s``, at most one of this kind per interval. Never raises: a row that
        moved on is noticed at the next progress report or heartbeat."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_note.get(kind, float("-inf")) < min_interval_s:
                return
            self._last_note[kind] = now
        try:
            self._store.add_event(self.job_id, attempt=self.attempt,
                                  note=EventNote(kind, detail))
        except Exception:  # history only: the job's own outcome does not depend on it
            log.warning("job %s: %s event not written", self.job_id,
                                                kind, exc_info=True)

    def _lost(self, delta: Usage) -> None:
        """The row moved on without this attempt: what its calls cost is billed all the same,
        so it goes to the job as late usage instead of being dropped with the write."""
        if delta != Usage():
            self.add_late_usage(delta)
        self.lease_lost.set()
        raise LeaseLost(self.job_id)

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def saved(self) -> dict[str, Any]:
        """What earlier attempts checkpointed (finished steps), so a retry resumes."""
        return dict(self._checkpoint)

    def save(self, key: str, value: Any, *, progress: float | None = None,
             message: str = "") -> None:
        """Checkpoint one finished step in the job row (and optionally report progress)."""
        self.check()
        if (problem := find_problem(value)) is not None:
            # PostgreSQL would refuse the write, and every retry would fail the same way.
            raise JobFailed("unstorable_result",
                            f"checkpoint {key!r} cannot be stored: {problem[0]} {problem[1]}")
        self._checkpoint[key] = value
        pct = -1 if progress is None else max(0, min(100, int(progress)))
        text = storable_text(message)
        with self._write_lock:
            note = None
            if pct >= 0:  # a checkpoint with progress is written at once, pending or not
                with self._lock:
                    self._pending = None
                    self._last_write = time.monotonic()
                note = EventNote("progress", {"percent": pct, "message": text})
            delta = self.take_unflushed_usage()
            ok = self._store.update_progress(
                self.job_id, attempt=self.attempt, progress=pct, message=text,
                checkpoint=self._checkpoint, usage_delta=delta, note=note)
        if not ok:
            self._lost(delta)

    def checkpoint(self, key: str, step: Callable[[], V], *, progress: float | None = None,
                   message: str = "") -> V:
        """Run ``step`` once for the whole job: if an earlier attempt finished it, return what
        it saved without running it again; else run it, save its JSON-able result under
        ``key`` in the job row (with ``progress``, if given), and return it. A retry after a
        crash therefore resumes at the first unfinished step and pays for no call twice."""
        if key in self._checkpoint:
            value: V = self._checkpoint[key]
            return value
        value = step()
        self.save(key, value, progress=progress, message=message)
        return value
