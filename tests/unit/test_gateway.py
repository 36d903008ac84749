"""The LLM gateway's policy with fake providers and the in-memory limiter."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.errors import JobCancelled, JobFailed, LeaseLost, RetryLater, WorkerStopping
from tidegate.core.limits import Admission, InMemoryLimiter, LimiterPolicy
from tidegate.core.llm import (
    ContextTooLong,
    LLMRequest,
    LLMResponse,
    PermanentError,
    RateLimited,
    RateLimitInfo,
    TransientError,
)
from tidegate.core.memory import InMemoryJobStore
from tidegate.core.models import Job, new_job_id
from tidegate.core.statuses import Priority
from tidegate.llm import GatewayPolicy, LLMGateway
from tidegate.llm.gateway import requeue_delay
from tidegate.llm_config import load_llm_config
from tidegate.providers import Providers


class Fake:
    """A provider that plays a script of outcomes, then succeeds."""

    def __init__(self, name: str, script: list[object] | None = None, delay_s: float = 0.0):
        self.name, self.simulated = name, True
        self.script = list(script or [])
        self.calls: list[LLMRequest] = []
        self.delay_s = delay_s

    def complete(self, req: LLMRequest) -> LLMResponse:
        self.calls.append(req)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
        return LLMResponse(text=f"{self.name} says hi", input_tokens=10, output_tokens=20,
                           model=req.model, provider=self.name, latency_s=0.01,
                           rate_limits=RateLimitInfo(limit_requests=1000), simulated=True)

    def stream(self, req: LLMRequest):  # pragma: no cover - not used by the gateway
        raise NotImplementedError


class Nothing(BaseModel):
    pass


@pytest.fixture
def setup(tmp_path: Path):
    cfg_file = tmp_path / "llm.toml"
    cfg_file.write_text('[jobs.t]\nmodel = "openai:m1"\n'
                        'fallbacks = ["openai:m1", "anthropic:m2"]\n'
                        '[lanes."openai:m1"]\nrpm = 600\n')
    config = load_llm_config(str(cfg_file))
    openai, anthropic = Fake("openai"), Fake("anthropic")
    providers = Providers()
    providers.add(openai)
    providers.add(anthropic)
    limiter = InMemoryLimiter(time.time, policy=LimiterPolicy(burst_s=60))
    gateway = LLMGateway(providers, limiter, config,
                         policy=GatewayPolicy(short_wait_s=0.5, fallback_after_s=2, poll_s=0.02))
    store = InMemoryJobStore()

    def context() -> JobContext[Nothing]:
        job, _ = store.create(Job(id=new_job_id(), tenant="t", type="t",
                                  priority=Priority.HIGH, input={}))
        store.claim(job.id, owner="w", lease_s=30)
        return JobContext(job_id=job.id, tenant="t", job_type="t", attempt=1, max_attempts=3,
                          input=Nothing(), store=store, checkpoint={},
                          services={"llm": gateway}, priority="high")

    return gateway, limiter, openai, anthropic, context, store


def ask(ctx: JobContext[Nothing], **kw: object):
    return ctx.llm.complete([{"role": "user", "content": "hello"}], **kw)


def test_success_records_usage_cost_and_lane(setup) -> None:
    gateway, limiter, openai, _, context, store = setup
    ctx = context()
    resp, rec = ask(ctx)
    assert resp.text == "openai says hi" and rec.lane == "openai:m1"
    call = [e for e in store.events(ctx.job_id) if e.kind == "llm_call"]
    assert len(call) == 1 and call[0].attempt == 1
    detail = dict(call[0].detail)
    assert detail.pop("latency_ms") >= 0
    assert detail == {"lane": "openai:m1", "model": "openai:m1", "step": "call",
                      "input_tokens": 10, "output_tokens": 20, "cost_usd": rec.cost_usd,
                      "fallback": False, "lanes_tried": ["openai:m1"],
                      "simulated": rec.simulated}
    assert (ctx.usage.input_tokens, ctx.usage.output_tokens) == (10, 20)
    snap = limiter.snapshot("openai:m1")
    assert snap.requests_1m == 1 and snap.in_flight == 0
    assert snap.limits.rpm == 600  # configured from settings


def test_429_pauses_the_lane_and_is_not_an_attempt(setup) -> None:
    gateway, limiter, openai, _, context, _ = setup
    openai.script = [RateLimited("slow down", retry_after_s=0.3, provider="openai")]
    ctx = context()
    started = time.monotonic()
    resp, rec = ask(ctx)  # waits out the 0.3 s pause in place, then succeeds
    assert time.monotonic() - started >= 0.25
    assert len(openai.calls) == 2 and rec.lane == "openai:m1"
    assert limiter.snapshot("openai:m1").rate_factor < 1.0


def test_long_quota_wait_gives_the_slot_back(setup) -> None:
    gateway, limiter, openai, anthropic, context, store = setup
    openai.script = [RateLimited("slow down", retry_after_s=1.5, provider="openai")]
    ctx = context()
    with pytest.raises(RetryLater) as info:
        ask(ctx, model="openai:m1")  # an explicit model has no fallbacks
    assert not info.value.counts_as_attempt and info.value.delay_s > 0.5
    assert anthropic.calls == []
    waits = [e.detail for e in store.events(ctx.job_id) if e.kind == "quota_wait"]
    assert waits and waits[-1]["lane"] == "openai:m1" and waits[-1]["wait_s"] > 0.5


def test_a_requeued_quota_wait_comes_back_ahead_of_its_turn(setup) -> None:
    """The job is sent again the lead (capped by the in-place limit) before its turn, counted
    from the limiter's answer, and waits the rest in place: the way back takes a moment."""
    gateway, limiter, openai, _, context, _ = setup
    limiter.on_rate_limited("openai:m1", 15)
    ctx = context()
    before = time.monotonic()
    with pytest.raises(RetryLater) as info:
        ask(ctx, model="openai:m1")
    after = time.monotonic()
    exc = info.value
    assert exc.decided_at is not None and before <= exc.decided_at <= after
    lead = min(gateway.policy.requeue_lead_s, gateway.policy.short_wait_s)
    assert 15 - lead - 0.1 < exc.delay_s <= 15 - lead
    assert exc.remaining_s(now=exc.decided_at + 10) == pytest.approx(exc.delay_s - 10)
    assert openai.calls == []


