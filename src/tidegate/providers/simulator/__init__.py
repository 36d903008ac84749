"""A local stand-in for the OpenAI, Anthropic and Gemini HTTP APIs.

The official SDKs, pointed at it by base URL, work unmodified (streaming included). It enforces
per-key quotas with the vendors' own 429 shapes and headers, injects faults on demand, and
answers with deterministic, plausible text, so the whole system can run and be tested offline.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"create_app": "app", "SimulatorConfig": "config", "fast_test_config": "config",
         "key_label": "engine", "run_in_thread": "server", "serve": "server"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:  # imported on first use: `tidegate --help` stays fast
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
