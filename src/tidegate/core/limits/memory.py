"""The in-memory twin of the Redis limiter: the same semantics in one process (tests,
experiments, single-node use), mirrored line by line in ``adapters/limiter/lua``."""

from __future__ import annotations

import bisect
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..llm import RateLimitInfo
from .policy import LimiterPolicy, pause_ms, round_factor
from .port import (
    DIMS,
    PRIORITIES,
    Admission,
    LaneLimits,
    LaneSnapshot,
    Priority,
    effective,
    limits_from,
    validate_acquire,
    validate_age,
    validate_lane,
    validate_share,
    validate_usage,
)
from .resync import learned_from, resync_target

TOL = 1e-6  # float slack in unit comparisons; every unit (request, token) is >= 1
WALK_LIMIT = 1000  # window entries scanned to estimate a token wait (a lower bound beyond)


@dataclass
class _Waiter:
    rank: float
    priority: str
    input_tokens: int
    output_tokens: int
    deadline: int | None  # None: dormant (came back late), remembered until ``forget``
    forget: int = 0


@dataclass
class _Lane:
    configured: dict[str, int] = field(default_factory=dict)
    stamp: str | None = None  # of the configured limits; None: never configured, or lost
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
    done: tuple[int, int] = (-1, -1)  # when the last two calls ended (settle or release)
    flows: dict[str, float] = field(default_factory=dict)  # "priority:tenant" -> virtual finish
    vt: float | None = None  # start of the last call granted (the lane's virtual time)
    hi: int | None = None  # when a high-priority call last asked (the priority reserve)

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
            self._set_configured(self._lanes.setdefault(lane, _Lane()), limits, self._now())

    def acquire(self, lane: str, *, input_tokens: int, output_tokens: int,
                priority: Priority = "medium", holder: str, ttl_s: float = 300.0,
                limits: LaneLimits | None = None, tenant: str = "",
                weight: float = 1.0) -> Admission:
        validate_lane(lane)
        ttl_ms = validate_acquire(input_tokens, output_tokens, priority, holder, ttl_s)
        validate_share(tenant, weight)
        p = self._p
        handicap = PRIORITIES.index(priority) * p.ms("aging_s")
        flow = f"{priority}:{tenant}"
        with self._lock:
            now = self._now()
            ln = self._lanes.setdefault(lane, _Lane())
            if limits is not None and ln.stamp != limits.stamp():
                lost = ln.stamp is None
                self._set_configured(ln, limits, now)
                if lost:  # no second burst after a loss (see "Lost state" in the module doc)
                    for dim, lvl in ln.levels.items():
                        ln.levels[dim] = min(lvl, 0.0)
            self._housekeep(ln, now)
            levels = self._refill(ln, now)
            if priority == "high":
                ln.hi = now
            # Below high, a call leaves the reserve in each pacer while high ones use the lane.
            reserve_ms = 0
            if priority != "high" and ln.hi is not None and now - ln.hi < p.ms("priority_memory_s"):
                reserve_ms = p.ms("priority_reserve_s")
            me = ln.waiters.get(holder)
            # A returning waiter keeps its rank; a newcomer starts at its flow's fair start.
            vnow = ln.vt if ln.vt is not None and ln.vt > now else now
            start = ln.flows.get(flow, vnow)
            if start < vnow:
                start = vnow
            rank = me.rank if me else start + handicap
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
                if reserve_ms > 0:
                    c = min(c + rate * reserve_ms, cap)
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
                served = rank - handicap if me else start
                if ln.vt is None or served > ln.vt:
                    ln.vt = served
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
                ln.flows[flow] = start + self._tick(levels, cost, conc) / weight
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
            # Nothing of ours in flight and nothing granted since the provider counted: its
            # count is the lane's whole state, so the level may also rise to it (what calls
            # granted in a burst, reaching the provider in another order, made us deduct twice
            # is given back). Only to the count as it was, less the margin: what refilled since
            # is over-counted by the request's travel time, and unlike a resync downwards
            # nothing of our own accounting bounds it. And only if no other call ended since
            # (the last to end is the caller's own): one granted before ours but reaching the
            # provider after its count may have answered already.
            quiet = (since is not None and since["n"] == 0 and ln.done[1] <= now - age_ms
                     and not any(exp > now for exp in ln.fly.values()))
            for dim, name in DIMS:
                if dim in remaining and dim in ln.levels:
                    q = ln.limit(name) * ln.factor  # type: ignore[operator]
                    rate = q / self._window
                    counted = resync_target(remaining[dim], rate, self._window, margin_ms)
                    target = counted
                    if since is not None:
                        target = target + rate * age_ms - since[dim]
                    if margin_ms > 0:
                        target = target - rate * margin_ms
                    lvl = min(ln.levels[dim], target)
                    if quiet:
                        lvl = max(lvl, min(q * self._burst / self._window,
                                           counted - rate * margin_ms))
                    ln.levels[dim] = lvl

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
            ln.done = (now, ln.done[0])
            if success and ln.factor < 1 and now - ln.rec_ms >= self._window:
                ln.factor = round_factor(min(1.0, ln.factor + self._p.increase))
                ln.rec_ms = now
            return True

    def _set_configured(self, ln: _Lane, limits: LaneLimits, now: int) -> None:
        self._refill(ln, now)  # at the old limits, up to now
        ln.configured = {k: v for k, v in limits.as_dict().items() if v is not None}
        ln.stamp = limits.stamp()
        self._reconcile(ln)

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
        for flow in [f for f, fin in ln.flows.items() if fin <= now]:
            del ln.flows[flow]  # behind now: it no longer moves anyone's start

    def _tick(self, levels: dict[str, tuple[float, float, float]], cost: dict[str, int],
              conc: int | None) -> float:
        """The ms of lane capacity one call takes: its cost over the rate, in the tightest
        limited dimension; without rate limits, the concurrency poll over the concurrency."""
        tick = 0.0
        for dim, _name in DIMS:
            if dim in levels and cost[dim] > 0:
                tick = max(tick, cost[dim] / levels[dim][2])
        if tick == 0:
            tick = self._p.ms("concurrency_poll_s") / (conc or 1)
        return tick

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
        """After limits or the factor changed: clamp levels to the new capacities. A limit
        that is new to the lane starts its pacer as if it had charged what the window already
        granted: calls made while it was unknown (a lane's first calls, before any headers)
        are still in flight or counted by the provider, and a full bucket would grant them
        a second time."""
        used = {"req": ln.win["req"], "inp": ln.win["inp"], "out": ln.win["out"],
                "tot": ln.win["inp"] + ln.win["out"]}
        for dim, name in DIMS:
            q = ln.limit(name)
            if q is None:
                ln.levels.pop(dim, None)
                continue
            cap = q * ln.factor * self._burst / self._window
            lvl = ln.levels.get(dim)
            ln.levels[dim] = cap - used[dim] if lvl is None else min(lvl, cap)

    def _granted_since(self, ln: _Lane, cutoff: int) -> dict[str, int]:
        """Tokens the provider charges for grants after ``cutoff``, which it had not counted
        yet: input as known now (the real count once settled: an estimate too high would drain
        the pacer below the provider, as a lane's first, uncalibrated calls did), output as
        reserved (providers charge the max at admission, a refund at settle is ours only).
        Requests: none (see ``observe``); ``n``: how many grants."""
        k = bisect.bisect_right(ln.log, (cutoff, "\uffff"))
        inp = out = 0
        for _t, rid in ln.log[k:k + WALK_LIMIT]:
            inp += ln.amt[rid][0]
            out += ln.est[rid][1]
        return {"req": 0, "inp": inp, "out": out, "tot": inp + out, "n": len(ln.log) - k}

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
