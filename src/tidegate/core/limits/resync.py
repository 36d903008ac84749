"""What a provider's rate-limit headers say, turned into limits to learn and levels to drain
the pacer to (see "Learned limits" in :mod:`tidegate.core.limits`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..llm import RateLimitInfo


@dataclass(frozen=True, slots=True)
class Remaining:
    """What the provider says is left in one bucket; ``limit``/``reset_ms`` when it said so."""

    remaining: int
    limit: int | None = None
    reset_ms: int | None = None  # until the provider's bucket is full again
    exact: bool = True  # the reset is precise enough to tell a fraction of a unit


def learned_from(info: RateLimitInfo) -> tuple[dict[str, int], dict[str, Remaining]]:
    """(advertised limits keyed by LaneLimits field, remaining keyed by bucket name).

    Anthropic's "tokens" headers restate the tighter of its input/output limits, not a total,
    so a combined token figure is used only when no input/output split is advertised."""
    split = any(v is not None for v in (info.limit_input_tokens, info.limit_output_tokens,
                                        info.remaining_input_tokens,
                                        info.remaining_output_tokens))
    tot = (None, None, None) if split else (
        info.remaining_tokens, info.limit_tokens, info.reset_tokens_s)
    limits = {"rpm": info.limit_requests, "input_tpm": info.limit_input_tokens,
              "output_tpm": info.limit_output_tokens, "tpm": tot[1]}
    raw = {"req": (info.remaining_requests, info.limit_requests, info.reset_requests_s),
           "inp": (info.remaining_input_tokens, info.limit_input_tokens, None),
           "out": (info.remaining_output_tokens, info.limit_output_tokens, None),
           "tot": tot}
    remaining = {
        dim: Remaining(max(0, int(rem)), int(lim) if lim is not None and lim > 0 else None,
                       max(0, int(math.ceil(reset * 1000)))
                       if reset is not None and per_minute_reset(rem, lim, reset) else None,
                       info.resets_exact)
        for dim, (rem, lim, reset) in raw.items() if rem is not None}
    return {k: int(v) for k, v in limits.items() if v is not None and v > 0}, remaining


def per_minute_reset(remaining: float, limit: float | None, reset_s: float) -> bool:
    """Whether a reset fits a bucket that refills its limit in a minute. Groq's request
    headers count per day (reset "2m59.56s" with 30 of 14,400 used), and documentation
    examples show resets like "6m0s" with 16 of 150,000 tokens used; taken as a minute's
    refill, such a reset would hold the lane for minutes. Twice a minute's refill, plus a
    second, absorbs rounding (a server sending whole seconds)."""
    if limit is None or limit <= 0:
        return True
    used = max(0.0, limit - remaining)
    return reset_s <= 2 * 60.0 * used / limit + 1.0


def resync_target(rem: Remaining, rate: float, window_ms: int = 60_000,
                  slack_ms: int = 0) -> float:
    """The most our pacer may hold so that, refilling at ``rate`` per ms, it never runs ahead
    of the provider's bucket, which holds ``remaining`` now and refills to ``limit`` in
    ``reset_ms`` (rate (limit - remaining) / reset_ms). For a provider bucket that refills as
    fast as ours this is just ``remaining``; a slower one (shared quota, coarser windows)
    lowers it further, possibly below zero (a debt we wait out).

    ``remaining`` is a whole number, rounded down: up to one unit less than the bucket holds,
    which at a low rate is seconds of quota (two at 30 RPM) lost at every resync. A per-minute
    bucket's reset tells the fraction (it holds ``limit - limit * reset / window``), so the
    target takes it, read with ``reset_ms + slack_ms`` to allow for a reset rounded down; not
    from an inexact reset (an instant to the second, read against our clock)."""
    target = float(rem.remaining)
    if rem.limit is not None and rem.reset_ms is not None:
        deficit = rate * rem.reset_ms - (rem.limit - rem.remaining)
        if deficit > 0:
            target = rem.remaining - deficit
        elif rem.exact:
            held = rem.limit - rem.limit * (rem.reset_ms + slack_ms) / window_ms
            target = max(target, min(rem.remaining + 1.0, held))
    return target
