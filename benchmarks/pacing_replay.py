"""Where a quota-bound lane's makespan goes, replayed in virtual time: the in-memory limiter
(the Redis limiter's twin) with the workers' policy, the gateway's wait-or-re-queue rule, and
the simulator's provider bucket, driven by a discrete-event loop instead of the clock.

    .venv/bin/python -m benchmarks.pacing_replay --case rpm
    .venv/bin/python -m benchmarks.pacing_replay --case tpm

A profiling aid for the real benchmarks (``fidelity_bench``, ``quota_bench``): each run takes a
fraction of a second, so a change in pacing can be judged before minutes of real runs. It
models what the real stack adds only roughly (send jitter, one fixed latency, a fixed re-queue
overhead).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from tidegate.core.limits import SERVICE_POLICY, InMemoryLimiter, LaneLimits, LimiterPolicy
from tidegate.core.limits import calibration as cal
from tidegate.core.llm import RateLimitInfo
from tidegate.llm.gateway import GatewayPolicy, requeue_delay
from tidegate.providers.simulator.quota import BucketState, QuotaStore

LANE = "openai:gpt-4o-mini"



@dataclass
class Call:
    raw_in: int  # chars/4
    true_in: int  # what the provider counts
    cls: cal.ContentClass
    max_out: int
    out: int  # what the provider answers with


@dataclass
class Run:
    makespan_s: float
    minimum_s: float
    charged: int  # units the provider charged on the binding limit
    capacity: int
    rate_s: float
    rate_limited: int
    deliveries: int
    ends: list[float] = field(default_factory=list)

    def line(self, label: str) -> str:
        util = self.charged / (self.capacity + self.rate_s * self.makespan_s)
        return (f"{label}: makespan {self.makespan_s:.2f} s, minimum {self.minimum_s:.2f} s "
                f"-> {self.makespan_s / self.minimum_s:.3f}x, utilisation {util:.1%}, "
                f"429s {self.rate_limited}, deliveries {self.deliveries}")


def replay(calls: list[Call], *, rpm: int, tpm: int, slots: int = 16, latency_s: float = 0.2,
           requeue_s: float = 0.15, jitter_s: float = 0.03, seed: int = 1,
           submit_s: float = 0.5,
           gateway: GatewayPolicy | None = None, policy: LimiterPolicy = SERVICE_POLICY,
           reset_digits: int | None = None) -> Run:
    """``reset_digits``: the provider's resets to that many significant digits (llmock: 3);
    None: to the millisecond (the simulator)."""
    gw = gateway or GatewayPolicy()
    rnd = random.Random(seed)
    now = [0.0]
    limiter = InMemoryLimiter(lambda: now[0], policy=policy)
    limits = LaneLimits(concurrency=slots)
    limiter.configure(LANE, limits)
    provider = QuotaStore(rpm, tpm, clock=lambda: now[0])
    calib = cal.InMemoryCalibrator()
    seq = itertools.count()
    events: list[tuple[float, int, str, int]] = []
    free = [slots]
    backlog: list[int] = []  # job ids waiting for a worker slot
    ends: dict[int, float] = {}
    stats = {"429": 0, "deliveries": 0}

    def at(t: float, kind: str, job: int) -> None:
        heapq.heappush(events, (t, next(seq), kind, job))

    def reserve(job: int) -> int:
        c = calls[job]
        return cal.calibrated(c.raw_in, cal.reserve_factor(
            calib.ratio(LANE, "input", c.cls), "input", c.cls))

    pending: dict[int, tuple[str, int, float]] = {}  # job -> (rid, reserved in, sent)

    def ask(job: int) -> None:
        c = calls[job]
        est = reserve(job)
        adm = limiter.acquire(LANE, input_tokens=est, output_tokens=c.max_out,
                              holder=f"{job}:call", limits=limits)
        if adm.granted:
            assert adm.reservation_id is not None
            # The gateway starts its clock a moment after the grant (the budget hold, the
            # call's thread), as the real one does.
            sent = now[0] + 0.002
            pending[job] = (adm.reservation_id, est, sent)
            at(sent + rnd.uniform(0, jitter_s), "arrive", job)
            return
        if adm.wait_s <= gw.short_wait_s:
            at(now[0] + max(0.01, adm.wait_s), "ask", job)  # slept in place, slot held
            return
        free[0] += 1  # re-queued: the slot goes back
        at(now[0] + requeue_s + requeue_delay(adm.wait_s, gw), "deliver", job)
        start_next()

    def start_next() -> None:
        while free[0] > 0 and backlog:
            free[0] -= 1
            stats["deliveries"] += 1
            ask(backlog.pop(0))

    for j in range(len(calls)):  # submitted over HTTP one after another
        at(j * submit_s / len(calls), "deliver", j)
    while events:
        t, _s, kind, job = heapq.heappop(events)
        now[0] = t
        if kind == "deliver":
            backlog.append(job)
            start_next()
        elif kind == "ask":
            ask(job)
        elif kind == "arrive":
            c = calls[job]
            adm = provider.admit("k", c.true_in, c.max_out)
            info = info_of(adm.buckets, reset_digits)
            if not adm.allowed:
                stats["429"] += 1
                rid, _est, sent = pending.pop(job)
                limiter.release(LANE, rid)
                limiter.observe(LANE, info, age_s=now[0] - sent)
                limiter.on_rate_limited(LANE, adm.retry_after_s)
                ask(job)
                continue
            at(now[0] + latency_s, "answer", job)
            heads[job] = info
        elif kind == "answer":
            c = calls[job]
            rid, _est, sent = pending.pop(job)
            limiter.settle(LANE, rid, input_tokens=c.true_in, output_tokens=c.out)
            limiter.observe(LANE, heads.pop(job), age_s=now[0] - sent)
            calib.learn(LANE, "input", c.cls, estimate=c.raw_in, actual=c.true_in)
            ends[job] = now[0]
            free[0] += 1
            start_next()
    charged_req = len(calls)
    charged_tok = sum(c.true_in + c.max_out for c in calls)
    if tpm and (charged_tok - tpm) / tpm >= (charged_req - rpm) / rpm:
        cap, units = tpm, charged_tok
    else:
        cap, units = rpm, charged_req
    return Run(max(ends.values()), max(0, units - cap) * 60 / cap, units, cap, cap / 60,
               stats["429"], stats["deliveries"], sorted(ends.values()))


heads: dict[int, RateLimitInfo] = {}


def info_of(buckets: tuple[BucketState, ...], digits: int | None) -> RateLimitInfo:
    """The headers a response carries, as the gateway parses them."""
    kw: dict[str, Any] = {}
    for b in buckets:
        if b.name not in ("requests", "tokens"):
            continue
        kw[f"limit_{b.name}"] = b.limit
        kw[f"remaining_{b.name}"] = b.remaining
        kw[f"reset_{b.name}_s"] = (round(b.reset_s, 3) if digits is None or b.reset_s < 1
                                   else float(f"{b.reset_s:.{digits}g}"))
    return RateLimitInfo(**kw)


def rpm_calls(n: int = 60) -> list[Call]:
    return [Call(40, 40, "prose", 64, 50) for _ in range(n)]


def tpm_calls(n: int = 48) -> list[Call]:
    out = []
    for i in range(n):
        kind = ("prose", "cjk", "code")[i % 3]
        f = 0.8 + 0.4 * ((i * 37) % 11) / 10
        if kind == "prose":
            chars = int(3200 * f)
            out.append(Call(chars // 4, chars // 4, "prose", 200, 180))
        elif kind == "cjk":
            chars = int(700 * f)
            out.append(Call(chars // 4, chars, "cjk", 200, 180))
        else:
            chars = int(2400 * f)
            out.append(Call(chars // 4, chars // 3, "code", 200, 180))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["rpm", "tpm"], default="rpm")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    for seed in range(args.seeds):
        if args.case == "rpm":
            run = replay(rpm_calls(), rpm=30, tpm=1_000_000, seed=seed)
        else:
            run = replay(tpm_calls(), rpm=1000, tpm=20_000, seed=seed)
        print(run.line(f"{args.case} seed {seed}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
