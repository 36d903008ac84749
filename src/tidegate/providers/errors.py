"""The one place that turns any SDK or transport exception into a :class:`ProviderError`.

Retry and rate-limit policy upstream depends only on the four classes from ``tidegate.core.llm``:

* :class:`RateLimited`: 429 (``retry_after_s`` from the headers or the body's RetryInfo)
* :class:`TransientError`: 5xx, 529, 408, timeouts, connection errors, undecodable bodies
* :class:`ContextTooLong`: a 400/413 whose message says the prompt does not fit
* :class:`PermanentError`: every other 4xx (bad request, auth, permission, unknown model), and
  :class:`InvalidRequest` for a request the SDK could not build (a bad URL, a ``ValueError``):
  sending it again builds the same bad request

Messages carry the vendor's explanation but never request content (prompts are data).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx
import openai
import pydantic
from google.genai import errors as genai_errors

from tidegate.core.errors import public_summary
from tidegate.core.llm import (
    ContextTooLong,
    InvalidRequest,
    PermanentError,
    ProviderError,
    RateLimited,
    RateLimitInfo,
    TransientError,
)
from tidegate.providers.headers import parse_duration, parse_rate_limit_headers, suggested_wait_s

_CONTEXT_RE = re.compile(
    r"context[ _]length|context window|maximum context|too many tokens|prompt is too long"
    r"|input token count|exceeds the maximum number of tokens|input is too long"
    r"|reduce the length of the messages",
    re.IGNORECASE,
)
# OpenAI answers 429 for two things retrying cannot fix: an exhausted billing quota, and one
# request larger than the whole per-minute token limit. Pausing the lane would only stall it.
_NEVER_FITS_RE = re.compile(r"insufficient_quota|exceeded your current quota|request too large",
                            re.IGNORECASE)
_MAX_MESSAGE = 300

try:  # the SDKs' 3.x lines moved to the httpx2 fork; older lines use httpx itself
    import httpx2
    _HTTPX: tuple[Any, ...] = (httpx, httpx2)
except ImportError:  # pragma: no cover - depends on the installed SDK versions
    _HTTPX = (httpx,)

_TIMEOUTS: tuple[type[BaseException], ...] = (
    *(m.TimeoutException for m in _HTTPX), TimeoutError)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    *(m.TransportError for m in _HTTPX), *(m.DecodingError for m in _HTTPX), ConnectionError)
# Raised before anything is sent: the URL or the request itself cannot be made.
_UNBUILDABLE: tuple[type[BaseException], ...] = (
    *(m.InvalidURL for m in _HTTPX), *(m.UnsupportedProtocol for m in _HTTPX))
_MALFORMED_ERRORS: tuple[type[BaseException], ...] = (
    json.JSONDecodeError, UnicodeDecodeError, pydantic.ValidationError,
    openai.APIResponseValidationError, anthropic.APIResponseValidationError,
    *((genai_errors.UnknownApiResponseError,)
      if hasattr(genai_errors, "UnknownApiResponseError") else ()),
)


def malformed(provider: str, detail: str) -> TransientError:
    """A response we could not make sense of: the server or a proxy garbled it; try again."""
    return TransientError(f"{provider}: malformed response ({detail})", provider=provider)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _body_message(body: Any, fallback: str) -> str:
    """The human part of a vendor error body ({"error": {"message": ...}} in all three APIs)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return fallback


def _body_code(body: Any) -> str:
    """Vendor error codes/types joined, e.g. "context_length_exceeded invalid_request_error"."""
    if not isinstance(body, dict):
        return ""
    err = body.get("error", body)
    if not isinstance(err, dict):
        return ""
    return " ".join(str(err.get(k)) for k in ("code", "type", "status") if err.get(k))


