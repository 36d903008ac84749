"""The OpenAI-compatible front door: `POST /v1/chat/completions` and `POST /v1/embeddings`.

An application points its OpenAI SDK's ``base_url`` at ``<tidegate>/v1`` and its API key at a
Tidegate key. Each call becomes a `high` priority job (`chat_completion`, `embeddings`), so it
shares the lane's quota with every worker, waits in the limiter instead of meeting a 429 from
the provider, follows the fallback chain, and counts in usage, budgets, the dashboard and the
metrics. The route waits for the job's end (the event hub wakes it) and answers in OpenAI's
format. A call not answered within TIDEGATE_OPENAI_MAX_WAIT_S (or the request's
``X-Tidegate-Max-Wait`` seconds) is cancelled and answered 429 with ``Retry-After``.

``stream: true`` is answered as an OpenAI event stream once the completion is done (the job
runs on a worker; the text is not relayed token by token).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import struct
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...adapters.metrics import count_submission
from ...core.errors import AlreadyTerminal, InvalidInput
from ...core.events import TERMINAL_KINDS
from ...core.models import Job
from ..deps import ContainerDep, Submitter
from ..openai_errors import OpenAIError, error_response, for_job
from ..openapi import json_body

router = APIRouter(tags=["openai"])


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error of these routes, in OpenAI's shape."""

    error: OpenAIErrorDetail


def _documented(**described: str) -> dict[int | str, dict[str, Any]]:
    return {int(k): {"model": OpenAIErrorBody, "description": v} for k, v in described.items()}


_ERRORS = _documented(**{
    "400": "invalid request: not JSON, a field it cannot honour, a model not allowed",
    "401": "missing, invalid, expired or revoked Tidegate API key",
    "403": "the key's scope does not allow submitting, or the tenant may not use `high`",
    "413": "the body is larger than TIDEGATE_MAX_BODY_BYTES",
    "422": "invalid request (never: answered 400, as OpenAI does)",
    "429": "not answered within the wait (see `Retry-After`), or a tenant limit "
           "(`rate_limit_exceeded`, `insufficient_quota` for budgets)",
    "502": "the job failed (provider errors after retries and fallbacks)",
    "503": "database unavailable"})

MAX_WAIT_HEADER = "X-Tidegate-Max-Wait"
RECHECK_S = 2.0  # the row is read again this often, in case a wake-up was missed


class _Part(BaseModel):
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_call_id...: not used

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] | None = None


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request Tidegate runs; fields it cannot honour
    (tools, n > 1, images, logprobs) are refused rather than silently ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


def _parse(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise OpenAIError(400, f"{param}: {first['msg']}", param=param) from None


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise OpenAIError(400, "the body is not valid JSON") from None


def _spec(model: str, container: ContainerDep) -> str:
    """An OpenAI model name as a Tidegate model spec: `gpt-4o-mini` is `openai:gpt-4o-mini`;
    a `provider:model` spec or an alias of the LLM settings is taken as it is."""
    if ":" in model or model in container.llm_config.aliases:  # type: ignore[attr-defined]
        return model
    return f"openai:{model}"


def _text(message: _Message) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    if any(p.type != "text" for p in message.content):
        raise OpenAIError(400, "only text content parts are supported", param="messages")
    return "".join(p.text or "" for p in message.content)


def _wait_s(container: ContainerDep, header: str | None) -> float:
    if header is None:
        return float(container.settings.openai_max_wait_s)
    try:
        value = float(header)
    except ValueError:
        raise OpenAIError(400, f"{MAX_WAIT_HEADER}: a number of seconds") from None
    if not 0 < value <= 3600:
        raise OpenAIError(400, f"{MAX_WAIT_HEADER}: between 0 and 3600 seconds")
    return value


def _submit(container: ContainerDep, caller: Submitter, type: str, input: dict[str, Any],
            wait_s: float) -> Job:
    try:
        job, created = container.service.submit(
            tenant=caller.tenant, type=type, input=input, priority="high",
            metadata={"via": "openai"}, deadline_s=wait_s)
    except InvalidInput as exc:
        param = "model" if "model" in exc.message else None
        raise OpenAIError(400, exc.message, param=param,
                          code="model_not_found" if param else None) from None
    count_submission(job, created)
    return job


async def _finished(request: Request, container: ContainerDep, job: Job,
                    wait_s: float) -> Job | None:
    """The job once it ended, or None after ``wait_s`` (or if the caller went away)."""
    hub = request.app.state.container.event_hub
    await hub.start()
    sub = hub.subscribe(lambda e: e["kind"] in TERMINAL_KINDS, job_id=job.id)
    deadline = time.monotonic() + wait_s
    try:
        while True:  # read after subscribing: an end from now on wakes us
            row = await run_in_threadpool(container.service.get, job.id, tenant=job.tenant)
            if row.status.terminal:
                return row
            left = deadline - time.monotonic()
            if left <= 0 or await request.is_disconnected():
                return None
            sub.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), timeout=min(left, RECHECK_S))
    finally:
        hub.unsubscribe(sub)


async def _give_up(container: ContainerDep, job: Job, lane: str | None,
                   wait_s: float) -> JSONResponse:
    """Not answered in time: cancel the job (nobody waits for it) and say when to retry."""
    with contextlib.suppress(AlreadyTerminal):
        await run_in_threadpool(container.service.cancel, job.id, tenant=job.tenant)
    retry_after = await run_in_threadpool(_retry_after, container, lane)
    return error_response(OpenAIError(
        429, f"not answered within {wait_s:g}s: lane {lane or '?'} is at its limit "
        f"(Tidegate job {job.id}, cancelled); retry after {retry_after}s",
        code="rate_limit_exceeded", retry_after_s=retry_after))


