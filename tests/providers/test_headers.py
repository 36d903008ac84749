"""Rate-limit header parsing, on literal header values as the vendors send them."""

from __future__ import annotations

from email.utils import formatdate

import httpx2
import pytest

from tidegate.providers.headers import (
    parse_duration,
    parse_rate_limit_headers,
    parse_retry_after,
    suggested_wait_s,
)

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z


@pytest.mark.parametrize(("text", "seconds"), [
    ("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("0.5s", 0.5), ("1h2m3.5s", 3723.5),
    ("2m30s", 150.0), ("150us", 0.00015), ("12", 12.0), ("1.25", 1.25), (" 7s ", 7.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 s", "1x", "m5s", None])
def test_bad_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


def test_openai_headers() -> None:
    info = parse_rate_limit_headers({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199330", "x-ratelimit-reset-tokens": "6m0s",
    }, now=NOW)
    assert (info.limit_requests, info.remaining_requests) == (500, 499)
    assert info.reset_requests_s == pytest.approx(0.12)
    assert (info.limit_tokens, info.remaining_tokens) == (200000, 199330)
    assert info.reset_tokens_s == pytest.approx(360.0)
    assert info.retry_after_s is None
    assert info.limit_input_tokens is None


def test_header_names_are_case_insensitive_and_httpx_headers_work() -> None:
    headers = httpx2.Headers({"X-RateLimit-Remaining-Requests": "3", "Retry-After": "2"})
    info = parse_rate_limit_headers(headers, now=NOW)
    assert info.remaining_requests == 3
    assert info.retry_after_s == 2.0


def test_anthropic_headers() -> None:
    info = parse_rate_limit_headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-06-15T15:06:52Z",
        "anthropic-ratelimit-tokens-limit": "60000",
        "anthropic-ratelimit-tokens-remaining": "41000",
        "anthropic-ratelimit-tokens-reset": "2025-06-15T15:07:40+00:00",
        "anthropic-ratelimit-input-tokens-limit": "50000",
        "anthropic-ratelimit-input-tokens-remaining": "40000",
        "anthropic-ratelimit-input-tokens-reset": "2025-06-15T15:06:50Z",
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": "1000",
        "anthropic-ratelimit-output-tokens-reset": "2025-06-15T15:07:00Z",
        "retry-after": "12",
    }, now=NOW)
    assert (info.limit_requests, info.remaining_requests) == (50, 0)
    assert info.reset_requests_s == pytest.approx(12.0)
    assert (info.limit_tokens, info.remaining_tokens) == (60000, 41000)
    assert info.reset_tokens_s == pytest.approx(60.0)
    assert (info.limit_input_tokens, info.remaining_input_tokens) == (50000, 40000)
    assert (info.limit_output_tokens, info.remaining_output_tokens) == (10000, 1000)
    assert info.retry_after_s == 12.0


def test_anthropic_token_reset_falls_back_to_input_output() -> None:
    info = parse_rate_limit_headers({
        "anthropic-ratelimit-input-tokens-reset": "2025-06-15T15:06:50Z",
        "anthropic-ratelimit-output-tokens-reset": "2025-06-15T15:06:45Z",
    }, now=NOW)
    assert info.reset_tokens_s == pytest.approx(5.0)


def test_reset_in_the_past_is_zero() -> None:
    info = parse_rate_limit_headers(
        {"anthropic-ratelimit-requests-reset": "2020-01-01T00:00:00Z"}, now=NOW)
    assert info.reset_requests_s == 0.0


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}, now=NOW) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}, now=NOW) == 1.5
    assert parse_retry_after({"retry-after": formatdate(NOW + 30, usegmt=True)},
                             now=NOW) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": "7", "retry-after-ms": "6500"}, now=NOW) == 6.5
    assert parse_retry_after({"retry-after": "tomorrow"}, now=NOW) is None
    assert parse_retry_after({}, now=NOW) is None


def test_garbage_values_become_none() -> None:
    info = parse_rate_limit_headers({"x-ratelimit-limit-requests": "lots",
                                     "x-ratelimit-reset-tokens": "later"}, now=NOW)
    assert info.limit_requests is None and info.reset_tokens_s is None


def test_suggested_wait_prefers_retry_after_then_exhausted_bucket() -> None:
    both = parse_rate_limit_headers({
        "retry-after": "3", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "10s"}, now=NOW)
    assert suggested_wait_s(both) == 3.0
    exhausted = parse_rate_limit_headers({
        "x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "8s"}, now=NOW)
    assert suggested_wait_s(exhausted) == 8.0
    assert suggested_wait_s(parse_rate_limit_headers({}, now=NOW)) is None