def _google_retry_delay(body: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` ("12s") from a Gemini error body's details."""
    err = body.get("error", body) if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for d in details if isinstance(details, list) else []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            return parse_duration(str(d.get("retryDelay", "")))
    return None


# Gemini's QuotaFailure names the quota a 429 hit, e.g.
# "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" with quotaValue "15". Only per-minute
# quotas are rates the limiter can pace to; per-day ones are left to the pause.
_GOOGLE_QUOTA_FIELDS = (("InputTokensPerModelPerMinute", "limit_input_tokens"),
                        ("TokensPerModelPerMinute", "limit_tokens"),
                        ("RequestsPerMinute", "limit_requests"))


def _google_quota_limits(body: Any, limits: RateLimitInfo) -> RateLimitInfo:
    """``limits`` plus the per-minute quota values a Gemini 429's QuotaFailure names."""
    err = body.get("error", body) if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    found: dict[str, int] = {}
    for d in details if isinstance(details, list) else []:
        if not (isinstance(d, dict) and str(d.get("@type", "")).endswith("QuotaFailure")):
            continue
        for v in d.get("violations") or []:
            quota_id = str(v.get("quotaId", "")) if isinstance(v, dict) else ""
            try:
                value = int(str(v.get("quotaValue", "")))  # type: ignore[union-attr]
            except ValueError:
                continue
            for marker, name in _GOOGLE_QUOTA_FIELDS:
                if marker in quota_id and value > 0:
                    found.setdefault(name, value)
                    break
    return dataclasses.replace(limits, **found) if found else limits


def from_status(provider: str, status: int, message: str, *, body: Any = None,
                headers: Any = None) -> ProviderError:
    """Classify one HTTP error answer (status, vendor message, body, headers)."""
    limits = parse_rate_limit_headers(headers) if headers is not None else RateLimitInfo()
    code = _body_code(body)
    text = _short(f"{provider} {status}: {message}")
    kw: dict[str, Any] = {"provider": provider, "status": status, "rate_limits": limits}
    if status == 429 or "rate_limit" in code or "RESOURCE_EXHAUSTED" in code:
        wait = _google_retry_delay(body)
        # Gemini says "You exceeded your current quota" for per-minute quotas too, and then
        # tells when to come back (RetryInfo): that one is a rate limit.
        if wait is None and _NEVER_FITS_RE.search(f"{message} {code}"):
            return PermanentError(text, **kw)
        kw["rate_limits"] = limits = _google_quota_limits(body, limits)
        return RateLimited(text, retry_after_s=wait if wait is not None else suggested_wait_s(limits),
                           **kw)
    if status >= 500 or status in (408, 409) or status < 400 or "overloaded" in code:
        # < 400 only happens for an error event inside a 200 stream: the server gave up mid-way.
        return TransientError(text, **kw)
    if status in (400, 413) and (_CONTEXT_RE.search(message) or "context_length" in code):
        return ContextTooLong(text, **kw)
    return PermanentError(text, **kw)


def classify(exc: BaseException, provider: str) -> ProviderError | None:
    """The :class:`ProviderError` for ``exc``, or ``None`` if it is not a provider failure (a bug)."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return from_status(provider, exc.status_code, _body_message(exc.body, exc.message),
                           body=exc.body, headers=exc.response.headers)
    if isinstance(exc, genai_errors.APIError):
        response = getattr(exc, "response", None)
        body = exc.details if isinstance(exc.details, dict) else None
        return from_status(provider, int(exc.code or 0), str(exc.message or exc.status or exc),
                           body=body, headers=getattr(response, "headers", None))
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError):
        return TransientError(f"{provider}: request timed out", provider=provider)
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        if isinstance(exc.__cause__, _UNBUILDABLE):  # the SDKs wrap every httpx error
            return InvalidRequest(_short(f"{provider}: invalid request "
                                         f"({public_summary(exc.__cause__)})"),
                                  provider=provider)
        return TransientError(f"{provider}: connection error ({type(exc.__cause__).__name__})",
                              provider=provider)
    if isinstance(exc, _UNBUILDABLE):
        return InvalidRequest(_short(f"{provider}: invalid request ({public_summary(exc)})"),
                              provider=provider)
    if isinstance(exc, _MALFORMED_ERRORS):
        return malformed(provider, type(exc).__name__)
    if isinstance(exc, openai.APIError | anthropic.APIError):
        # An error event inside an otherwise successful stream, without a status of its own.
        return TransientError(_short(f"{provider}: {exc.message}"), provider=provider)
    if isinstance(exc, _TIMEOUTS):
        return TransientError(f"{provider}: request timed out", provider=provider)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return TransientError(f"{provider}: transport error ({type(exc).__name__})",
                              provider=provider)
    if isinstance(exc, ValueError):
        # The SDK refused its arguments while building the request (google-genai says
        # "invalid model parameter." for a model with "../" or "?"). Malformed bodies, also
        # ValueErrors, were caught above. Retrying would build the same request.
        return InvalidRequest(_short(f"{provider}: invalid request ({exc})"), provider=provider)
    return None


@contextmanager
def translate_errors(provider: str) -> Iterator[None]:
    """Run an SDK call; re-raise any provider failure as exactly one :class:`ProviderError`."""
    try:
        yield
    except Exception as exc:
        mapped = classify(exc, provider)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc
