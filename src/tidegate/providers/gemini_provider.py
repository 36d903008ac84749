"""Google Gemini over the ``google-genai`` SDK (Gemini Developer API, API-key auth)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any

from google import genai
from google.genai import types

from tidegate.core.llm import (
    EmbeddingResponse,
    LLMRequest,
    LLMResponse,
    PermanentError,
    RateLimitInfo,
)
from tidegate.providers import abort
from tidegate.providers.base import TextStream, batches, split_system
from tidegate.providers.errors import malformed, translate_errors
from tidegate.providers.headers import parse_rate_limit_headers
from tidegate.providers.tokens import estimate_messages_tokens, estimate_tokens

_ROLES = {"user": "user", "assistant": "model"}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class GeminiProvider:
    def __init__(self, api_key: str, base_url: str | None = None, *, name: str = "gemini",
                 simulated: bool = False, embed_batch_size: int = 100,
                 client: genai.Client | None = None) -> None:
        self.name = name
        self.simulated = simulated
        self.embed_batch_size = embed_batch_size  # batchEmbedContents takes at most 100
        # attempts=1: no SDK retries (the runner retries, limiter-aware). vertexai=False so a
        # stray GOOGLE_GENAI_USE_VERTEXAI in the environment cannot reroute an API-key client.
        retry = getattr(types, "HttpRetryOptions", None)  # absent in SDKs that never retry
        options = types.HttpOptions(base_url=base_url,
                                    **({"retry_options": retry(attempts=1)} if retry else {}))
        if client is None:
            client = genai.Client(api_key=api_key, vertexai=False, http_options=options)
            # The SDK builds its own HTTP client (SSL, proxies); make its calls abortable.
            abort.install(getattr(getattr(client, "_api_client", None), "_httpx_client", None))
        self._client = client

    def _config(self, req: LLMRequest) -> types.GenerateContentConfig:
        system, _ = split_system(req)
        return types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=req.max_output_tokens,
            temperature=req.temperature,
            response_mime_type="application/json" if req.json_output else None,
            http_options=types.HttpOptions(timeout=_ms(req.timeout_s)),
        )

    @staticmethod
    def _contents(req: LLMRequest) -> list[types.Content]:
        _, turns = split_system(req)
        return [types.Content(role=_ROLES.get(role, "user"), parts=[types.Part(text=content)])
                for role, content in turns]

    def _read(self, resp: types.GenerateContentResponse) -> tuple[str, str | None]:
        """Text of the first candidate (thoughts excluded) and its finish reason."""
        if not resp.candidates:
            feedback = resp.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                raise PermanentError(f"{self.name}: prompt blocked ({feedback.block_reason})",
                                     provider=self.name, status=200)
            return "", None
        cand = resp.candidates[0]
        parts = cand.content.parts if cand.content and cand.content.parts else []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        return text, str(cand.finish_reason) if cand.finish_reason else None

    def _limits(self, resp: Any) -> RateLimitInfo:
        http = getattr(resp, "sdk_http_response", None)
        return parse_rate_limit_headers(getattr(http, "headers", None) or {})

    def complete(self, req: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        with translate_errors(self.name):
            resp = self._client.models.generate_content(
                model=req.model, contents=self._contents(req), config=self._config(req))
            text, finish = self._read(resp)
            if not text and finish is None:
                raise malformed(self.name, "no candidates")
        return self._response(req, resp, text, started)

    def _response(self, req: LLMRequest, last: Any, text: str, started: float) -> LLMResponse:
        usage = last.usage_metadata if last is not None else None
        prompt = usage.prompt_token_count if usage else None
        # Thinking tokens are billed as output, so they count as output here too.
        out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        return LLMResponse(
            text=text,
            input_tokens=prompt if prompt is not None else estimate_messages_tokens(req.messages),
            output_tokens=out or estimate_tokens(text),
            model=(last.model_version if last is not None else None) or req.model,
            provider=self.name, latency_s=time.monotonic() - started,
            rate_limits=self._limits(last), simulated=self.simulated,
            usage_reported=prompt is not None,
            # Gemini's implicit caching: prompt tokens served from its cache, at a discount.
            cache_read_tokens=(getattr(usage, "cached_content_token_count", 0) or 0)
            if usage else 0)

    def stream(self, req: LLMRequest) -> TextStream:
        started = time.monotonic()
        with translate_errors(self.name):
            chunks = self._client.models.generate_content_stream(
                model=req.model, contents=self._contents(req), config=self._config(req))
            # The SDK sends the request lazily; pull the first chunk now so HTTP errors
            # (429, 401, ...) are raised here, like the other providers do.
            first = next(chunks, None)
        return TextStream(self.name, self._deltas(req, first, chunks, started))

    def _deltas(self, req: LLMRequest, first: Any, chunks: Iterator[Any],
                started: float) -> Generator[str, None, LLMResponse]:
        parts: list[str] = []
        last = first
        try:
            chunk = first
            while chunk is not None:
                last = chunk
                text, _ = self._read(chunk)
                if text:
                    parts.append(text)
                    yield text
                chunk = next(chunks, None)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return self._response(req, last, "".join(parts), started)

    def embed(self, texts: list[str], model: str, timeout_s: float = 60.0) -> EmbeddingResponse:
        """Embed any number of texts, ``embed_batch_size`` per request."""
        started = time.monotonic()
        vectors: list[list[float]] = []
        limits = RateLimitInfo()
        config = types.EmbedContentConfig(http_options=types.HttpOptions(timeout=_ms(timeout_s)))
        for batch in batches(texts, self.embed_batch_size):
            with translate_errors(self.name):
                resp = self._client.models.embed_content(model=model, contents=batch, config=config)
                limits = self._limits(resp)
                got = [list(e.values or []) for e in resp.embeddings or []]
            if len(got) != len(batch) or any(not v for v in got):
                raise malformed(self.name, f"{len(got)} vectors for {len(batch)} inputs")
            vectors.extend(got)
        # The Gemini API reports no token counts for embeddings; estimate them for accounting.
        return EmbeddingResponse(vectors=vectors, input_tokens=sum(map(estimate_tokens, texts)),
                                 model=model, provider=self.name,
                                 latency_s=time.monotonic() - started, rate_limits=limits,
                                 simulated=self.simulated, usage_reported=False)
