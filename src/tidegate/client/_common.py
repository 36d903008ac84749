"""What Client and AsyncClient share: settings, request bodies, retry policy, answer parsing."""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ..api.schemas import JobCreate, WebhookSpec
from .errors import APIError, error_for

M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_KINDS = TERMINAL_STATUSES  # the event kinds that end a job
# Statuses that mean "the request did not reach the application": safe to send again.
RETRY_STATUSES = frozenset({502, 503, 504})
# The server pings an open stream every 15 s: silence for longer means the connection is dead.
STREAM_READ_TIMEOUT_S = 45.0


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    api_key: str | None
    timeout_s: float
    max_retries: int
    backoff_s: float

    @classmethod
    def of(cls, url: str | None, api_key: str | None, timeout_s: float, max_retries: int,
           backoff_s: float) -> Settings:
        """``url`` and ``api_key`` default to TIDEGATE_URL and TIDEGATE_API_KEY."""
        return cls(url=(url or os.environ.get("TIDEGATE_URL") or DEFAULT_URL).rstrip("/"),
                   api_key=api_key if api_key is not None else os.environ.get("TIDEGATE_API_KEY"),
                   timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s)

    def headers(self) -> dict[str, str]:
        from .. import __version__

        h = {"User-Agent": f"tidegate-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number ``attempt`` (1-based)."""
        return float(min(8.0, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))


def new_idempotency_key() -> str:
    return f"tgc-{uuid.uuid4().hex}"


def submit_body(type: str, input: dict[str, Any] | BaseModel | None, *, priority: str | None,
                webhook: str | dict[str, Any] | WebhookSpec | None, deadline_s: float | None,
                metadata: dict[str, Any] | None, deadline_at: datetime | None = None,
                on_deadline_unmeetable: str | None = None) -> dict[str, Any]:
    """The JSON of ``POST /v1/jobs``, checked by the API's own model before it is sent.
    ``input`` may be a pydantic model (the job type's input model, say); ``webhook`` a URL."""
    if isinstance(input, BaseModel):
        input = input.model_dump(mode="json", exclude_unset=True)
    hook: WebhookSpec | None
    if isinstance(webhook, str):
        hook = WebhookSpec(url=webhook)
    elif isinstance(webhook, dict):
        hook = WebhookSpec.model_validate(webhook)
    else:
        hook = webhook
    extra: dict[str, Any] = ({} if on_deadline_unmeetable is None
                             else {"on_deadline_unmeetable": on_deadline_unmeetable})
    body = JobCreate(type=type, input=input or {}, priority=priority,  # type: ignore[arg-type]
                     metadata=metadata, deadline_s=deadline_s, deadline_at=deadline_at,
                     webhook=hook, **extra)
    return body.model_dump(mode="json", exclude_none=True)


def may_retry(method: str, exc: BaseException | None, status: int | None, *,
              idempotent: bool) -> bool:
    """Whether a failed request may be sent again. A connection that could not be opened never
    reached the server: always safe. Anything else only for idempotent requests (reads, cancel,
    and a submit carrying its idempotency key)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    if not idempotent:
        return False
    if exc is not None:
        return isinstance(exc, httpx.TransportError)
    return status in RETRY_STATUSES


def raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    raise error_for(resp.status_code, body, dict(resp.headers))


def parse(resp: httpx.Response, model: type[M]) -> M:
    raise_for(resp)
    return model.model_validate_json(resp.content)


def stream_error(data: str) -> APIError:
    """The ``event: error`` a stream ends with (e.g. the key was revoked)."""
    import json

    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    return error_for(0, {"error": body}, {})


def stream_path(job_id: str | None) -> str:
    return f"/v1/jobs/{job_id}/events" if job_id else "/v1/events"
