"""Limiter arithmetic on a fake clock, one body against InMemoryLimiter and RedisLimiter.

The Redis variant receives the fake time through ARGV, so both run the very same numbers; a
final test drives both with one random workload and demands identical answers.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.services import REDIS_URL, need
from tidegate.core.limits import (
    SERVICE_POLICY,
    Admission,
    InMemoryLimiter,
    LaneLimits,
    Limiter,
    LimiterPolicy,
)
from tidegate.core.llm import RateLimitInfo

LANE = "openai:gpt-4o-mini"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


MakeLimiter = Callable[..., Limiter]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_client() -> Iterator[object]:
    import redis

    need(REDIS_URL, 6379, "Redis")
    client = redis.Redis.from_url(REDIS_URL)
    prefixes: list[str] = []
    client.test_prefixes = prefixes  # type: ignore[attr-defined]
    yield client
    for prefix in prefixes:  # each test owns a prefix; remove only what it wrote
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    client.close()


def client_prefix(client: object) -> str:
    """The key prefix of the limiter the test made last."""
    return client.test_prefixes[-1]  # type: ignore[attr-defined, no-any-return]


def _redis_factory(client: object, clock: FakeClock) -> MakeLimiter:
    from tidegate.adapters.limiter import RedisLimiter

    def make(policy: LimiterPolicy | None = None) -> Limiter:
        prefix = f"tg:test:{uuid.uuid4().hex[:12]}:"
        client.test_prefixes.append(prefix)  # type: ignore[attr-defined]
        return RedisLimiter(client, prefix=prefix, clock=clock, policy=policy)  # type: ignore[arg-type]

    return make


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> MakeLimiter:
    if request.param == "memory":
        return lambda policy=None: InMemoryLimiter(clock, policy=policy)
    return _redis_factory(request.getfixturevalue("redis_client"), clock)


@pytest.fixture
def lim(make: MakeLimiter) -> Limiter:
    return make()


def ask(lim: Limiter, holder: str, inp: int = 0, out: int = 0, priority: str = "medium",
        ttl_s: float = 300.0, lane: str = LANE, limits: LaneLimits | None = None,
        tenant: str = "", weight: float = 1.0) -> Admission:
    return lim.acquire(lane, input_tokens=inp, output_tokens=out, priority=priority,  # type: ignore[arg-type]
                       holder=holder, ttl_s=ttl_s, limits=limits, tenant=tenant, weight=weight)


# --------------------------------------------------------------------------- rates


def test_rpm_allows_a_burst_then_paces_at_the_rate(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(rpm=60))  # pacer: 10 s of quota = 10 requests, 1/s
    assert all(ask(lim, f"h{i}").granted for i in range(10))
    a = ask(lim, "h10")
    assert (a.granted, a.wait_s, a.reason, a.reservation_id) == (False, 1.0, "rpm", None)
    clock.advance(0.5)
    assert ask(lim, "h10").wait_s == 0.5
    clock.advance(0.5)
    assert ask(lim, "h10").granted


def test_service_policy_bursts_the_providers_minute_then_runs_at_its_rate(
        make: MakeLimiter, clock: FakeClock) -> None:
    """What workers run with: a twin of the provider's own bucket (a minute of quota, refilled
    continuously); no sliding window to idle the lane after a burst. Granting charges the twin
    before the provider sees the call, so nothing is held in hand here: the provider has at
    least what the twin has whenever a call arrives, however late or out of order."""
    lim = make(SERVICE_POLICY)
    lim.configure(LANE, LaneLimits(rpm=60))
    granted = 0
    while ask(lim, f"b{granted}").granted:
        granted += 1
    assert granted == 60  # the provider's whole minute
    waiting = f"b{granted}"  # refused: it waits at the front, and comes back
    for i in range(120):  # then exactly one a second, never faster
        clock.advance(1.0)
        assert ask(lim, waiting).granted, i
        waiting = f"r{i}"
        assert not ask(lim, waiting).granted, i


def test_window_holds_at_most_the_quota_in_any_60s(make: MakeLimiter, clock: FakeClock) -> None:
    lim = make(LimiterPolicy(burst_s=60))  # no pacing: only the sliding window limits
    lim.configure(LANE, LaneLimits(rpm=5))
    assert all(ask(lim, f"h{i}").granted for i in range(5))
    a = ask(lim, "late")
    assert (a.granted, a.reason, a.wait_s) == (False, "rpm", 60.001)
    clock.advance(30)
    assert ask(lim, "late").wait_s == 30.001
    clock.advance(30)  # exactly 60 s later: the first grants still count
    assert not ask(lim, "late").granted
    clock.advance(0.001)
    assert ask(lim, "late").granted
    assert lim.snapshot(LANE).requests_1m == 1


@pytest.mark.parametrize(("limits", "first", "second", "reason", "wait"), [
    (LaneLimits(input_tpm=6000), (800, 0), (300, 0), "input_tpm", 1.0),  # 1000 cap, 100/s
    (LaneLimits(output_tpm=600), (0, 100), (0, 50), "output_tpm", 5.0),  # 100 cap, 10/s
    (LaneLimits(tpm=1200), (150, 50), (10, 0), "tpm", 0.5),  # 200 cap, 20/s, in + out
])
def test_token_buckets(lim: Limiter, clock: FakeClock, limits: LaneLimits, first: tuple[int, int],
                       second: tuple[int, int], reason: str, wait: float) -> None:
    lim.configure(LANE, limits)
    assert ask(lim, "a", *first).granted
    b = ask(lim, "b", *second)
    assert (b.granted, b.reason, b.wait_s) == (False, reason, wait)
    clock.advance(wait)
    assert ask(lim, "b", *second).granted


def test_oversized_request_waits_for_a_full_bucket_and_pays_in_full(
        lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(input_tpm=600))  # cap 100, 10 tokens/s
    assert ask(lim, "a", 50).granted
    big = ask(lim, "big", 250)
    assert (big.granted, big.reason, big.wait_s) == (False, "input_tpm", 5.0)
    clock.advance(5)
    assert ask(lim, "big", 250).granted  # bucket full; now 150 tokens in debt
    assert ask(lim, "c", 10).wait_s == 16.0


def test_window_counts_tokens(make: MakeLimiter, clock: FakeClock) -> None:
    lim = make(LimiterPolicy(burst_s=60))
    lim.configure(LANE, LaneLimits(input_tpm=1000))
    assert ask(lim, "a", 600).granted
    clock.advance(10)
    assert ask(lim, "b", 300).granted
    c = ask(lim, "c", 300)  # needs the first 600 to age out, at T0 + 60.001
    assert (c.granted, c.reason) == (False, "input_tpm")
    assert c.wait_s == pytest.approx(50.001)


# --------------------------------------------------------------------------- reservations


def test_concurrency_cap_and_settle_frees_the_slot(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(concurrency=2))
    a, _ = ask(lim, "a"), ask(lim, "b")
    c = ask(lim, "c")
    assert (c.granted, c.reason, c.wait_s) == (False, "concurrency", 1.0)
    assert lim.settle(LANE, a.reservation_id or "", input_tokens=1, output_tokens=1)
    assert ask(lim, "c").granted
    assert lim.snapshot(LANE).in_flight == 2


def test_dead_holders_reservation_expires(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(concurrency=1))
    dead = ask(lim, "dead", ttl_s=5)
    assert dead.granted
    clock.advance(4.5)
    b = ask(lim, "b")
    assert (b.granted, b.reason, b.wait_s) == (False, "concurrency", 0.5)  # until the expiry
    clock.advance(0.5)
    assert ask(lim, "b").granted
    assert not lim.settle(LANE, dead.reservation_id or "", input_tokens=1, output_tokens=1)
    assert lim.snapshot(LANE).in_flight == 1


def test_settle_refunds_or_charges_the_difference(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(input_tpm=6000))  # cap 1000, 100 tokens/s
    a = ask(lim, "a", 1000)
    assert lim.settle(LANE, a.reservation_id or "", input_tokens=400, output_tokens=7)
    b = ask(lim, "b", 600)  # the 600 refunded are usable at once
    assert b.granted
    assert lim.settle(LANE, b.reservation_id or "", input_tokens=900, output_tokens=0)
    assert ask(lim, "c", 100).wait_s == 4.0  # 300 over the estimate: 300 tokens in debt
    s = lim.snapshot(LANE)
    assert (s.requests_1m, s.input_tokens_1m, s.output_tokens_1m, s.in_flight) == (2, 1300, 7, 0)
    assert not lim.settle(LANE, b.reservation_id or "", input_tokens=1, output_tokens=0)


def test_release_refunds_tokens_but_the_request_counts(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(rpm=60, input_tpm=6000))
    a = ask(lim, "a", 1000, 50)
    assert lim.release(LANE, a.reservation_id or "")
    assert not lim.release(LANE, a.reservation_id or "")
    s = lim.snapshot(LANE)
    assert (s.requests_1m, s.input_tokens_1m, s.output_tokens_1m, s.in_flight) == (1, 0, 0, 0)
    assert ask(lim, "b", 1000).granted


# --------------------------------------------------------------------------- 429s


def test_rate_limited_pauses_the_lane_and_never_shortens_it(lim: Limiter, clock: FakeClock) -> None:
    assert lim.on_rate_limited(LANE, 10) == T0 + 10
    a = ask(lim, "a")
    assert (a.granted, a.reason, a.wait_s) == (False, "paused", 10.0)
    clock.advance(2)
    assert lim.on_rate_limited(LANE, 3) == T0 + 10
    assert lim.snapshot(LANE).paused_until == T0 + 10
    clock.advance(8)
    assert lim.snapshot(LANE).paused_until is None
    assert ask(lim, "a").granted
    assert lim.on_rate_limited(LANE, None) == T0 + 11  # default pause: 1 s


def test_rate_factor_cuts_once_per_episode_floors_and_recovers(
        lim: Limiter, clock: FakeClock) -> None:
    lim.on_rate_limited(LANE, 0)
    assert lim.snapshot(LANE).rate_factor == 0.7
    clock.advance(1)
    lim.on_rate_limited(LANE, 0)  # within the cooldown: the same episode
    assert lim.snapshot(LANE).rate_factor == 0.7
    factors = []
    for _ in range(5):
        clock.advance(5)
        lim.on_rate_limited(LANE, 0)
        factors.append(lim.snapshot(LANE).rate_factor)
    assert factors == [0.49, 0.343, 0.2401, 0.2, 0.2]

    def call(success: bool = True) -> None:
        r = ask(lim, "x").reservation_id or ""
        assert (lim.settle(LANE, r, input_tokens=1, output_tokens=1) if success
                else lim.release(LANE, r))

    seen = []
    for step in (30, 30, 1, 59, 60, 60, 60, 60, 60, 60, 60, 60, 60):
        clock.advance(step)
        call()
        seen.append(lim.snapshot(LANE).rate_factor)
    assert seen == [0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0]
    lim.on_rate_limited(LANE, 0)
    clock.advance(60)
    call(success=False)  # a failure is no evidence of headroom
    assert lim.snapshot(LANE).rate_factor == 0.7


def test_rate_factor_scales_every_bucket(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(rpm=60))
    lim.on_rate_limited(LANE, 0)  # factor 0.7: cap 7 requests, 0.7/s
    assert all(ask(lim, f"h{i}").granted for i in range(7))
    a = ask(lim, "h7")
    assert (a.granted, a.reason, a.wait_s) == (False, "rpm", 1.429)


# --------------------------------------------------------------------------- priorities


def test_high_priority_goes_first(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(concurrency=1))
    a = ask(lim, "a")
    assert not ask(lim, "low", priority="low").granted
    assert not ask(lim, "med", priority="medium").granted
    assert not ask(lim, "high", priority="high").granted
    assert lim.snapshot(LANE).waiting == {"high": 1, "medium": 1, "low": 1}
    lim.settle(LANE, a.reservation_id or "", input_tokens=0, output_tokens=0)
    order = []
    for _ in range(3):
        for holder, prio in (("low", "low"), ("med", "medium"), ("high", "high")):
            if holder in order:
                continue
            got = ask(lim, holder, priority=prio)
            if got.granted:
                order.append(holder)
                lim.settle(LANE, got.reservation_id or "", input_tokens=0, output_tokens=0)
            else:
                assert got.reason == "priority"
    assert order == ["high", "med", "low"]
    assert lim.snapshot(LANE).waiting == {"high": 0, "medium": 0, "low": 0}


def test_capacity_beyond_what_waiters_ahead_need_is_used_at_once(
        lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(input_tpm=6000))  # cap 1000, 100 tokens/s
    assert ask(lim, "x", 1000, priority="high").granted
    h = ask(lim, "h", 500, priority="high")
    assert (h.granted, h.wait_s) == (False, 5.0)
    clock.advance(5.5)  # 550 available; h is late and needs 500 of them
    low = ask(lim, "low", 100, priority="low")
    assert (low.granted, low.reason, low.wait_s) == (False, "priority", 0.5)
    clock.advance(0.5)  # 600: the 100 beyond h's need go to low without delaying h
    assert ask(lim, "low", 100, priority="low").granted
    assert ask(lim, "h", 500, priority="high").granted


RESERVE = dataclasses.replace(SERVICE_POLICY, priority_reserve_s=0.5)


def test_a_backlog_leaves_part_of_each_unit_for_high_calls(
        make: MakeLimiter, clock: FakeClock) -> None:
    """While high calls use a saturated lane, a medium one leaves half a second of quota in
    the pacer: a fresh high call finds it there, and the lane still runs at its rate."""
    lim = make(RESERVE)
    lim.configure(LANE, LaneLimits(rpm=60))  # 1 request a second
    burst = 0
    while ask(lim, f"m{burst}").granted:  # no high call yet: the backlog takes every unit
        burst += 1
    assert burst == 60
    m = "m60"  # refused: the backlog's next call, waiting
    h = ask(lim, "h0", priority="high")
    assert (h.granted, h.wait_s, h.reason) == (False, 1.0, "rpm")
    clock.advance(1.0)
    assert ask(lim, "h0", priority="high").granted
    a = ask(lim, m)  # needs its unit and the reserve: 1.5 s of refill
    assert (a.granted, a.wait_s, a.reason) == (False, 1.5, "rpm")
    clock.advance(1.0)
    assert ask(lim, m).wait_s == 0.5
    assert ask(lim, "h1", priority="high").granted  # the unit there is the high call's
    clock.advance(1.0)  # level 1: the medium waiter still needs 1.5
    assert ask(lim, m).wait_s == 0.5
    clock.advance(0.5)
    assert ask(lim, m).granted  # level 0.5: the reserve is left
    assert ask(lim, "h2", priority="high").wait_s == 0.5  # at most a unit less the reserve


def test_a_high_call_waits_at_most_a_unit_less_the_reserve_behind_a_backlog(
        make: MakeLimiter, clock: FakeClock) -> None:
    lim = make(RESERVE)
    lim.configure(LANE, LaneLimits(rpm=60))
    rng = random.Random(3)
    due = {f"m{i}": clock() for i in range(40)}  # a backlog asking again when told
    next_high, n_high, high_waits, grants = clock() + 61.3, 0, [], 0
    high: tuple[str, float, float] | None = None  # (holder, arrival, due)
    end = clock() + 300
    while clock() < end:
        for holder in sorted(h for h, t in due.items() if t <= clock()):
            a = ask(lim, holder)
            if a.granted:
                grants += 1
                due[f"m{len(due) + grants}"] = clock()  # the backlog never runs dry
                del due[holder]
            else:
                due[holder] = clock() + a.wait_s
        if high is None and clock() >= next_high:
            high = (f"h{n_high}", clock(), clock())
            n_high += 1
        if high is not None and high[2] <= clock():
            a = ask(lim, high[0], priority="high")
            if a.granted:
                high_waits.append(clock() - high[1])
                grants += 1
                high, next_high = None, clock() + rng.uniform(2.0, 9.0)
            else:
                high = (high[0], high[1], clock() + a.wait_s)
        upcoming = [*due.values(), next_high if high is None else high[2]]
        clock.t = max(min(upcoming), clock.t + 0.001)
    assert len(high_waits) > 25
    assert high_waits[0] <= 1.0 + 0.002  # the lane's first high call: no reserve kept yet
    assert max(high_waits[1:]) <= 0.5 + 0.002
    assert grants <= 60 + 300 + 1  # the lane's minute, then its rate: never above it
    assert grants >= 60 + 300 - 2  # and the reserve leaves no more than itself unused


def test_the_reserve_is_kept_only_while_high_calls_use_the_lane(
        make: MakeLimiter, clock: FakeClock) -> None:
    lim = make(RESERVE)
    lim.configure(LANE, LaneLimits(rpm=60))
    while ask(lim, "m").granted:  # no high call ever: the backlog takes every unit
        pass
    clock.advance(0.5)
    assert ask(lim, "m").wait_s == pytest.approx(0.5, abs=0.002)
    assert not ask(lim, "h", priority="high").granted  # a high call asks: the reserve is on
    clock.advance(RESERVE.priority_memory_s - 0.4)
    while ask(lim, "m").granted:  # what the hour refilled, down to the unit and the reserve
        pass
    clock.advance(0.3)  # level 1.3: the unit is there, the reserve 0.2 away
    assert ask(lim, "m").wait_s == pytest.approx(0.2, abs=0.002)
    clock.advance(0.1)  # an hour since the last high call: the unit is the backlog's
    assert ask(lim, "m").granted


def test_the_reserve_never_holds_back_an_oversized_call(make: MakeLimiter,
                                                       clock: FakeClock) -> None:
    lim = make(dataclasses.replace(RESERVE, burst_s=10.0))
    lim.configure(LANE, LaneLimits(input_tpm=6000))  # cap 1000, 100 tokens/s, reserve 50
    assert ask(lim, "h", 10, priority="high").granted
    clock.advance(1.0)  # full again
    assert ask(lim, "big", 1000, priority="low").granted  # its whole cost is the capacity
    clock.advance(9.5)  # 950: not yet full
    a = ask(lim, "big2", 990, priority="low")
    assert (a.granted, a.wait_s) == (False, 0.5)
    clock.advance(0.5)
    assert ask(lim, "big2", 990, priority="low").granted


def test_a_call_that_spends_none_of_a_dimension_is_not_held_by_it(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(input_tpm=60_000, output_tpm=600))  # output: cap 100, 10/s
    assert ask(lim, "chat", 10, 100).granted  # output bucket now empty
    assert ask(lim, "chat2", 10, 50, priority="high").reason == "output_tpm"
    assert ask(lim, "embed", 500, 0, priority="low").granted  # spends no output tokens


def test_a_waiter_that_does_not_come_back_stops_blocking(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(concurrency=1))
    a = ask(lim, "a")
    h = ask(lim, "h", priority="high")  # wait 1 s (poll) + 5 s grace
    assert h.wait_s == 1.0
    lim.settle(LANE, a.reservation_id or "", input_tokens=0, output_tokens=0)
    assert ask(lim, "low", priority="low").reason == "priority"
    clock.advance(6)
    low = ask(lim, "low", priority="low")
    assert low.granted
    assert lim.snapshot(LANE).waiting["high"] == 0
    # h comes back late but within memory: it keeps its rank, ahead of a newer high.
    assert ask(lim, "h", priority="high").reason == "concurrency"
    clock.advance(1)
    lim.settle(LANE, low.reservation_id or "", input_tokens=0, output_tokens=0)
    assert ask(lim, "h2", priority="high").reason == "priority"
    assert ask(lim, "h", priority="high").granted


def test_low_priority_is_never_starved(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(concurrency=1))
    current = ask(lim, "first").reservation_id
    assert not ask(lim, "low", priority="low").granted  # ranked as if it came 60 s later
    low_granted_at = None
    for i in range(30):  # every 5 s a fresh high arrives just as the slot frees
        clock.advance(5)
        lim.settle(LANE, current or "", input_tokens=0, output_tokens=0)
        high = ask(lim, f"high{i}", priority="high")
        low = ask(lim, "low", priority="low")
        assert high.granted != low.granted
        current = (high if high.granted else low).reservation_id
        if low.granted:
            low_granted_at = clock() - T0
            assert high.reason == "priority"
            break
    assert low_granted_at == 65.0  # the first high arriving after low's rank (T0 + 60)


def test_same_priority_is_first_come_first_served(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(concurrency=1))
    a = ask(lim, "a")
    for name in ("w1", "w2", "w3"):
        assert not ask(lim, name).granted
        clock.advance(0.1)
    lim.settle(LANE, a.reservation_id or "", input_tokens=0, output_tokens=0)
    assert [ask(lim, n).granted for n in ("w3", "w2", "w1")] == [False, False, True]


# --------------------------------------------------------------------------- fair shares


Call = tuple[str, str, str, float]  # holder, tenant, priority, weight


def register(lim: Limiter, clock: FakeClock, calls: list[Call], gap_s: float = 0.0) -> None:
    """Each call asks once (and is refused: the lane is saturated), ``gap_s`` apart."""
    for holder, tenant, prio, weight in calls:
        assert not ask(lim, holder, priority=prio, tenant=tenant, weight=weight).granted
        clock.advance(gap_s)


def serve(lim: Limiter, clock: FakeClock, calls: list[Call], n: int) -> list[str]:
    """Every second (one request of quota) every pending call asks again, in the order given;
    returns the first ``n`` holders granted, in grant order."""
    order: list[str] = []
    pending = list(calls)
    while len(order) < n:
        clock.advance(1)
        for call in list(pending):
            holder, tenant, prio, weight = call
            a = ask(lim, holder, priority=prio, tenant=tenant, weight=weight)
            if a.granted:
                order.append(holder)
                pending.remove(call)
                lim.settle(LANE, a.reservation_id or "", input_tokens=0, output_tokens=0)
    return order


def saturate(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(rpm=60))  # 10 at once, then one a second
    for i in range(10):  # spare capacity used without waiting: no tenant's debt
        assert ask(lim, f"burst{i}", tenant="a").granted


def test_a_tenants_backlog_does_not_delay_anothers_first_calls(
        lim: Limiter, clock: FakeClock) -> None:
    saturate(lim)
    a = [(f"a{i}", "a", "medium", 1.0) for i in range(20)]
    b = [(f"b{i}", "b", "medium", 1.0) for i in range(5)]
    register(lim, clock, a)
    clock.advance(0.5)  # B comes after all of A's backlog
    register(lim, clock, b)
    # asked with A's calls first every time: the ranks, not the asking order, decide
    assert serve(lim, clock, a + b, 12) == [
        "a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4", "a5", "a6"]


def test_weights_share_the_lane_in_proportion(lim: Limiter, clock: FakeClock) -> None:
    saturate(lim)
    heavy = [(f"h{i}", "heavy", "medium", 2.0) for i in range(12)]
    light = [(f"l{i}", "light", "medium", 1.0) for i in range(12)]
    register(lim, clock, heavy + light)
    first = serve(lim, clock, heavy + light, 9)
    assert sum(h.startswith("h") for h in first) == 6, first


def test_priority_still_comes_first_across_tenants_and_within_one(
        lim: Limiter, clock: FakeClock) -> None:
    saturate(lim)
    backlog = [(f"a{i}", "a", "medium", 1.0) for i in range(10)]
    register(lim, clock, backlog)
    clock.advance(0.5)  # half a request of quota: still saturated
    # another tenant's high call, then one of the backlogged tenant's own
    highs = [("b-high", "b", "high", 1.0), ("a-high", "a", "high", 1.0)]
    register(lim, clock, highs, gap_s=0.1)
    assert serve(lim, clock, backlog + highs, 4) == ["b-high", "a-high", "a0", "a1"]


def test_a_tenant_alone_keeps_first_come_first_served(lim: Limiter, clock: FakeClock) -> None:
    saturate(lim)
    calls = [(f"a{i}", "a", "medium", 3.0) for i in range(6)]
    register(lim, clock, calls, gap_s=0.01)
    assert serve(lim, clock, list(reversed(calls)), 6) == [c[0] for c in calls]


# --------------------------------------------------------------------------- provider headers


def test_learned_limits_and_configured_ones_win(lim: Limiter) -> None:
    lim.observe(LANE, RateLimitInfo(limit_requests=600, remaining_requests=600,
                                    limit_tokens=100_000, remaining_tokens=100_000))
    s = lim.snapshot(LANE)
    assert (s.limits.rpm, s.limits.tpm) == (600, 100_000)
    assert s.sources == {"rpm": "learned", "tpm": "learned"}
    lim.configure(LANE, LaneLimits(rpm=60, concurrency=4))
    s = lim.snapshot(LANE)
    assert (s.limits.rpm, s.limits.tpm, s.limits.concurrency, s.learned.rpm) == (60, 100_000, 4, 600)
    assert s.sources == {"rpm": "configured", "tpm": "learned", "concurrency": "configured"}
    lim.configure(LANE, LaneLimits())
    assert lim.snapshot(LANE).limits == LaneLimits(rpm=600, tpm=100_000)


def test_split_token_limits_are_not_mistaken_for_a_total(lim: Limiter) -> None:
    # Anthropic: "tokens" restates the tighter of the input/output limits.
    lim.observe(LANE, RateLimitInfo(limit_input_tokens=40_000, limit_output_tokens=8_000,
                                    limit_tokens=8_000, remaining_tokens=10))
    assert lim.snapshot(LANE).limits == LaneLimits(input_tpm=40_000, output_tpm=8_000)
    assert ask(lim, "a", 5_000, 100).granted


def test_resync_drains_the_pacer_to_the_providers_remaining(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(rpm=60))  # our bucket: 10 requests
    lim.observe(LANE, RateLimitInfo(remaining_requests=2))  # someone else spent the rest
    assert [ask(lim, f"h{i}").granted for i in range(3)] == [True, True, False]
    lim.observe(LANE, RateLimitInfo(remaining_requests=50))  # never raises our view
    assert ask(lim, "h2").reason == "rpm"
    other = "anthropic:claude"
    lim.observe(other, RateLimitInfo(limit_requests=60, remaining_requests=3))
    assert [ask(lim, f"o{i}", lane=other).granted for i in range(4)] == [True, True, True, False]
    assert lim.snapshot(other).sources == {"rpm": "learned"}


def test_resync_uses_the_providers_refill_rate(lim: Limiter) -> None:
    lim.configure(LANE, LaneLimits(rpm=60))  # we refill 1/s
    # 40 short, full again in 40 s: it refills at 1/s too, so 20 left is simply 20.
    lim.observe(LANE, RateLimitInfo(limit_requests=60, remaining_requests=20, reset_requests_s=40))
    assert ask(lim, "a").granted
    # 40 short but only full in 60 s: refilling at 1/s we would overtake it within the minute.
    lim.observe(LANE, RateLimitInfo(limit_requests=60, remaining_requests=20, reset_requests_s=60))
    b = ask(lim, "b")
    assert (b.granted, b.reason, b.wait_s) == (False, "rpm", 1.0)


def test_a_limit_learned_while_calls_are_in_flight_counts_them(make: MakeLimiter) -> None:
    """Nothing configured: a lane's first calls go out before any headers. The first answer
    teaches the limit, but its remaining count was taken when only that call had arrived; a
    pacer starting full would grant the others' quota a second time (429s, then a cut rate).
    So a new limit starts net of what the window already granted, and the resync lowers it
    further if the provider says less."""
    lim = make(SERVICE_POLICY)
    for i in range(16):  # unknown limits: all granted
        assert ask(lim, f"first{i}", inp=1000).granted
    lim.observe(LANE, RateLimitInfo(limit_requests=30, remaining_requests=29,
                                    reset_requests_s=2.0, limit_tokens=20_000,
                                    remaining_tokens=19_000, reset_tokens_s=3.0))
    granted = 0
    while ask(lim, f"next{granted}").granted:
        granted += 1
    assert granted == 14  # 30 less the 16 in flight; not the 28 the header alone allows
    lane = "openai:tokens"
    for i in range(16):
        assert ask(lim, f"t{i}", inp=1000, lane=lane).granted
    lim.observe(lane, RateLimitInfo(limit_tokens=20_000, remaining_tokens=19_000,
                                    reset_tokens_s=3.0))
    assert [ask(lim, f"u{i}", inp=1000, lane=lane).granted for i in range(5)] == [
        True, True, True, True, False]  # 20,000 less the 16,000 granted


def test_resync_keeps_the_fraction_a_whole_remaining_count_rounds_away(
        make: MakeLimiter, clock: FakeClock) -> None:
    """At 30 RPM one request is two seconds of quota: a bucket holding 14.9 that says
    "remaining 14" would cost most of that at every resync. Its reset says the rest."""
    lim = make(SERVICE_POLICY)
    lim.configure(LANE, LaneLimits(rpm=30))  # full: 30 in our twin
    # 15.1 short of 30, refilled at 0.5/s: full in 30.2 s (what llmock and OpenAI send).
    lim.observe(LANE, RateLimitInfo(limit_requests=30, remaining_requests=14,
                                    reset_requests_s=30.2))
    assert all(ask(lim, f"h{i}").granted for i in range(14))
    nxt = ask(lim, "h14")
    # Left: 14.9, less the reset's rounding slack and the margin (0.25 s each, 0.125 request
    # each), less the 14 granted = 0.65; the 15th waits 0.7 s, not the 2.25 s a whole "14"
    # would make it wait.
    assert (nxt.granted, nxt.reason) == (False, "rpm")
    assert nxt.wait_s == pytest.approx(0.7, abs=0.002)


def test_a_reset_never_lifts_the_resync_past_the_next_whole_unit(make: MakeLimiter) -> None:
    lim = make(SERVICE_POLICY)
    lim.configure(LANE, LaneLimits(rpm=30))
    # A reset of 0 with 14 left does not fit a bucket: at most 14.x, never 29.9.
    lim.observe(LANE, RateLimitInfo(limit_requests=30, remaining_requests=14,
                                    reset_requests_s=0.0))
    assert [ask(lim, f"h{i}").granted for i in range(15)] == [True] * 14 + [False]


def test_an_inexact_reset_does_not_lift_the_resync(make: MakeLimiter) -> None:
    """Anthropic's resets are instants to the second on its clock: no fraction is read."""
    lim = make(SERVICE_POLICY)
    lim.configure(LANE, LaneLimits(rpm=30))
    lim.observe(LANE, RateLimitInfo(limit_requests=30, remaining_requests=14,
                                    reset_requests_s=30.2, resets_exact=False))
    assert all(ask(lim, f"h{i}").granted for i in range(13))
    nxt = ask(lim, "h13")  # 14 less the margin (0.125): 0.875 left, 0.25 s to the next
    assert (nxt.granted, nxt.wait_s) == (False, 0.25)


