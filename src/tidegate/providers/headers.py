"""Parse vendors' rate-limit response headers into :class:`RateLimitInfo`.

Dialects (fixtures for each: ``tests/providers/test_header_dialects.py``):

* OpenAI, and the compatible servers that copy it (Groq, LiteLLM's proxy, Cerebras):
  ``x-ratelimit-limit|remaining|reset-requests|tokens``, resets as Go durations ("1s",
  "6m0s", "59ms"). Groq's request headers count per day, not per minute: a reset far longer
  than a minute's refill is dropped where the limiter learns (``core.limits.resync``).
* Anthropic: ``anthropic-ratelimit-requests|tokens|input-tokens|output-tokens-
  limit|remaining|reset`` with RFC 3339 reset instants, and ``retry-after``.
* Azure OpenAI: ``x-ratelimit-remaining-requests|tokens`` (often without limits or resets)
  and ``retry-after-ms`` beside ``retry-after`` on a 429.
* Mistral: ``x-ratelimitbysize-limit|remaining-minute``, tokens per minute (the ``-month``
  pair is a monthly budget, not a rate).
* OpenRouter and Together: bare ``x-ratelimit-limit|remaining|reset`` over a window they do
  not name (OpenRouter's is ten seconds; its reset is epoch milliseconds, Together's seconds
  to wait). No rate is learned from them; when ``remaining`` is 0 the reset is the wait.
* vLLM, Ollama, a plain LiteLLM: nothing; then Tidegate learns only from 429s.
* Gemini sends no rate-limit headers; its 429 carries ``RetryInfo`` in the error body
  (``providers.errors``).

All may send ``retry-after`` (seconds or an HTTP-date) and ``retry-after-ms``. Anything
missing or unparseable becomes ``None``: headers are advice, never a reason to fail a call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from tidegate.core.llm import RateLimitInfo

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def lower_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """A plain dict with lower-case names, from any mapping (httpx Headers, dicts, SDK objects)."""
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else []
    return {str(k).lower(): str(v) for k, v in items}


def parse_duration(value: str | None) -> float | None:
    """Go-style duration ("1h2m3.5s", "6m0s", "20ms", "0.5s") or bare seconds ("12", "1.5")."""
    if value is None:
        return None
    text = value.strip().lower()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None  # garbage between parts: refuse rather than guess
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        return None
    return total


def _parse_instant(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` until an RFC 3339 timestamp (never negative)."""
    if not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return max(0.0, dt.timestamp() - now)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``retry-after-ms`` (preferred: finer) else ``retry-after`` as seconds or an HTTP-date."""
    h = lower_headers(headers)
    now = time.time() if now is None else now
    ms = h.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = h.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        dt = parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, dt.timestamp() - now)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def _min_opt(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def parse_rate_limit_headers(headers: Mapping[str, str] | Any, now: float | None = None) -> RateLimitInfo:
    """One :class:`RateLimitInfo` from whichever vendor's headers are present."""
    h = lower_headers(headers)
    now = time.time() if now is None else now
    retry_after = parse_retry_after(h, now)
    if any(k.startswith("anthropic-ratelimit-") for k in h):
        return _anthropic(h, now, retry_after)
    limit_tokens = _int(h.get("x-ratelimit-limit-tokens"))
    remaining_tokens = _int(h.get("x-ratelimit-remaining-tokens"))
    if limit_tokens is None and remaining_tokens is None:  # Mistral: tokens per minute
        limit_tokens = _int(h.get("x-ratelimitbysize-limit-minute"))
        remaining_tokens = _int(h.get("x-ratelimitbysize-remaining-minute"))
    if retry_after is None:
        retry_after = _unnamed_window_wait(h, now)
    return RateLimitInfo(
        limit_requests=_int(h.get("x-ratelimit-limit-requests")),
        remaining_requests=_int(h.get("x-ratelimit-remaining-requests")),
        reset_requests_s=parse_duration(h.get("x-ratelimit-reset-requests")),
        limit_tokens=limit_tokens,
        remaining_tokens=remaining_tokens,
        reset_tokens_s=parse_duration(h.get("x-ratelimit-reset-tokens")),
        retry_after_s=retry_after,
    )


def parse_reset(value: str | None, now: float) -> float | None:
    """Seconds until a bare ``x-ratelimit-reset``: epoch milliseconds (OpenRouter), epoch
    seconds, or seconds (or a Go duration) to wait (Together and most others)."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return parse_duration(value)
    if number > 1e11:  # epoch milliseconds: 1e11 ms is 1973, 1e11 s is the year 5138
        return max(0.0, number / 1000.0 - now)
    if number > 1e9:  # epoch seconds
        return max(0.0, number - now)
    return max(0.0, number)


def _unnamed_window_wait(h: dict[str, str], now: float) -> float | None:
    """The wait that bare ``x-ratelimit-*`` headers imply: the reset, once nothing remains."""
    for prefix in ("x-ratelimit-", "x-tokenlimit-"):
        if _int(h.get(prefix + "remaining")) == 0:
            wait = parse_reset(h.get(prefix + "reset") or h.get("x-ratelimit-reset"), now)
            if wait is not None:
                return wait
    return None


def _anthropic(h: dict[str, str], now: float, retry_after: float | None) -> RateLimitInfo:
    p = "anthropic-ratelimit-"
    in_reset = _parse_instant(h.get(p + "input-tokens-reset"), now)
    out_reset = _parse_instant(h.get(p + "output-tokens-reset"), now)
    tokens_reset = _parse_instant(h.get(p + "tokens-reset"), now)
    return RateLimitInfo(
        limit_requests=_int(h.get(p + "requests-limit")),
        remaining_requests=_int(h.get(p + "requests-remaining")),
        reset_requests_s=_parse_instant(h.get(p + "requests-reset"), now),
        limit_tokens=_int(h.get(p + "tokens-limit")),
        remaining_tokens=_int(h.get(p + "tokens-remaining")),
        # "tokens-*" is the most restrictive of input/output; fall back to those when absent.
        reset_tokens_s=tokens_reset if tokens_reset is not None else _min_opt(in_reset, out_reset),
        limit_input_tokens=_int(h.get(p + "input-tokens-limit")),
        remaining_input_tokens=_int(h.get(p + "input-tokens-remaining")),
        limit_output_tokens=_int(h.get(p + "output-tokens-limit")),
        remaining_output_tokens=_int(h.get(p + "output-tokens-remaining")),
        retry_after_s=retry_after,
        resets_exact=False,  # instants to the second, on Anthropic's clock
    )


def suggested_wait_s(info: RateLimitInfo) -> float | None:
    """How long a 429 says to wait: ``retry-after`` if given, else the reset of an exhausted bucket."""
    if info.retry_after_s is not None:
        return info.retry_after_s
    waits = []
    if info.remaining_requests == 0 and info.reset_requests_s is not None:
        waits.append(info.reset_requests_s)
    if info.remaining_tokens == 0 and info.reset_tokens_s is not None:
        waits.append(info.reset_tokens_s)
    if waits:
        return max(waits)
    return _min_opt(info.reset_requests_s, info.reset_tokens_s)
