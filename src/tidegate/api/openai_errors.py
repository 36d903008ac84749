"""Errors of the OpenAI-compatible routes, in OpenAI's format:
``{"error": {"message", "type", "param", "code"}}`` (what the official SDKs parse).

Every error on those paths is answered this way, including the ones raised before the route
runs (a missing or revoked key, a tenant limit), so an application written against OpenAI
handles Tidegate's answers with the code it already has.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from ..core import errors as E
from ..core.models import Job

PATHS = frozenset({"/v1/chat/completions", "/v1/embeddings"})

TYPE_FOR = {400: "invalid_request_error", 401: "authentication_error",
            403: "permission_error", 404: "not_found_error", 409: "invalid_request_error",
            422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
            502: "server_error", 503: "server_error"}

# A job's failure code: the status and OpenAI code to answer with.
FOR_JOB_CODE: dict[str, tuple[int, str]] = {
    "expired": (429, "rate_limit_exceeded"),
    "quota_timeout": (429, "rate_limit_exceeded"),
    "budget_exceeded": (429, "insufficient_quota"),
    "context_too_long": (400, "context_length_exceeded"),
    "provider_rejected": (400, "invalid_request"),
    "invalid_request": (400, "invalid_request"),
    "invalid_model": (400, "model_not_found"),
    "invalid_input": (400, "invalid_request"),
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s


def error_response(exc: OpenAIError) -> JSONResponse:
    headers = None
    if exc.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    body: dict[str, Any] = {"error": {
        "message": exc.message, "type": TYPE_FOR.get(exc.status, "server_error"),
        "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def from_tidegate(status: int, exc: E.TidegateError, message: str) -> OpenAIError:
    """A Tidegate error raised on an OpenAI path (auth, scope, tenant limits)."""
    code = {"budget_exceeded": "insufficient_quota", "rate_limited": "rate_limit_exceeded",
            "unauthorized": "invalid_api_key"}.get(exc.code, exc.code)
    retry = exc.retry_after_s if isinstance(exc, E.TooManyRequests) else None
    if status == 503:
        retry = 5
    return OpenAIError(status, message, code=code, retry_after_s=retry)


def for_job(job: Job) -> OpenAIError:
    """The answer for a call whose job ended without a result."""
    error = job.error or {"code": job.status.value, "message": f"the job was {job.status.value}"}
    status, code = FOR_JOB_CODE.get(error["code"], (502, error["code"]))
    message = f"{error['message']} (Tidegate job {job.id}: {error['code']})"
    return OpenAIError(status, message, code=code,
                       retry_after_s=1 if status == 429 else None)