def test_a_quiet_lane_follows_the_provider_up_as_well_as_down(
        make: MakeLimiter, clock: FakeClock) -> None:
    """Calls granted in a burst reach the provider in another order than granted, so the
    resync, assuming it saw none of those granted after ours, may deduct some twice; that
    would stick (the resync only lowers). An answer with nothing else in flight and nothing
    granted since the provider counted is the lane's whole state: the level may rise to it."""
    lim = make(SERVICE_POLICY)
    lim.configure(LANE, LaneLimits(tpm=20_000))
    lim.observe(LANE, RateLimitInfo(limit_tokens=20_000, remaining_tokens=2_100,
                                    reset_tokens_s=53.7))  # as if deducted twice
    a = ask(lim, "a", inp=900, out=100)
    b = ask(lim, "b", inp=900, out=100)
    assert a.granted and b.granted
    clock.advance(0.2)
    lim.settle(LANE, a.reservation_id or "", input_tokens=900, output_tokens=100)
    # b is still in flight: not quiet, so a higher count does not raise the level
    lim.observe(LANE, RateLimitInfo(limit_tokens=20_000, remaining_tokens=15_000,
                                    reset_tokens_s=15.0), age_s=0.2)
    assert not ask(lim, "c", inp=5_000).granted
    clock.advance(0.1)
    lim.settle(LANE, b.reservation_id or "", input_tokens=900, output_tokens=100)
    # a ended after b was sent: b's count may miss a call that reached the provider later
    lim.observe(LANE, RateLimitInfo(limit_tokens=20_000, remaining_tokens=15_000,
                                    reset_tokens_s=15.0), age_s=0.2)
    assert not ask(lim, "c", inp=5_000).granted
    d = ask(lim, "d", inp=1)  # a call of its own, ending 0.5 s after a: quiet
    clock.advance(0.5)
    lim.settle(LANE, d.reservation_id or "", input_tokens=1, output_tokens=0)
    lim.observe(LANE, RateLimitInfo(limit_tokens=20_000, remaining_tokens=15_000,
                                    reset_tokens_s=15.0), age_s=0.2)
    # Up to the count as it was (15,000), less the margin (83): not what refilled since,
    # which counts the request's travel time too.
    assert ask(lim, "c", inp=14_000).granted
    assert not ask(lim, "d", inp=1_000).granted


# --------------------------------------------------------------------------- lost state


def test_limits_sent_with_acquire_restore_a_lane_whose_state_was_lost(
        make: MakeLimiter, clock: FakeClock) -> None:
    """A store that lost the lane (Redis restarted empty) is a store that never saw it: the
    limits the caller sends re-establish the lane, with its pacer empty (the provider's quota
    was spent before the loss, as far as anyone knows), so the lane runs at the rate at once
    instead of unlimited, or a second burst."""
    limits = LaneLimits(rpm=60)
    lim = make()  # the state after the loss: nothing about the lane
    a = ask(lim, "h0", limits=limits)
    assert (a.granted, a.reason, a.wait_s) == (False, "rpm", 1.0)
    granted = 0
    for _ in range(120):  # two minutes, one caller asking every half second until granted
        if ask(lim, f"h{granted}", limits=limits).granted:
            granted += 1
        clock.advance(0.5)
    assert granted == 59  # at 1 s, 2 s, ... 59 s: the configured rpm, nothing in hand
    s = lim.snapshot(LANE)
    assert (s.configured, s.sources) == (limits, {"rpm": "configured"})
    assert lim.lanes() == [LANE]


def test_limits_sent_with_acquire_replace_different_ones_like_configure(
        lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(rpm=60, concurrency=4))  # 10 requests in hand
    lim.observe(LANE, RateLimitInfo(limit_requests=600, limit_tokens=100_000))
    assert ask(lim, "a", limits=LaneLimits(rpm=60, concurrency=4)).granted  # same: untouched
    assert ask(lim, "b", limits=LaneLimits(rpm=6)).granted  # 1 request in hand now: spent
    s = lim.snapshot(LANE)
    assert s.configured == LaneLimits(rpm=6)
    assert s.limits == LaneLimits(rpm=6, tpm=100_000)  # configured wins, learned fills gaps
    assert s.sources == {"rpm": "configured", "tpm": "learned"}
    c = ask(lim, "c", limits=LaneLimits(rpm=6))
    assert (c.granted, c.reason) == (False, "rpm")
    clock.advance(10)
    assert ask(lim, "c", limits=LaneLimits(rpm=6)).granted


