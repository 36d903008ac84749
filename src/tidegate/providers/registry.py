"""The provider registry: which vendor talks to the real service, and which to the simulator."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tidegate.core.llm import PermanentError
from tidegate.providers.anthropic_provider import AnthropicProvider
from tidegate.providers.base import EmbeddingProvider, LLMProvider
from tidegate.providers.gemini_provider import GeminiProvider
from tidegate.providers.openai_provider import OpenAIProvider

PROVIDER_NAMES = ("openai", "anthropic", "gemini")
SIMULATOR_KEY = "sim-key"  # the simulator accepts any key; this one names its traffic in stats



@dataclass
class Providers:
    """The configured providers by name; unconfigured ones raise on use."""

    _by_name: dict[str, LLMProvider] = field(default_factory=dict)

    def get(self, name: str) -> LLMProvider:
        provider = self._by_name.get(name)
        if provider is None:
            if name in PROVIDER_NAMES:
                raise PermanentError(f"provider {name} not configured", provider=name)
            raise PermanentError(f"unknown provider {name!r} (known: {', '.join(PROVIDER_NAMES)})",
                                 provider=name)
        return provider

    def embedder(self, name: str) -> EmbeddingProvider:
        provider = self.get(name)
        if not isinstance(provider, EmbeddingProvider):
            raise PermanentError(f"provider {name} has no embeddings", provider=name)
        return provider

    def simulated(self, name: str) -> bool:
        provider = self._by_name.get(name)
        return bool(provider is not None and provider.simulated)

    def configured(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def add(self, provider: LLMProvider) -> None:
        """Register (or replace) a provider, e.g. a fake in tests."""
        self._by_name[provider.name] = provider


def build_providers(env: Mapping[str, str] | None = None,
                    simulator_url: str | None = None) -> Providers:
    """Real service where a key (or, for OpenAI, a base URL) is set; else the simulator if given."""
    env = os.environ if env is None else env
    sim = simulator_url.rstrip("/") if simulator_url else None
    out = Providers()

    openai_key, openai_url = env.get("OPENAI_API_KEY"), env.get("OPENAI_BASE_URL")
    if openai_key or openai_url:
        # Local vLLM/Ollama servers accept any key, but the SDK insists on one.
        out.add(OpenAIProvider(openai_key or "not-needed", openai_url or None))
    elif sim:
        out.add(OpenAIProvider(SIMULATOR_KEY, f"{sim}/v1", simulated=True))

    anthropic_key = env.get("ANTHROPIC_API_KEY")
    if anthropic_key:
        out.add(AnthropicProvider(anthropic_key, env.get("ANTHROPIC_BASE_URL") or None))
    elif sim:
        out.add(AnthropicProvider(SIMULATOR_KEY, sim, simulated=True))

    gemini_key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
    if gemini_key:
        out.add(GeminiProvider(gemini_key, env.get("GEMINI_BASE_URL") or None))
    elif sim:
        out.add(GeminiProvider(SIMULATOR_KEY, sim, simulated=True))
    return out
