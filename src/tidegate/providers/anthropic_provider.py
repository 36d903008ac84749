"""Anthropic's Messages API over the ``anthropic`` SDK."""

from __future__ import annotations

import inspect
import time
from collections.abc import Generator
from typing import Any

import anthropic

from tidegate.core.llm import LLMRequest, LLMResponse, RateLimitInfo
from tidegate.providers import abort
from tidegate.providers.base import TextStream, split_system
from tidegate.providers.errors import malformed, translate_errors
from tidegate.providers.headers import parse_rate_limit_headers
from tidegate.providers.tokens import estimate_messages_tokens, estimate_tokens

# Anthropic has no JSON mode; asking in the system prompt is the documented way.
JSON_INSTRUCTION = "Respond with JSON: a single JSON object and nothing else."


class AnthropicProvider:
    def __init__(self, api_key: str, base_url: str | None = None, *, name: str = "anthropic",
                 simulated: bool = False, client: anthropic.Anthropic | None = None) -> None:
        self.name = name
        self.simulated = simulated
        # SDK retries off (the runner retries, limiter-aware); no telemetry spans, because
        # their "content" mode would copy prompts into traces.
        extra: dict[str, Any] = {}
        if "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters:
            extra["open_telemetry"] = False
        if client is None:
            http = anthropic.DefaultHttpxClient()  # the SDK's own defaults
            abort.install(http)  # so that a cancelled job's call is cut off, not left to run
            client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                         http_client=http, **extra)
        self._client = client

    def _params(self, req: LLMRequest) -> dict[str, Any]:
        system, turns = split_system(req)
        if req.json_output and "json" not in (system or "").lower():
            system = f"{system}\n\n{JSON_INSTRUCTION}" if system else JSON_INSTRUCTION
        params: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_output_tokens,
            "messages": [{"role": role, "content": content} for role, content in turns],
            "timeout": req.timeout_s,
        }
        if system and req.cache_prefix:
            # Cache the prompt up to here: later calls with the same system prompt read it
            # at a tenth of the input price (if it is long enough for Anthropic to cache).
            params["system"] = [{"type": "text", "text": system,
                                 "cache_control": {"type": "ephemeral"}}]
        elif system:
            params["system"] = system
        if req.temperature is not None:
            params["temperature"] = req.temperature
        return params

    def complete(self, req: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        with translate_errors(self.name):
            raw = self._client.messages.with_raw_response.create(**self._params(req))
            limits = parse_rate_limit_headers(raw.headers)
            message = raw.parse()
            text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
            usage = message.usage
            if usage is None:
                raise malformed(self.name, "no usage")
        return LLMResponse(
            text=text, input_tokens=_input_tokens(usage), output_tokens=usage.output_tokens,
            model=message.model or req.model, provider=self.name,
            latency_s=time.monotonic() - started, rate_limits=limits, simulated=self.simulated,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", 0) or 0)

    def stream(self, req: LLMRequest) -> TextStream:
        started = time.monotonic()
        with translate_errors(self.name):
            raw = self._client.messages.with_raw_response.create(**self._params(req), stream=True)
            limits = parse_rate_limit_headers(raw.headers)
            events = raw.parse()
        return TextStream(self.name, self._deltas(req, events, limits, started))

    def _deltas(self, req: LLMRequest, events: Any, limits: RateLimitInfo,
                started: float) -> Generator[str, None, LLMResponse]:
        parts: list[str] = []
        input_tokens: int | None = None
        output_tokens: int | None = None
        model = req.model
        cache = (0, 0)
        try:
            for event in events:
                kind = getattr(event, "type", "")
                if kind == "message_start":
                    model = event.message.model or model
                    input_tokens = _input_tokens(event.message.usage)
                    cache = (getattr(event.message.usage, "cache_read_input_tokens", 0) or 0,
                             getattr(event.message.usage, "cache_creation_input_tokens", 0)
                             or 0)
                elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
                    parts.append(event.delta.text)
                    yield event.delta.text
                elif kind == "message_delta" and event.usage is not None:
                    output_tokens = event.usage.output_tokens  # cumulative, final in the last one
        finally:
            events.close()
        text = "".join(parts)
        return LLMResponse(
            text=text,
            input_tokens=input_tokens if input_tokens is not None
            else estimate_messages_tokens(req.messages),
            output_tokens=output_tokens if output_tokens is not None else estimate_tokens(text),
            model=model, provider=self.name, latency_s=time.monotonic() - started,
            rate_limits=limits, simulated=self.simulated, cache_read_tokens=cache[0],
            cache_write_tokens=cache[1])


def _input_tokens(usage: Any) -> int:
    """Billed input: fresh tokens plus cache writes and reads, which are input too."""
    total = getattr(usage, "input_tokens", 0) or 0
    for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        total += getattr(usage, extra, 0) or 0
    return total
