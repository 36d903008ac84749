"""The built-in job types, run honestly in-process with tidegate.testing: the real runner and
gateway over the in-memory store and limiter, with scripted providers (or the simulator)."""

from __future__ import annotations

import json
import threading

import pytest

from tidegate.core.llm import PermanentError, RateLimited, TransientError
from tidegate.testing import JobHarness, Reply, ScriptedProvider

FEEDBACK = json.dumps({"strengths": ["clear"], "issues": ["long"], "suggestions": ["cut"]})
ALL_OPENAI = """
[jobs.startup_report]
model = "openai:gpt-4o-mini"
fallbacks = []
[jobs.startup_report.sections]
""" + "".join(f'{k} = "openai:gpt-4o-mini"\n' for k in
              ("market", "product", "team", "competition", "risks", "verdict", "synthesis"))


def test_echo_and_progress() -> None:
    with JobHarness() as h:
        run = h.run_job("echo", {"text": "hi", "steps": 4})
    assert run.status == "succeeded" and run.result["text"] == "hi"
    assert run.progress == 100 and run.kinds()[0] == "submitted"
    assert run.kinds()[-1] == "succeeded" and run.attempts == 1


def test_echo_cancelled_while_it_runs() -> None:
    with JobHarness() as h:
        job_id, done = h.start("echo", {"sleep_s": 30, "steps": 300})
        h.wait_for(job_id, lambda j: j.progress > 0)
        h.cancel(job_id)
        run = done.result(timeout=10)
    assert run.status == "cancelled" and run.error["code"] == "cancelled"
    assert "cancel_requested" in run.kinds()


def test_report_resumes_from_its_checkpoints_after_a_failed_attempt() -> None:
    # The third section's call fails with no fallback lane: the attempt is retried later,
    # and the retry pays only for the sections not finished yet.
    openai = ScriptedProvider("openai", [Reply("market"), Reply("product"),
                                         TransientError("503 overloaded")],
                              default=Reply("more"))
    with JobHarness(providers=[openai], llm_settings=ALL_OPENAI) as h:
        run = h.run_job("startup_report", {"startup": "Acme"})
    assert run.status == "succeeded", run.error
    assert run.attempts == 2 and [d.outcome for d in run.deliveries] == ["retry", "succeeded"]
    assert len(openai.requests) == 8  # 6 sections + synthesis, plus the failed call
    assert "## Market\n\nmarket" in run.result["report"]
    assert set(run.checkpoint) == {"market", "product", "team", "competition", "risks",
                                   "verdict", "synthesis"}
    assert run.job.usage.input_tokens == 70  # the failed call cost nothing


def test_report_falls_back_to_the_next_lane() -> None:
    settings = ALL_OPENAI.replace("fallbacks = []",
                                  'fallbacks = ["anthropic:claude-3-5-haiku-latest"]')
    openai = ScriptedProvider("openai", [TransientError("connection reset")],
                              default=Reply("from openai"))
    anthropic = ScriptedProvider("anthropic", default=Reply("from claude"))
    with JobHarness(providers=[openai, anthropic], llm_settings=settings) as h:
        run = h.run_job("startup_report", {"startup": "Acme"})
    assert run.status == "succeeded" and run.attempts == 1
    assert run.result["sections"]["market"]["lane"] == "anthropic:claude-3-5-haiku-latest"
    assert len(anthropic.requests) == 1 and len(openai.requests) == 7


def test_a_429_pauses_the_lane_and_is_not_a_failed_attempt() -> None:
    openai = ScriptedProvider("openai", [RateLimited("slow down", retry_after_s=30)],
                              default=Reply("ok"))
    with JobHarness(providers=[openai], llm_settings=ALL_OPENAI) as h:
        run = h.run_job("startup_report", {"startup": "Acme"})
        assert h.clock.skipped_s >= 25  # the pause was waited out in virtual time
    assert run.status == "succeeded" and run.attempts == 1
    assert "quota_wait" in run.kinds()


def test_chat_fails_fast_on_a_permanent_error() -> None:
    anthropic = ScriptedProvider("anthropic", [PermanentError("401 invalid x-api-key")])
    with JobHarness(providers=[anthropic]) as h:
        run = h.run_job("chat", {"message": "hello"})
    assert run.status == "failed" and run.attempts == 1
    assert run.error["code"] == "provider_rejected" and "401" in run.error["message"]


def test_chat_cancelled_during_the_model_call() -> None:
    holder: dict[str, str] = {}
    started, released = threading.Event(), threading.Event()

    def slow(req: object) -> Reply:
        started.wait(5)  # the job may reach its call before start() has returned its id
        h.cancel(holder["id"])
        released.wait(5)
        return Reply("too late")

    anthropic = ScriptedProvider("anthropic", [slow])
    with JobHarness(providers=[anthropic]) as h:
        holder["id"], done = h.start("chat", {"message": "hello"})
        started.set()
        run = done.result(timeout=10)
        released.set()
    assert run.status == "cancelled"


def test_analysis_repairs_invalid_json_once() -> None:
    openai = ScriptedProvider("openai", [Reply("not json"), Reply(FEEDBACK)])
    with JobHarness(providers=[openai]) as h:
        run = h.run_job("analyze_section", {"section": "Intro", "content": "We sell things."})
    assert run.status == "succeeded" and run.result["feedback"]["issues"] == ["long"]
    assert len(openai.requests) == 2 and "not valid" in openai.requests[1].messages[-1].content


def test_embeddings_keep_input_order() -> None:
    openai = ScriptedProvider("openai", [Reply(input_tokens=4, vectors=[[0.1], [0.2]])])
    with JobHarness(providers=[openai]) as h:
        run = h.run_job("embeddings", {"texts": ["a", "b"]})
    assert run.status == "succeeded" and run.result["vectors"] == [[0.1], [0.2]]
    assert openai.embedded == [["a", "b"]]


def test_invalid_input_is_refused_at_submit() -> None:
    from tidegate.core.errors import InvalidInput

    with JobHarness() as h, pytest.raises(InvalidInput, match="startup"):
        h.submit("startup_report", {})


def test_report_through_the_simulator_and_the_official_sdks() -> None:
    with JobHarness(simulator=True) as h:
        run = h.run_job("startup_report", {"startup": "Acme"})
    assert run.status == "succeeded", run.error
    assert run.result["simulated"] and run.result["usage"]["calls"] == 7
    lanes = {s["lane"].split(":")[0] for s in run.result["sections"].values()}
    assert lanes == {"openai", "anthropic", "gemini"}
