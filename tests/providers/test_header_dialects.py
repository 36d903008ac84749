"""Every provider's rate-limit dialect, from fixtures in its documented format, through the
official SDKs' exception objects where a 429 reaches Tidegate that way, and on to what the
limiter learns from it (``learned_from``)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from tidegate.core.limits import learned_from
from tidegate.core.llm import RateLimited
from tidegate.providers.errors import classify
from tidegate.providers.headers import parse_rate_limit_headers, parse_reset

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
REQ = httpx2.Request("POST", "https://api.example.test/v1/chat/completions")

# -- fixtures, as each provider documents its headers ---------------------------------------

OPENAI_OK = {  # platform.openai.com, "Rate limits": headers on every response
    "x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "59ms",
}
OPENAI_DOC_EXAMPLE = {**OPENAI_OK, "x-ratelimit-reset-tokens": "6m0s"}  # as the docs print it
ANTHROPIC_OK = {  # docs.anthropic.com, "Rate limits": response headers
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2025-06-15T15:06:41Z",
    "anthropic-ratelimit-tokens-limit": "10000",
    "anthropic-ratelimit-tokens-remaining": "9000",
    "anthropic-ratelimit-tokens-reset": "2025-06-15T15:06:46Z",
    "anthropic-ratelimit-input-tokens-limit": "50000",
    "anthropic-ratelimit-input-tokens-remaining": "49500",
    "anthropic-ratelimit-input-tokens-reset": "2025-06-15T15:06:41Z",
    "anthropic-ratelimit-output-tokens-limit": "10000",
    "anthropic-ratelimit-output-tokens-remaining": "9000",
    "anthropic-ratelimit-output-tokens-reset": "2025-06-15T15:06:46Z",
}
AZURE_429 = {  # learn.microsoft.com, Azure OpenAI quota: remaining counts and retry-after-ms
    "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "1200",
    "retry-after-ms": "4750", "retry-after": "5",
}
GROQ_OK = {  # console.groq.com, "Rate limits": requests per DAY, tokens per minute
    "x-ratelimit-limit-requests": "14400", "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "14370", "x-ratelimit-remaining-tokens": "17997",
    "x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-reset-tokens": "7.66s",
}
GROQ_429 = {**GROQ_OK, "retry-after": "2", "x-ratelimit-remaining-tokens": "0"}
LITELLM_OK = {  # LiteLLM proxy, a key with rpm/tpm limits: OpenAI's names, no resets
    "x-ratelimit-remaining-requests": "99", "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-tokens": "9950", "x-ratelimit-limit-tokens": "10000",
    "x-litellm-model-id": "abc", "x-litellm-response-cost": "0.0001",
}
MISTRAL_OK = {  # Mistral La Plateforme: tokens per minute and per month
    "x-ratelimitbysize-limit-minute": "500000", "x-ratelimitbysize-remaining-minute": "499034",
    "x-ratelimitbysize-limit-month": "1000000000",
    "x-ratelimitbysize-remaining-month": "999000000",
}
OPENROUTER_429 = {  # openrouter.ai: a window it does not name; reset in epoch milliseconds
    "x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
    "x-ratelimit-reset": str(int((NOW + 7.5) * 1000)),
}
TOGETHER_429 = {  # together.ai: seconds until the reset; tokens in x-tokenlimit-*
    "x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "3",
    "x-tokenlimit-limit": "200000", "x-tokenlimit-remaining": "190000",
}
VLLM_OK: dict[str, str] = {"content-type": "application/json", "server": "uvicorn"}
GEMINI_429_BODY = {  # ai.google.dev, "Rate limits": RESOURCE_EXHAUSTED with details
    "error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "You exceeded your current quota, please check your plan and billing "
                   "details.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_free_tier_requests",
                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                 "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
                 "quotaValue": "15"},
                {"quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_free_tier_requests",
                 "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                 "quotaValue": "1500"}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                {"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "43s"},
        ],
    }
}


def _response(status: int, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, request=REQ)


def _openai_429(headers: dict[str, str]) -> openai.RateLimitError:
    body = {"message": "Rate limit reached for requests", "type": "requests",
            "code": "rate_limit_exceeded"}
    return openai.RateLimitError("Error code: 429", response=_response(429, headers), body=body)


def _rate_limited(exc: BaseException, provider: str) -> RateLimited:
    got = classify(exc, provider)
    assert isinstance(got, RateLimited), got
    return got


# -- success responses: what is parsed, and what the limiter learns ------------------------


def test_openai() -> None:
    info = parse_rate_limit_headers(OPENAI_OK, now=NOW)
    limits, rem = learned_from(info)
    assert limits == {"rpm": 60, "tpm": 150000}
    assert rem["req"].remaining == 59 and rem["req"].reset_ms == 1000
    assert rem["tot"].remaining == 149984 and rem["tot"].reset_ms in (59, 60)


def test_a_reset_far_beyond_a_minutes_refill_is_not_used() -> None:
    # The docs' own example: 16 tokens used, "6m0s" to refill. As a minute bucket's refill it
    # would hold the lane for six minutes; the limit and remaining count still hold.
    limits, rem = learned_from(parse_rate_limit_headers(OPENAI_DOC_EXAMPLE, now=NOW))
    assert limits["tpm"] == 150000 and rem["tot"].remaining == 149984
    assert rem["tot"].reset_ms is None


def test_anthropic() -> None:
    info = parse_rate_limit_headers(ANTHROPIC_OK, now=NOW)
    assert info.reset_requests_s == pytest.approx(1.0)
    limits, rem = learned_from(info)
    # With an input/output split, "tokens-*" is not a total: no tpm is learned from it.
    assert limits == {"rpm": 50, "input_tpm": 50000, "output_tpm": 10000}
    assert rem["inp"].remaining == 49500 and rem["out"].remaining == 9000 and "tot" not in rem


def test_groq_daily_request_reset_is_dropped_limits_kept() -> None:
    limits, rem = learned_from(parse_rate_limit_headers(GROQ_OK, now=NOW))
    assert rem["req"].reset_ms is None  # per day: "2m59.56s" for 30 of 14,400 used
    # The documented token example (3 of 18,000 used, "7.66s") is no minute's refill either.
    assert rem["tot"].reset_ms is None and rem["tot"].remaining == 17997
    assert limits == {"rpm": 14400, "tpm": 18000}
    busy = {**GROQ_OK, "x-ratelimit-remaining-tokens": "15000",
            "x-ratelimit-reset-tokens": "10s"}  # 3,000 used: 10 s at 18,000 per minute
    assert learned_from(parse_rate_limit_headers(busy, now=NOW))[1]["tot"].reset_ms == 10000


def test_litellm_subset_without_resets() -> None:
    limits, rem = learned_from(parse_rate_limit_headers(LITELLM_OK, now=NOW))
    assert limits == {"rpm": 100, "tpm": 10000}
    assert rem["req"].reset_ms is None and rem["tot"].remaining == 9950


def test_mistral_tokens_per_minute() -> None:
    limits, rem = learned_from(parse_rate_limit_headers(MISTRAL_OK, now=NOW))
    assert limits == {"tpm": 500000} and rem["tot"].remaining == 499034


@pytest.mark.parametrize("headers", [VLLM_OK, {}])
def test_servers_sending_nothing_teach_nothing(headers: dict[str, str]) -> None:
    limits, rem = learned_from(parse_rate_limit_headers(headers, now=NOW))
    assert limits == {} and rem == {}


def test_unnamed_windows_teach_no_rate() -> None:
    for headers in (OPENROUTER_429, TOGETHER_429):
        limits, rem = learned_from(parse_rate_limit_headers(headers, now=NOW))
        assert limits == {} and rem == {}


@pytest.mark.parametrize(("value", "seconds"), [
    (str(int((NOW + 7.5) * 1000)), 7.5), (str(int(NOW + 30)), 30.0), ("3", 3.0),
    ("1.5", 1.5), ("20s", 20.0), (str(int((NOW - 5) * 1000)), 0.0), ("soon", None)])
def test_bare_reset_forms(value: str, seconds: float | None) -> None:
    got = parse_reset(value, NOW)
    assert got == (None if seconds is None else pytest.approx(seconds))


# -- 429s through the SDKs' exception objects -----------------------------------------------


def test_openai_429_waits_as_told() -> None:
    exc = _rate_limited(_openai_429({**OPENAI_OK, "x-ratelimit-remaining-requests": "0",
                                     "retry-after": "1"}), "openai")
    assert exc.retry_after_s == 1.0 and exc.rate_limits.remaining_requests == 0


def test_openai_429_without_retry_after_waits_for_the_exhausted_bucket() -> None:
    exc = _rate_limited(_openai_429({**OPENAI_OK, "x-ratelimit-remaining-tokens": "0",
                                     "x-ratelimit-reset-tokens": "2.5s"}), "openai")
    assert exc.retry_after_s == pytest.approx(2.5)


def test_azure_429_prefers_retry_after_ms() -> None:
    # AzureOpenAI is the openai SDK: the same exception class and headers object.
    exc = _rate_limited(_openai_429(AZURE_429), "azure")
    assert exc.retry_after_s == pytest.approx(4.75)
    limits, rem = learned_from(exc.rate_limits)
    assert limits == {} and rem["req"].remaining == 0 and rem["tot"].remaining == 1200


def test_anthropic_429() -> None:
    headers = {**ANTHROPIC_OK, "anthropic-ratelimit-requests-remaining": "0",
               "retry-after": "12"}
    body = {"type": "error", "error": {"type": "rate_limit_error",
                                       "message": "Number of requests has exceeded your rate limit"}}
    sdk = anthropic.RateLimitError("Error code: 429", response=_response(429, headers), body=body)
    exc = _rate_limited(sdk, "anthropic")
    assert exc.retry_after_s == 12.0 and exc.rate_limits.limit_input_tokens == 50000


def test_groq_429() -> None:
    exc = _rate_limited(_openai_429(GROQ_429), "groq")
    assert exc.retry_after_s == 2.0 and exc.rate_limits.remaining_tokens == 0


@pytest.mark.parametrize(("headers", "wait"), [(OPENROUTER_429, 7.5), (TOGETHER_429, 3.0)])
def test_openrouter_and_together_429_wait_for_the_reset(headers: dict[str, str],
                                                        wait: float) -> None:
    import time

    exc = _rate_limited(_openai_429(headers), "compat")
    # The SDK's exception carries the live headers; "now" is the real clock here.
    expected = wait if headers is TOGETHER_429 else (NOW + wait) - time.time()
    assert exc.retry_after_s == pytest.approx(max(0.0, expected), abs=0.5)


def test_vllm_429_without_anything_uses_the_default_pause() -> None:
    exc = _rate_limited(_openai_429(VLLM_OK), "vllm")
    assert exc.retry_after_s is None  # the limiter's default pause applies


def test_gemini_resource_exhausted_with_retry_info_and_quota_failure() -> None:
    sdk: Any = genai_errors.ClientError(429, GEMINI_429_BODY, _response(429, {}))
    exc = _rate_limited(sdk, "gemini")
    assert exc.retry_after_s == 43.0
    # The per-minute quota it names is learned; the per-day one is not a rate.
    assert exc.rate_limits.limit_requests == 15
    limits, _ = learned_from(exc.rate_limits)
    assert limits == {"rpm": 15}


def test_gemini_bare_resource_exhausted() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "Resource has been exhausted (e.g. check quota)."}}
    exc = _rate_limited(genai_errors.ClientError(429, body, _response(429, {})), "gemini")
    assert exc.retry_after_s is None and exc.rate_limits.limit_requests is None