def test_a_lost_lane_relearns_headers_under_its_configured_limits(
        make: MakeLimiter, clock: FakeClock) -> None:
    lim = make()  # lost everything, then a call that was in flight reports its headers
    lim.observe(LANE, RateLimitInfo(limit_requests=600, remaining_requests=600,
                                    limit_tokens=100_000, remaining_tokens=100_000))
    a = ask(lim, "a", limits=LaneLimits(rpm=60))
    assert (a.granted, a.reason) == (False, "rpm")  # configured rpm, empty after the loss
    s = lim.snapshot(LANE)
    assert s.limits == LaneLimits(rpm=60, tpm=100_000)
    assert s.sources == {"rpm": "configured", "tpm": "learned"}


def test_redis_lane_flushed_under_a_running_limiter_is_restored(
        redis_client: object, clock: FakeClock) -> None:
    """The same RedisLimiter before and after its keys vanish (what FLUSHDB, a restart without
    persistence or an eviction does to it)."""
    lim = _redis_factory(redis_client, clock)()
    limits = LaneLimits(rpm=60)
    lim.configure(LANE, limits)
    assert all(ask(lim, f"b{i}", limits=limits).granted for i in range(10))
    prefix = client_prefix(redis_client)
    for key in redis_client.scan_iter(match=prefix + "*"):  # type: ignore[attr-defined]
        redis_client.delete(key)  # type: ignore[attr-defined]
    clock.advance(5)  # the pacer would hold 5 again had nothing been lost
    granted = sum(ask(lim, f"a{i}", limits=limits).granted for i in range(20))
    assert granted == 0  # today: 20 (no limits left, everything granted)
    clock.advance(5)
    assert sum(ask(lim, f"a{i}", limits=limits).granted for i in range(20)) == 5
    assert lim.lanes() == [LANE]
    assert lim.snapshot(LANE).configured == limits


