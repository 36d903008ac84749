"""Built-in job types. Importing a module registers its types into the core registry."""

from __future__ import annotations

import importlib

from ..core.registry import Registry, registry

BUILTIN_MODULES = ("echo", "report", "chat", "analysis", "embeddings")


def load_builtin_jobs(extra_modules: str = "") -> Registry:
    """Import the built-in job types and the user's modules (TIDEGATE_JOB_MODULES)."""
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    for module in filter(None, (m.strip() for m in extra_modules.split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            from ..core.errors import ConfigurationError

            raise ConfigurationError(f"cannot import job module {module!r}: {exc}") from exc
    return registry
