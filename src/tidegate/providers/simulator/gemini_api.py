"""Gemini wire format: /v1beta/models/{model}:generateContent (also under /v1), :streamGenerateContent (SSE),
:embedContent and :batchEmbedContents. Real Gemini sends no rate-limit headers, so neither do
we; a 429 carries ``google.rpc.RetryInfo`` in the body (and ``retry-after``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tidegate.providers.simulator.engine import Call, Completion, SimFailure, SimState, chunk_text
from tidegate.providers.simulator.vectors import embed_text
from tidegate.providers.simulator.wire import (
    json_response,
    malformed_response,
    paced_stream,
    read_json,
    retry_after_value,
    sse,
    wait_like_a_model,
)

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 529: "UNAVAILABLE"}


def error(f: SimFailure, has_key: bool = True) -> Response:
    status, msg, details = f.status, f.message, []
    if f.kind == "auth":  # Google answers 400 API_KEY_INVALID, or 403 with no key at all
        status = 400 if has_key else 403
        msg = ("API key not valid. Please pass a valid API key." if has_key else
               "Method doesn't allow unregistered callers. Please use an API key.")
        details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID" if has_key else "API_KEY_MISSING"}]
    elif f.kind == "context":
        used, limit = f.message.split(" > ")
        msg = f"The input token count ({used}) exceeds the maximum number of tokens allowed ({limit})."
    elif f.kind in ("rate_limit", "never_fits"):
        msg = "Resource has been exhausted (e.g. check quota)."
        if f.kind == "never_fits":
            msg = "Request too large: it exceeds the per-minute token quota."
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after_value(f.retry_after_s or 0)}s"}]
    elif f.kind == "server":
        msg = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    elif f.kind in ("unavailable", "overloaded"):
        msg = "The model is overloaded. Please try again later."
    headers = {}
    if status == 429 and f.retry_after_s is not None:
        headers["retry-after"] = retry_after_value(f.retry_after_s)
    body = {"error": {"code": status, "message": msg, "status": _STATUS.get(status, "UNKNOWN"),
                      **({"details": details} if details else {})}}
    return json_response(body, status, headers)


def key_of(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


def parts_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts") or []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    return d.get(camel, d.get(snake))


async def dispatch(request: Request, state: SimState) -> Response:
    """``/v1beta/models/{model}:{method}``: one route, because the method follows a colon."""
    path = request.path_params["rest"]
    model, _, method = path.rpartition(":")
    model = model.removeprefix("models/")
    handler = {"generateContent": generate, "streamGenerateContent": generate,
               "embedContent": embed, "batchEmbedContents": embed}.get(method)
    if handler is None or not model:
        return error(SimFailure(404, "not_found", f"method {method!r} not found"))
    return await handler(request, state, model, method)


def generate_call(body: dict[str, Any] | None, key: str | None, model: str,
                  state: SimState) -> tuple[Call, str] | None:
    """The call a generateContent body asks for and its system text; None if not one."""
    if body is None or not isinstance(body.get("contents"), list):
        return None
    texts = [parts_text(_get(body, "systemInstruction", "system_instruction"))]
    texts += [parts_text(c) for c in body["contents"]]
    gen = _get(body, "generationConfig", "generation_config") or {}
    max_tokens = int(_get(gen, "maxOutputTokens", "max_output_tokens") or 8192)
    json_mode = _get(gen, "responseMimeType", "response_mime_type") == "application/json"
    call = Call("gemini", key, model, "\n".join(t for t in texts if t),
                sum(state.tokens(t) for t in texts), max_tokens, json_mode)
    return call, texts[0]


def reply(model: str, rid: str, text: str, finish_reason: str | None,
          usage_md: dict[str, int]) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish_reason:
        cand["finishReason"] = finish_reason
    return {"candidates": [cand], "usageMetadata": usage_md, "modelVersion": model,
            "responseId": rid}


def answer_of(state: SimState, call: Call, system: str,
              comp: Completion) -> tuple[str, str, dict[str, int]]:
    """(response id, finish reason, usage metadata) of an answered call."""
    finish = "MAX_TOKENS" if comp.truncated else "STOP"
    # Gemini's implicit caching: a long system instruction seen lately is served from cache.
    cached, _ = state.prompt_cache(call, system)
    usage = {"promptTokenCount": call.input_tokens, "candidatesTokenCount": comp.output_tokens,
             "totalTokenCount": call.input_tokens + comp.output_tokens,
             **({"cachedContentTokenCount": cached} if cached else {})}
    return f"sim{state.next_id()}", finish, usage


async def generate(request: Request, state: SimState, model: str, method: str) -> Response:
    body = await read_json(request)
    key = key_of(request)
    parsed = generate_call(body, key, model, state)
    if parsed is None:
        return error(SimFailure(400, "bad_request", "contents is required"))
    call, system = parsed
    stream = method == "streamGenerateContent"
    try:
        _adm, fault = state.admit(call)
    except SimFailure as f:
        return error(f, has_key=bool(key))
    if fault == "hang":
        await state.hang(request)
        return Response(status_code=504)
    if fault == "malformed":
        return malformed_response({}, stream)
    comp = state.complete(call)
    rid, finish, usage = answer_of(state, call, system, comp)
    if not stream:
        await wait_like_a_model(comp)
        return json_response(reply(model, rid, comp.text, finish, usage))
    pieces = chunk_text(comp.text, words_per_chunk=6)
    last = len(pieces) - 1
    partial = {"promptTokenCount": call.input_tokens, "totalTokenCount": call.input_tokens}
    return paced_stream(
        comp, pieces,
        lambda i, p: [sse(reply(model, rid, p, finish if i == last else None,
                                usage if i == last else partial))],
        [], [] if pieces else [sse(reply(model, rid, "", finish, usage))], {})


async def embed(request: Request, state: SimState, model: str, method: str) -> Response:
    body = await read_json(request)
    if body is None:
        return error(SimFailure(400, "bad_request", "invalid JSON body"))
    reqs = body.get("requests") if method == "batchEmbedContents" else [body]
    if not isinstance(reqs, list) or not reqs:
        return error(SimFailure(400, "bad_request", "requests is required"))
    if len(reqs) > 100:
        return error(SimFailure(400, "bad_request", "at most 100 requests in one batch"))
    texts = [parts_text(r.get("content")) for r in reqs if isinstance(r, dict)]
    key = key_of(request)
    call = Call("gemini", key, model, "", sum(state.tokens(t) for t in texts))
    try:
        _adm, fault = state.admit(call)
    except SimFailure as f:
        return error(f, has_key=bool(key))
    if fault == "hang":
        await state.hang(request)
        return Response(status_code=504)
    if fault == "malformed":
        return malformed_response({}, False)
    state.count_embedding(call)
    dims = [int(_get(r, "outputDimensionality", "output_dimensionality")
                or state.config.embedding_dims) for r in reqs]
    vectors = [{"values": embed_text(t, model, d)} for t, d in zip(texts, dims, strict=True)]
    if method == "embedContent":
        return json_response({"embedding": vectors[0]})
    return json_response({"embeddings": vectors})
