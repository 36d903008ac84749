"""Provider-neutral LLM request/response types and the error classes every provider maps into.

Providers (``tidegate.providers.*``) turn an :class:`LLMRequest` into an :class:`LLMResponse`
through the vendor's official SDK, and translate every SDK exception into exactly one of the
:class:`ProviderError` subclasses below, so retry and rate-limit policy lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class LLMRequest:
    model: str  # the vendor's model name, without the "provider:" prefix
    messages: tuple[Message, ...]
    max_output_tokens: int = 512
    temperature: float | None = None
    timeout_s: float = 60.0
    json_output: bool = False  # ask for a JSON object where the vendor supports it
    # The system prompt is shared by many calls: let the provider cache it where it must be
    # asked to (Anthropic's cache_control); OpenAI and Gemini cache long prefixes by themselves.
    cache_prefix: bool = False


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the provider advertised in its response headers; ``None`` where it said nothing."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    limit_input_tokens: int | None = None
    remaining_input_tokens: int | None = None
    limit_output_tokens: int | None = None
    remaining_output_tokens: int | None = None
    retry_after_s: float | None = None
    # The resets are durations the provider measured (OpenAI's "1.5s"), not instants on its
    # clock read against ours to the second (Anthropic's RFC 3339): only then do they say
    # what a whole remaining count rounds away.
    resets_exact: bool = True


@dataclass(frozen=True, slots=True)
class LLMResponse:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    provider: str
    latency_s: float
    rate_limits: RateLimitInfo = field(default_factory=RateLimitInfo)
    simulated: bool = False
    # False when the provider sent no usage and the token counts are our own estimate
    # (some OpenAI-compatible servers): the lane's calibration must not learn from those.
    usage_reported: bool = True
    # Of input_tokens: read from the provider's prompt cache (billed at a discount), and
    # written to it (Anthropic bills writes at a premium).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    vectors: list[list[float]]
    input_tokens: int
    model: str
    provider: str
    latency_s: float
    rate_limits: RateLimitInfo = field(default_factory=RateLimitInfo)
    simulated: bool = False
    # False when the provider sent no usage and the token counts are our own estimate
    # (some OpenAI-compatible servers): the lane's calibration must not learn from those.
    usage_reported: bool = True


class ProviderError(Exception):
    """Root of every error a provider call can end in. ``code`` is the job error code."""

    code = "provider_error"
    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None,
                 rate_limits: RateLimitInfo | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.rate_limits = rate_limits or RateLimitInfo()

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class RateLimited(ProviderError):
    """429: the lane is over quota. Not a failed attempt; pause the lane for ``retry_after_s``."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class TransientError(ProviderError):
    """5xx, 529 overloaded, timeouts, connection resets, malformed bodies: retry with backoff."""

    code = "provider_unavailable"
    retryable = True


class ContextTooLong(ProviderError):
    """The prompt does not fit the model's context window: retrying cannot help."""

    code = "context_too_long"


class PermanentError(ProviderError):
    """Bad request, authentication, permission, unknown model: fail the job at once."""

    code = "provider_rejected"


class InvalidRequest(PermanentError):
    """The request could not even be built (a model name that makes a bad URL, say)."""

    code = "invalid_request"
