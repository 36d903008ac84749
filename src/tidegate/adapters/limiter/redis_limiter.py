"""The shared admission controller: every worker on every machine draws from one Redis.

Semantics are those of :mod:`tidegate.core.limits` (the in-memory twin runs the same tests).
Each operation is one Lua script (``lua/*.lua``, each headed by its KEYS/ARGV contract, with
``lua/_lib.lua`` prepended), so a check and its reservation can never interleave with another
worker's. Time is the Redis server's ``TIME`` (one clock for all machines) unless a ``clock`` is
given, which tests use to drive a fake clock through ARGV.

Key layout (``P`` = prefix, default ``tg:lim:``; ``{lane}`` is a Redis Cluster hash tag, so one
lane's keys share a slot and every script touches one slot only):

==================  ======  ==================================================================
``P lanes``         SET     every lane ever configured, observed or acquired (``lanes()``)
``P{lane}:h``       HASH    ``c:<field>`` configured limits, ``cfg`` their stamp,
                            ``l:<field>`` learned limits,
                            ``f`` rate factor, ``cut``/``rec`` ms of last cut / last increase,
                            ``hi`` ms of the last high-priority acquire (priority reserve),
                            ``pause`` paused-until ms, ``pt`` pacer refill ms,
                            ``p:req|inp|out|tot`` pacer levels, ``w:req|inp|out`` window totals
``P{lane}:log``     ZSET    reservation id -> grant ms, for the sliding window and resync
``P{lane}:amt``     HASH    reservation id -> "input output" tokens it counts in the window,
                            then "input output est_input est_output" once settled
``P{lane}:fly``     ZSET    open reservation id -> expiry ms (concurrency)
``P{lane}:res``     HASH    open reservation id -> "grant_ms input output" (its estimate)
``P{lane}:wq``      ZSET    live waiter (holder) -> rank (enqueue ms + priority handicap)
``P{lane}:wdl``     ZSET    live waiter -> deadline ms (wait_s + grace after its last refusal)
``P{lane}:wm``      HASH    waiter -> "rank priority input output" (live and dormant)
``P{lane}:wx``      ZSET    dormant waiter -> ms when its rank is forgotten
``P{lane}:ft``      ZSET    flow ``priority:tenant`` -> its virtual finish ms (fair shares),
                            dropped once behind now; the lane's virtual time is ``vt`` in ``h``
==================  ======  ==================================================================

Only ``h`` and ``lanes`` persist (configuration and learned limits); everything else empties
itself as entries age out, whenever the lane is next touched. If Redis loses them anyway (no
persistence, failover, eviction), the limits every acquire carries put them back.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tidegate.core.limits import (
    DIMS,
    LIMIT_FIELDS,
    PRIORITIES,
    Admission,
    LaneLimits,
    LaneSnapshot,
    LimiterPolicy,
    Priority,
    effective,
    learned_from,
    limits_from,
    pause_ms,
    validate_acquire,
    validate_age,
    validate_lane,
    validate_share,
    validate_usage,
)
from tidegate.core.llm import RateLimitInfo

_LUA = Path(__file__).with_name("lua")
_SCRIPTS = ("acquire", "settle", "rate_limited", "observe", "configure", "snapshot")
_LANE_KEYS = ("h", "log", "amt", "fly", "res", "wq", "wdl", "wm", "wx", "ft")
_BUCKETS = tuple(bucket for bucket, _field in DIMS)


@functools.cache
def _source(name: str) -> str:
    return (_LUA / "_lib.lua").read_text() + "\n" + (_LUA / f"{name}.lua").read_text()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _limit_args(limits: LaneLimits) -> list[str]:
    return [_opt(getattr(limits, f)) for f in LIMIT_FIELDS]


class RedisLimiter:
    """``tidegate.core.limits.Limiter`` over Redis. Thread- and process-safe; keep one per process."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str = "tg:lim:",
                 clock: Callable[[], float] | None = None,
                 policy: LimiterPolicy | None = None) -> None:
        self._r = redis_client
        self._prefix = prefix
        self._clock = clock
        self._p = policy or LimiterPolicy()
        self._scripts = {name: redis_client.register_script(_source(name)) for name in _SCRIPTS}
        self._known: set[str] = set()  # lanes this process already added to the lanes set

    # -- public API --------------------------------------------------------------------------

    def configure(self, lane: str, limits: LaneLimits) -> None:
        validate_lane(lane)
        self._run("configure", self._keys(lane)[:1],
                  self._window_args() + _limit_args(limits) + [limits.stamp()])
        self._register(lane)

    def acquire(self, lane: str, *, input_tokens: int, output_tokens: int,
                priority: Priority = "medium", holder: str, ttl_s: float = 300.0,
                limits: LaneLimits | None = None, tenant: str = "",
                weight: float = 1.0) -> Admission:
        validate_lane(lane)
        ttl_ms = validate_acquire(input_tokens, output_tokens, priority, holder, ttl_s)
        validate_share(tenant, weight)
        self._register(lane)
        p = self._p
        seed = [""] * 6 if limits is None else _limit_args(limits) + [limits.stamp()]
        granted, rid, wait_ms, reason, reseeded = self._run("acquire", self._keys(lane), [
            self._now_arg(), uuid.uuid4().hex, holder, priority, str(input_tokens),
            str(output_tokens), str(ttl_ms), str(p.ms("window_s")), str(p.ms("burst_s")),
            str(p.ms("aging_s")), str(p.ms("waiter_grace_s")), str(p.ms("waiter_memory_s")),
            str(p.ms("concurrency_poll_s")), "1" if p.sliding_window else "0", *seed,
            tenant, repr(float(weight)), str(p.ms("priority_reserve_s")),
            str(p.ms("priority_memory_s"))])
        if int(reseeded):  # the lanes set may have gone with the rest
            self._r.sadd(self._prefix + "lanes", lane)
        if int(granted):
            return Admission(True, _s(rid), 0.0, "ok")
        return Admission(False, None, float(_s(wait_ms)) / 1000, _s(reason))

    def settle(self, lane: str, reservation_id: str, *, input_tokens: int,
               output_tokens: int) -> bool:
        validate_usage(input_tokens, output_tokens)
        return self._settle(lane, reservation_id, input_tokens, output_tokens, success=True)

    def release(self, lane: str, reservation_id: str) -> bool:
        return self._settle(lane, reservation_id, 0, 0, success=False)

    def on_rate_limited(self, lane: str, retry_after_s: float | None = None) -> float:
        validate_lane(lane)
        p = self._p
        until = self._run("rate_limited", self._keys(lane)[:1], [
            self._now_arg(), str(pause_ms(p, retry_after_s)), repr(p.decrease),
            repr(p.min_factor), str(p.ms("cut_cooldown_s")), str(p.ms("window_s")),
            str(p.ms("burst_s"))])
        self._register(lane)
        return float(_s(until)) / 1000

    def observe(self, lane: str, info: RateLimitInfo, *, age_s: float = 0.0) -> None:
        validate_lane(lane)
        age_ms = validate_age(age_s)
        limits, remaining = learned_from(info)
        self._run("observe", self._keys(lane)[:4], self._window_args()
                  + [_opt(limits.get(f)) for f in LIMIT_FIELDS[:4]]
                  + [_opt(getattr(remaining.get(b), f, None))
                     for b in _BUCKETS for f in ("remaining", "limit", "reset_ms")]
                  + [str(age_ms), str(self._p.ms("resync_margin_s")),
                     "1" if info.resets_exact else "0"])
        self._register(lane)

    def snapshot(self, lane: str) -> LaneSnapshot:
        validate_lane(lane)
        raw = self._run("snapshot", self._keys(lane), [
            self._now_arg(), str(self._p.ms("window_s")), str(self._p.ms("waiter_memory_s"))])
        now_ms = float(_s(raw[0]))
        h = {_s(raw[i]): _s(raw[i + 1]) for i in range(5, len(raw), 2)}
        configured = {f: int(h["c:" + f]) for f in LIMIT_FIELDS if "c:" + f in h}
        learned = {f: int(h["l:" + f]) for f in LIMIT_FIELDS if "l:" + f in h}
        limits, sources = effective(configured, learned)
        pause = float(h.get("pause", 0))
        return LaneSnapshot(
            lane=lane, limits=limits, configured=limits_from(configured),
            learned=limits_from(learned), sources=sources, rate_factor=float(h.get("f", 1.0)),
            requests_1m=int(float(h.get("w:req", 0))),
            input_tokens_1m=int(float(h.get("w:inp", 0))),
            output_tokens_1m=int(float(h.get("w:out", 0))), in_flight=int(raw[1]),
            waiting={p: int(raw[2 + i]) for i, p in enumerate(PRIORITIES)},
            paused_until=pause / 1000 if pause > now_ms else None)

    def lanes(self) -> list[str]:
        return sorted(_s(m) for m in self._r.smembers(self._prefix + "lanes"))

    # -- internals ---------------------------------------------------------------------------

    def _settle(self, lane: str, rid: str, inp: int, out: int, *, success: bool) -> bool:
        validate_lane(lane)
        p = self._p
        done = self._run("settle", self._keys(lane), [
            self._now_arg(), rid, str(inp), str(out), "1" if success else "0",
            str(p.ms("window_s")), str(p.ms("burst_s")), str(p.ms("waiter_memory_s")),
            repr(p.increase)])
        return bool(int(done))

    def _keys(self, lane: str) -> list[str]:
        base = f"{self._prefix}{{{lane}}}:"
        return [base + k for k in _LANE_KEYS]

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(int(round(self._clock() * 1000)))

    def _window_args(self) -> list[str]:
        return [self._now_arg(), str(self._p.ms("window_s")), str(self._p.ms("burst_s"))]

    def _run(self, name: str, keys: list[str], args: list[str]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    def _register(self, lane: str) -> None:
        # One SADD per lane per process: the set only feeds lanes(), so it stays off the hot path.
        if lane not in self._known:
            self._r.sadd(self._prefix + "lanes", lane)
            self._known.add(lane)
