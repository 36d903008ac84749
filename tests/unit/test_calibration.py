"""Calibrated token estimates: content classes, the learning rule, the stores, the gateway."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.limits import InMemoryLimiter, LimiterPolicy
from tidegate.core.limits import calibration as cal
from tidegate.core.limits.calibration import InMemoryCalibrator, Ratio
from tidegate.core.llm import LLMRequest, LLMResponse
from tidegate.core.memory import InMemoryJobStore
from tidegate.core.models import Job, new_job_id
from tidegate.core.statuses import Priority
from tidegate.llm import GatewayPolicy, LLMGateway
from tidegate.llm_config import load_llm_config
from tidegate.providers import Providers
from tidegate.providers.tokens import estimate_tokens

PROSE = "The board asked for a short summary of the quarter and the plans for next year."
CODE = 'def f(x):\n    return {"a": [x * 2 for x in range(10)], "b": (x, x + 1)}\n'
CJK = "東京は日本の首都であり、人口が最も多い都市です。経済の中心でもあります。"


@pytest.mark.parametrize(("text", "cls"), [(PROSE, "prose"), (CODE, "code"), (CJK, "cjk"),
                                           ("", "prose"), ('{"k": [1, 2], "v": {"x": 3}}', "code"),
                                           (PROSE + " " + CJK, "cjk")])
def test_classify(text: str, cls: str) -> None:
    assert cal.classify([text]) == cls


def test_first_sample_replaces_the_prior_then_they_are_weighed() -> None:
    r = cal.updated(None, 3.0)
    assert r == Ratio(3.0, 1)
    r = cal.updated(r, 4.0)
    assert r.samples == 2 and r.ratio == pytest.approx(3.0 + cal.ALPHA * 1.0)
    assert cal.updated(None, 1e6).ratio == cal.RATIO_MAX  # clamped


def test_reserve_factor_is_the_prior_until_learned_then_the_ratio_with_headroom() -> None:
    assert cal.reserve_factor(None, "input", "cjk") == cal.PRIOR["cjk"]
    assert cal.reserve_factor(Ratio(2.0, 3), "input", "cjk") == pytest.approx(
        2.0 * (1 + cal.HEADROOM))
    assert cal.calibrated(10, 1.26) == 13 and cal.calibrated(0, 3.0) == 0
    assert cal.calibrated(1, 0.1) == 1


def test_in_memory_store_and_report() -> None:
    store = InMemoryCalibrator()
    store.learn("a:m", "input", "code", estimate=100, actual=180)
    store.learn("a:m", "input", "code", estimate=0, actual=50)  # ignored: nothing to compare
    store.learn("b:m", "output", "prose", estimate=512, actual=256)
    assert store.ratio("a:m", "input", "code") == Ratio(1.8, 1)
    assert store.ratio("a:m", "input", "prose") is None
    rep = cal.report(store.ratios("a:m"))
    assert rep["input"]["code"] == {"ratio": 1.8, "samples": 1, "source": "learned"}  # type: ignore[index]
    assert rep["input"]["cjk"] == {"ratio": cal.PRIOR["cjk"], "samples": 0,  # type: ignore[index]
                                   "source": "prior"}
    assert rep["output"]["prose"]["source"] == "prior"  # type: ignore[index]


def test_redis_store_is_shared_between_instances(redis_url: str) -> None:
    import redis

    from tidegate.adapters.limiter import RedisCalibrator

    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a = RedisCalibrator(client, prefix=prefix, cache_s=60)
    b = RedisCalibrator(client, prefix=prefix, cache_s=0)
    assert a.ratio("openai:m", "input", "cjk") is None  # cached as unknown for a minute
    b.learn("openai:m", "input", "cjk", estimate=10, actual=38)
    b.learn("openai:m", "input", "cjk", estimate=10, actual=40)
    got = b.ratio("openai:m", "input", "cjk")
    assert got is not None and got.samples == 2
    assert got.ratio == pytest.approx(3.8 + cal.ALPHA * 0.2, abs=1e-5)
    a.learn("openai:m", "input", "cjk", estimate=10, actual=40)  # its own lesson: seen at once
    mine = a.ratio("openai:m", "input", "cjk")
    assert mine is not None and mine.samples == 3
    assert set(b.ratios("openai:m")) == {("input", "cjk")}


class Counting:
    """A provider that counts input tokens as a real tokenizer would: 3x chars/4 for CJK."""

    name, simulated = "openai", True

    def __init__(self) -> None:
        self.calls: list[LLMRequest] = []

    def complete(self, req: LLMRequest) -> LLMResponse:
        self.calls.append(req)
        text = " ".join(m.content for m in req.messages)
        return LLMResponse(text="ok", input_tokens=3 * estimate_tokens(text), output_tokens=8,
                           model=req.model, provider=self.name, latency_s=0.0, simulated=True)


class Nothing(BaseModel):
    pass


def test_gateway_reserves_the_prior_then_what_the_lane_learned(tmp_path: Path) -> None:
    cfg = tmp_path / "llm.toml"
    cfg.write_text('[jobs.t]\nmodel = "openai:m"\nfallbacks = []\n')
    provider = Counting()
    providers = Providers()
    providers.add(provider)
    seen: list[int] = []

    class Spy(InMemoryLimiter):
        def acquire(self, lane, *, input_tokens, **kw):  # type: ignore[no-untyped-def,override]
            seen.append(input_tokens)
            return super().acquire(lane, input_tokens=input_tokens, **kw)

    store = InMemoryCalibrator()
    gateway = LLMGateway(providers, Spy(time.time, policy=LimiterPolicy(burst_s=60)),
                         load_llm_config(str(cfg)), policy=GatewayPolicy(poll_s=0.01),
                         calibration=store)
    jobs = InMemoryJobStore()
    job, _ = jobs.create(Job(id=new_job_id(), tenant="t", type="t", priority=Priority.HIGH,
                             input={}))
    jobs.claim(job.id, owner="w", lease_s=30)
    ctx = JobContext(job_id=job.id, tenant="t", job_type="t", attempt=1, max_attempts=3,
                     input=Nothing(), store=jobs, checkpoint={}, services={"llm": gateway},
                     priority="high")
    raw = estimate_tokens(CJK)
    for step in ("a", "b"):
        ctx.llm.complete([{"role": "user", "content": CJK}], max_output_tokens=16, step=step)
    assert seen[0] == cal.calibrated(raw, cal.PRIOR["cjk"])  # nothing learned yet
    learned = store.ratio("openai:m", "input", "cjk")
    assert learned is not None and learned.ratio == pytest.approx(3 * raw / raw)
    assert seen[1] == cal.calibrated(raw, 3.0 * (1 + cal.HEADROOM))
    out = store.ratio("openai:m", "output", "cjk")
    assert out is not None and out.ratio == pytest.approx(8 / 16)
