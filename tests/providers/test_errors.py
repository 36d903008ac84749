"""Every kind of SDK / transport failure maps to exactly one ProviderError class."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from tidegate.core.llm import (
    ContextTooLong,
    PermanentError,
    ProviderError,
    RateLimited,
    TransientError,
)
from tidegate.providers.errors import classify, translate_errors

REQ = httpx2.Request("POST", "https://api.example.test/v1/x")


def _resp(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, request=REQ)


def _openai(status: int, message: str, code: str | None = None,
            headers: dict[str, str] | None = None) -> openai.APIStatusError:
    body = {"message": message, "type": "invalid_request_error", "code": code}
    cls = {400: openai.BadRequestError, 401: openai.AuthenticationError,
           403: openai.PermissionDeniedError, 404: openai.NotFoundError,
           422: openai.UnprocessableEntityError, 429: openai.RateLimitError}.get(
        status, openai.InternalServerError)
    # The SDK hands the inner "error" object to the exception as its body.
    return cls(f"Error code: {status}", response=_resp(status, headers), body=body)


def _anthropic(status: int, kind: str, message: str,
               headers: dict[str, str] | None = None) -> anthropic.APIStatusError:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    cls = {400: anthropic.BadRequestError, 401: anthropic.AuthenticationError,
           429: anthropic.RateLimitError, 529: anthropic.OverloadedError}.get(
        status, anthropic.InternalServerError)
    return cls(f"Error code: {status}", response=_resp(status, headers), body=body)


def _gemini(status: int, message: str, details: list[Any] | None = None) -> genai_errors.APIError:
    body = {"error": {"code": status, "message": message, "status": "X", "details": details or []}}
    cls = genai_errors.ClientError if status < 500 else genai_errors.ServerError
    return cls(status, body, _resp(status))


@pytest.mark.parametrize(("exc", "expected"), [
    (_openai(429, "Rate limit reached", "rate_limit_exceeded", {"retry-after": "3"}), RateLimited),
    (_openai(500, "server had an error"), TransientError),
    (_openai(503, "overloaded"), TransientError),
    (_openai(400, "This model's maximum context length is 8192 tokens. However, your messages "
                  "resulted in 9000 tokens.", "context_length_exceeded"), ContextTooLong),
    (_openai(400, "Invalid value for 'temperature'"), PermanentError),
    (_openai(401, "Incorrect API key provided"), PermanentError),
    (_openai(403, "not allowed"), PermanentError),
    (_openai(404, "The model `nope` does not exist"), PermanentError),
    (_openai(422, "unprocessable"), PermanentError),
    (_openai(429, "You exceeded your current quota", "insufficient_quota"), PermanentError),
    (_anthropic(429, "rate_limit_error", "slow down", {"retry-after": "20"}), RateLimited),
    (_anthropic(529, "overloaded_error", "Overloaded"), TransientError),
    (_anthropic(500, "api_error", "Internal server error"), TransientError),
    (_anthropic(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
     ContextTooLong),
    (_anthropic(400, "invalid_request_error", "messages: roles must alternate"), PermanentError),
    (_anthropic(401, "authentication_error", "invalid x-api-key"), PermanentError),
    (_gemini(429, "Resource has been exhausted",
             [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]),
     RateLimited),
    (_gemini(503, "The model is overloaded."), TransientError),
    (_gemini(500, "internal"), TransientError),
    (_gemini(400, "The input token count (2000000) exceeds the maximum number of tokens allowed "
                  "(1048576)."), ContextTooLong),
    (_gemini(400, "API key not valid. Please pass a valid API key."), PermanentError),
    (_gemini(403, "permission denied"), PermanentError),
    (openai.APITimeoutError(request=REQ), TransientError),
    (openai.APIConnectionError(request=REQ), TransientError),
    (anthropic.APITimeoutError(request=REQ), TransientError),
    (anthropic.APIConnectionError(request=REQ), TransientError),
    (httpx2.ReadTimeout("timed out", request=REQ), TransientError),
    (httpx2.ConnectError("refused", request=REQ), TransientError),
    (httpx2.RemoteProtocolError("peer closed connection", request=REQ), TransientError),
    (httpx.ReadTimeout("timed out"), TransientError),
    (httpx.ReadError("connection reset"), TransientError),
    (json.JSONDecodeError("Expecting value", "{", 1), TransientError),
    (genai_errors.UnknownApiResponseError("Failed to parse response as JSON"), TransientError),
    (openai.APIError("stream error event", REQ, body=None), TransientError),
])
def test_classification(exc: BaseException, expected: type[ProviderError]) -> None:
    mapped = classify(exc, "p")
    assert type(mapped) is expected
    assert mapped.provider == "p"
    assert mapped.retryable == expected.retryable


def test_retry_after_comes_from_headers_or_body() -> None:
    assert classify(_openai(429, "x", "rate_limit_exceeded",
                            {"retry-after-ms": "1500", "retry-after": "2"}), "openai").retry_after_s == 1.5
    assert classify(_anthropic(429, "rate_limit_error", "x", {"retry-after": "20"}),
                    "anthropic").retry_after_s == 20.0
    gem = _gemini(429, "x", [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                              "retryDelay": "17s"}])
    assert classify(gem, "gemini").retry_after_s == 17.0
    # No retry-after: the reset of the exhausted bucket is the best advice there is.
    bucket = _openai(429, "x", "rate_limit_exceeded", {
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"})
    mapped = classify(bucket, "openai")
    assert mapped.retry_after_s == 6.0
    assert mapped.rate_limits.remaining_requests == 0


def test_status_and_message_are_kept() -> None:
    mapped = classify(_openai(404, "The model `nope` does not exist"), "openai")
    assert mapped.status == 404
    assert "does not exist" in mapped.message
    assert mapped.to_dict()["code"] == "provider_rejected"


def test_stream_error_event_inside_a_200_is_transient() -> None:
    # Anthropic raises a status error carrying the 200 of the stream for a mid-stream error event.
    exc = anthropic.APIStatusError("overloaded", response=_resp(200),
                                   body={"type": "error", "error": {"type": "overloaded_error",
                                                                    "message": "Overloaded"}})
    assert type(classify(exc, "anthropic")) is TransientError


def test_unrelated_exceptions_are_left_alone() -> None:
    assert classify(KeyError("bug"), "p") is None
    with pytest.raises(ZeroDivisionError), translate_errors("p"):
        _ = 1 / 0


def test_translate_errors_chains_the_original() -> None:
    original = _openai(401, "bad key")
    with pytest.raises(PermanentError) as info, translate_errors("openai"):
        raise original
    assert info.value.__cause__ is original


@pytest.mark.parametrize("exc", [
    ValueError("invalid model parameter."),  # google-genai, for a model with ../ or ?
    httpx2.InvalidURL("Invalid non-printable ASCII character in URL"),
    httpx.InvalidURL("Invalid non-printable ASCII character in URL"),
    httpx2.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."),
])
def test_a_request_that_cannot_be_built_is_permanent(exc: Exception) -> None:
    mapped = classify(exc, "gemini")
    assert isinstance(mapped, PermanentError) and not mapped.retryable
    assert mapped.code == "invalid_request"


def test_malformed_bodies_stay_transient_although_they_are_value_errors() -> None:
    assert isinstance(classify(json.JSONDecodeError("x", "doc", 0), "openai"), TransientError)


def test_an_unbuildable_url_wrapped_by_the_sdk_is_permanent() -> None:
    try:
        try:
            raise httpx2.InvalidURL("Invalid non-printable ASCII character in URL")
        except httpx2.InvalidURL as cause:
            raise openai.APIConnectionError(request=REQ) from cause
    except openai.APIConnectionError as exc:
        assert isinstance(classify(exc, "openai"), PermanentError)
