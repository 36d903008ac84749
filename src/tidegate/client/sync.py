"""``Client``: Tidegate's HTTP API from synchronous code (a Flask view, a script, a CLI)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse
from pydantic import BaseModel

from ..api.schemas import (
    JobAccepted,
    JobEventPublic,
    JobList,
    JobPublic,
    JobStreamEvent,
    LimitsReport,
    QueuesReport,
    UsageReport,
    WebhookSpec,
)
from . import _common as C
from .errors import APIError, ServerError, TimeoutExpired, TransportError, Unavailable


class Client:
    """``Client(url, api_key)``; ``url`` and ``api_key`` default to TIDEGATE_URL and
    TIDEGATE_API_KEY. Transient network failures are retried ``max_retries`` times; a submit is
    retried with one idempotency key, so it never creates a second job. Use it as a context
    manager, or call :meth:`close`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 30.0, max_retries: int = 3, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = C.Settings.of(url, api_key, timeout, max_retries, backoff)
        self._http = httpx.Client(base_url=self.settings.url, headers=self.settings.headers(),
                                  timeout=timeout, transport=transport)

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if attempt > self.settings.max_retries or not C.may_retry(
                        method, exc, None, idempotent=idempotent):
                    raise TransportError(f"{method} {self.settings.url}{path}: "
                                         f"{type(exc).__name__}: {exc}") from exc
            else:
                if attempt > self.settings.max_retries or not C.may_retry(
                        method, None, resp.status_code, idempotent=idempotent):
                    return resp
            time.sleep(self.settings.delay(attempt))

    def _get(self, path: str, model: type[C.M], **params: Any) -> C.M:
        params = {k: v for k, v in params.items() if v is not None}
        return C.parse(self._request("GET", path, idempotent=True, params=params), model)

    # -- jobs ---------------------------------------------------------------------------------
    def submit(self, type: str, input: dict[str, Any] | BaseModel | None = None, *,
               priority: str | None = None, idempotency_key: str | None = None,
               webhook: str | dict[str, Any] | WebhookSpec | None = None,
               deadline_s: float | None = None,
               metadata: dict[str, Any] | None = None, deadline_at: datetime | None = None,
               on_deadline_unmeetable: str | None = None) -> JobAccepted:
        """Submit a job; the answer means it is stored and will run. Without
        ``idempotency_key`` one is generated, and reused if the request must be sent again."""
        body = C.submit_body(type, input, priority=priority, webhook=webhook,
                             deadline_s=deadline_s, metadata=metadata,
                             deadline_at=deadline_at,
                             on_deadline_unmeetable=on_deadline_unmeetable)
        key = idempotency_key or C.new_idempotency_key()
        return C.parse(self._request("POST", "/v1/jobs", idempotent=True, json=body,
                                     headers={"Idempotency-Key": key}), JobAccepted)

    def get(self, job_id: str) -> JobPublic:
        return self._get(f"/v1/jobs/{job_id}", JobPublic)

    def list(self, *, status: str | None = None, type: str | None = None,
             page_size: int = 100, limit: int | None = None) -> Iterator[JobPublic]:
        """The caller's jobs, newest first, fetching page after page as it is iterated
        (``limit``: stop after that many)."""
        cursor: str | None = None
        seen = 0
        while True:
            page = self._get("/v1/jobs", JobList, status=status, type=type, limit=page_size,
                             cursor=cursor)
            for job in page.jobs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            if page.next_cursor is None or not page.jobs:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobPublic:
        """Ask the job to stop (a waiting job never starts); raises Conflict if it ended."""
        return C.parse(self._request("DELETE", f"/v1/jobs/{job_id}", idempotent=True),
                       JobPublic)

    def retry(self, job_id: str) -> JobPublic:
        """Replay a failed job with a fresh attempt budget; raises Conflict if not failed."""
        return C.parse(self._request("POST", f"/v1/jobs/{job_id}/retry", idempotent=False),
                       JobPublic)

    def history(self, job_id: str) -> builtins.list[JobEventPublic]:
        resp = self._request("GET", f"/v1/jobs/{job_id}/history", idempotent=True)
        C.raise_for(resp)
        return [JobEventPublic.model_validate(e) for e in resp.json()]

    # -- events and waiting -----------------------------------------------------------------
    def events(self, job_id: str | None = None, *, after: int | None = None,
               type: str | None = None, status: str | None = None,
               timeout: float | None = None) -> Iterator[JobStreamEvent]:
        """Typed events of one job (ending after its terminal event) or, without ``job_id``,
        of all the caller's jobs (never ending). A dropped connection is reopened with
        ``Last-Event-ID``, so no event is lost or repeated. ``timeout``: raise
        :class:`TimeoutExpired` if the stream is still open after that many seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        path = C.stream_path(job_id)
        params = {k: v for k, v in {"type": type, "status": status}.items() if v is not None}
        last, failures, retry_s = after, 0, 1.0
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            got_any = False
            read_s = C.STREAM_READ_TIMEOUT_S
            if deadline is not None:
                read_s = max(0.05, min(read_s, deadline - time.monotonic()))
            try:
                with connect_sse(self._http, "GET", path, headers=headers, params=params,
                                 timeout=httpx.Timeout(read_s, connect=self.settings.timeout_s)
                                 ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        C.raise_for(source.response)
                    failures = 0
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            retry_s = sse.retry / 1000
                        if sse.event == "error":
                            raise C.stream_error(sse.data)
                        if not sse.data:
                            if deadline is not None and time.monotonic() > deadline:
                                raise TimeoutExpired(job_id or "stream", timeout or 0)
                            continue
                        event = JobStreamEvent.model_validate_json(sse.data)
                        last, got_any = event.id, True
                        yield event
                        if job_id and event.kind in C.TERMINAL_KINDS:
                            return
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutExpired(job_id or "stream", timeout or 0)
                # The server closed the stream without the job's end: it restarted, or the
                # job had already ended before ``after``.
                if job_id and not got_any and self.get(job_id).status in C.TERMINAL_STATUSES:
                    return
            except (httpx.TransportError, SSEError, Unavailable, ServerError) as exc:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutExpired(job_id or "stream", timeout or 0) from None
                failures += 1
                if failures > self.settings.max_retries:
                    raise TransportError(f"event stream {path}: {type_name(exc)}: {exc}"
                                         ) from exc
                time.sleep(max(retry_s, self.settings.delay(failures)))

    def wait(self, job_id: str, timeout: float | None = None, *,
             poll_interval: float = 1.0) -> JobPublic:
        """Block until the job ends and return it (whatever the outcome: check ``status``).
        Follows the job's event stream; polls instead when streaming is not possible (a proxy
        that buffers, or the tenant's streams all taken). Raises TimeoutExpired."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for event in self.events(job_id, timeout=timeout):
                if event.kind in C.TERMINAL_KINDS:
                    break
        except (TransportError, SSEError):
            pass  # fall back to polling
        except APIError as exc:
            if exc.status != 429 and exc.status < 500:  # the tenant's streams all taken...
                raise
        while True:
            job = self.get(job_id)
            if job.status in C.TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                raise TimeoutExpired(job_id, timeout or 0)
            time.sleep(poll_interval)

    # -- the system ------------------------------------------------------------------------------
    def limits(self) -> LimitsReport:
        """Every provider lane's quota, use, waiting jobs and pause."""
        return self._get("/v1/limits", LimitsReport)

    def queues(self) -> QueuesReport:
        return self._get("/v1/queues", QueuesReport)

    def usage(self, *, start: date | None = None, end: date | None = None,
              group_by: str = "tenant", tenant: str | None = None) -> UsageReport:
        """Requests, tokens and cost per ``group_by`` (tenant, type, lane, day)."""
        return self._get("/v1/usage", UsageReport, group_by=group_by, tenant=tenant,
                         **{"from": start.isoformat() if start else None,
                            "to": end.isoformat() if end else None})


def type_name(exc: BaseException) -> str:
    return type(exc).__name__
