"""The limiter's port: lane limits, admissions, snapshots, the ``Limiter`` protocol, and the
argument checks every implementation shares (semantics: see :mod:`tidegate.core.limits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..llm import RateLimitInfo

Priority = Literal["high", "medium", "low"]
PRIORITIES: tuple[str, ...] = ("high", "medium", "low")  # index = handicap in aging steps
LIMIT_FIELDS: tuple[str, ...] = ("rpm", "input_tpm", "output_tpm", "tpm", "concurrency")
# Rate dimensions in check order: (bucket name, LaneLimits field). Same names in Lua.
DIMS: tuple[tuple[str, str], ...] = (
    ("req", "rpm"), ("inp", "input_tpm"), ("out", "output_tpm"), ("tot", "tpm"))
MAX_LANE_LEN = 200
# A tenant's weight is its share of a lane against others waiting at the same priority; the
# bounds keep one tenant's tags within a sane distance of another's.
MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0


@dataclass(frozen=True, slots=True)
class LaneLimits:
    """Per-lane quotas per minute; ``None`` = unlimited or unknown."""

    rpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    tpm: int | None = None  # input + output tokens, for providers that count them together
    concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive int or None, not {v!r}")

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in LIMIT_FIELDS}

    def stamp(self) -> str:
        """These limits as one canonical string (``"60,,,,4"``: rpm 60, concurrency 4), stored
        with them; an acquire carrying another stamp, or finding none, re-seeds the lane."""
        return ",".join("" if v is None else str(v) for v in self.as_dict().values())


@dataclass(frozen=True, slots=True)
class Admission:
    granted: bool
    reservation_id: str | None
    wait_s: float  # 0 when granted; else the earliest time worth asking again
    reason: str  # "ok" | "paused" | "concurrency" | "rpm" | "input_tpm" | "output_tpm" | "tpm" | "priority"


@dataclass(frozen=True, slots=True)
class LaneSnapshot:
    lane: str
    limits: LaneLimits  # effective: configured, else learned
    configured: LaneLimits
    learned: LaneLimits
    sources: dict[str, str]  # limit field -> "configured" | "learned" (limited fields only)
    rate_factor: float
    requests_1m: int  # granted over the last window, whatever their outcome
    input_tokens_1m: int  # charged: estimates, replaced by real usage at settle
    output_tokens_1m: int
    in_flight: int
    waiting: dict[str, int]  # live waiters per priority
    paused_until: float | None  # limiter clock, seconds; None when not paused

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane, "limits": self.limits.as_dict(),
            "configured": self.configured.as_dict(), "learned": self.learned.as_dict(),
            "sources": dict(self.sources), "rate_factor": self.rate_factor,
            "usage_1m": {"requests": self.requests_1m, "input_tokens": self.input_tokens_1m,
                         "output_tokens": self.output_tokens_1m},
            "in_flight": self.in_flight, "waiting": dict(self.waiting),
            "paused_until": self.paused_until,
        }


class Limiter(Protocol):
    """One admission controller per deployment, shared by all workers (see module doc)."""

    def configure(self, lane: str, limits: LaneLimits) -> None:
        """Set the lane's configured limits (replacing earlier ones; ``None`` fields fall back
        to learned limits)."""
        ...

    def acquire(self, lane: str, *, input_tokens: int, output_tokens: int,
                priority: Priority = "medium", holder: str, ttl_s: float = 300.0,
                limits: LaneLimits | None = None, tenant: str = "",
                weight: float = 1.0) -> Admission:
        """Atomically check and reserve every quota of the lane for one call. ``holder`` names
        the logical call across retries (e.g. ``job_id:attempt:step``); it keeps its waiter rank.
        ``limits``: what the caller configured for the lane; if the lane holds others, or lost
        them (see "Lost state" in the module doc), they are set first, in the same step.
        ``tenant`` and ``weight``: whose call it is and its share of the lane against other
        tenants waiting at the same priority (see "Fair shares" in the module doc)."""
        ...

    def settle(self, lane: str, reservation_id: str, *, input_tokens: int,
               output_tokens: int) -> bool:
        """Charge real usage instead of the estimate and free the slot. False if unknown/expired."""
        ...

    def release(self, lane: str, reservation_id: str) -> bool:
        """The call failed without usage: refund tokens (the request still counts), free the slot."""
        ...

    def on_rate_limited(self, lane: str, retry_after_s: float | None = None) -> float:
        """A provider 429: pause the lane and cut its rate. Returns paused_until (seconds)."""
        ...

    def observe(self, lane: str, info: RateLimitInfo, *, age_s: float = 0.0) -> None:
        """Learn advertised limits and drain the pacer to the provider's remaining counts,
        which the provider took ``age_s`` ago (typically the call's latency)."""
        ...

    def snapshot(self, lane: str) -> LaneSnapshot: ...

    def lanes(self) -> list[str]: ...


def validate_lane(lane: str) -> None:
    # Braces would break the Redis Cluster hash tag that keeps a lane's keys together.
    if (not isinstance(lane, str) or not lane or len(lane) > MAX_LANE_LEN
            or any(c in lane for c in "{} \t\r\n")):
        raise ValueError(f"invalid lane name {lane!r}")


def validate_acquire(input_tokens: int, output_tokens: int, priority: str, holder: str,
                     ttl_s: float) -> int:
    """Check acquire's arguments; returns the ttl in ms."""
    validate_usage(input_tokens, output_tokens)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    if not isinstance(holder, str) or not holder or len(holder) > MAX_LANE_LEN:
        raise ValueError(f"invalid holder {holder!r}")
    if not ttl_s > 0:
        raise ValueError("ttl_s must be > 0")
    return max(1, int(round(ttl_s * 1000)))


def validate_share(tenant: str, weight: float) -> None:
    if not isinstance(tenant, str) or len(tenant) > MAX_LANE_LEN:
        raise ValueError(f"invalid tenant {tenant!r}")
    if (isinstance(weight, bool) or not isinstance(weight, (int, float))
            or not MIN_WEIGHT <= weight <= MAX_WEIGHT):
        raise ValueError(f"weight must be a number in [{MIN_WEIGHT}, {MAX_WEIGHT}], "
                         f"not {weight!r}")


def validate_usage(input_tokens: int, output_tokens: int) -> None:
    for name, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, not {v!r}")


def validate_age(age_s: float) -> int:
    """Check observe's ``age_s``; returns it in ms."""
    if (isinstance(age_s, bool) or not isinstance(age_s, (int, float)) or not age_s >= 0
            or math.isinf(age_s)):
        raise ValueError(f"age_s must be a non-negative number, not {age_s!r}")
    return int(round(age_s * 1000))


def limits_from(values: dict[str, int]) -> LaneLimits:
    return LaneLimits(**{k: values[k] for k in LIMIT_FIELDS if k in values})


def effective(configured: dict[str, int], learned: dict[str, int]
              ) -> tuple[LaneLimits, dict[str, str]]:
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    for name in LIMIT_FIELDS:
        if name in configured:
            values[name], sources[name] = configured[name], "configured"
        elif name in learned:
            values[name], sources[name] = learned[name], "learned"
    return limits_from(values), sources