# --------------------------------------------------------------------------- misc


def test_lanes_lists_every_lane_touched(lim: Limiter) -> None:
    lim.configure("p:a", LaneLimits(rpm=1))
    ask(lim, "x", lane="p:b")
    lim.observe("p:c", RateLimitInfo(limit_requests=5))
    assert lim.lanes() == ["p:a", "p:b", "p:c"]


def test_usage_leaves_the_window(lim: Limiter, clock: FakeClock) -> None:
    r = ask(lim, "a", 10, 20)
    lim.settle(LANE, r.reservation_id or "", input_tokens=11, output_tokens=22)
    assert lim.snapshot(LANE).input_tokens_1m == 11
    clock.advance(60.001)
    s = lim.snapshot(LANE)
    assert (s.requests_1m, s.input_tokens_1m, s.output_tokens_1m) == (0, 0, 0)


@pytest.mark.parametrize("bad", [
    {"priority": "urgent"}, {"inp": -1}, {"holder": ""}, {"lane": "a{b}"},
    {"lane": ""}, {"ttl_s": 0}, {"weight": 0}, {"weight": float("nan")}, {"weight": True},
    {"tenant": "t" * 201},
])
def test_invalid_arguments_are_refused(lim: Limiter, bad: dict[str, object]) -> None:
    args: dict[str, object] = {"holder": "h"} | bad
    with pytest.raises(ValueError):
        ask(lim, **args)  # type: ignore[arg-type]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        LaneLimits(rpm=0)
    with pytest.raises(ValueError):
        LimiterPolicy(burst_s=120)


