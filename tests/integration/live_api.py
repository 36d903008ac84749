"""A real API server (uvicorn, in a thread of this process) for tests that stream from it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from httpx_sse import connect_sse

from tidegate.config import Settings
from tidegate.embedded import free_port


@contextmanager
def live_api(settings: Settings) -> Iterator[str]:
    from tidegate.api.app import create_app

    with serve_in_thread(create_app(settings)) as url:
        yield url


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread of this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def read_events(client: httpx.Client, path: str, *, last_event_id: int | None = None,
                stop_after: int | None = None, until_kind: set[str] | None = None,
                timeout_s: float = 30, **params: Any) -> list[dict[str, Any]]:
    """Events of one connection, as parsed JSON (each checked against its SSE id and kind),
    until the server ends the stream, ``stop_after`` events, or one of ``until_kind``."""
    import json

    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    with connect_sse(client, "GET", path, headers=headers, params=params,
                     timeout=httpx.Timeout(timeout_s, connect=5)) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {path} still open after {timeout_s}s: {got}")
            if not sse.data:
                continue
            event = json.loads(sse.data)
            if sse.event == "error":
                got.append({"error": event})
                break
            assert sse.id == str(event["id"]) and sse.event == event["kind"], sse
            got.append(event)
            if stop_after is not None and len(got) >= stop_after:
                break
            if until_kind and event["kind"] in until_kind:
                break
    return got
