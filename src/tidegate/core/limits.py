"""Provider-quota admission: the port (types and the ``Limiter`` protocol) and an in-memory twin.

Every worker on every machine asks one limiter per lane ("provider:model[@account]") before a
provider call. The production implementation is ``tidegate.adapters.limiter.RedisLimiter``;
:class:`InMemoryLimiter` has the same semantics (the unit tests run one body against both).

Semantics, shared by both implementations (times are whole milliseconds of the limiter clock):

* Rate dimensions: requests, input tokens, output tokens, total tokens (input + output). Each
  limited dimension is checked twice, and both checks scale with the lane's rate factor:
  - a *pacer*: a continuously refilled token bucket (rate quota/window, capacity
    ``burst_s`` worth of quota). With ``burst_s`` < ``window_s`` the quota is spread over the
    minute instead of being spent in one burst that a provider enforcing per-second slices
    would reject; with ``burst_s`` = ``window_s`` it is a twin of the bucket OpenAI and
    Anthropic enforce (a minute of quota, refilled continuously);
  - a *sliding window* (unless ``sliding_window`` is off): what was granted in the last
    ``window_s`` (an entry frees its share ``window_s`` + 1 ms after its grant) may never
    exceed the quota, the guarantee "never more than the quota in any 60 s window" that a
    provider counting per window needs. Against a bucket provider it is stricter than the
    provider: after a burst the lane idles until the burst leaves the window.
  A request larger than a capacity is admitted only when that bucket (or window) is full, and
  charged in full, so oversized requests neither starve nor overrun the rate.
* Concurrency: open reservations; each expires ``ttl_s`` after its grant (a dead worker's slot
  comes back on its own).
* Priorities: a refused caller becomes a *waiter* ranked by ``enqueue time + priority handicap``
  (high 0, medium ``aging_s``, low 2 x ``aging_s``): high goes first, but a low waiter outranks
  every caller that arrives more than ``2 x aging_s`` after it, so it is never starved. A caller
  is granted only if the capacity left after it still covers the needs of every live waiter
  ranked ahead of it: capacity beyond what those waiters need is used at once (no idle
  quota while the top waiter is not back yet), and none of them is delayed by a lower one.
  A waiter stays live until ``wait_s + waiter_grace_s`` after its last refusal; one that comes
  back later keeps its rank for ``waiter_memory_s`` more (a re-queued job keeps its place).
* A 429 pauses the lane until now + retry_after (never shortens a pause) and multiplies the rate
  factor by ``decrease`` (floor ``min_factor``), at most once per ``cut_cooldown_s`` so a burst
  of 429s from calls already in flight counts as one signal. Each successful settle at least
  ``window_s`` after the last cut or increase adds ``increase`` (cap 1.0).
* Learned limits: what the provider advertises fills every limit that is not configured;
  configured values win field by field. Remaining counts (with limit and reset, the
  provider's refill rate) resync the pacer downwards only: the provider is the truth, and
  others may share its quota. A count that is ``age_s`` old (the provider counted when the
  request arrived, the answer came a call's latency later) is brought up to now first: plus
  what refilled since, and for tokens minus what this limiter charged for calls granted
  since. Calls granted just before or after ours may reach the provider in either order; the
  resync only ever lowers our level, so each dimension assumes what keeps it from lowering it
  wrongly: requests are never refunded (our count can only lag the provider's, unless others
  share the quota), so they assume the provider saw every call granted since; tokens may have
  been refunded at settle for a provider that charged max output at admission, so they assume
  it saw none of them.
"""

from __future__ import annotations

import bisect
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .llm import RateLimitInfo

Priority = Literal["high", "medium", "low"]
PRIORITIES: tuple[str, ...] = ("high", "medium", "low")  # index = handicap in aging steps
LIMIT_FIELDS: tuple[str, ...] = ("rpm", "input_tpm", "output_tpm", "tpm", "concurrency")
# Rate dimensions in check order: (bucket name, LaneLimits field). Same names in Lua.
DIMS: tuple[tuple[str, str], ...] = (
    ("req", "rpm"), ("inp", "input_tpm"), ("out", "output_tpm"), ("tot", "tpm"))
TOL = 1e-6  # float slack in unit comparisons; every unit (request, token) is >= 1
WALK_LIMIT = 1000  # window entries scanned to estimate a token wait (a lower bound beyond)
MAX_LANE_LEN = 200


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

    def __post_init__(self) -> None:
        if not 0 < self.burst_s <= self.window_s:
            raise ValueError("burst_s must be in (0, window_s]")
        if not 0 < self.min_factor <= 1 or not 0 < self.decrease <= 1:
            raise ValueError("min_factor and decrease must be in (0, 1]")
        if not 0 <= self.resync_margin_s < self.window_s:
            raise ValueError("resync_margin_s must be in [0, window_s)")

    def ms(self, name: str) -> int:
        return int(round(getattr(self, name) * 1000))