# --------------------------------------------------------------------------- properties


def _run_jobs(lim: Limiter, clock: FakeClock, *, seconds: float, seed: int,
              settle: bool) -> list[tuple[float, int, int]]:
    """Jobs arrive faster than the quota and retry exactly when told; returns the grants."""
    rng = random.Random(seed)
    pending: list[dict] = []
    grants: list[tuple[float, int, int]] = []
    next_arrival, n, end = clock(), 0, clock() + seconds
    while clock() < end:
        while next_arrival <= clock():
            pending.append({"holder": f"j{n}", "due": clock(), "in": rng.randint(1, 400),
                            "out": rng.randint(1, 200),
                            "prio": rng.choice(["high", "medium", "low"])})
            n += 1
            next_arrival += rng.uniform(0.2, 1.5)
        for job in sorted((j for j in pending if j["due"] <= clock()), key=lambda j: j["due"]):
            a = ask(lim, job["holder"], job["in"], job["out"], job["prio"], ttl_s=30)
            if a.granted:
                pending.remove(job)
                used_in, used_out = job["in"], job["out"]
                if settle:
                    used_in, used_out = rng.randint(0, job["in"]), rng.randint(0, job["out"])
                    lim.settle(LANE, a.reservation_id or "", input_tokens=used_in,
                               output_tokens=used_out)
                grants.append((clock(), used_in, used_out))
            else:
                job["due"] = clock() + a.wait_s
        upcoming = [j["due"] for j in pending] + [next_arrival]
        clock.t = max(min(upcoming), clock.t + 0.001)
    return grants