def test_an_in_place_wait_leaves_out_the_time_the_limiter_took_to_answer(setup) -> None:
    gateway, limiter, openai, _, context, _ = setup
    answers = iter([(False, 0.4), (True, 0.0)])
    real = limiter.acquire

    def slow_acquire(lane, **kw):
        granted, wait = next(answers)
        if granted:
            return real(lane, **kw)
        time.sleep(0.2)  # a slow answer: 0.2 s of the 0.4 s wait are over when it arrives
        return Admission(False, None, wait, "rpm")

    limiter.acquire = slow_acquire  # type: ignore[method-assign]
    ctx = context()
    slept: list[float] = []
    ctx.sleep = slept.append  # type: ignore[method-assign]
    ask(ctx)
    assert len(slept) == 1 and 0.01 <= slept[0] <= 0.2 + 1e-3


def test_requeue_delay_keeps_the_lead_within_an_in_place_wait() -> None:
    policy = GatewayPolicy(short_wait_s=3.0, requeue_lead_s=1.0)
    assert requeue_delay(20.0, policy) == 19.0
    assert requeue_delay(3.5, policy) == 2.5  # 1 s left for the in-place wait
    assert requeue_delay(0.5, policy) == 0.0
    assert requeue_delay(20.0, GatewayPolicy(short_wait_s=0.5, requeue_lead_s=1.0)) == 19.5
    # A long wait is a forecast: asked again halfway, then again, until the turn is near.
    assert requeue_delay(120.0, policy) == 60.0
    assert requeue_delay(61.0, policy) == 30.5
    assert requeue_delay(59.0, policy) == 58.0


def test_long_pause_falls_back_to_the_next_lane(setup) -> None:
    gateway, limiter, openai, anthropic, context, store = setup
    limiter.on_rate_limited("openai:m1", 30)
    ctx = context()
    resp, rec = ask(ctx)
    assert rec.lane == "anthropic:m2" and rec.lanes_tried == ["openai:m1", "anthropic:m2"]
    call = [e.detail for e in store.events(ctx.job_id) if e.kind == "llm_call"]
    assert call[-1]["fallback"] is True and call[-1]["lane"] == "anthropic:m2"
    assert openai.calls == []


def test_transient_errors_fall_back_then_retry_with_backoff(setup) -> None:
    gateway, limiter, openai, anthropic, context, _ = setup
    openai.script = [TransientError("503", provider="openai")]
    _, rec = ask(context())
    assert rec.lane == "anthropic:m2"
    openai.script = [TransientError("503", provider="openai")]
    anthropic.script = [TransientError("529", provider="anthropic")]
    with pytest.raises(RetryLater) as info:
        ask(context())
    assert info.value.counts_as_attempt and info.value.error_code == "provider_unavailable"


@pytest.mark.parametrize("error,code", [
    (PermanentError("401 bad key", provider="openai"), "provider_rejected"),
    (ContextTooLong("too long", provider="openai"), "context_too_long"),
])
def test_permanent_errors_fail_at_once(setup, error, code) -> None:
    gateway, limiter, openai, anthropic, context, _ = setup
    openai.script = [error]
    with pytest.raises(JobFailed) as info:
        ask(context())
    assert info.value.code == code and anthropic.calls == []
    assert limiter.snapshot("openai:m1").in_flight == 0


