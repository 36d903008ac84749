"""The one exception tree of the core. The API maps each class to an HTTP status in one place."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

ECHO_LIMIT = 80

# What an error shown to a tenant must not carry: where the service runs and how it is built.
_SCRUB = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"(?<![\w<])(?:[A-Za-z]:)?[\\/][^\s'\",;:)\]]+"), "<path>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"\[[0-9a-f:]+\](?::\d+)?", re.I), "<address>"),
    (re.compile(r"\b[\w-]+(?:\.[\w-]+)*:\d{2,5}\b"), "<host>"),
    (re.compile(r"\b(?=[\w.-]*[a-z])[a-z0-9-]+(?:\.[a-z0-9-]+)+\b", re.I), "<host>"),
]


def shorten(value: Any, limit: int = ECHO_LIMIT, *, quote: bool = True) -> str:
    """A user value as quoted in an error message: its repr (or, with ``quote=False``, the
    string itself), cut to ``limit`` characters.

    Every message that echoes input goes through here, so a 900 KB type name answers with a
    short 422 instead of echoing 900 KB back.
    """
    text = value if isinstance(value, str) and not quote else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_location(loc: Any, default: str = "input") -> str:
    """A validation error's location (``a.b.0``) with each part shortened: keys are input."""
    parts = [shorten(p, 40, quote=False) for p in loc]
    return shorten(".".join(parts), 120, quote=False) or default


def public_summary(exc: BaseException, limit: int = 300) -> str:
    """A tenant-safe one-line summary of an unexpected exception: its class and the first
    line of its message with URLs, paths, addresses and host names taken out. The full text
    belongs in the log, never in an answer or a job's error."""
    text = str(exc).split("Traceback (most recent call last)", 1)[0].strip()
    first = text.splitlines()[0] if text else ""
    for pattern, repl in _SCRUB:
        first = pattern.sub(repl, first)
    host = socket.gethostname()
    if host:  # a bare host name has no dots or port to be recognised by
        first = re.sub(rf"\b{re.escape(host)}\b", "<host>", first)
    summary = type(exc).__name__ + (f": {first}" if first else "")
    return shorten(summary, limit, quote=False)


class TidegateError(Exception):
    """Root of every error Tidegate raises on purpose. ``code`` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(TidegateError):
    code = "not_found"


class InvalidInput(TidegateError):
    code = "invalid_input"


class UnknownJobType(InvalidInput):
    code = "unknown_job_type"


class InvalidRequest(InvalidInput):
    """The request itself is malformed (as opposed to a job type refusing its input)."""

    code = "invalid_request"


class InvalidCursor(InvalidInput):
    """A list cursor that this service did not issue, or that was altered."""

    code = "invalid_cursor"


class IdempotencyMismatch(InvalidInput):
    """An Idempotency-Key reused with a different request."""

    code = "idempotency_mismatch"


class Conflict(TidegateError):
    code = "conflict"


class AlreadyTerminal(Conflict):
    code = "job_finished"


class DeadlineUnmeetable(Conflict):
    """The job's first estimate finishes after its deadline, and the caller chose to be
    refused (``on_deadline_unmeetable: refuse``). ``details``: the estimate, for the body."""

    code = "deadline_unmeetable"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})


class Unauthorized(TidegateError):
    code = "unauthorized"


class Forbidden(TidegateError):
    """The key is valid but its scope (or its tenant's settings) does not allow this."""

    code = "forbidden_scope"


class PriorityNotAllowed(Forbidden):
    """The tenant's settings do not allow this priority (a tenant may be refused `high`)."""

    code = "priority_not_allowed"


class TooManyRequests(TidegateError):
    """A tenant limit: try again after ``retry_after_s``. ``details`` go into the error body."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.details = dict(details or {})


class BudgetExceeded(TooManyRequests):
    """What it would cost does not fit the tenant's budget left (``details``: what remains,
    when it resets)."""

    code = "budget_exceeded"


class Unavailable(TidegateError):
    """A dependency (database, broker, Redis) cannot be reached right now."""

    code = "unavailable"


class ConfigurationError(TidegateError):
    code = "configuration_error"


# Control flow raised inside handlers; the runner turns each into a job transition.
class JobCancelled(Exception):  # noqa: N818 - control flow, named for what happened
    """The job was cancelled; the handler stops at this checkpoint."""


class LeaseLost(Exception):  # noqa: N818
    """Another worker took this job over (our lease expired); stop without writing anything."""


class WorkerStopping(Exception):  # noqa: N818
    """The worker is shutting down and its grace period is over: hand the job back."""


class RetryLater(Exception):  # noqa: N818
    """Give the worker slot back and run the job again after ``delay_s``.

    ``counts_as_attempt`` is False when waiting for provider quota: waiting is not failing.
    ``decided_at``: when (``time.monotonic()``) the delay was decided, for a delay that runs
    from then (a quota wait the limiter computed) rather than from when the job is sent again:
    the time it takes to write the outcome and send the message is then taken off it.
    """

    def __init__(self, delay_s: float, *, reason: str, counts_as_attempt: bool = True,
                 error_code: str = "retry", error_message: str = "",
                 decided_at: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason
        self.counts_as_attempt = counts_as_attempt
        self.error_code = error_code
        self.error_message = error_message or reason
        self.decided_at = decided_at

    def due_at(self) -> float | None:
        """The monotonic time the job should run again, for a delay with ``decided_at``."""
        return None if self.decided_at is None else self.decided_at + self.delay_s

    def remaining_s(self, now: float | None = None) -> float:
        """The delay still to wait at ``now`` (``time.monotonic()`` if None)."""
        due = self.due_at()
        if due is None:
            return self.delay_s
        return max(0.0, due - (time.monotonic() if now is None else now))


class JobFailed(Exception):  # noqa: N818
    """A permanent failure with a clear code; the job ends ``failed`` at once."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
