"""Small HTTP helpers shared by the vendor modules."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tidegate.providers.simulator.engine import Completion

MALFORMED_JSON = '{"id": "broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


async def read_json(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` if it is not one (callers answer 400)."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def retry_after_value(seconds: float) -> str:
    """``retry-after`` is whole seconds: round *up* so a client that obeys it is admitted."""
    return str(max(1, math.ceil(seconds)))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def malformed_response(headers: dict[str, str], stream: bool, event: str | None = None) -> Response:
    """A 200 whose body does not decode: what a crashing proxy or a cut connection delivers.
    ``event`` names the SSE event for APIs (Anthropic) whose clients skip unnamed events."""
    if stream:
        head = f"event: {event}\n" if event else ""
        return Response(head + 'data: {"type": "' + (event or "chunk") + '", "choices": [{"del\n\n',
                        media_type="text/event-stream", headers=headers)
    return Response(MALFORMED_JSON, media_type="application/json", headers=headers)


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n"


def paced_stream(comp: Completion, pieces: list[str],
                 render: Callable[[int, str], list[str]], prologue: list[str],
                 epilogue: list[str], headers: dict[str, str]) -> StreamingResponse:
    """Stream ``prologue``, one rendered event list per piece, then ``epilogue``, paced like a
    model: the first byte after ``first_byte_s``, then ``per_token_s`` per token of each piece."""
    total_tokens = max(1, comp.output_tokens)
    total_chars = max(1, sum(len(p) for p in pieces))

    async def body() -> AsyncIterator[str]:
        await asyncio.sleep(comp.first_byte_s)
        for frame in prologue:
            yield frame
        for i, piece in enumerate(pieces):
            if comp.per_token_s:
                await asyncio.sleep(comp.per_token_s * total_tokens * len(piece) / total_chars)
            for frame in render(i, piece):
                yield frame
        for frame in epilogue:
            yield frame

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", **headers})


async def wait_like_a_model(comp: Completion) -> None:
    await asyncio.sleep(comp.first_byte_s + comp.per_token_s * comp.output_tokens)
