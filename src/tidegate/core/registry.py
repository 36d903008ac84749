"""Job types: a decorator names the type, its input model and its default priority."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput, UnknownJobType, error_location, shorten
from .statuses import Priority

if TYPE_CHECKING:
    from .context import JobContext

Handler = Callable[["JobContext[Any]"], Any]


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    input_model: type[BaseModel]
    priority: Priority
    handler: Handler
    max_attempts: int = 3
    description: str = ""
    # How long the job may wait for provider quota in a row before it fails with
    # `quota_timeout`; None: the worker's default (TIDEGATE_MAX_QUOTA_WAIT_S, 1 h).
    max_quota_wait_s: float | None = None
    # Runs started per minute and runs at once, across all workers (core/type_limits.py);
    # None: no such limit. The settings file may override both.
    per_minute: int | None = None
    concurrency: int | None = None
    # The model it calls when a call names none, and its fallback lanes: the job type's own
    # choice, which the LLM settings' [jobs.<name>] may override field by field.
    model: str | None = None
    fallbacks: tuple[str, ...] = ()
    # Whether identical calls made at once by its jobs share one answer, and how long its
    # answers are kept for later identical calls (llm/reuse.py); the settings may override.
    dedup: bool = False
    cache_ttl_s: float | None = None

    def validate(self, data: Any, context: Mapping[str, Any] | None = None) -> BaseModel:
        """``context`` reaches the input model's validators (e.g. the loaded LLM settings)."""
        try:
            return self.input_model.model_validate(data, context=dict(context or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(
                f"invalid input for job type {self.name!r}: {error_location(first['loc'])}: "
                f"{shorten(first['msg'], 1000, quote=False)}"
                + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
            ) from None


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def job_type(self, name: str, *, input_model: type[BaseModel], priority: Priority | str,
                 max_attempts: int = 3, description: str = "",
                 max_quota_wait_s: float | None = None, per_minute: int | None = None,
                 concurrency: int | None = None, model: str | None = None,
                 fallbacks: Sequence[str] = (), dedup: bool = False,
                 cache_ttl_s: float | None = None) -> Callable[[Handler], Handler]:
        """Register ``fn`` as the handler of job type ``name``. ``model`` and ``fallbacks``
        (``"provider:model"`` or aliases) are its defaults for ``ctx.llm`` calls; ``dedup``
        and ``cache_ttl_s`` let its identical calls share answers (off for chat-like types,
        where two users asking the same thing may expect different answers)."""
        if max_quota_wait_s is not None and max_quota_wait_s <= 0:
            raise ValueError("max_quota_wait_s must be positive")
        if cache_ttl_s is not None and cache_ttl_s <= 0:
            raise ValueError("cache_ttl_s must be positive")
        for what, value in (("per_minute", per_minute), ("concurrency", concurrency)):
            if value is not None and value < 1:
                raise ValueError(f"{what} must be 1 or more")

        def register(fn: Handler) -> Handler:
            if name in self._types:
                raise ValueError(f"job type {name!r} is already registered")
            self._types[name] = JobType(name, input_model, Priority(priority), fn,
                                        max_attempts, description or (fn.__doc__ or "").strip(),
                                        max_quota_wait_s, per_minute, concurrency, model,
                                        tuple(fallbacks), dedup, cache_ttl_s)
            return fn

        return register

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobType(
                f"unknown job type {shorten(name)}; known types: {known}") from None

    def types(self) -> list[JobType]:
        return [self._types[name] for name in sorted(self._types)]

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


registry = Registry()
"""The process-wide registry the built-in job types register into (see ``tidegate.jobs``)."""