# What Tidegate's workers run with (the class defaults above are the cautious baseline):
# * the pacer is a twin of the provider's own bucket (OpenAI and Anthropic hold a minute of
#   quota and refill it continuously), with no sliding window on top: a lane starts with the
#   burst the provider allows and then runs at exactly its rate, instead of leaving a sixth of
#   the first minute unused (10 s pacer) or idling after each burst until it leaves the window.
#   Granting charges the twin before the provider sees the call and both refill alike, so the
#   twin stays below the provider; remaining counts from the headers correct it when others
#   share the quota or a refund at settle was not one for the provider;
# * it holds one second of quota less than the provider, and resyncs to one second below
#   what the provider says is left, so calls that reach the provider in a slightly different
#   order or spacing than they were granted never find it short;
# * priorities: a waiting low or medium call outranks fresh high ones only after 10 or 5
#   minutes, so user-facing work cuts a saturated lane's backlog, and nothing starves.
SERVICE_POLICY = LimiterPolicy(burst_s=59.0, sliding_window=False, resync_margin_s=1.0,
                               aging_s=300.0)


class Limiter(Protocol):
    """One admission controller per deployment, shared by all workers (see module doc)."""

    def configure(self, lane: str, limits: LaneLimits) -> None:
        """Set the lane's configured limits (replacing earlier ones; ``None`` fields fall back
        to learned limits)."""
        ...

    def acquire(self, lane: str, *, input_tokens: int, output_tokens: int,
                priority: Priority = "medium", holder: str, ttl_s: float = 300.0) -> Admission:
        """Atomically check and reserve every quota of the lane for one call. ``holder`` names
        the logical call across retries (e.g. ``job_id:attempt:step``); it keeps its waiter rank."""
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
    for name, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, not {v!r}")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    if not isinstance(holder, str) or not holder or len(holder) > MAX_LANE_LEN:
        raise ValueError(f"invalid holder {holder!r}")
    if not ttl_s > 0:
        raise ValueError("ttl_s must be > 0")
    return max(1, int(round(ttl_s * 1000)))


def validate_usage(input_tokens: int, output_tokens: int) -> None:
    for name, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, not {v!r}")


def pause_ms(policy: LimiterPolicy, retry_after_s: float | None) -> int:
    s = policy.default_pause_s if retry_after_s is None else retry_after_s
    return max(0, int(math.ceil(s * 1000)))


@dataclass(frozen=True, slots=True)
class Remaining:
    """What the provider says is left in one bucket; ``limit``/``reset_ms`` when it said so."""

    remaining: int
    limit: int | None = None
    reset_ms: int | None = None  # until the provider's bucket is full again


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
                       max(0, int(math.ceil(reset * 1000))) if reset is not None else None)
        for dim, (rem, lim, reset) in raw.items() if rem is not None}
    return {k: int(v) for k, v in limits.items() if v is not None and v > 0}, remaining


def resync_target(rem: Remaining, rate: float) -> float:
    """The most our pacer may hold so that, refilling at ``rate`` per ms, it never runs ahead
    of the provider's bucket, which holds ``remaining`` now and refills to ``limit`` in
    ``reset_ms`` (rate (limit - remaining) / reset_ms). For a provider bucket that refills as
    fast as ours this is just ``remaining``; a slower one (shared quota, coarser windows)
    lowers it further, possibly below zero (a debt we wait out)."""
    target = float(rem.remaining)
    if rem.limit is not None and rem.reset_ms is not None:
        deficit = rate * rem.reset_ms - (rem.limit - rem.remaining)
        if deficit > 0:
            target = rem.remaining - deficit
    return target


def validate_age(age_s: float) -> int:
    """Check observe's ``age_s``; returns it in ms."""
    if (isinstance(age_s, bool) or not isinstance(age_s, (int, float)) or not age_s >= 0
            or math.isinf(age_s)):
        raise ValueError(f"age_s must be a non-negative number, not {age_s!r}")
    return int(round(age_s * 1000))


def round_factor(x: float) -> float:
    # Six decimals, so 0.7 + 3 x 0.1 is exactly 1.0 in both Python and Lua.
    return math.floor(x * 1e6 + 0.5) / 1e6


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