def test_cancel_abandons_an_in_flight_call(setup) -> None:
    gateway, limiter, openai, _, context, _ = setup
    openai.delay_s = 3.0
    ctx = context()
    threading.Timer(0.2, ctx.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        ask(ctx)
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 5  # the abandoned call settles its reservation on return
    while limiter.snapshot("openai:m1").in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert limiter.snapshot("openai:m1").in_flight == 0


def test_unknown_model_is_a_clear_failure(setup) -> None:
    _, _, _, _, context, _ = setup
    with pytest.raises(JobFailed) as info:
        ask(context(), model="nope")
    assert info.value.code == "invalid_model" and "unknown model" in info.value.message


@pytest.mark.parametrize(("event", "raised"), [
    ("cancel_event", JobCancelled), ("lease_lost", LeaseLost), ("stopping", WorkerStopping)])
def test_an_abandoned_call_that_returns_is_added_to_the_job_late(setup, event, raised) -> None:
    """Cancel, a lost lease (also how the time limit ends an attempt) or a shutdown stops the
    job waiting; the provider still bills a call that answers anyway (a fake provider cannot
    be cut off), so its usage lands on the job when it returns."""
    gateway, limiter, openai, _, context, store = setup
    openai.delay_s = 0.8
    ctx = context()
    threading.Timer(0.1, getattr(ctx, event).set).start()
    with pytest.raises(raised):
        ask(ctx)
    assert limiter.snapshot("openai:m1").in_flight == 0  # freed at once, not on return
    assert store.get(ctx.job_id).usage.input_tokens == 0
    deadline = time.monotonic() + 5
    while store.get(ctx.job_id).late_usage.input_tokens == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    job = store.get(ctx.job_id)
    assert (job.late_usage.input_tokens, job.late_usage.output_tokens) == (10, 20)
    assert (job.usage.input_tokens, job.usage.output_tokens) == (10, 20)  # totals include it
    assert job.usage.unpriced  # openai:m1 has no price in the settings


def test_a_model_without_a_price_is_unpriced_not_free(setup) -> None:
    _, _, _, _, context, _ = setup
    ctx = context()
    _, rec = ask(ctx)
    assert rec.unpriced and rec.cost_usd is None and rec.to_dict()["cost_usd"] is None
    assert ctx.usage.unpriced and ctx.usage.cost_usd is None


def test_a_dated_snapshot_costs_its_family_price(tmp_path: Path) -> None:
    cfg_file = tmp_path / "llm.toml"
    cfg_file.write_text('[models]\nallow = ["openai:gpt-4o-2024-*"]\n')
    providers = Providers()
    providers.add(Fake("openai"))
    gateway = LLMGateway(providers, InMemoryLimiter(time.time), load_llm_config(str(cfg_file)))
    store = InMemoryJobStore()
    job, _ = store.create(Job(id=new_job_id(), tenant="t", type="t", priority=Priority.HIGH,
                              input={}))
    store.claim(job.id, owner="w", lease_s=30)
    ctx = JobContext(job_id=job.id, tenant="t", job_type="t", attempt=1, max_attempts=3,
                     input=Nothing(), store=store, checkpoint={}, services={"llm": gateway})
    _, rec = ask(ctx, model="openai:gpt-4o-2024-08-06")
    # 10 in, 20 out at gpt-4o's $2.50 / $10.00 per million: exactly $0.000225.
    assert not rec.unpriced and rec.cost_nanos == 225_000 and rec.cost_usd == 0.000225
    assert ctx.usage.cost_usd == Decimal("0.000225")
    gateway.close()


def test_a_model_the_operator_did_not_allow_fails_at_once(setup) -> None:
    _, _, openai, _, context, _ = setup
    with pytest.raises(JobFailed) as info:
        ask(context(), model="openai:made-up")
    assert info.value.code == "invalid_model" and "not allowed" in info.value.message
    assert openai.calls == []


def test_every_call_asks_the_limiter_as_its_tenant_with_its_weight(setup) -> None:
    gateway, limiter, _, _, context, _ = setup
    seen: list[tuple[object, object]] = []
    acquire = limiter.acquire

    def recording(lane, **kw):  # type: ignore[no-untyped-def]
        seen.append((kw["tenant"], kw["weight"]))
        return acquire(lane, **kw)

    limiter.acquire = recording  # type: ignore[method-assign]
    gateway.weights = {"t": 3.0}.__getitem__
    ask(context())
    gateway.weights = lambda tenant: 1e9  # out of range: clamped to what the limiter takes
    ask(context())

    def unreadable(tenant: str) -> float:
        raise RuntimeError("settings unavailable")

    gateway.weights = unreadable  # a share is not worth failing the call
    ask(context())
    assert seen == [("t", 3.0), ("t", 1000.0), ("t", 1.0)]
