"""How a limiter is tuned: the cautious defaults, and what Tidegate's workers run with."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimiterPolicy:
    """Tuning shared by every implementation. Defaults suit per-minute provider quotas."""

    window_s: float = 60.0  # quota window; providers count per minute
    burst_s: float = 10.0  # pacer capacity in seconds of quota (= window_s: no pacing)
    decrease: float = 0.7  # rate factor multiplier on a 429
    min_factor: float = 0.2
    increase: float = 0.1  # added per successful window after a cut
    cut_cooldown_s: float = 5.0  # 429s closer together than this are one signal
    default_pause_s: float = 1.0  # pause on a 429 that gave no retry-after
    aging_s: float = 30.0  # rank handicap per priority step
    waiter_grace_s: float = 5.0  # a waiter must come back within wait_s + this
    waiter_memory_s: float = 120.0  # a late waiter keeps its rank this long
    concurrency_poll_s: float = 1.0  # wait hint when only a concurrency slot is missing
    sliding_window: bool = True  # also hold every quota in any window_s (see module doc)
    resync_margin_s: float = 0.0  # resync to this much quota below the provider's remaining
    # A call below high priority must leave this much quota in every pacer bucket while the
    # lane has seen a high-priority call within priority_memory_s (see "Priority reserve").
    priority_reserve_s: float = 0.0
    priority_memory_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.burst_s <= self.window_s:
            raise ValueError("burst_s must be in (0, window_s]")
        if not 0 < self.min_factor <= 1 or not 0 < self.decrease <= 1:
            raise ValueError("min_factor and decrease must be in (0, 1]")
        if not 0 <= self.resync_margin_s < self.window_s:
            raise ValueError("resync_margin_s must be in [0, window_s)")
        if not 0 <= self.priority_reserve_s < self.burst_s:
            raise ValueError("priority_reserve_s must be in [0, burst_s)")
        if not self.priority_memory_s > 0:
            raise ValueError("priority_memory_s must be > 0")

    def ms(self, name: str) -> int:
        return int(round(getattr(self, name) * 1000))


# What Tidegate's workers run with (the class defaults above are the cautious baseline):
# * the pacer is a twin of the provider's own bucket (OpenAI and Anthropic hold a minute of
#   quota and refill it continuously), with no sliding window on top: a lane starts with the
#   burst the provider allows and then runs at exactly its rate, instead of leaving a sixth of
#   the first minute unused (10 s pacer) or idling after each burst until it leaves the window.
#   Granting charges the twin before the provider sees the call and both refill alike, so the
#   twin stays below the provider whatever order or delay calls arrive in (a late call finds
#   more refilled, not less); remaining counts from the headers correct it when others share
#   the quota or a refund at settle was not one for the provider;
# * the resync goes a quarter second of quota below what the provider says is left: the
#   count is a call's latency old and the time it took the request to reach the provider is
#   not known, so what refilled since is over-counted by that much. (A whole second held in
#   the pacer and another in the resync cost two seconds of every lane's quota: 3 % of the
#   makespan of a minute-long backlog.)
# * priorities: a waiting low or medium call outranks fresh high ones only after 10 or 5
#   minutes, so user-facing work cuts a saturated lane's backlog, and nothing starves;
# * and half a second of quota is kept for high-priority calls on a lane that has them: a
#   saturated lane's backlog takes each unit as it refills, so a fresh high call, ranked
#   first, waited for the next one (up to a second at 60 RPM); now it finds at least half of
#   it there. What it costs the backlog is that half second once (the level it rides at, held
#   for an hour after the last high call: holding it longer costs nothing more), and nothing
#   on a lane without high-priority calls.
SERVICE_POLICY = LimiterPolicy(burst_s=60.0, sliding_window=False, resync_margin_s=0.25,
                               aging_s=300.0, priority_reserve_s=0.5)


def pause_ms(policy: LimiterPolicy, retry_after_s: float | None) -> int:
    s = policy.default_pause_s if retry_after_s is None else retry_after_s
    return max(0, int(math.ceil(s * 1000)))


def round_factor(x: float) -> float:
    # Six decimals, so 0.7 + 3 x 0.1 is exactly 1.0 in both Python and Lua.
    return math.floor(x * 1e6 + 0.5) / 1e6