# ----------------------------------------------------------------------------- in-memory twin


@dataclass
class _Waiter:
    rank: int
    priority: str
    input_tokens: int
    output_tokens: int
    deadline: int | None  # None: dormant (came back late), remembered until ``forget``
    forget: int = 0


@dataclass
class _Lane:
    configured: dict[str, int] = field(default_factory=dict)
    learned: dict[str, int] = field(default_factory=dict)
    factor: float = 1.0
    cut_ms: int | None = None
    rec_ms: int = 0
    pause_ms: int = 0
    pt: int | None = None  # pacer: last refill
    levels: dict[str, float] = field(default_factory=dict)
    win: dict[str, int] = field(default_factory=lambda: {"req": 0, "inp": 0, "out": 0})
    log: list[tuple[int, str]] = field(default_factory=list)  # (grant ms, rid), sorted
    amt: dict[str, tuple[int, int]] = field(default_factory=dict)  # rid -> tokens in window
    est: dict[str, tuple[int, int]] = field(default_factory=dict)  # rid -> charged at grant
    fly: dict[str, int] = field(default_factory=dict)  # rid -> expiry ms
    res: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # rid -> (t, in, out)
    waiters: dict[str, _Waiter] = field(default_factory=dict)

    def limit(self, name: str) -> int | None:
        return self.configured.get(name) or self.learned.get(name)


