"""No call paid twice (llm/reuse.py): the response cache and in-flight dedup, opted into per
job type, run through the real runner and gateway with tidegate.testing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.llm import LLMRequest, Message, PermanentError
from tidegate.core.registry import Registry
from tidegate.llm.reuse import MemoryAnswers, reuse_key
from tidegate.testing import JobHarness, Reply, ScriptedProvider


class Q(BaseModel):
    question: str


def make_registry(**reuse: Any) -> Registry:
    reg = Registry()

    @reg.job_type("ask", input_model=Q, priority="medium", max_attempts=2,
                  model="openai:gpt-4o-mini", **reuse)
    def ask(ctx: JobContext[Q]) -> dict[str, Any]:
        resp, call = ctx.llm.complete([{"role": "user", "content": ctx.input.question}],
                                      max_output_tokens=50)
        return {"answer": resp.text, **call.to_dict()}

    return reg


def llm_calls(run: Any) -> list[dict[str, Any]]:
    return [e.detail for e in run.events if e.kind == "llm_call"]


def test_a_cached_answer_costs_nothing_and_expires() -> None:
    openai = ScriptedProvider("openai", [Reply("first", 30, 20), Reply("again", 30, 20)])
    with JobHarness(registry=make_registry(cache_ttl_s=600), providers=[openai]) as h:
        one = h.run_job("ask", {"question": "What is a tide?"})
        two = h.run_job("ask", {"question": "What is a tide?"})
        other = h.run_job("ask", {"question": "What is a wave?"})
        assert len(openai.requests) == 2  # the second identical call made none
        assert two.result["answer"] == "first" and two.result["reused"] == "cache"
        assert two.job.usage.input_tokens == two.job.usage.output_tokens == 0
        assert one.job.usage.input_tokens == 30 and "reused" not in one.result
        event = llm_calls(two)[0]
        assert event["reused"] == "cache" and event["saved_input_tokens"] == 30
        assert event["saved_output_tokens"] == 20 and event["saved_cost_usd"] > 0
        assert other.result["answer"] == "again"
        h.clock.skipped_s += 601  # the answer is kept 600 s
        openai.script.append(Reply("fresh"))
        three = h.run_job("ask", {"question": "What is a tide?"})
    assert three.result["answer"] == "fresh" and len(openai.requests) == 3


def test_types_that_do_not_opt_in_call_every_time() -> None:
    openai = ScriptedProvider("openai", default=Reply("same"))
    with JobHarness(registry=make_registry(), providers=[openai]) as h:
        for _ in range(3):
            h.run_job("ask", {"question": "What is a tide?"})
    assert len(openai.requests) == 3


def test_the_settings_file_turns_the_cache_on_for_a_type() -> None:
    openai = ScriptedProvider("openai", default=Reply("same"))
    settings = "[jobs.ask]\ncache_ttl_s = 60\n"
    with JobHarness(registry=make_registry(), providers=[openai], llm_settings=settings) as h:
        for _ in range(3):
            h.run_job("ask", {"question": "What is a tide?"})
    assert len(openai.requests) == 1


class Gate:
    """A provider reply that holds until released, counting the calls that reached it."""

    def __init__(self, text: str = "shared") -> None:
        self.release = threading.Event()
        self.reached = threading.Event()
        self.text = text

    def __call__(self, _req: LLMRequest) -> Reply:
        self.reached.set()
        assert self.release.wait(10)
        return Reply(self.text, 40, 10)


def following(h: JobHarness) -> threading.Event:
    """Set once some call waits for a leader's answer."""
    waiting = threading.Event()
    look = h.answers.answer_of

    def answer_of(key: str, token: str) -> Any:
        waiting.set()
        return look(key, token)

    h.answers.answer_of = answer_of  # type: ignore[method-assign]
    return waiting


def lead_and_follow(h: JobHarness, gate: Gate, question: str) -> tuple[Any, str, Any]:
    """Start a job whose call reaches the provider (held at ``gate``), then an identical one
    that waits for it. Returns the leader's future, the follower's id and future."""
    _, lead = h.start("ask", {"question": question})
    assert gate.reached.wait(10)
    waiting = following(h)
    follow_id, follow = h.start("ask", {"question": question})
    assert waiting.wait(10)
    return lead, follow_id, follow


def test_identical_calls_in_flight_are_sent_once() -> None:
    gate = Gate()
    openai = ScriptedProvider("openai", [gate], default=Reply("second call"))
    with JobHarness(registry=make_registry(dedup=True), providers=[openai]) as h:
        lead, _, follow = lead_and_follow(h, gate, "Summarise the tides.")
        gate.release.set()
        first, second = lead.result(timeout=10), follow.result(timeout=10)
        assert len(openai.requests) == 1
        assert first.result["answer"] == second.result["answer"] == "shared"
        assert second.result["reused"] == "inflight" and second.job.usage.input_tokens == 0
        assert llm_calls(second)[0]["saved_input_tokens"] == 40
        # Not in flight any more: dedup is not a cache, the next identical call is made.
        third = h.run_job("ask", {"question": "Summarise the tides."})
    assert third.result["answer"] == "second call" and len(openai.requests) == 2


def test_a_follower_calls_itself_when_the_leader_fails() -> None:
    gate = Gate()

    def fail_after_gate(req: LLMRequest) -> Reply:
        gate(req)
        raise PermanentError("400 bad request")

    openai = ScriptedProvider("openai", [fail_after_gate], default=Reply("own answer"))
    with JobHarness(registry=make_registry(dedup=True), providers=[openai]) as h:
        lead, _, follow = lead_and_follow(h, gate, "Q")
        gate.release.set()
        failed, answered = lead.result(timeout=10), follow.result(timeout=10)
    assert failed.status == "failed" and answered.status == "succeeded"
    assert answered.result["answer"] == "own answer" and "reused" not in answered.result
    assert len(openai.requests) == 2


def test_a_cancelled_follower_stops_waiting() -> None:
    gate = Gate()
    openai = ScriptedProvider("openai", [gate])
    with JobHarness(registry=make_registry(dedup=True), providers=[openai]) as h:
        lead, follow_id, follow = lead_and_follow(h, gate, "Q")
        h.cancel(follow_id)
        assert follow.result(timeout=10).status == "cancelled"
        gate.release.set()
        assert lead.result(timeout=10).status == "succeeded"


def test_keys_differ_by_scope_and_by_anything_that_changes_the_answer() -> None:
    msgs = (Message("user", "hi"),)
    base = dict(max_output_tokens=50, temperature=None, json_output=False)
    k = reuse_key("acme", "openai:gpt-4o-mini", msgs, **base)  # type: ignore[arg-type]
    assert k == reuse_key("acme", "openai:gpt-4o-mini", msgs, **base)  # type: ignore[arg-type]
    assert k != reuse_key("globex", "openai:gpt-4o-mini", msgs, **base)  # type: ignore[arg-type]
    assert k != reuse_key("acme", "openai:gpt-4o", msgs, **base)  # type: ignore[arg-type]
    assert k != reuse_key("acme", "openai:gpt-4o-mini", (Message("user", "hi!"),),
                          **base)  # type: ignore[arg-type]
    assert k != reuse_key("acme", "openai:gpt-4o-mini", msgs, max_output_tokens=51,
                          temperature=None, json_output=False)
    assert "acme" not in k


def test_bad_reuse_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cache_ttl_s"):
        make_registry(cache_ttl_s=0)
    assert MemoryAnswers().cached("nothing") is None
