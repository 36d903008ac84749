"""Anthropic wire format: POST /v1/messages (incl. SSE events) and its error shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator.engine import Call, Completion, SimFailure, SimState, chunk_text
from tidegate.providers.simulator.quota import BucketState
from tidegate.providers.simulator.wire import (
    json_response,
    malformed_response,
    paced_stream,
    read_json,
    retry_after_value,
    sse,
    wait_like_a_model,
)

_ERROR_TYPES = {"auth": "authentication_error", "context": "invalid_request_error",
                "bad_request": "invalid_request_error", "rate_limit": "rate_limit_error",
                "never_fits": "rate_limit_error", "server": "api_error",
                "unavailable": "api_error", "overloaded": "overloaded_error"}


def _instant(seconds_from_now: float) -> str:
    at = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def rate_headers(buckets: tuple[BucketState, ...]) -> dict[str, str]:
    by = {b.name: b for b in buckets}
    out: dict[str, str] = {}
    tokens = by.get("tokens") or min((b for n, b in by.items() if n.endswith("_tokens")),
                                     key=lambda b: b.remaining, default=None)
    for wire, b in (("requests", by.get("requests")), ("tokens", tokens),
                    ("input-tokens", by.get("input_tokens")),
                    ("output-tokens", by.get("output_tokens"))):
        if b is not None:
            p = f"anthropic-ratelimit-{wire}-"
            out |= {p + "limit": str(b.limit), p + "remaining": str(b.remaining),
                    p + "reset": _instant(b.reset_s)}
    return out


def error(f: SimFailure) -> Response:
    msg = f.message
    if f.kind == "auth":
        msg = "invalid x-api-key"
    elif f.kind == "context":
        used, limit = f.message.split(" > ")
        msg = f"prompt is too long: {used} tokens > {limit} maximum"
    elif f.kind == "rate_limit":
        msg = "This request would exceed your organization's rate limit. Please try again later."
    elif f.kind == "never_fits":
        msg = "This request is larger than your organization's per-minute token rate limit."
    elif f.kind == "overloaded":
        msg = "Overloaded"
    elif f.kind in ("server", "unavailable"):
        msg = "Internal server error"
    headers = rate_headers(f.admission.buckets) if f.admission else {}
    if f.status == 429 and f.retry_after_s is not None:
        headers["retry-after"] = retry_after_value(f.retry_after_s)
    body = {"type": "error", "error": {"type": _ERROR_TYPES.get(f.kind, "api_error"),
                                       "message": msg}}
    return json_response(body, f.status, headers)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _cached_prefix(system: Any) -> str:
    """The system text up to and including its last block marked ``cache_control``."""
    if not isinstance(system, list):
        return ""
    marked = [i for i, b in enumerate(system) if isinstance(b, dict) and b.get("cache_control")]
    return _text_of(system[:marked[-1] + 1]) if marked else ""


def key_of(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def message_call(body: dict[str, Any] | None, key: str | None, state: SimState) -> Call | None:
    """The call a Messages body asks for; None when the body is not one."""
    b = body or {}
    model = str(b.get("model") or "")
    if body is None or not model or not isinstance(b.get("messages"), list) \
            or not isinstance(b.get("max_tokens"), int):
        return None
    texts = [_text_of(b.get("system"))] + [_text_of(m.get("content")) for m in b["messages"]
                                           if isinstance(m, dict)]
    return Call("anthropic", key, model, "\n".join(t for t in texts if t),
                sum(state.tokens(t) for t in texts), b["max_tokens"])


def message_of(state: SimState, call: Call, body: dict[str, Any],
               comp: Completion) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the Message, its usage without output tokens) for an answered call."""
    read, written = state.prompt_cache(call, _cached_prefix(body.get("system")))
    # As Anthropic reports it: input_tokens is what was neither read from nor written to the
    # cache; the three together are the prompt.
    usage: dict[str, Any] = {"input_tokens": call.input_tokens - read - written,
                             "cache_creation_input_tokens": written,
                             "cache_read_input_tokens": read}
    stop = "max_tokens" if comp.truncated else "end_turn"
    message: dict[str, Any] = {"id": f"msg_sim{state.next_id()}", "type": "message",
                               "role": "assistant", "model": call.model,
                               "content": [{"type": "text", "text": comp.text}],
                               "stop_reason": stop, "stop_sequence": None,
                               "usage": {**usage, "output_tokens": comp.output_tokens}}
    return message, usage


async def messages(request: Request, state: SimState) -> Response:
    body = await read_json(request)
    call = message_call(body, key_of(request), state)
    if body is None or call is None:
        return error(SimFailure(400, "bad_request", "model, messages and max_tokens are required"))
    stream = bool(body.get("stream"))
    try:
        adm, fault = state.admit(call)
    except SimFailure as f:
        return error(f)
    headers = {**rate_headers(adm.buckets), "request-id": f"req_sim{state.next_id()}"}
    if fault == "hang":
        await state.hang(request)
        return Response(status_code=504)
    if fault == "malformed":
        return malformed_response(headers, stream, event="message_start")
    comp = state.complete(call)
    message, usage = message_of(state, call, body, comp)
    stop = message["stop_reason"]
    if not stream:
        await wait_like_a_model(comp)
        return json_response(message, headers=headers)
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    prologue = [sse({"type": "message_start", "message": start}, "message_start"),
                sse({"type": "content_block_start", "index": 0,
                     "content_block": {"type": "text", "text": ""}}, "content_block_start"),
                sse({"type": "ping"}, "ping")]
    epilogue = [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                     "usage": {"output_tokens": comp.output_tokens}}, "message_delta"),
                sse({"type": "message_stop"}, "message_stop")]

    def delta(i: int, piece: str) -> list[str]:
        return [sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")]

    return paced_stream(comp, chunk_text(comp.text), delta, prologue, epilogue, headers)
