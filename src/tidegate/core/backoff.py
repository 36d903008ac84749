"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and Jitter")."""

from __future__ import annotations

import random

# Defaults of TIDEGATE_RETRY_BACKOFF_BASE_S / _CAP_S (config.Settings), used by the runner and
# the LLM gateway alike.
DEFAULT_BASE_S = 2.0
DEFAULT_CAP_S = 60.0


def full_jitter(attempt: int, *, base_s: float = 1.0, cap_s: float = 60.0,
                rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0.0, ceiling)
