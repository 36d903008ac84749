"""Each provider through its official SDK, over HTTP, against the in-process simulator."""

from __future__ import annotations

import json

import pytest

from tidegate.core.llm import (
    ContextTooLong,
    LLMResponse,
    PermanentError,
    RateLimited,
    TransientError,
)
from tidegate.providers import Providers
from tidegate.providers.tokens import estimate_messages_tokens

from .helpers import Sim, make_request

VENDORS = ["openai", "anthropic", "gemini"]


def _complete(providers: Providers, vendor: str, **kw: object) -> LLMResponse:
    return providers.get(vendor).complete(make_request(**kw))  # type: ignore[arg-type]


def _stream_text(providers: Providers, vendor: str, **kw: object) -> str:
    return providers.get(vendor).stream(make_request(**kw)).text()  # type: ignore[arg-type]


@pytest.mark.parametrize("vendor", VENDORS)
def test_complete(providers: Providers, vendor: str) -> None:
    req = make_request()
    resp = providers.get(vendor).complete(req)
    assert resp.provider == vendor
    assert resp.simulated is True
    assert resp.model == "sim-model"
    assert "Acme Robotics" in resp.text
    assert resp.input_tokens == estimate_messages_tokens(req.messages)  # system prompt included
    assert 0 < resp.output_tokens <= req.max_output_tokens
    assert resp.latency_s >= 0


@pytest.mark.parametrize("vendor", VENDORS)
def test_same_prompt_same_text_across_vendors_and_calls(providers: Providers, vendor: str) -> None:
    first = _complete(providers, vendor)
    assert _complete(providers, vendor).text == first.text
    assert _complete(providers, "openai").text == first.text  # the simulator is vendor-neutral


@pytest.mark.parametrize("vendor", VENDORS)
def test_stream_yields_deltas_and_totals(providers: Providers, vendor: str) -> None:
    req = make_request()
    whole = providers.get(vendor).complete(req)
    stream = providers.get(vendor).stream(req)
    deltas = list(stream)
    assert len(deltas) > 1
    assert "".join(deltas) == whole.text
    final = stream.response
    assert final is not None
    assert final.text == whole.text
    assert (final.input_tokens, final.output_tokens) == (whole.input_tokens, whole.output_tokens)
    assert final.simulated and final.provider == vendor


@pytest.mark.parametrize("vendor", VENDORS)
def test_stream_can_be_closed_early(providers: Providers, vendor: str) -> None:
    with providers.get(vendor).stream(make_request(max_output_tokens=200)) as stream:
        assert next(stream)
    assert stream.response is None


@pytest.mark.parametrize("vendor", VENDORS)
def test_max_tokens_caps_output(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(output_tokens_min=300, output_tokens_max=300)
    resp = _complete(providers, vendor, max_output_tokens=25)
    assert resp.output_tokens <= 25


@pytest.mark.parametrize("vendor", VENDORS)
def test_json_output(providers: Providers, vendor: str) -> None:
    resp = _complete(providers, vendor, text="Analyze this section of a business plan: "
                     "'Our market is large.'", json_output=True, max_output_tokens=400)
    data = json.loads(resp.text)
    assert set(data) >= {"strengths", "issues", "suggestions"}
    assert all(isinstance(data[k], list) and data[k] for k in ("strengths", "issues"))


def test_json_when_the_prompt_asks_for_it(providers: Providers) -> None:
    resp = _complete(providers, "openai", text="List three points. Respond with JSON.")
    assert isinstance(json.loads(resp.text), dict)


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("fault", ["error_500_rate", "error_503_rate", "error_529_rate",
                                   "malformed_rate"])
@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_server_faults_are_transient(providers: Providers, sim: Sim, vendor: str, fault: str,
                                     mode: str) -> None:
    sim.configure(**{fault: 1.0})
    call = _complete if mode == "complete" else _stream_text
    with pytest.raises(TransientError) as info:
        call(providers, vendor)
    assert info.value.provider == vendor
    assert info.value.retryable


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_hang_times_out_as_transient(providers: Providers, sim: Sim, vendor: str,
                                     mode: str) -> None:
    sim.configure(hang_rate=1.0)
    call = _complete if mode == "complete" else _stream_text
    with pytest.raises(TransientError, match="timed out"):
        call(providers, vendor, timeout_s=0.3)


@pytest.mark.parametrize("vendor", VENDORS)
def test_rate_limited_with_retry_after(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(rpm=1)
    _complete(providers, vendor)
    with pytest.raises(RateLimited) as info:
        _complete(providers, vendor)
    err = info.value
    assert err.status == 429
    # One request per minute refills one request in 60 s; retry-after is whole seconds, rounded up.
    assert err.retry_after_s is not None and 58 <= err.retry_after_s <= 60
    assert sim.stats()["by_vendor"][vendor]["rate_limited"] == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_rate_limited_stream(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(rpm=1)
    _stream_text(providers, vendor)
    with pytest.raises(RateLimited):
        providers.get(vendor).stream(make_request())  # raised by the call itself, before iterating


@pytest.mark.parametrize("vendor", VENDORS)
def test_context_too_long(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(context_window=10)
    with pytest.raises(ContextTooLong) as info:
        _complete(providers, vendor, text="word " * 100)
    assert not info.value.retryable
    assert info.value.status == 400


@pytest.mark.parametrize("vendor", VENDORS)
def test_bad_key_is_permanent(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(valid_keys=["some-other-key"])
    with pytest.raises(PermanentError) as info:
        _complete(providers, vendor)
    assert not info.value.retryable
    assert info.value.status == (400 if vendor == "gemini" else 401)  # Google's own choice


def test_openai_rate_limit_headers_on_success(providers: Providers, sim: Sim) -> None:
    sim.configure(rpm=100, tpm=10_000)
    req = make_request()
    resp = providers.get("openai").complete(req)
    rl = resp.rate_limits
    assert (rl.limit_requests, rl.remaining_requests) == (100, 99)
    assert rl.limit_tokens == 10_000
    charged = estimate_messages_tokens(req.messages) + req.max_output_tokens
    assert rl.remaining_tokens == 10_000 - charged
    assert rl.reset_requests_s is not None and 0 < rl.reset_requests_s <= 0.7


def test_anthropic_rate_limit_headers_on_success(providers: Providers, sim: Sim) -> None:
    sim.configure(rpm=50, input_tpm=40_000, output_tpm=8_000)
    req = make_request()
    rl = providers.get("anthropic").complete(req).rate_limits
    assert (rl.limit_requests, rl.remaining_requests) == (50, 49)
    assert rl.limit_input_tokens == 40_000
    assert rl.remaining_input_tokens == 40_000 - estimate_messages_tokens(req.messages)
    assert (rl.limit_output_tokens, rl.remaining_output_tokens) == (8_000, 8_000 - 120)
    assert rl.reset_requests_s is not None and rl.reset_requests_s <= 3
