"""build_providers: real service, compatible server, simulator, or "not configured"."""

from __future__ import annotations

import pytest

from tidegate.core.llm import PermanentError
from tidegate.providers import (
    AnthropicProvider,
    GeminiProvider,
    OpenAIProvider,
    build_providers,
)

from .helpers import Sim, make_request


def test_nothing_configured_raises_permanent() -> None:
    providers = build_providers({})
    for name in ("openai", "anthropic", "gemini"):
        assert not providers.configured(name)
        assert not providers.simulated(name)
        with pytest.raises(PermanentError, match=f"provider {name} not configured"):
            providers.get(name)
    with pytest.raises(PermanentError, match="unknown provider"):
        providers.get("mistral")


def test_keys_select_the_real_services() -> None:
    providers = build_providers({"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a-x",
                                 "GOOGLE_API_KEY": "g-x"}, simulator_url="http://127.0.0.1:1")
    assert isinstance(providers.get("openai"), OpenAIProvider)
    assert isinstance(providers.get("anthropic"), AnthropicProvider)
    assert isinstance(providers.get("gemini"), GeminiProvider)
    assert not any(providers.simulated(n) for n in ("openai", "anthropic", "gemini"))
    assert providers.get("openai")._client.base_url.host == "api.openai.com"
    assert providers.get("openai")._max_param == "max_completion_tokens"


def test_base_urls_are_honoured() -> None:
    providers = build_providers({"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://vllm:8000/v1",
                                 "ANTHROPIC_API_KEY": "a-x",
                                 "ANTHROPIC_BASE_URL": "http://proxy:9000"})
    assert str(providers.get("openai")._client.base_url) == "http://vllm:8000/v1/"
    assert providers.get("openai")._max_param == "max_tokens"  # what compatible servers know
    assert str(providers.get("anthropic")._client.base_url).startswith("http://proxy:9000")
    assert not providers.configured("gemini")


def test_openai_base_url_without_key_counts_as_configured() -> None:
    providers = build_providers({"OPENAI_BASE_URL": "http://localhost:11434/v1"})
    assert providers.configured("openai") and not providers.simulated("openai")


def test_mixed_real_and_simulated(sim: Sim) -> None:
    providers = build_providers({"ANTHROPIC_API_KEY": "a-x"}, simulator_url=sim.url)
    assert providers.simulated("openai") and providers.simulated("gemini")
    assert not providers.simulated("anthropic")
    resp = providers.get("gemini").complete(make_request())
    assert resp.simulated is True


def test_real_responses_are_not_marked_simulated(sim: Sim) -> None:
    # A real key pointed at a compatible server (here: the simulator) is a real provider.
    providers = build_providers({"OPENAI_API_KEY": "sk-real", "OPENAI_BASE_URL": f"{sim.url}/v1"})
    assert providers.get("openai").complete(make_request()).simulated is False


def test_embedder_requires_embeddings(sim: Sim) -> None:
    providers = build_providers({}, simulator_url=sim.url)
    assert providers.embedder("openai") is providers.get("openai")
    with pytest.raises(PermanentError, match="no embeddings"):
        providers.embedder("anthropic")
