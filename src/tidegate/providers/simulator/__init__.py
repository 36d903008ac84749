"""A local stand-in for the OpenAI, Anthropic and Gemini HTTP APIs.

The official SDKs, pointed at it by base URL, work unmodified (streaming included). It enforces
per-key quotas with the vendors' own 429 shapes and headers, injects faults on demand, and
answers with deterministic, plausible text, so the whole system can run and be tested offline.
"""

from tidegate.providers.simulator.app import create_app
from tidegate.providers.simulator.config import SimulatorConfig, fast_test_config
from tidegate.providers.simulator.engine import key_label
from tidegate.providers.simulator.server import run_in_thread, serve

__all__ = ["SimulatorConfig", "create_app", "fast_test_config", "key_label", "run_in_thread",
           "serve"]
