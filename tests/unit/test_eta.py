"""The ETA estimate (core/eta.py): worker-slot queues, lane sharing by priority and weight,
load still to come, pauses, and a check against the in-memory limiter itself."""

from __future__ import annotations

import pytest

from tidegate.core.eta import Eta, LaneRate, Picture, TypeStats, Waiter, estimate, moved
from tidegate.core.limits import InMemoryLimiter, LaneLimits, LimiterPolicy

NOW = 1_000_000.0
LANE = "sim:m"
# One call of 100 input + 100 output tokens; the lane does 60 calls a minute: 1 s a call.
ONE_CALL = TypeStats(samples=20, run_s=2.0, service_s=0.5, calls=1, input_tokens=100,
                     output_tokens=100)
THREE_CALLS = TypeStats(samples=20, run_s=6.0, service_s=1.5, calls=3, input_tokens=300,
                        output_tokens=300)


def waiter(i: int, *, type: str = "chat", priority: str = "medium", tenant: str = "t",
           **kw: object) -> Waiter:
    kw.setdefault("parked", True)
    return Waiter(job_id=f"j{i}", type=type, priority=priority, tenant=tenant,
                  submitted_at=NOW - 100 + i, **kw)  # type: ignore[arg-type]


def picture(waiters: list[Waiter], **kw: object) -> Picture:
    base: dict[str, object] = {
        "now": NOW, "waiters": waiters,
        "stats": {"chat": ONE_CALL, "report": THREE_CALLS, "echo": TypeStats(10, 3.0, 3.0)},
        "lane_of": {"chat": LANE, "report": LANE}, "lanes": {LANE: LaneRate(rpm=60)}}
    return Picture(**{**base, **kw})  # type: ignore[arg-type]


def est(job: Waiter, pic: Picture) -> Eta:
    return estimate(job, pic, counted=any(w.job_id == job.job_id for w in pic.waiters))


def test_a_job_without_a_lane_starts_now_and_runs_its_type_s_duration() -> None:
    eta = est(waiter(0, type="echo", parked=False), picture([]))
    assert eta.start_at == NOW and eta.finish_at == pytest.approx(NOW + 3.0)


def test_the_queue_ahead_leaves_at_the_observed_throughput() -> None:
    queued = [waiter(i, type="echo", parked=False) for i in range(4)]
    later = waiter(9, type="echo", parked=False)
    eta = est(later, picture(queued + [later], throughput_per_s=2.0))
    assert eta.start_at == pytest.approx(NOW + 2.0)  # 4 ahead at 2 a second
    assert eta.finish_at == pytest.approx(NOW + 5.0)
    # A high-priority job goes before them all; a low one after them.
    high = waiter(10, type="echo", priority="high", parked=False)
    assert est(high, picture(queued + [high], throughput_per_s=2.0)).start_at == NOW


def test_single_calls_ahead_on_a_lane_take_a_second_each() -> None:
    ahead = [waiter(i) for i in range(10)]
    me = waiter(20)
    eta = est(me, picture(ahead + [me]))
    # 10 calls ahead, then its own, then the call's own tail.
    assert eta.finish_at == pytest.approx(NOW + 11 + 0.5, abs=0.01)


def test_higher_priorities_go_first_and_lower_ones_do_not_count() -> None:
    medium = [waiter(i) for i in range(10)]
    low = [waiter(30 + i, priority="low") for i in range(50)]
    high = waiter(99, priority="high")
    eta = est(high, picture(medium + low + [high]))
    assert eta.finish_at == pytest.approx(NOW + 1 + 0.5, abs=0.01)
    me = waiter(98)
    assert est(me, picture(medium + low + [high, me])).finish_at == pytest.approx(
        NOW + 12 + 0.5, abs=0.01)


def test_a_short_job_shares_the_lane_with_long_ones_instead_of_queueing_behind_them() -> None:
    reports = [waiter(i, type="report") for i in range(5)]  # 3 s of lane each
    chat = waiter(9)
    eta = est(chat, picture(reports + [chat]))
    # Each report gets one call in before the chat's one: 5 + 1 s, not 15 + 1 s.
    assert eta.finish_at == pytest.approx(NOW + 6 + 0.5, abs=0.01)
    last_report = est(reports[-1], picture(reports + [chat]))
    assert last_report.finish_at == pytest.approx(NOW + 16 + 0.5, abs=0.01)


def test_a_heavier_tenant_gets_more_of_the_lane() -> None:
    mine = [waiter(i, type="report", tenant="big") for i in range(2)]
    theirs = [waiter(10 + i, type="report", tenant="small") for i in range(2)]
    everyone = mine + theirs
    even = est(mine[0], picture(everyone))
    heavy = est(mine[0], picture(everyone, weights={"big": 3.0, "small": 1.0}))
    assert heavy.finish_at < even.finish_at


def test_work_still_to_come_and_a_pause_push_the_finish_out() -> None:
    ahead = [waiter(i) for i in range(10)]
    me = waiter(20)
    quiet = est(me, picture(ahead + [me]))
    busy = est(me, picture(ahead + [me], load={(LANE, "high"): 0.5}))
    assert busy.finish_at - NOW == pytest.approx(2 * (quiet.finish_at - NOW - 0.5) + 0.5,
                                                 abs=0.01)
    paused = est(me, picture(ahead + [me], lanes={LANE: LaneRate(rpm=60,
                                                                       paused_for_s=30)}))
    assert paused.finish_at == pytest.approx(quiet.finish_at + 30)
    # A lane loaded past its rate: a bounded estimate with a low confidence.
    swamped = est(me, picture(ahead + [me], load={(LANE, "high"): 2.0}))
    assert swamped.finish_at < NOW + 200 and swamped.confidence < quiet.confidence


