"""No call paid twice, in a running deployment (`tidegate up`: worker, Redis, SQLite): an
identical call of a type that opts into the cache (the settings file, here) is answered from
Redis, and the saving shows in the job's events and in /v1/usage."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.harness import Up
from tidegate.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tidegate-up")]


def test_a_cached_answer_is_free_and_counted_as_saved(up: Up) -> None:
    section = {"section": "Market", "content": f"Tidal power in Brittany ({uuid.uuid4().hex})."}
    with Client(up.url, api_key=up.key) as tg:
        before = {r.type: r for r in tg.usage(group_by="type").rows}.get("analyze_section")
        first = tg.wait(tg.submit("analyze_section", section).job_id, timeout=60)
        second = tg.wait(tg.submit("analyze_section", section).job_id, timeout=60)
        assert first.status == second.status == "succeeded", (first.error, second.error)
        assert second.result["feedback"] == first.result["feedback"]
        calls_made = len(first.result["calls"])  # one, or two if the JSON needed a repair
        assert [c.get("reused") for c in second.result["calls"]] == ["cache"] * calls_made
        assert first.usage.input_tokens > 0 and second.usage.input_tokens == 0
        calls = [e for e in tg.history(second.job_id) if e.kind == "llm_call"]
        assert calls[0].detail["reused"] == "cache"
        assert calls[0].detail["saved_input_tokens"] == first.usage.input_tokens
        after = {r.type: r for r in tg.usage(group_by="type").rows}["analyze_section"]
    assert after.reused_requests == (before.reused_requests if before else 0) + calls_made
    assert after.saved_input_tokens - (before.saved_input_tokens if before else 0) == \
        first.usage.input_tokens
    assert after.saved_cost_usd > (before.saved_cost_usd if before else 0)
