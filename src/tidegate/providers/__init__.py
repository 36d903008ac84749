"""LLM providers over the vendors' official SDKs, and the registry that builds them.

``build_providers()`` decides per vendor, from the environment, whether it talks to the real
service, to an OpenAI-compatible server, or to the local simulator::

    providers = build_providers(os.environ, simulator_url="http://127.0.0.1:8400")
    resp = providers.get("openai").complete(LLMRequest(model="gpt-4o-mini", messages=(...)))

Names are imported on first use, so that commands which never call a provider (the CLI's
client commands, the simulator) do not pay for importing three SDKs.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PROVIDER_NAMES": "registry", "SIMULATOR_KEY": "registry", "Providers": "registry",
    "build_providers": "registry", "AnthropicProvider": "anthropic_provider",
    "GeminiProvider": "gemini_provider", "OpenAIProvider": "openai_provider",
    "EmbeddingProvider": "base", "LLMProvider": "base", "TextStream": "base",
    "estimate_messages_tokens": "tokens", "estimate_tokens": "tokens",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
