"""Built-in job types, and the loading of everyone else's.

Importing a module registers its types into the core registry. Besides the built-in modules,
the API and the workers import, in this order:

- every entry point of the group ``tidegate.jobs`` of the installed distributions (a package
  declares ``[project.entry-points."tidegate.jobs"] mytypes = "mypackage.jobs"``; an entry
  point naming a callable, ``"mypackage.jobs:register"``, is called with the registry);
- the modules named in TIDEGATE_JOB_MODULES (comma-separated).

A module that fails to import stops the process with a ConfigurationError naming it: a worker
that silently lacked a job type would leave that type's jobs waiting forever.
"""

from __future__ import annotations

import importlib
import types
from importlib.metadata import EntryPoint, entry_points

from ..core.errors import ConfigurationError
from ..core.registry import Registry, registry

BUILTIN_MODULES = ("echo", "report", "chat", "analysis", "embeddings", "chat_completion")
ENTRY_POINT_GROUP = "tidegate.jobs"

_loaded_entry_points: set[str] = set()  # a register() hook runs once per process


def load_builtin_jobs(extra_modules: str = "") -> Registry:
    """Import the built-in job types, the ``tidegate.jobs`` entry points and the user's
    modules (TIDEGATE_JOB_MODULES)."""
    for name in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _load_entry_point(ep)
    for module in filter(None, (m.strip() for m in extra_modules.split(","))):
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot import job module {module!r} (from TIDEGATE_JOB_MODULES): "
                f"{type(exc).__name__}: {exc}") from exc
    return registry


def _load_entry_point(ep: EntryPoint) -> None:
    key = f"{ep.name}={ep.value}"
    if key in _loaded_entry_points:
        return
    dist = getattr(ep, "dist", None)
    where = f"entry point {ep.name!r} of {dist.name if dist else 'a package'}"
    try:
        loaded = ep.load()
    except Exception as exc:
        raise ConfigurationError(
            f"cannot import job module {ep.module!r} ({where}, group {ENTRY_POINT_GROUP!r}): "
            f"{type(exc).__name__}: {exc}") from exc
    _loaded_entry_points.add(key)
    if callable(loaded) and not isinstance(loaded, types.ModuleType):
        loaded(registry)
