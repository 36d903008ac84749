"""Server-sent event streams: one job's (`/v1/jobs/{id}/events`) and a tenant's (`/v1/events`).

Each persisted event is one SSE message, `id: <event id>`, `event: <kind>`, `data: <JSON>`.
Reconnecting with `Last-Event-ID` resumes strictly after that id. Live events are pushed by
the process's EventHub (api/event_hub.py); the table is read only for a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...adapters.sql.events import TERMINAL_KINDS, Event
from ...core.errors import InvalidRequest
from ...core.statuses import Status
from ..deps import ContainerDep, Reader
from ..event_hub import EventHub, Subscription
from ..params import EVENT_ID_REGEX
from ..schemas import AUTH_ERRORS, error_responses
from ..stream_slots import RENEW_EVERY_S, StreamSlot, take_stream_slot

router = APIRouter(tags=["events"], responses=AUTH_ERRORS)

PAGE = 500
PING_S = 15

_STREAM = {"content": {"text/event-stream": {}},
           "description": "`id:`, `event: <kind>`, `data: <event JSON>` per event"}

Backlog = Callable[[int, int | None], list[Event]]


def _after(last_event_id: str | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return None
    try:
        value = int(last_event_id.strip())
    except ValueError:
        raise InvalidRequest("Last-Event-ID: not an event id (a whole number)") from None
    if value < 0:
        raise InvalidRequest("Last-Event-ID: not an event id (a whole number)")
    return value


def _encode(event: Event) -> bytes:
    """The event as one SSE message (bytes, as sse-starlette writes them)."""
    return ServerSentEvent(data=json.dumps(event, separators=(",", ":")), event=event["kind"],
                           id=str(event["id"])).encode()


def _error(code: str, message: str) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps({"code": code, "message": message}), event="error")


async def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.container.event_hub
    await hub.start()
    return hub


async def _stream(hub: EventHub, sub: Subscription, *, after: int | None, backlog: Backlog,
                  retry_ms: int, ends_with_terminal: bool, complete: bool,
                  slot: StreamSlot) -> AsyncIterator[ServerSentEvent | bytes]:
    """``complete``: the job had already ended when the stream opened; send what is left of
    its history, without waiting for live events. The hub re-checks the stream's API key
    (``sub.revoked``): a revoked key ends it with an ``error`` event."""
    try:
        yield ServerSentEvent(comment="tidegate events", retry=retry_ms)
        last = sub.head if after is None else after
        while True:
            upto = None if complete else sub.head
            while True:  # the backlog, from the table
                page = await asyncio.to_thread(backlog, last, upto)
                for event in page:
                    yield hub.wire(event, _encode)
                    last = event["id"]
                    if ends_with_terminal and event["kind"] in TERMINAL_KINDS:
                        return
                if len(page) < PAGE:
                    break
            if complete:
                return
            while True:  # live, from the hub
                if sub.revoked:
                    yield _error("unauthorized", "the API key was revoked")
                    return
                if slot.renew_due():
                    await run_in_threadpool(slot.renew)
                if sub.queue.empty():
                    if sub.overflowed:
                        break  # too slow for the queue: read the gap from the table
                    sub.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sub.wake.wait(), timeout=RENEW_EVERY_S)
                    continue
                event = sub.queue.get_nowait()
                if event["id"] <= last:
                    continue
                yield hub.wire(event, _encode)
                last = event["id"]
                if ends_with_terminal and event["kind"] in TERMINAL_KINDS:
                    return
            hub.resubscribe(sub)
    finally:
        hub.unsubscribe(sub)
        await run_in_threadpool(slot.give)


def _response(request: Request, content: AsyncIterator[ServerSentEvent | bytes],
              ) -> EventSourceResponse:
    return EventSourceResponse(content, ping=PING_S,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses={200: _STREAM, **error_responses(**{
                "404": "no such job for this tenant",
                "422": "Last-Event-ID is not an event id",
                "429": "the tenant has its maximum of event streams open"})})
async def job_events(job_id: str, request: Request, container: ContainerDep, caller: Reader,
                     last_event_id: Annotated[str, Header(
                         pattern=EVENT_ID_REGEX,
                         description="resume strictly after this event id")] = "",
                     ) -> EventSourceResponse:
    """Every event of the job, from its start (or after `Last-Event-ID`), then live ones;
    the stream ends after the terminal event (`succeeded`, `failed` or `cancelled`)."""
    after = _after(last_event_id)
    hub = await _hub(request)
    sub = hub.subscribe(lambda e: e["job_id"] == job_id, job_id=job_id, key_id=caller.key_id)
    try:
        # Read after subscribing: if it has not ended now, its end comes through the hub.
        job = await run_in_threadpool(container.service.get, job_id, tenant=caller.owner)
        slot = await run_in_threadpool(take_stream_slot, container, caller.tenant)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    log = container.event_log
    settings = container.settings
    return _response(request, _stream(
        hub, sub, after=after or 0,
        backlog=lambda a, u: log.for_job(job_id, after_id=a, upto_id=u, limit=PAGE),
        retry_ms=settings.stream_retry_ms, ends_with_terminal=True,
        complete=job.status.terminal, slot=slot))


@router.get("/v1/events", response_class=EventSourceResponse,
            responses={200: _STREAM, **error_responses(**{
                "422": "invalid status, or Last-Event-ID is not an event id",
                "429": "the tenant has its maximum of event streams open"})})
async def tenant_events(request: Request, container: ContainerDep, caller: Reader,
                        type: Annotated[str | None, Query(description="only this job type")]
                        = None,
                        status: Annotated[Status | None, Query(
                            description="only events that leave a job in this status")] = None,
                        last_event_id: Annotated[str, Header(
                            pattern=EVENT_ID_REGEX,
                            description="resume strictly after this event id")] = "",
                        ) -> EventSourceResponse:
    """All events of the caller's jobs (an admin key: every tenant's), live (or after
    `Last-Event-ID`, then live). Never ends by itself."""
    after = _after(last_event_id)
    owner = caller.owner
    if status is not None and status not in {s.value for s in Status}:
        raise InvalidRequest(f"status: one of {', '.join(s.value for s in Status)}")
    if type is not None:
        container.registry.get(type)  # the schema's enum: an unknown type is a mistake

    def match(e: Event) -> bool:
        return ((owner is None or e["tenant"] == owner) and (type is None or e["type"] == type)
                and (status is None or e["status"] == status))

    # The slot counts against the caller's own tenant, whichever tenants it watches.
    slot = await run_in_threadpool(take_stream_slot, container, caller.tenant)
    hub = await _hub(request)
    sub = hub.subscribe(match, tenant=owner, key_id=caller.key_id)
    log = container.event_log
    settings = container.settings
    return _response(request, _stream(
        hub, sub, after=after,
        backlog=lambda a, u: log.for_tenant(owner, after_id=a, upto_id=u, type=type,
                                            status=status, limit=PAGE),
        retry_ms=settings.stream_retry_ms, ends_with_terminal=False,
        complete=False, slot=slot))
