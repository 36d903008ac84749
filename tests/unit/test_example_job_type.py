"""The job type of docs/job-types.md (examples/research_jobs.py), run honestly in-process with
tidegate.testing: its declared model and fallback, checkpoints across a retry, its fail-fast
error, and the settings file overriding what the code declares."""

from __future__ import annotations

import pytest

from tidegate.core.errors import InvalidInput
from tidegate.core.llm import TransientError
from tidegate.testing import JobHarness, Reply, ScriptedProvider

MODULE = "examples.research_jobs"
QUESTIONS = ["What does it sell?", "Who buys it?"]


def test_answers_then_writes_the_brief_on_the_declared_model() -> None:
    openai = ScriptedProvider("openai", [Reply("Tidal turbines."), Reply("Utilities."),
                                         Reply("A brief.")])
    with JobHarness(providers=[openai], modules=[MODULE]) as h:
        run = h.run_job("company_brief", {"company": "Acme", "questions": QUESTIONS})
    assert run.status == "succeeded" and run.attempts == 1, run.error
    assert run.result["answers"] == {"What does it sell?": "Tidal turbines.",
                                     "Who buys it?": "Utilities."}
    assert run.result["brief"] == "A brief." and run.result["brief_lane"] == "openai:gpt-4o-mini"
    assert [r.model for r in openai.requests] == ["gpt-4o-mini"] * 3
    assert "progress" in run.kinds() and run.progress == 100


def test_the_declared_fallback_answers_when_the_first_lane_fails() -> None:
    openai = ScriptedProvider("openai", [Reply("a"), Reply("b"), TransientError("503")])
    anthropic = ScriptedProvider("anthropic", [Reply("A brief from Claude.")])
    with JobHarness(providers=[openai, anthropic], modules=[MODULE]) as h:
        run = h.run_job("company_brief", {"company": "Acme", "questions": QUESTIONS})
    assert run.status == "succeeded" and run.attempts == 1, run.error
    assert run.result["brief_lane"] == "anthropic:claude-3-5-haiku-latest"


def test_a_retry_resumes_after_the_answers_already_paid_for() -> None:
    # Both lanes fail on the second question: the attempt is retried later, and the retry
    # does not ask the first question again (its answer is checkpointed).
    openai = ScriptedProvider("openai", [Reply("first"), TransientError("503"),
                                         Reply("second"), Reply("brief")])
    anthropic = ScriptedProvider("anthropic", [TransientError("529 overloaded")])
    with JobHarness(providers=[openai, anthropic], modules=[MODULE]) as h:
        run = h.run_job("company_brief", {"company": "Acme", "questions": QUESTIONS})
    assert run.status == "succeeded" and run.attempts == 2, run.error
    assert len(openai.requests) == 4 and len(anthropic.requests) == 1
    assert run.result["answers"]["What does it sell?"] == "first"
    assert set(run.checkpoint) == {"q0", "q1"}


def test_an_unknown_company_fails_at_once_without_retrying() -> None:
    openai = ScriptedProvider("openai", [Reply("UNKNOWN COMPANY")])
    with JobHarness(providers=[openai], modules=[MODULE]) as h:
        run = h.run_job("company_brief", {"company": "Nope Inc"})
    assert run.status == "failed" and run.attempts == 1
    assert run.error and run.error["code"] == "unknown_company"
    assert len(openai.requests) == 1


def test_bad_input_is_refused_at_submit_naming_the_field() -> None:
    with JobHarness(modules=[MODULE]) as h, pytest.raises(InvalidInput, match="questions"):
        h.submit("company_brief", {"company": "Acme", "questions": []})


def test_the_settings_file_overrides_the_declared_model_but_keeps_the_fallbacks() -> None:
    gemini = ScriptedProvider("gemini", [Reply("a"), TransientError("503")])
    anthropic = ScriptedProvider("anthropic", default=Reply("from claude"))
    settings = '[jobs.company_brief]\nmodel = "gemini:gemini-2.0-flash"\n'
    with JobHarness(providers=[gemini, anthropic], modules=[MODULE],
                    llm_settings=settings) as h:
        run = h.run_job("company_brief", {"company": "Acme", "questions": QUESTIONS[:1]})
    assert run.status == "succeeded", run.error
    assert gemini.requests[0].model == "gemini-2.0-flash"
    assert run.result["brief_lane"] == "anthropic:claude-3-5-haiku-latest"
