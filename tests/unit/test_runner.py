"""The runner's outcomes on an in-memory store and dispatcher."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tidegate.core.errors import AlreadyTerminal, InvalidInput, NotFound, UnknownJobType
from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
from tidegate.core.models import utcnow
from tidegate.core.runner import Runner, RunnerConfig
from tidegate.core.service import JobService
from tidegate.core.statuses import Status

from .fixtures import Anything, make_registry


@pytest.fixture
def env():
    calls: list[str] = []
    store, dispatcher = InMemoryJobStore(), InMemoryDispatcher()
    registry = make_registry(calls)
    service = JobService(store, dispatcher, registry)
    runner = Runner(store, registry, worker_id="w1",
                    config=RunnerConfig(lease_s=30, heartbeat_s=0.05, backoff_base_s=0.01))
    return service, runner, store, dispatcher, calls


def test_submit_validates_and_dispatches(env) -> None:
    service, runner, store, dispatcher, _ = env
    job, created = service.submit(tenant="t", type="ok", input={"n": 2})
    assert created and job.priority.value == "high"
    assert dispatcher.sent == [(job.id, "high", 0.0)]
    assert store.get(job.id).dispatched_at is not None
    with pytest.raises(UnknownJobType):
        service.submit(tenant="t", type="nope", input={})
    with pytest.raises(InvalidInput, match="n"):
        service.submit(tenant="t", type="ok", input={"n": "x"})
    with pytest.raises(InvalidInput, match="priority"):
        service.submit(tenant="t", type="ok", input={}, priority="urgent")


def test_success_writes_result_progress_and_history(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="ok", input={"n": 21}, priority="low")
    assert runner.run(job.id).kind == "succeeded"
    got = store.get(job.id)
    assert got.status is Status.SUCCEEDED and got.result == {"n": 42} and got.attempts == 1
    assert [e.kind for e in store.events(job.id)] == ["submitted", "claimed", "progress",
                                                      "succeeded"]
    assert runner.run(job.id).kind == "skipped"  # a duplicate delivery does nothing
    assert calls == ["ok"]


def test_handler_errors_retry_then_fail_at_the_cap(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="boom", input={})
    first = runner.run(job.id)
    assert first.kind == "retry" and first.queue == "medium"
    assert store.get(job.id).status is Status.RETRYING
    # deliver again once due
    store._jobs[job.id].not_before = utcnow() - timedelta(seconds=1)
    assert runner.run(job.id).kind == "failed"
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "handler_error"
    assert "after 2 attempts" in got.error_message and calls == ["boom", "boom"]


def test_permanent_error_fails_at_once(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="bad", input={})
    assert runner.run(job.id).kind == "failed"
    assert store.get(job.id).error == {"code": "provider_rejected", "message": "401 bad key"}


def test_waiting_for_quota_is_not_an_attempt(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    for _ in range(2):
        out = runner.run(job.id)
        assert out.kind == "retry" and out.delay_s == 5
        assert store.get(job.id).attempts == 0
        store._jobs[job.id].not_before = None
    assert runner.run(job.id).kind == "succeeded"  # max_attempts=1 was never spent


def test_early_delivery_is_sent_back_for_later(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    runner.run(job.id)
    out = runner.run(job.id)  # arrives before not_before
    assert out.kind == "retry" and 0 < out.delay_s <= 5


def test_a_delivery_refused_as_early_comes_back_even_if_due_a_moment_later(env) -> None:
    """The claim found it early, the next read of the clock found it due: acknowledging it
    then left the job to the scheduler's re-send, 10 minutes later."""
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    runner.run(job.id)  # parked for quota, not_before 5 s ahead
    due = store.get(job.id).not_before
    store.now = lambda: due + timedelta(milliseconds=1)  # type: ignore[method-assign]
    out = runner.run(job.id)
    assert out.kind == "retry" and out.delay_s > 0


def test_checkpoints_resume_after_a_crash(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="steps", input={})
    assert runner.run(job.id).kind == "retry"
    store._jobs[job.id].not_before = None
    assert runner.run(job.id).kind == "succeeded"
    assert calls == ["a", "b", "b", "c"]  # "a" was not repeated
    assert store.get(job.id).result == ["a-result", "b-result", "c-result"]