class InMemoryLimiter:
    """The Redis limiter's semantics in one process (tests, experiments, single-node use)."""

    def __init__(self, clock: Callable[[], float], *, policy: LimiterPolicy | None = None) -> None:
        self._clock = clock
        self._p = policy or LimiterPolicy()
        self._window = self._p.ms("window_s")
        self._burst = self._p.ms("burst_s")
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------

    def configure(self, lane: str, limits: LaneLimits) -> None:
        validate_lane(lane)
        with self._lock:
            ln = self._lanes.setdefault(lane, _Lane())
            self._refill(ln, self._now())
            ln.configured = {k: v for k, v in limits.as_dict().items() if v is not None}
            self._reconcile(ln)

    def acquire(self, lane: str, *, input_tokens: int, output_tokens: int,
                priority: Priority = "medium", holder: str, ttl_s: float = 300.0) -> Admission:
        validate_lane(lane)
        ttl_ms = validate_acquire(input_tokens, output_tokens, priority, holder, ttl_s)
        p = self._p
        with self._lock:
            now = self._now()
            ln = self._lanes.setdefault(lane, _Lane())
            self._housekeep(ln, now)
            levels = self._refill(ln, now)
            me = ln.waiters.get(holder)
            rank = me.rank if me else now + PRIORITIES.index(priority) * p.ms("aging_s")
            ahead = [w for w in ln.waiters.values() if w.deadline is not None and w.rank < rank]
            a_in = sum(w.input_tokens for w in ahead)
            a_out = sum(w.output_tokens for w in ahead)
            cost = {"req": 1, "inp": input_tokens, "out": output_tokens,
                    "tot": input_tokens + output_tokens}
            queued = {"req": len(ahead), "inp": a_in, "out": a_out, "tot": a_in + a_out}
            used = {"req": ln.win["req"], "inp": ln.win["inp"], "out": ln.win["out"],
                    "tot": ln.win["inp"] + ln.win["out"]}

            blocks: list[tuple[int, str, bool]] = []  # (wait ms, reason, fails on its own)
            if ln.pause_ms > now:
                blocks.append((ln.pause_ms - now, "paused", True))
            conc = ln.limit("concurrency")
            if conc is not None and len(ln.fly) + len(ahead) + 1 > conc:
                wait = p.ms("concurrency_poll_s")
                if ln.fly:
                    wait = min(wait, min(ln.fly.values()) - now)
                blocks.append((wait, "concurrency", len(ln.fly) + 1 > conc))
            window_needs: dict[str, tuple[float, bool]] = {}
            for dim, name in DIMS:
                if dim not in levels or cost[dim] == 0:
                    continue  # a call that spends none of a dimension cannot overrun or delay it
                lvl, cap, rate = levels[dim]
                qe = ln.limit(name) * ln.factor  # type: ignore[operator]
                c = min(cost[dim], cap)
                need = queued[dim] + c - lvl
                if need > TOL:
                    blocks.append((math.ceil(need / rate), name, c - lvl > TOL))
                if not p.sliding_window:
                    continue
                c = min(cost[dim], qe)
                need = used[dim] + queued[dim] + c - qe
                if need > TOL:
                    window_needs[dim] = (need, used[dim] + c - qe > TOL)
            for dim, name in DIMS:
                if dim in window_needs:
                    need, own = window_needs[dim]
                    blocks.append((self._window_wait(ln, dim, need, now), name, own))

            if not blocks:
                rid = uuid.uuid4().hex
                for dim, (lvl, _cap, _rate) in levels.items():
                    ln.levels[dim] = lvl - cost[dim]
                ln.win["req"] += 1
                ln.win["inp"] += input_tokens
                ln.win["out"] += output_tokens
                bisect.insort(ln.log, (now, rid))
                ln.amt[rid] = ln.est[rid] = (input_tokens, output_tokens)
                ln.fly[rid] = now + ttl_ms
                ln.res[rid] = (now, input_tokens, output_tokens)
                ln.waiters.pop(holder, None)
                return Admission(True, rid, 0.0, "ok")

            wait, reason, best = 0, "priority", -1
            for w, name, own in blocks:
                wait = max(wait, w)
                if own and w > best:
                    best, reason = w, name
            wait = max(1, wait)
            if me is None:
                me = _Waiter(rank, priority, input_tokens, output_tokens, None)
                ln.waiters[holder] = me
            me.priority, me.input_tokens, me.output_tokens = priority, input_tokens, output_tokens
            me.deadline = now + wait + p.ms("waiter_grace_s")
            return Admission(False, None, wait / 1000, reason)

    def settle(self, lane: str, reservation_id: str, *, input_tokens: int,
               output_tokens: int) -> bool:
        validate_usage(input_tokens, output_tokens)
        return self._settle(lane, reservation_id, input_tokens, output_tokens, success=True)

    def release(self, lane: str, reservation_id: str) -> bool:
        return self._settle(lane, reservation_id, 0, 0, success=False)

    def on_rate_limited(self, lane: str, retry_after_s: float | None = None) -> float:
        validate_lane(lane)
        p = self._p
        ra = pause_ms(p, retry_after_s)
        with self._lock:
            now = self._now()
            ln = self._lanes.setdefault(lane, _Lane())
            self._refill(ln, now)
            ln.pause_ms = max(ln.pause_ms, now + ra)
            if ln.cut_ms is None or now - ln.cut_ms >= p.ms("cut_cooldown_s"):
                ln.factor = round_factor(max(p.min_factor, ln.factor * p.decrease))
                ln.cut_ms = now
            ln.rec_ms = now  # this window is not a successful one
            self._reconcile(ln)
            return ln.pause_ms / 1000

    def observe(self, lane: str, info: RateLimitInfo, *, age_s: float = 0.0) -> None:
        validate_lane(lane)
        age_ms = validate_age(age_s)
        margin_ms = self._p.ms("resync_margin_s")
        limits, remaining = learned_from(info)
        with self._lock:
            now = self._now()
            ln = self._lanes.setdefault(lane, _Lane())
            self._refill(ln, now)
            ln.learned.update(limits)
            self._reconcile(ln)
            since = self._granted_since(ln, now - age_ms) if age_ms > 0 else None
            for dim, name in DIMS:
                if dim in remaining and dim in ln.levels:
                    rate = ln.limit(name) * ln.factor / self._window  # type: ignore[operator]
                    target = resync_target(remaining[dim], rate)
                    if since is not None:
                        target = target + rate * age_ms - since[dim]
                    if margin_ms > 0:
                        target = target - rate * margin_ms
                    ln.levels[dim] = min(ln.levels[dim], target)

    def snapshot(self, lane: str) -> LaneSnapshot:
        validate_lane(lane)
        with self._lock:
            now = self._now()
            ln = self._lanes.get(lane) or _Lane()
            self._housekeep(ln, now)
            waiting = dict.fromkeys(PRIORITIES, 0)
            for w in ln.waiters.values():
                if w.deadline is not None:
                    waiting[w.priority] += 1
            limits, sources = effective(ln.configured, ln.learned)
            return LaneSnapshot(
                lane=lane, limits=limits, configured=limits_from(ln.configured),
                learned=limits_from(ln.learned), sources=sources, rate_factor=ln.factor,
                requests_1m=ln.win["req"], input_tokens_1m=ln.win["inp"],
                output_tokens_1m=ln.win["out"], in_flight=len(ln.fly), waiting=waiting,
                paused_until=ln.pause_ms / 1000 if ln.pause_ms > now else None)

    def lanes(self) -> list[str]:
        with self._lock:
            return sorted(self._lanes)

    # -- internals (mirrored line by line in adapters/limiter/lua) ---------------------------

    def _now(self) -> int:
        return int(round(self._clock() * 1000))

    def _settle(self, lane: str, rid: str, inp: int, out: int, *, success: bool) -> bool:
        validate_lane(lane)
        with self._lock:
            ln = self._lanes.get(lane)
            if ln is None:
                return False
            now = self._now()
            self._housekeep(ln, now)
            r = ln.res.get(rid)
            if r is None:
                return False
            levels = self._refill(ln, now)
            d_in, d_out = inp - r[1], out - r[2]
            if rid in ln.amt:  # still inside the window: correct what it counts
                ln.amt[rid] = (inp, out)
                ln.win["inp"] += d_in
                ln.win["out"] += d_out
            for dim, delta in (("inp", d_in), ("out", d_out), ("tot", d_in + d_out)):
                if dim in levels:
                    lvl, cap, _rate = levels[dim]
                    ln.levels[dim] = min(cap, lvl - delta)
            del ln.fly[rid], ln.res[rid]
            if success and ln.factor < 1 and now - ln.rec_ms >= self._window:
                ln.factor = round_factor(min(1.0, ln.factor + self._p.increase))
                ln.rec_ms = now
            return True

    def _housekeep(self, ln: _Lane, now: int) -> None:
        cutoff = now - self._window
        k = 0
        while k < len(ln.log) and ln.log[k][0] < cutoff:
            a_in, a_out = ln.amt.pop(ln.log[k][1])
            del ln.est[ln.log[k][1]]
            ln.win["req"] -= 1
            ln.win["inp"] -= a_in
            ln.win["out"] -= a_out
            k += 1
        del ln.log[:k]
        for rid in [r for r, exp in ln.fly.items() if exp <= now]:
            del ln.fly[rid]
            ln.res.pop(rid, None)
        memory = self._p.ms("waiter_memory_s")
        for w in ln.waiters.values():
            if w.deadline is not None and w.deadline <= now:
                w.deadline, w.forget = None, now + memory
        for holder in [h for h, w in ln.waiters.items() if w.deadline is None and w.forget <= now]:
            del ln.waiters[holder]

    def _refill(self, ln: _Lane, now: int) -> dict[str, tuple[float, float, float]]:
        """Bring each limited pacer bucket to ``now``; dim -> (level, capacity, rate per ms)."""
        elapsed = max(0, now - ln.pt) if ln.pt is not None else 0
        out: dict[str, tuple[float, float, float]] = {}
        for dim, name in DIMS:
            q = ln.limit(name)
            if q is None:
                continue
            qe = q * ln.factor
            cap = qe * self._burst / self._window
            rate = qe / self._window
            lvl = ln.levels.get(dim)
            lvl = cap if lvl is None else min(cap, lvl + elapsed * rate)
            ln.levels[dim] = lvl
            out[dim] = (lvl, cap, rate)
        ln.pt = now
        return out

    def _reconcile(self, ln: _Lane) -> None:
        """After limits or the factor changed: clamp levels to the new capacities."""
        for dim, name in DIMS:
            q = ln.limit(name)
            if q is None:
                ln.levels.pop(dim, None)
                continue
            cap = q * ln.factor * self._burst / self._window
            lvl = ln.levels.get(dim)
            ln.levels[dim] = cap if lvl is None else min(lvl, cap)

    def _granted_since(self, ln: _Lane, cutoff: int) -> dict[str, int]:
        """Tokens charged for grants after ``cutoff`` (their estimates, even once settled),
        which the provider had not counted yet. Requests: none (see ``observe``)."""
        k = bisect.bisect_right(ln.log, (cutoff, "\uffff"))
        inp = out = 0
        for _t, rid in ln.log[k:k + WALK_LIMIT]:
            a_in, a_out = ln.est[rid]
            inp += a_in
            out += a_out
        return {"req": 0, "inp": inp, "out": out, "tot": inp + out}

    def _window_wait(self, ln: _Lane, dim: str, need: float, now: int) -> int:
        """Ms until ``need`` units have left the window (a lower bound past WALK_LIMIT)."""
        poll = self._p.ms("concurrency_poll_s")
        if dim == "req":
            k = min(math.ceil(need - TOL) - 1, len(ln.log) - 1)
            return ln.log[k][0] + self._window + 1 - now if k >= 0 else poll
        freed, last = 0, None
        for t, rid in ln.log[:WALK_LIMIT]:
            a_in, a_out = ln.amt[rid]
            freed += a_in if dim == "inp" else a_out if dim == "out" else a_in + a_out
            last = t
            if freed >= need - TOL:
                break
        return last + self._window + 1 - now if last is not None else poll
