"""What the client raises: one exception per error ``code`` the API answers with.

Every answer with an error status has the body ``{"error": {"code", "message", ...}}``; the
client raises the class registered for its code (or, for a code it does not know, the class for
its HTTP status), so callers catch what happened, not a status number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class TidegateError(Exception):
    """Root of everything the client raises on purpose."""


class TransportError(TidegateError):
    """Tidegate could not be reached, or the connection broke, even after the retries."""


class APIError(TidegateError):
    """An error answer. ``code`` is the API's stable machine-readable code."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, status: int = 0,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.details = details or {}
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.status} {self.code})"


class InvalidInput(APIError):
    """422: unknown job type, invalid input, cursor or request."""

    code = "invalid_input"


class Unauthorized(APIError):
    """401: a missing, invalid, expired or revoked API key."""

    code = "unauthorized"


class Forbidden(APIError):
    """403: the key's scope, or the tenant's settings, do not allow this."""

    code = "forbidden_scope"


class NotFound(APIError):
    """404: no such job (or route) for this tenant."""

    code = "not_found"


class Conflict(APIError):
    """409: e.g. cancelling a job that already finished, retrying one that has not failed."""

    code = "conflict"


class RateLimited(APIError):
    """429 ``rate_limited``: a tenant limit; try again after ``retry_after`` seconds."""

    code = "rate_limited"

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class BudgetExceeded(APIError):
    """429 ``budget_exceeded``: the tenant spent its budget; ``resets_at`` is when it starts
    again, ``remaining`` what is left of each budget. Waiting a few seconds will not help."""

    code = "budget_exceeded"

    @property
    def remaining(self) -> dict[str, Any] | None:
        value = self.details.get("remaining")
        return value if isinstance(value, dict) else None

    @property
    def resets_at(self) -> datetime | None:
        value = self.details.get("resets_at")
        if not isinstance(value, str):
            return None
        return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Unavailable(APIError):
    """503: the database or the broker is unavailable; nothing was done."""

    code = "unavailable"


class ServerError(APIError):
    """Any other 5xx."""

    code = "internal_error"


class TimeoutExpired(TidegateError):
    """``wait(..., timeout=)`` ran out before the job finished (the job keeps running)."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


BY_CODE: dict[str, type[APIError]] = {
    "not_found": NotFound,
    "invalid_input": InvalidInput,
    "unknown_job_type": InvalidInput,
    "invalid_request": InvalidInput,
    "invalid_cursor": InvalidInput,
    "idempotency_mismatch": InvalidInput,
    "conflict": Conflict,
    "job_finished": Conflict,
    "unauthorized": Unauthorized,
    "forbidden_scope": Forbidden,
    "priority_not_allowed": Forbidden,
    "rate_limited": RateLimited,
    "budget_exceeded": BudgetExceeded,
    "unavailable": Unavailable,
}

BY_STATUS: dict[int, type[APIError]] = {400: InvalidInput, 401: Unauthorized, 403: Forbidden,
                                        404: NotFound, 409: Conflict, 413: InvalidInput,
                                        422: InvalidInput, 429: RateLimited, 503: Unavailable}


def error_for(status: int, body: Any, headers: dict[str, str]) -> APIError:
    """The exception for an error answer (``body`` parsed JSON, or None if it was not)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        code = err["code"]
        message = str(err.get("message", ""))
        details = {k: v for k, v in err.items() if k not in ("code", "message")}
    else:
        code, message, details = None, f"HTTP {status}", {}
    cls = BY_CODE.get(code or "") or BY_STATUS.get(status) or (
        ServerError if status >= 500 else APIError)
    return cls(message, code=code, status=status, details=details,
               headers={k.lower(): v for k, v in headers.items()})