def _max_in_any_window(grants: list[tuple[float, int, int]], span: float, pick: int) -> float:
    best = 0.0
    for t, *_ in grants:  # a closed window [t, t + span] starting at each grant
        best = max(best, sum(1 if pick == 0 else g[pick] for g in grants if t <= g[0] <= t + span + 1e-9))
    return best


def test_saturated_lane_runs_at_the_quota_and_never_above(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(rpm=30))
    grants = _run_jobs(lim, clock, seconds=300, seed=1, settle=False)
    assert _max_in_any_window(grants, 60, 0) <= 30
    assert _max_in_any_window(grants, 10, 0) <= 5 + 5  # pacer: 5 burst + 10 s x 0.5/s
    assert len(grants) >= 0.95 * 30 * 300 / 60  # no quota left idle under load


def test_token_quotas_hold_with_settled_usage(lim: Limiter, clock: FakeClock) -> None:
    lim.configure(LANE, LaneLimits(input_tpm=6000, output_tpm=4000, concurrency=5))
    grants = _run_jobs(lim, clock, seconds=300, seed=2, settle=True)
    assert len(grants) > 50
    assert _max_in_any_window(grants, 60, 1) <= 6000
    assert _max_in_any_window(grants, 60, 2) <= 4000


@pytest.mark.parametrize("policy", [
    LimiterPolicy(burst_s=15, aging_s=10, waiter_grace_s=2),
    dataclasses.replace(SERVICE_POLICY, aging_s=10, waiter_grace_s=2),
    dataclasses.replace(SERVICE_POLICY, aging_s=10, waiter_grace_s=2, priority_reserve_s=7),
], ids=["window-and-pacer", "service-policy", "priority-reserve"])
def test_redis_and_in_memory_agree_exactly(redis_client: object, policy: LimiterPolicy) -> None:
    """One random workload through both implementations: identical answers at every step."""
    clock = FakeClock()
    limiters = [InMemoryLimiter(clock, policy=policy), _redis_factory(redis_client, clock)(policy)]
    rng = random.Random(7)
    open_ids: list[list[str]] = [[], []]
    reasons: set[str] = set()

    def both(call: Callable[[Limiter, list[str]], object], step: int) -> list[object]:
        got = [call(lim, ids) for lim, ids in zip(limiters, open_ids, strict=True)]
        assert got[0] == got[1], step
        return got

    limit_choices = [LaneLimits(rpm=40, input_tpm=5000, tpm=8000, concurrency=6),
                     LaneLimits(rpm=20, output_tpm=3000, concurrency=3),
                     LaneLimits(concurrency=2), LaneLimits()]
    for step in range(1600):
        if step % 200 == 0:  # phases: each set of limits in turn, and back again
            limits = limit_choices[step // 200 % len(limit_choices)]
            both(lambda lim, ids: lim.configure(LANE, limits), step)  # noqa: B023
        op = rng.random()
        clock.advance(rng.choice([0, 0, 0.05, 0.3, 1.7]))
        if op < 0.6:
            n = rng.randint(0, 25)
            kw = {"holder": f"h{n}", "inp": rng.randint(0, 900),
                  # three tenants of weights 1, 2 and 0.5 share the lane
                  "tenant": ("", "b", "c")[n % 3], "weight": (1.0, 2.0, 0.5)[n % 3],
                  "out": rng.randint(0, 700), "priority": rng.choice(["high", "medium", "low"]),
                  "ttl_s": rng.choice([2, 20]),
                  # as workers do; now and then another worker's limits (re-seeds the lane)
                  "limits": rng.choice([None, limits, limits, rng.choice(limit_choices)])}
            got = [ask(lim, **kw) for lim in limiters]  # type: ignore[arg-type]
            assert [(a.granted, a.wait_s, a.reason) for a in got][0] == \
                [(a.granted, a.wait_s, a.reason) for a in got][1], step
            reasons.add(got[0].reason)
            if got[0].granted:
                for ids, a in zip(open_ids, got, strict=True):
                    ids.append(a.reservation_id or "")
        elif op < 0.85 and open_ids[0]:
            i = rng.randrange(len(open_ids[0]))
            usage = {"input_tokens": rng.randint(0, 1200), "output_tokens": rng.randint(0, 900)}
            both(lambda lim, ids: lim.settle(LANE, ids.pop(i), **usage), step)  # noqa: B023
        elif op < 0.9 and open_ids[0]:
            i = rng.randrange(len(open_ids[0]))
            both(lambda lim, ids: lim.release(LANE, ids.pop(i)), step)  # noqa: B023
        elif op < 0.93:
            ra = rng.choice([None, 0.5, 3])
            both(lambda lim, ids: lim.on_rate_limited(LANE, ra), step)  # noqa: B023
        elif op < 0.98:
            split = rng.random() < 0.5
            info = RateLimitInfo(
                limit_requests=rng.choice([None, 40, 50]), remaining_requests=rng.randint(0, 40),
                reset_requests_s=rng.choice([None, 0.5, 20, 59.9]),
                limit_tokens=rng.choice([None, 9000]), remaining_tokens=rng.randint(0, 9000),
                reset_tokens_s=rng.choice([None, 3.3]),
                remaining_input_tokens=rng.randint(0, 5000) if split else None)
            both(lambda lim, ids: lim.observe(LANE, info), step)  # noqa: B023
        else:
            clock.advance(rng.choice([5, 30, 61]))
        both(lambda lim, ids: lim.snapshot(LANE), step)
    # (learned limits persist, so a rate's longer wait usually outranks "concurrency"; the
    # service policy's minute-long burst rarely runs the input or request buckets dry)
    wanted = {"ok", "paused", "output_tpm", "tpm", "priority"}
    if policy.burst_s < policy.window_s:
        wanted.add("rpm")
    assert reasons >= wanted
