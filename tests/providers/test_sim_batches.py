"""The simulator's batch APIs, driven through the official SDKs over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from .helpers import Sim

MSG = [{"role": "system", "content": "You are a venture analyst."},
       {"role": "user", "content": "Write the market section on Acme Robotics."}]


@pytest.fixture
def quick(sim: Sim) -> Iterator[Sim]:
    sim.configure(batch_turnaround_s=0.3)
    yield sim


def _oa(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(api_key="sim-key", base_url=f"{sim.url}/v1", max_retries=0)


def _upload(client: openai.OpenAI, n: int) -> str:
    lines = [json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "gpt-4o-mini", "messages": MSG, "max_tokens": 50}})
             for i in range(n)]
    f = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
    assert f.purpose == "batch" and f.bytes > 0
    return f.id


def _wait(get, done, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = get()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_openai_batch_completes_with_an_output_file(quick: Sim) -> None:
    client = _oa(quick)
    batch = client.batches.create(input_file_id=_upload(client, 3),
                                  endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"who": "test"})
    assert batch.status == "in_progress" and batch.request_counts.total == 3
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert done.status == "completed" and done.request_counts.completed == 3
    assert done.output_file_id and done.error_file_id is None
    rows = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in rows) == ["c0", "c1", "c2"]
    body = rows[0]["response"]["body"]
    assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] > 0
    assert quick.stats()["total"]["batched"] == 3


def test_openai_batch_expires_and_cancels(quick: Sim) -> None:
    client = _oa(quick)
    quick.configure(batch_turnaround_s=30, batch_expiry_s=0.3)
    expiring = client.batches.create(input_file_id=_upload(client, 2),
                                     endpoint="/v1/chat/completions", completion_window="24h")
    quick.configure(batch_turnaround_s=30, batch_expiry_s=3600)
    cancelled = client.batches.create(input_file_id=_upload(client, 2),
                                      endpoint="/v1/chat/completions", completion_window="24h")
    assert client.batches.cancel(cancelled.id).status == "cancelling"
    got = _wait(lambda: client.batches.retrieve(expiring.id), lambda b: b.status == "expired")
    assert got.status == "expired" and got.output_file_id is None
    errors = [json.loads(x) for x in client.files.content(got.error_file_id).text.splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    c = _wait(lambda: client.batches.retrieve(cancelled.id), lambda b: b.status == "cancelled")
    assert c.status == "cancelled" and c.request_counts.failed == 2


def test_openai_batch_quota_of_its_own(quick: Sim) -> None:
    client = _oa(quick)
    quick.configure(batch_queue_tokens=150, rpm=1, tpm=10)  # the ordinary quota is no limit
    first = client.batches.create(input_file_id=_upload(client, 1),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    assert first.status == "in_progress"
    with pytest.raises(openai.RateLimitError):
        client.batches.create(input_file_id=_upload(client, 3),
                              endpoint="/v1/chat/completions", completion_window="24h")


def test_anthropic_message_batch_results_and_cancel(quick: Sim) -> None:
    client = anthropic.Anthropic(api_key="sim-key", base_url=quick.url, max_retries=0)
    params = {"model": "claude-3-5-haiku-latest", "max_tokens": 60,
              "system": "You are a venture analyst.",
              "messages": [{"role": "user", "content": "Write the team section."}]}
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": params} for i in range(2)])  # type: ignore[misc]
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 2
    done = _wait(lambda: client.messages.batches.retrieve(batch.id),
                 lambda b: b.processing_status == "ended")
    assert done.request_counts.succeeded == 2 and done.results_url
    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == ["r0", "r1"]
    assert all(r.result.type == "succeeded" for r in results)
    first = results[0].result
    assert first.type == "succeeded" and first.message.content[0].type == "text"

    quick.configure(batch_turnaround_s=30)
    slow = client.messages.batches.create(
        requests=[{"custom_id": "x", "params": params}])  # type: ignore[misc]
    assert client.messages.batches.cancel(slow.id).processing_status == "canceling"
    ended = _wait(lambda: client.messages.batches.retrieve(slow.id),
                  lambda b: b.processing_status == "ended")
    assert ended.request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(slow.id)] == ["canceled"]


def test_anthropic_batch_expires(quick: Sim) -> None:
    client = anthropic.Anthropic(api_key="sim-key", base_url=quick.url, max_retries=0)
    quick.configure(batch_turnaround_s=30, batch_expiry_s=0.2)
    params = {"model": "claude-3-5-haiku-latest", "max_tokens": 60,
              "messages": [{"role": "user", "content": "Hi"}]}
    b = client.messages.batches.create(
        requests=[{"custom_id": "e", "params": params}])  # type: ignore[misc]
    ended = _wait(lambda: client.messages.batches.retrieve(b.id),
                  lambda x: x.processing_status == "ended")
    assert ended.request_counts.expired == 1
    assert [r.result.type for r in client.messages.batches.results(b.id)] == ["expired"]


def _gemini(sim: Sim) -> genai.Client:
    return genai.Client(api_key="sim-key", vertexai=False,
                        http_options=types.HttpOptions(base_url=sim.url))


def test_gemini_inlined_batch_get_and_cancel(quick: Sim) -> None:
    client = _gemini(quick)
    reqs = [{"contents": [{"role": "user", "parts": [{"text": f"Section {i} on Acme."}]}],
             "metadata": {"key": f"g{i}"},
             "config": {"max_output_tokens": 60}} for i in range(2)]
    job = client.batches.create(model="gemini-2.0-flash", src=reqs)  # type: ignore[arg-type]
    assert job.name and job.state == types.JobState.JOB_STATE_RUNNING
    done = _wait(lambda: client.batches.get(name=job.name),
                 lambda j: j.state == types.JobState.JOB_STATE_SUCCEEDED)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.inlined_responses
    keys = [r.metadata["key"] for r in done.dest.inlined_responses if r.metadata]
    assert keys == ["g0", "g1"]
    assert all(r.response and r.response.text for r in done.dest.inlined_responses)

    quick.configure(batch_turnaround_s=30)
    slow = client.batches.create(model="gemini-2.0-flash", src=reqs[:1])  # type: ignore[arg-type]
    assert slow.name
    client.batches.cancel(name=slow.name)
    got = _wait(lambda: client.batches.get(name=slow.name),
                lambda j: j.state == types.JobState.JOB_STATE_CANCELLED)
    assert got.state == types.JobState.JOB_STATE_CANCELLED
