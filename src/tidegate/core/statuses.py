"""Job statuses, priorities and the allowed transitions (DESIGN.md vocabulary)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# A job waiting for a worker: it may be claimed, and cancelling it needs no worker.
WAITING = frozenset({Status.QUEUED, Status.RETRYING})

# Every edge the store may take; each is one conditional UPDATE on (id, status, attempt).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RETRYING: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset(
        {Status.SUCCEEDED, Status.FAILED, Status.RETRYING, Status.CANCELLED, Status.QUEUED}
    ),
    # Replaying a dead-lettered job puts it back in the queue.
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_transition(src: Status, dst: Status) -> bool:
    return dst in TRANSITIONS[src]


def check_transition(src: Status, dst: Status) -> None:
    """Stores call this before a conditional UPDATE: an edge not in the table is a bug."""
    if not can_transition(src, dst):
        raise ValueError(f"no transition from {src.value} to {dst.value}")


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


QUEUES: tuple[str, ...] = tuple(p.value for p in Priority)

# Celery-style states for the seeds' /status alias.
CELERY_STATES: dict[Status, str] = {
    Status.QUEUED: "PENDING",
    Status.RUNNING: "STARTED",
    Status.RETRYING: "RETRY",
    Status.SUCCEEDED: "SUCCESS",
    Status.FAILED: "FAILURE",
    Status.CANCELLED: "REVOKED",
}
