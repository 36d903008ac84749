"""Per-job-type rate limits: runs started per minute and runs at once, shared by every worker.

A job type declares them at registration (``registry.job_type(..., per_minute=5,
concurrency=2)``, like Celery's ``rate_limit = "5/m"``); the settings file overrides them
(``[job_limits.<type>]``). They are independent of the provider lanes: a type limited to 5
starts a minute starts 5 a minute however much quota its lane has.

A run over a limit does not start: the worker hands the job back for the time the limit says
(an event tells why), without spending an attempt, as a quota wait does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .registry import Registry

# How long a running slot is held without a renewal: a crashed worker's slot frees itself.
SLOT_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class TypeLimit:
    per_minute: int | None = None
    concurrency: int | None = None

    def __bool__(self) -> bool:
        return self.per_minute is not None or self.concurrency is not None

    def describe(self) -> str:
        parts = ([f"{self.per_minute} starts a minute"] if self.per_minute else []) + (
            [f"{self.concurrency} at once"] if self.concurrency else [])
        return " and ".join(parts)


class TypeGate(Protocol):
    def acquire(self, job_type: str, token: str, limit: TypeLimit) -> float | None:
        """Start one run of ``job_type`` (``token``: the job) if both limits allow it: None.
        Otherwise seconds until one would, and nothing is counted."""
        ...

    def renew(self, job_type: str, token: str) -> None:
        """Keep a running slot (every heartbeat): one unrenewed for SLOT_TTL_S is free."""
        ...

    def release(self, job_type: str, token: str) -> None: ...


def limits_for(registry: Registry, overrides: Mapping[str, TypeLimit]
               ) -> Callable[[str], TypeLimit]:
    """The limit of a job type: the settings' entry for it, field by field over the type's
    own declaration."""

    def limit(job_type: str) -> TypeLimit:
        declared = TypeLimit()
        if job_type in registry:
            jt = registry.get(job_type)
            declared = TypeLimit(jt.per_minute, jt.concurrency)
        over = overrides.get(job_type)
        if over is None:
            return declared
        return TypeLimit(over.per_minute if over.per_minute is not None else declared.per_minute,
                         over.concurrency if over.concurrency is not None
                         else declared.concurrency)

    return limit
