"""Vendor-neutral batch jobs: created whole, answered whole after a turnaround, or expired.

A batch advances when it is looked at (no background thread): at ``ready_at`` every request is
answered (each may come back errored, ``batch_error_rate``); a batch whose turnaround is later
than its expiry expires instead, and a cancelled one ends at the next look. Unfinished batches
hold their requests' tokens against the key's batch quota (``batch_queue_tokens``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tidegate.providers.simulator.engine import Call, SimFailure, SimState, key_label

# A request's answer: (True, the vendor's response body) or (False, an error message).
Outcome = tuple[bool, Any]


@dataclass
class BatchItem:
    custom_id: str
    body: dict[str, Any]
    call: Call
    outcome: Outcome | None = None  # None: not answered (cancelled or expired)


@dataclass
class SimBatch:
    id: str
    vendor: str
    scope: str
    items: list[BatchItem]
    created_at: float  # epoch seconds, as the vendors report them
    ready_at: float
    expires_at: float
    status: str = "in_progress"  # in_progress | cancelling | ended
    ended_as: str = ""  # completed | cancelled | expired
    ended_at: float | None = None
    cancel_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor fields (file ids, metadata)

    @property
    def tokens(self) -> int:
        return sum(i.call.input_tokens + i.call.max_tokens for i in self.items)

    def counts(self) -> dict[str, int]:
        done = [i.outcome for i in self.items if i.outcome is not None]
        ok = sum(1 for o in done if o[0])
        return {"total": len(self.items), "succeeded": ok, "errored": len(done) - ok,
                "unanswered": len(self.items) - len(done)}


class BatchStore:
    """Every batch of one simulator; thread-safe."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._batches: dict[str, SimBatch] = {}
        self.files: dict[str, dict[str, Any]] = {}  # OpenAI's uploaded and result files

    def create(self, vendor: str, prefix: str, key: str | None, model: str,
               items: list[BatchItem], **extra: Any) -> SimBatch:
        """A new batch, or :class:`SimFailure` (auth, too many requests, batch quota)."""
        c = self.state.config
        if not key or (c.valid_keys is not None and key not in c.valid_keys):
            raise SimFailure(401, "auth", "invalid or missing API key")
        if not items:
            raise SimFailure(400, "bad_request", "a batch needs at least one request")
        if len(items) > c.batch_max_requests:
            raise SimFailure(400, "bad_request",
                             f"a batch holds at most {c.batch_max_requests} requests")
        now = time.time()
        scope = f"{key_label(key)}\x1f{vendor}:{model}"
        batch = SimBatch(f"{prefix}{self.state.next_id():06d}", vendor, scope, items, now,
                         now + c.batch_turnaround_s, now + c.batch_expiry_s, extra=extra)
        with self._lock:
            for b in self._batches.values():
                self._advance(b, now)
            queued = sum(b.tokens for b in self._batches.values()
                         if b.scope == scope and b.status != "ended")
            if c.batch_queue_tokens and queued + batch.tokens > c.batch_queue_tokens:
                raise SimFailure(429, "rate_limit",
                                 f"batch queue limit exceeded ({queued} tokens enqueued, limit "
                                 f"{c.batch_queue_tokens})", retry_after_s=60.0)
            self._batches[batch.id] = batch
        return batch

    def get(self, batch_id: str, vendor: str) -> SimBatch | None:
        return self._look(batch_id, vendor, cancel=False)

    def cancel(self, batch_id: str, vendor: str) -> SimBatch | None:
        """Ask to cancel: unanswered requests are withdrawn at the next look."""
        return self._look(batch_id, vendor, cancel=True)

    def _look(self, batch_id: str, vendor: str, *, cancel: bool) -> SimBatch | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.vendor != vendor:
                return None
            now = time.time()
            self._advance(batch, now)
            if cancel and batch.status == "in_progress":
                batch.status, batch.cancel_at = "cancelling", now
            return batch

    def reset(self) -> None:
        with self._lock:
            self._batches = {}
            self.files = {}

    def _advance(self, batch: SimBatch, now: float) -> None:
        if batch.status == "ended":
            return
        if batch.status == "cancelling" and (batch.cancel_at or 0) < now:
            self._end(batch, "cancelled", now)
        elif batch.ready_at > batch.expires_at and now >= batch.expires_at:
            self._end(batch, "expired", batch.expires_at)
        elif batch.status == "in_progress" and now >= batch.ready_at:
            answer = ANSWERERS[batch.vendor]
            for item in batch.items:
                item.outcome = self._answer(item, answer)
            self._end(batch, "completed", max(batch.ready_at, batch.created_at))

    def _answer(self, item: BatchItem, answer: Callable[[SimState, BatchItem], Any]) -> Outcome:
        st = self.state
        st.count(item.call, requests=1, batched=1)
        if st.config.batch_error_rate and st.roll() < st.config.batch_error_rate:
            st.count(item.call, server_errors=1)
            return False, "injected failure"
        return True, answer(st, item)

    @staticmethod
    def _end(batch: SimBatch, how: str, at: float) -> None:
        batch.status, batch.ended_as, batch.ended_at = "ended", how, at


# Filled by the vendor modules: how one request of a batch is answered (the response body).
ANSWERERS: dict[str, Callable[[SimState, BatchItem], Any]] = {}
