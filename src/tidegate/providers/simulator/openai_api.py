"""OpenAI wire format: /v1/chat/completions (incl. SSE), /v1/embeddings, /v1/models."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator.engine import Call, Completion, SimFailure, SimState, chunk_text
from tidegate.providers.simulator.quota import BucketState
from tidegate.providers.simulator.vectors import embed_text, to_base64
from tidegate.providers.simulator.wire import (
    json_response,
    malformed_response,
    paced_stream,
    read_json,
    retry_after_value,
    sse,
    wait_like_a_model,
)

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "text-embedding-3-small",
          "text-embedding-3-large")
MAX_EMBED_INPUTS = 2048


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s", "1h2m3s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    seconds = round(seconds, 3)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    out = (f"{int(h)}h" if h else "") + (f"{int(m)}m" if h or m else "")
    return out + f"{s:g}s"


def rate_headers(buckets: tuple[BucketState, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for b in buckets:
        if b.name in ("requests", "tokens"):
            out[f"x-ratelimit-limit-{b.name}"] = str(b.limit)
            out[f"x-ratelimit-remaining-{b.name}"] = str(b.remaining)
            out[f"x-ratelimit-reset-{b.name}"] = go_duration(b.reset_s)
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def error(f: SimFailure, model: str) -> Response:
    msg, typ, code, param = f.message, "invalid_request_error", None, None
    if f.kind == "auth":
        msg, code = "Incorrect API key provided. You can find your API key in your account settings.", "invalid_api_key"
    elif f.kind == "context":
        used, limit = f.message.split(" > ")
        msg = (f"This model's maximum context length is {limit} tokens. However, your messages "
               f"resulted in {used} tokens. Please reduce the length of the messages.")
        code, param = "context_length_exceeded", "messages"
    elif f.kind in ("rate_limit", "never_fits"):
        which = f.admission.exhausted if f.admission else "requests"
        typ, code = ("requests" if which == "requests" else "tokens"), "rate_limit_exceeded"
        unit = "requests per min (RPM)" if which == "requests" else "tokens per min (TPM)"
        msg = (f"Request too large for {model} on {unit}." if f.kind == "never_fits" else
               f"Rate limit reached for {model} on {unit}. Please try again in "
               f"{retry_after_value(f.retry_after_s or 0)}s.")
    elif f.kind in ("server", "unavailable", "overloaded"):
        typ = "server_error"
        msg = ("The server had an error while processing your request." if f.kind == "server"
               else "The engine is currently overloaded, please try again later.")
    headers = rate_headers(f.admission.buckets) if f.admission else {}
    if f.status == 429 and f.retry_after_s is not None:
        headers["retry-after"] = retry_after_value(f.retry_after_s)
        headers["retry-after-ms"] = str(int(f.retry_after_s * 1000) + 1)
    body = {"error": {"message": msg, "type": typ, "param": param, "code": code}}
    return json_response(body, f.status, headers)


def key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None


def chat_call(body: dict[str, Any] | None, key: str | None, state: SimState) -> Call | None:
    """The call a chat completion body asks for; None when the body is not one."""
    model = str((body or {}).get("model") or "")
    if body is None or not isinstance(body.get("messages"), list) or not model:
        return None
    prompt = "\n".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    fmt = body.get("response_format") or {}
    return Call("openai", key, model, prompt, estimate_tokens_of(state, body["messages"]),
                max_tokens, json_mode=isinstance(fmt, dict) and fmt.get("type") == "json_object")


def chat_completion(state: SimState, call: Call, body: dict[str, Any],
                    comp: Completion) -> tuple[str, int, str, dict[str, Any]]:
    """(id, created, finish reason, usage) of an answered chat completion."""
    cid, created = f"chatcmpl-sim{state.next_id()}", int(time.time())
    finish = "length" if comp.truncated else "stop"
    # OpenAI caches long prompts' prefixes by itself; the first message stands for the prefix.
    first = body["messages"][0] if body["messages"] else {}
    cached, _ = state.prompt_cache(call, _text_of(first.get("content"))
                                   if isinstance(first, dict) else "")
    usage = {"prompt_tokens": call.input_tokens, "completion_tokens": comp.output_tokens,
             "total_tokens": call.input_tokens + comp.output_tokens,
             "prompt_tokens_details": {"cached_tokens": cached}}
    return cid, created, finish, usage


def completion_body(cid: str, created: int, model: str, comp: Completion, finish: str,
                    usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": comp.text,
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage, "system_fingerprint": "fp_sim"}


async def chat(request: Request, state: SimState) -> Response:
    body = await read_json(request)
    model = str((body or {}).get("model") or "")
    call = chat_call(body, key_of(request), state)
    if body is None or call is None:
        return error(SimFailure(400, "bad_request", "'model' and 'messages' are required"), model)
    stream = bool(body.get("stream"))
    try:
        adm, fault = state.admit(call)
    except SimFailure as f:
        return error(f, model)
    headers = {**rate_headers(adm.buckets), "x-request-id": f"req_sim_{state.next_id()}"}
    if fault == "hang":
        await state.hang(request)
        return Response(status_code=504)
    if fault == "malformed":
        return malformed_response(headers, stream)
    comp = state.complete(call)
    cid, created, finish, usage = chat_completion(state, call, body, comp)
    if not stream:
        await wait_like_a_model(comp)
        return json_response(completion_body(cid, created, model, comp, finish, usage),
                             headers=headers)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": "fp_sim",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish_reason}]})

    tail = [chunk({}, finish)]
    if include_usage:
        tail.append(sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [], "usage": usage}))
    tail.append(sse("[DONE]"))
    return paced_stream(comp, chunk_text(comp.text), lambda i, p: [chunk({"content": p})],
                        [chunk({"role": "assistant", "content": ""})], tail, headers)


def estimate_tokens_of(state: SimState, messages: list[Any]) -> int:
    return sum(state.tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


async def embeddings(request: Request, state: SimState) -> Response:
    body = await read_json(request)
    model = str((body or {}).get("model") or "")
    raw = (body or {}).get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if body is None or not model or not isinstance(inputs, list) or not inputs:
        return error(SimFailure(400, "bad_request", "'model' and 'input' are required"), model)
    if len(inputs) > MAX_EMBED_INPUTS:
        return error(SimFailure(400, "bad_request",
                                f"'input' must have at most {MAX_EMBED_INPUTS} items"), model)
    texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in inputs]
    call = Call("openai", key_of(request), model, "", sum(state.tokens(t) for t in texts))
    try:
        adm, fault = state.admit(call)
    except SimFailure as f:
        return error(f, model)
    headers = rate_headers(adm.buckets)
    if fault == "hang":
        await state.hang(request)
        return Response(status_code=504)
    if fault == "malformed":
        return malformed_response(headers, False)
    state.count_embedding(call)
    dims = int(body.get("dimensions") or state.config.embedding_dims)
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, t in enumerate(texts):
        vec = embed_text(t, model, dims)
        data.append({"object": "embedding", "index": i, "embedding": to_base64(vec) if b64 else vec})
    return json_response({"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": call.input_tokens,
                                    "total_tokens": call.input_tokens}}, headers=headers)


async def models(request: Request, state: SimState) -> Response:
    del request, state
    return json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "tidegate-simulator"}
        for m in MODELS]})