def test_cancel_checkpoint_ends_cancelled(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="cancel_me", input={})
    assert runner.run(job.id).kind == "cancelled"
    assert store.get(job.id).status is Status.CANCELLED


def test_cancel_and_retry_through_the_service(env) -> None:
    service, runner, store, dispatcher, _ = env
    job, _ = service.submit(tenant="t", type="ok", input={})
    with pytest.raises(NotFound):
        service.cancel(job.id, tenant="someone-else")
    assert service.cancel(job.id, tenant="t").status is Status.CANCELLED
    assert runner.run(job.id).kind == "skipped"  # never starts
    with pytest.raises(AlreadyTerminal):
        service.cancel(job.id, tenant="t")
    failed, _ = service.submit(tenant="t", type="bad", input={})
    runner.run(failed.id)
    with pytest.raises(AlreadyTerminal):
        service.retry(job.id, tenant="t")
    replayed = service.retry(failed.id, tenant="t")
    assert replayed.status is Status.QUEUED and replayed.attempts == 0
    assert dispatcher.sent[-1][0] == failed.id


def test_broker_down_still_accepts(env) -> None:
    service, _, store, dispatcher, _ = env
    dispatcher.down = True
    job, created = service.submit(tenant="t", type="ok", input={})
    assert created and store.get(job.id).dispatched_at is None


def test_stopping_worker_hands_the_job_back(env) -> None:
    service, runner, store, _, calls = env
    job, _ = service.submit(tenant="t", type="steps", input={})
    runner.stopping.set()
    out = runner.run(job.id)
    assert out.kind == "retry" and out.delay_s == 0
    got = store.get(job.id)
    assert got.status is Status.RETRYING and got.attempts == 0  # the attempt is not spent
    assert got.lease_owner is None and calls == ["a"]
    assert "handed_back" in [e.kind for e in store.events(job.id)]


def test_final_write_survives_a_database_blip(env) -> None:
    from tidegate.core.errors import Unavailable

    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="ok", input={"n": 1})
    real_finish, failures = store.finish, [2]

    def flaky_finish(**kw):
        if failures[0]:
            failures[0] -= 1
            raise Unavailable("database unavailable")
        return real_finish(**kw)

    store.finish = flaky_finish
    assert runner.run(job.id).kind == "succeeded"  # the result was not thrown away
    assert store.get(job.id).result == {"n": 2}


def test_time_limit_errors_get_their_own_code(env) -> None:
    service, _, store, _, _ = env

    class SoftLimit(Exception):
        pass

    timed = Runner(store, service.registry, worker_id="w", time_limit_errors=(SoftLimit,),
                   config=RunnerConfig(heartbeat_s=0.05))

    @service.registry.job_type("slowpoke", input_model=Anything, priority="low",
                               max_attempts=1)
    def slowpoke(ctx):
        raise SoftLimit()

    job, _ = service.submit(tenant="t", type="slowpoke", input={})
    assert timed.run(job.id).kind == "failed"
    assert store.get(job.id).error_code == "time_limit"


# -- deadlines and quota waits ---------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


def lane_saturated(registry, *, granted_on: set[int] | None = None, **kw) -> list[int]:
    """A job type that always parks for quota; on the deliveries in ``granted_on`` a provider
    call was granted (usage added) before the lane filled up again."""
    from tidegate.core.errors import RetryLater
    from tidegate.core.models import Usage

    deliveries: list[int] = []

    @registry.job_type("saturated", input_model=Anything, priority="medium", **kw)
    def saturated(ctx):
        deliveries.append(len(deliveries) + 1)
        if len(deliveries) in (granted_on or set()):
            ctx.add_usage(Usage(10, 5))
        raise RetryLater(30, reason="lane full", counts_as_attempt=False,
                         error_code="waiting_for_quota",
                         error_message="lane sim:fast is at its rpm limit")

    return deliveries


