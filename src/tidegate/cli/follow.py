"""`--wait`: follow a job's event stream with a progress bar, reconnecting by itself.

A dropped connection is resumed with `Last-Event-ID` (after the server's `retry:` hint), so no
event is missed or shown twice; the stream ends with the job's terminal event, and the job
itself is then read once for its result.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import connect_sse
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .common import console, fail

if TYPE_CHECKING:
    from .client import Api

TERMINAL_KINDS = {"succeeded", "failed", "cancelled"}
PING_MARGIN_S = 30.0  # the server pings every 15 s: silence longer than this is a dead link


def follow(api: Api, job_id: str, timeout_s: float | None) -> dict[str, Any]:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_id: int | None = None
    retry_s = 1.0
    with Progress(TextColumn("[bold]{task.fields[state]:<9}"), BarColumn(),
                  TaskProgressColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                  console=console, transient=False) as bar:
        task = bar.add_task("", total=100, state="queued")
        while True:
            read_s = PING_MARGIN_S
            if deadline is not None:
                read_s = max(0.1, min(read_s, deadline - time.monotonic()))
            headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
            try:
                with connect_sse(api.http, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                 timeout=httpx.Timeout(read_s, connect=10)) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        api.check(source.response)
                    for sse in source.iter_sse():
                        if sse.retry:
                            retry_s = sse.retry / 1000
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        if sse.event == "error":
                            fail(f"the event stream stopped: {event.get('message')} "
                                 f"({event.get('code')})")
                        last_id = int(sse.id) if sse.id else last_id
                        _show(bar, task, event)
                        if event["kind"] in TERMINAL_KINDS:
                            return dict(api.call("GET", f"/v1/jobs/{job_id}"))
                        _check_deadline(deadline, job_id, event["status"], timeout_s)
                # The server ended the stream without a terminal event (it was restarted).
            except httpx.TransportError:
                pass  # dropped, or silent past the ping: resume after the last event
            _check_deadline(deadline, job_id, "running", timeout_s)
            time.sleep(retry_s)


def _show(bar: Progress, task: Any, event: dict[str, Any]) -> None:
    detail = event.get("detail") or {}
    fields: dict[str, Any] = {"state": event["status"] or ""}
    if event["kind"] == "progress":
        fields.update(completed=detail.get("percent", 0),
                      description=escape(str(detail.get("message") or "")))
    elif event["kind"] == "succeeded":
        fields["completed"] = 100
    elif event["kind"] in ("retrying", "quota_wait"):
        why = detail.get("reason") or detail.get("lane") or ""
        fields["description"] = escape(f"{event['kind']}: {why}")
    bar.update(task, **fields)


def _check_deadline(deadline: float | None, job_id: str, state: str,
                    timeout_s: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        fail(f"job {job_id} still {state} after {timeout_s:.0f}s "
             "(it keeps running; check with `tidegate status`)", code=3)