def _retry_after(container: ContainerDep, lane: str | None) -> int:
    """Seconds until the lane likely has room: its pause, or its queue at its request rate."""
    if lane is None:
        return 1
    try:
        snap = container.limiter.snapshot(lane)  # type: ignore[attr-defined]
    except Exception:  # an estimate only: Redis trouble must not turn a 429 into a 500
        return 1
    paused = max(0.0, (snap.paused_until or 0.0) - time.time())
    rpm = snap.limits.rpm
    queued = sum(snap.waiting.values())
    return max(1, math.ceil(max(paused, queued * 60 / rpm if rpm else 1.0)))


def _lane(container: ContainerDep, spec: str) -> str | None:
    try:
        return str(container.llm_config.check_model(spec))  # type: ignore[attr-defined]
    except Exception:
        return None


def _headers(job: Job) -> dict[str, str]:
    result = job.result if isinstance(job.result, dict) else {}
    return {"X-Tidegate-Job-Id": job.id, "X-Tidegate-Lane": str(result.get("lane", ""))}


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest), responses={
    200: {"description": "OpenAI's chat completion (or, with `stream`, its event stream)"},
    **_ERRORS})
async def chat_completions(request: Request, container: ContainerDep, caller: Submitter,
                           max_wait: Annotated[str | None, Header(
                               alias=MAX_WAIT_HEADER, description="seconds this call may "
                               "wait (default: TIDEGATE_OPENAI_MAX_WAIT_S)")] = None,
                           ) -> Any:
    """OpenAI's `chat.completions.create`, run as a `high` priority `chat_completion` job
    through the shared limiter and fallback chain. Bearer: a Tidegate API key."""
    req: ChatCompletionRequest = _parse(ChatCompletionRequest, await _body(request))
    if req.n not in (None, 1):
        raise OpenAIError(400, "n > 1 is not supported", param="n")
    if req.tools or req.functions:
        raise OpenAIError(400, "tools and functions are not supported", param="tools")
    if req.logprobs:
        raise OpenAIError(400, "logprobs are not supported", param="logprobs")
    wait_s = _wait_s(container, max_wait)
    spec = _spec(req.model, container)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": _text(m)}
                for m in req.messages]
    json_output = (req.response_format or {}).get("type") in ("json_object", "json_schema")
    job_input: dict[str, Any] = {"messages": [m for m in messages if m["content"]],
                                 "model": spec, "json_output": json_output}
    if req.max_completion_tokens or req.max_tokens:
        job_input["max_output_tokens"] = req.max_completion_tokens or req.max_tokens
    if req.temperature is not None:
        job_input["temperature"] = req.temperature
    job = await run_in_threadpool(_submit, container, caller, "chat_completion", job_input,
                                  wait_s)
    done = await _finished(request, container, job, wait_s)
    if done is None:
        return await _give_up(container, job, _lane(container, spec), wait_s)
    if done.status.value != "succeeded":
        raise for_job(done)
    result: dict[str, Any] = done.result
    created = int(done.created_at.timestamp())
    usage = {"prompt_tokens": result["input_tokens"],
             "completion_tokens": result["output_tokens"],
             "total_tokens": result["input_tokens"] + result["output_tokens"]}
    model = result["model"].partition(":")[2]
    cid = f"chatcmpl-{done.id}"
    if not req.stream:
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                         "finish_reason": result["finish_reason"], "logprobs": None}],
            "usage": usage}, headers=_headers(done))
    include_usage = bool((req.stream_options or {}).get("include_usage"))
    return StreamingResponse(
        _chunks(cid, created, model, result["text"], result["finish_reason"],
                usage if include_usage else None),
        media_type="text/event-stream",
        headers={**_headers(done), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _chunks(cid: str, created: int, model: str, text: str, finish: str,
                  usage: dict[str, int] | None) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": reason}], **extra}
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\S+\s*|\s+", text):  # word by word, whitespace kept
        yield chunk({"content": piece})
    yield chunk({}, finish)
    if usage is not None:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage}
        yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()
    yield b"data: [DONE]\n\n"


@router.post("/v1/embeddings", openapi_extra=json_body(EmbeddingRequest), responses={
    200: {"description": "OpenAI's embeddings list"}, **_ERRORS})
async def embeddings(request: Request, container: ContainerDep, caller: Submitter,
                     max_wait: Annotated[str | None, Header(alias=MAX_WAIT_HEADER)] = None,
                     ) -> Any:
    """OpenAI's `embeddings.create`, run as a `high` priority `embeddings` job."""
    req: EmbeddingRequest = _parse(EmbeddingRequest, await _body(request))
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise OpenAIError(400, "input: at least one text", param="input")
    wait_s = _wait_s(container, max_wait)
    spec = _spec(req.model, container)
    job = await run_in_threadpool(_submit, container, caller, "embeddings",
                                  {"texts": texts, "model": spec}, wait_s)
    done = await _finished(request, container, job, wait_s)
    if done is None:
        return await _give_up(container, job, _lane(container, spec), wait_s)
    if done.status.value != "succeeded":
        raise for_job(done)
    result: dict[str, Any] = done.result

    def encoded(vector: list[float]) -> list[float] | str:
        if req.encoding_format == "float":
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

    tokens = result["usage"]["input_tokens"]
    return JSONResponse({
        "object": "list", "model": result["model"].partition(":")[2],
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)}
                 for i, v in enumerate(result["vectors"])],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, headers=_headers(done))