def quota_env(**kw):
    clock = FakeClock()
    store, dispatcher = InMemoryJobStore(clock=clock), InMemoryDispatcher()
    registry = make_registry([])
    service = JobService(store, dispatcher, registry, clock=clock)
    runner = Runner(store, registry, worker_id="w",
                    config=RunnerConfig(heartbeat_s=5, max_quota_wait_s=600))
    return clock, store, service, runner, registry


def redeliver(clock, runner, job_id, after_s: float):
    clock.now += timedelta(seconds=after_s)
    return runner.run(job_id)


def test_continuous_quota_wait_fails_with_quota_timeout_naming_the_lane() -> None:
    clock, store, service, runner, registry = quota_env()
    lane_saturated(registry, max_quota_wait_s=100)
    job, _ = service.submit(tenant="t", type="saturated", input={})
    assert runner.run(job.id).kind == "retry"
    since = store.get(job.id).quota_wait_since
    assert since == clock.now
    for _ in range(3):  # 30 s, 60 s, 90 s of waiting: still within 100 s
        assert redeliver(clock, runner, job.id, 30).kind == "retry"
        assert store.get(job.id).quota_wait_since == since  # one continuous wait
    assert redeliver(clock, runner, job.id, 30).kind == "failed"
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "quota_timeout"
    assert "sim:fast" in got.error_message and got.attempts == 0


def test_a_granted_call_restarts_the_quota_wait() -> None:
    clock, store, service, runner, registry = quota_env()
    lane_saturated(registry, granted_on={3}, max_quota_wait_s=100)
    job, _ = service.submit(tenant="t", type="saturated", input={})
    runner.run(job.id)
    redeliver(clock, runner, job.id, 60)
    assert redeliver(clock, runner, job.id, 60).kind == "retry"  # a call went through
    assert store.get(job.id).quota_wait_since == clock.now
    assert redeliver(clock, runner, job.id, 60).kind == "retry"  # 60 s into the new wait
    assert redeliver(clock, runner, job.id, 60).kind == "failed"


def test_the_worker_default_bounds_job_types_without_their_own() -> None:
    clock, store, service, runner, registry = quota_env()
    lane_saturated(registry)  # no max_quota_wait_s: the runner's 600 s
    job, _ = service.submit(tenant="t", type="saturated", input={})
    runner.run(job.id)
    waited = 0
    while redeliver(clock, runner, job.id, 30).kind == "retry":
        waited += 30
        assert waited < 1000
    assert waited + 30 == 600  # failed on the first delivery 600 s into the wait
    assert store.get(job.id).error_code == "quota_timeout"


def test_a_retry_past_the_deadline_fails_expired() -> None:
    clock, store, service, runner, registry = quota_env()
    lane_saturated(registry)
    job, _ = service.submit(tenant="t", type="saturated", input={}, deadline_s=45)
    assert runner.run(job.id).kind == "retry"
    assert redeliver(clock, runner, job.id, 30).kind == "retry"
    # due at 60 s, past the deadline: the delivery ends it instead of running it
    assert redeliver(clock, runner, job.id, 30).kind == "failed"
    got = store.get(job.id)
    assert got.status is Status.FAILED and got.error_code == "expired"
    assert got.expires_at is not None


def test_an_attempt_that_ends_in_a_retry_after_the_deadline_fails_expired() -> None:
    clock, store, service, runner, registry = quota_env()
    job, _ = service.submit(tenant="t", type="boom", input={},
                            expires_at=clock.now + timedelta(seconds=5))
    real = runner.registry.get("boom").handler

    def slow_boom(ctx):
        clock.now += timedelta(seconds=10)  # the attempt outlives the deadline
        return real(ctx)

    object.__setattr__(runner.registry.get("boom"), "handler", slow_boom)
    assert runner.run(job.id).kind == "failed"
    assert store.get(job.id).error_code == "expired"


