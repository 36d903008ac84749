"""Built-in job types. Importing a module registers its types into the core registry."""

from __future__ import annotations

import importlib

from ..core.registry import Registry, registry

BUILTIN_MODULES = ("echo",)


def load_builtin_jobs() -> Registry:
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return registry
