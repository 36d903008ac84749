"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, LiteLLM) by base URL."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, Literal

import openai

from tidegate.core.llm import EmbeddingResponse, LLMRequest, LLMResponse, RateLimitInfo
from tidegate.providers import abort
from tidegate.providers.base import TextStream, batches
from tidegate.providers.errors import malformed, translate_errors
from tidegate.providers.headers import parse_rate_limit_headers
from tidegate.providers.tokens import estimate_messages_tokens, estimate_tokens

OFFICIAL_HOST = "api.openai.com"


class OpenAIProvider:
    """Chat completions and embeddings over the ``openai`` SDK, with SDK retries off: retrying is
    the job runner's decision, made with the lane's shared limiter in the loop."""

    def __init__(self, api_key: str, base_url: str | None = None, *, name: str = "openai",
                 simulated: bool = False, embed_batch_size: int = 2048,
                 max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None,
                 client: openai.OpenAI | None = None) -> None:
        self.name = name
        self.simulated = simulated
        self.embed_batch_size = embed_batch_size
        if client is None:
            http = openai.DefaultHttpxClient()  # the SDK's own defaults
            abort.install(http)  # so that a cancelled job's call is cut off, not left to run
            client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                   http_client=http)
        self._client = client
        official = base_url is None or OFFICIAL_HOST in base_url
        # OpenAI's own newer models refuse "max_tokens"; many compatible servers only know it.
        self._max_param = max_tokens_param or ("max_completion_tokens" if official else "max_tokens")

    def _params(self, req: LLMRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": req.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            self._max_param: req.max_output_tokens,
            "timeout": req.timeout_s,
        }
        if req.temperature is not None:
            params["temperature"] = req.temperature
        if req.json_output:
            params["response_format"] = {"type": "json_object"}
        return params

    def complete(self, req: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        with translate_errors(self.name):
            raw = self._client.chat.completions.with_raw_response.create(**self._params(req))
            limits = parse_rate_limit_headers(raw.headers)
            completion = raw.parse()
            if not completion.choices:
                raise malformed(self.name, "no choices")
            text = completion.choices[0].message.content or ""
            usage = completion.usage
        return LLMResponse(
            text=text,
            input_tokens=usage.prompt_tokens if usage else estimate_messages_tokens(req.messages),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
            model=completion.model or req.model, provider=self.name,
            latency_s=time.monotonic() - started, rate_limits=limits, simulated=self.simulated,
            usage_reported=usage is not None, cache_read_tokens=_cached(usage))

    def stream(self, req: LLMRequest) -> TextStream:
        started = time.monotonic()
        with translate_errors(self.name):
            raw = self._client.chat.completions.with_raw_response.create(
                **self._params(req), stream=True, stream_options={"include_usage": True})
            limits = parse_rate_limit_headers(raw.headers)
            sdk_stream = raw.parse()
        return TextStream(self.name, self._deltas(req, sdk_stream, limits, started))

    def _deltas(self, req: LLMRequest, sdk_stream: Any, limits: RateLimitInfo,
                started: float) -> Generator[str, None, LLMResponse]:
        parts: list[str] = []
        usage = None
        model = req.model
        try:
            for chunk in sdk_stream:
                model = chunk.model or model
                if chunk.usage is not None:  # the last chunk when include_usage is on
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
                        yield choice.delta.content
        finally:
            sdk_stream.close()
        text = "".join(parts)
        return LLMResponse(
            text=text,
            input_tokens=usage.prompt_tokens if usage else estimate_messages_tokens(req.messages),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
            model=model, provider=self.name, latency_s=time.monotonic() - started,
            rate_limits=limits, simulated=self.simulated, usage_reported=usage is not None,
            cache_read_tokens=_cached(usage))

    def embed(self, texts: list[str], model: str, timeout_s: float = 60.0) -> EmbeddingResponse:
        """Embed any number of texts, ``embed_batch_size`` per request (OpenAI allows 2048)."""
        started = time.monotonic()
        vectors: list[list[float]] = []
        tokens = 0
        reported = True
        limits = RateLimitInfo()
        for batch in batches(texts, self.embed_batch_size):
            with translate_errors(self.name):
                # "float" explicitly: the SDK's base64 default is not understood by every
                # compatible server, and floats are what we hand on anyway.
                raw = self._client.embeddings.with_raw_response.create(
                    model=model, input=batch, encoding_format="float", timeout=timeout_s)
                limits = parse_rate_limit_headers(raw.headers)
                result = raw.parse()
                got = [d.embedding for d in sorted(result.data, key=lambda d: d.index)]
            if len(got) != len(batch):
                raise malformed(self.name, f"{len(got)} vectors for {len(batch)} inputs")
            vectors.extend(got)
            tokens += result.usage.prompt_tokens if result.usage else sum(map(estimate_tokens, batch))
            reported = reported and result.usage is not None
        return EmbeddingResponse(vectors=vectors, input_tokens=tokens, model=model,
                                 provider=self.name, latency_s=time.monotonic() - started,
                                 rate_limits=limits, simulated=self.simulated,
                                 usage_reported=reported)


def _cached(usage: Any) -> int:
    """Prompt tokens OpenAI answered from its automatic prefix cache (billed at a discount)."""
    details = getattr(usage, "prompt_tokens_details", None)
    return int(getattr(details, "cached_tokens", 0) or 0)
