"""Tidegate: durable background LLM jobs with one shared rate limit per provider lane.

``tidegate.Client`` and ``tidegate.AsyncClient`` are loaded on first use, so importing
``tidegate`` (as every server module does) costs nothing, and a web app that only submits jobs
imports httpx and pydantic alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'tidegate' has no attribute {name!r}")