def test_submit_validates_the_deadline(env) -> None:
    service, _, store, _, _ = env
    with pytest.raises(InvalidInput, match="give one deadline"):
        service.submit(tenant="t", type="ok", input={}, deadline_s=5,
                       expires_at=utcnow() + timedelta(seconds=5))
    with pytest.raises(InvalidInput, match="past"):
        service.submit(tenant="t", type="ok", input={}, expires_at=utcnow())
    with pytest.raises(InvalidInput, match="zone"):
        service.submit(tenant="t", type="ok", input={},
                       expires_at=utcnow().replace(tzinfo=None) + timedelta(hours=1))
    with pytest.raises(InvalidInput, match="positive"):
        service.submit(tenant="t", type="ok", input={}, deadline_s=0)


# -- dispatch never changes a committed submit's answer --------------------------------------
def test_a_database_blip_after_the_publish_keeps_the_202(env) -> None:
    from tidegate.core.errors import Unavailable

    service, _, store, dispatcher, _ = env

    def blip(*a, **k):
        raise Unavailable("database unavailable")

    store.mark_dispatched = blip
    job, created = service.submit(tenant="t", type="ok", input={})
    assert created and dispatcher.sent == [(job.id, "high", 0.0)]
    assert store.get(job.id).status is Status.QUEUED  # the sweep re-sends it: one duplicate


def test_dispatch_does_not_overwrite_a_workers_reset(env) -> None:
    service, runner, store, dispatcher, _ = env
    job, _ = service.submit(tenant="t", type="quota", input={})
    sent_for = store.get(job.id)
    # the message is consumed and the job parked again before the send is recorded
    store._jobs[job.id].dispatched_at = None
    assert runner.run(job.id).kind == "retry"
    assert service.dispatch(sent_for)  # the stale send records nothing
    assert store.get(job.id).dispatched_at is None


def test_a_cancel_between_heartbeats_is_not_lost_by_the_quota_park(env) -> None:
    service, runner, store, _, _ = env
    from tidegate.core.errors import RetryLater

    @service.registry.job_type("park", input_model=Anything, priority="low")
    def park(ctx):
        service.cancel(ctx.job_id, tenant="t")  # DELETE lands; the heartbeat has not seen it
        raise RetryLater(1, reason="lane full", counts_as_attempt=False)

    job, _ = service.submit(tenant="t", type="park", input={})
    assert runner.run(job.id).kind == "cancelled"
    assert store.get(job.id).status is Status.CANCELLED


def test_the_retry_decision_survives_a_database_blip(env) -> None:
    from tidegate.core.errors import Unavailable

    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="boom", input={})
    real_now, failures = store.now, [2]

    def flaky_now():
        if failures[0]:
            failures[0] -= 1
            raise Unavailable("database unavailable")
        return real_now()

    store.now = flaky_now
    assert runner.run(job.id).kind == "retry"
    assert store.get(job.id).status is Status.RETRYING and failures == [0]


def test_a_quota_wait_runs_from_the_limiters_answer_not_from_the_write() -> None:
    """The wait a limiter computed started when it answered: the time the handler took to
    unwind and the outcome to be written is taken off the row's not_before and the countdown
    the job is sent again with, so it comes back when its turn arrives, not that much later."""
    import time

    from tidegate.core.errors import RetryLater

    clock, store, service, runner, registry = quota_env()

    @registry.job_type("parked", input_model=Anything, priority="medium")
    def parked(ctx):
        raise RetryLater(10, reason="lane full", counts_as_attempt=False,
                         error_code="waiting_for_quota", decided_at=time.monotonic() - 4)

    job, _ = service.submit(tenant="t", type="parked", input={})
    out = runner.run(job.id)
    assert out.kind == "retry" and out.due_at is not None
    left = (store.get(job.id).not_before - clock.now).total_seconds()
    assert 5.0 < left <= 6.0  # 10 s from the answer, 4 s of which had passed
    assert out.countdown_s(now=out.due_at - 1.5) == 1.5
    assert out.countdown_s(now=out.due_at + 1) == 0.0  # overdue: at once
    assert store.get(job.id).attempts == 0  # still no attempt spent


def test_other_retries_count_their_delay_from_when_they_are_sent(env) -> None:
    service, runner, store, _, _ = env
    job, _ = service.submit(tenant="t", type="boom", input={})
    out = runner.run(job.id)
    assert out.kind == "retry" and out.due_at is None
    assert out.countdown_s() == out.delay_s