def test_tokens_can_be_the_tighter_limit() -> None:
    ahead = [waiter(i) for i in range(10)]
    me = waiter(20)
    eta = est(me, picture(ahead + [me], lanes={LANE: LaneRate(rpm=600, tpm=6000)}))
    assert eta.finish_at == pytest.approx(NOW + 11 * 2 + 0.5, abs=0.01)  # 200 tokens: 2 s


def test_confidence_grows_with_the_runs_it_rests_on() -> None:
    few = est(waiter(0), picture([], stats={"chat": TypeStats(samples=1, calls=1)}))
    many = est(waiter(0), picture([]))
    none = est(waiter(0), picture([], stats={}))
    assert none.confidence < few.confidence < many.confidence <= 0.95


def test_progress_counts_what_a_running_job_already_spent() -> None:
    half = waiter(0, type="report", progress=50.0, running=True, parked=False)
    me = waiter(9, type="report")
    # The running report needs 1.5 s more; this one 3 s, sharing: 1.5 + 3 s.
    assert est(me, picture([half, me])).finish_at == pytest.approx(NOW + 4.5 + 0.5,
                                                                        abs=0.01)


def test_a_group_of_alike_jobs_counts_as_its_members() -> None:
    """The feed sends jobs of one kind as a group: the same estimate as one by one."""
    one_by_one = [waiter(i) for i in range(10)]
    group = Waiter(job_id="g", type="chat", priority="medium", tenant="t",
                   submitted_at=NOW - 100, last_at=NOW - 91, count=10, parked=True)
    me = waiter(20)
    assert est(me, picture(one_by_one)).finish_at == pytest.approx(
        est(me, picture([group])).finish_at)
    # A member of the group: half of the group is ahead of a job submitted in its middle.
    middle = Waiter(job_id="x", type="chat", priority="medium", tenant="t",
                    submitted_at=NOW - 95.5, parked=True)
    eta = estimate(middle, picture([group]), counted=True)
    assert eta.finish_at == pytest.approx(NOW + 0.5 * 9 + 1 + 0.5, abs=0.01)


def test_only_material_changes_are_news() -> None:
    before = Eta(NOW, NOW + 100, 0.8)
    assert not moved(before, Eta(NOW, NOW + 105, 0.8), NOW)
    assert moved(before, Eta(NOW, NOW + 130, 0.8), NOW)
    assert not moved(before, Eta(NOW, NOW + 90, 0.8), NOW + 95)  # under 10 s
    assert moved(before, Eta(NOW, NOW + 115, 0.8), NOW + 95)


def test_the_estimate_matches_the_limiter_it_models() -> None:
    """Single-call and three-call jobs of two priorities and two tenants wait on an
    in-memory lane (60 calls a minute, the service's priorities); each job's predicted finish
    is within 15 % of its wait in the limiter's own replay."""
    clock = [NOW]
    lim = InMemoryLimiter(lambda: clock[0], policy=LimiterPolicy(
        burst_s=1.0, sliding_window=False, aging_s=300.0))
    lim.configure(LANE, LaneLimits(rpm=60))
    jobs = ([waiter(i, type="report", tenant="a") for i in range(6)]
            + [waiter(10 + i, type="chat", tenant="b") for i in range(8)]
            + [waiter(20 + i, type="chat", priority="high", tenant="a") for i in range(3)])
    stats = {"report": TypeStats(20, 3.0, 0.0, 3, 0, 0), "chat": TypeStats(20, 1.0, 0.0, 1, 0,
                                                                           0)}
    pic = picture(jobs, stats=stats)
    predicted = {j.job_id: est(j, pic).finish_at for j in jobs}
    left = {j.job_id: 3 if j.type == "report" else 1 for j in jobs}
    due = {j.job_id: NOW for j in jobs}
    finished: dict[str, float] = {}
    while left:
        clock[0] = min(due[j] for j in left)
        for j in sorted(left, key=lambda k: due[k]):
            if due[j] > clock[0]:
                continue
            prio = next(w.priority for w in jobs if w.job_id == j)
            tenant = next(w.tenant for w in jobs if w.job_id == j)
            adm = lim.acquire(LANE, input_tokens=0, output_tokens=0, priority=prio,  # type: ignore[arg-type]
                              holder=f"{j}:{left[j]}", tenant=tenant)
            if adm.granted:
                assert adm.reservation_id is not None
                lim.settle(LANE, adm.reservation_id, input_tokens=0, output_tokens=0)
                left[j] -= 1
                if left[j] == 0:
                    finished[j] = clock[0]
                    del left[j]
            else:
                due[j] = clock[0] + adm.wait_s
    errors = sorted(abs(predicted[j] - finished[j]) / max(1.0, finished[j] - NOW)
                    for j in finished)
    assert errors[len(errors) // 2] < 0.15 and errors[-1] < 0.5, errors
