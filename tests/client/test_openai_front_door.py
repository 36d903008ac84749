"""The OpenAI-compatible front door, driven by the official `openai` SDK over HTTP against a
running Tidegate (API, worker, provider simulator)."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from tests.e2e.harness import Up
from tidegate.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tidegate-up")]


def sdk(up: Up, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{up.url}/v1", api_key=up.key, **kw)  # type: ignore[arg-type]


def test_chat_completion_is_a_high_priority_job(up: Up) -> None:
    raw = sdk(up).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=50,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Say hello."}])
    resp = raw.parse()
    assert resp.object == "chat.completion" and resp.model == "gpt-4o-mini"
    assert resp.choices[0].message.role == "assistant" and resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage and resp.usage.total_tokens == (resp.usage.prompt_tokens
                                                      + resp.usage.completion_tokens) > 0
    job_id = raw.headers["x-tidegate-job-id"]
    assert raw.headers["x-tidegate-lane"] == "openai:gpt-4o-mini"
    with Client(up.url, api_key=up.key) as tg:
        job = tg.get(job_id)
    assert job.type == "chat_completion" and job.priority == "high"
    assert job.status == "succeeded" and job.metadata == {"via": "openai"}
    assert job.usage.output_tokens == resp.usage.completion_tokens


def test_streaming(up: Up) -> None:
    stream = sdk(up).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a story."}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and len([c for c in chunks if c.choices]) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_embeddings_in_both_encodings(up: Up) -> None:
    client = sdk(up)
    default = client.embeddings.create(model="text-embedding-3-small",
                                       input=["one", "two", "three"])  # the SDK asks base64
    floats = client.embeddings.create(model="text-embedding-3-small", input="one",
                                      encoding_format="float")
    assert [d.index for d in default.data] == [0, 1, 2]
    assert len(default.data[0].embedding) == len(floats.data[0].embedding) > 0
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5)
    assert default.usage.prompt_tokens > 0


def test_errors_are_in_openai_format(up: Up) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        openai.OpenAI(base_url=f"{up.url}/v1", api_key="tg_nope", max_retries=0
                      ).chat.completions.create(model="gpt-4o-mini",
                                                messages=[{"role": "user", "content": "hi"}])
    assert auth.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        sdk(up, max_retries=0).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.code == "model_not_found" and "no-such-model" in bad.value.message
    with pytest.raises(openai.BadRequestError, match="n > 1"):
        sdk(up, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", n=2, messages=[{"role": "user", "content": "hi"}])


def test_a_call_that_would_wait_too_long_gets_a_429(up: Up) -> None:
    """`openai:gpt-4.1` is configured at 1 request a minute: the second call cannot be served
    within its one-second wait, and is answered 429 with Retry-After (and cancelled)."""
    client = sdk(up, max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4.1", messages=msgs)  # the minute's request
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as limited:
        client.with_options(default_headers={"X-Tidegate-Max-Wait": "1"}).chat.completions \
            .create(model="gpt-4.1", messages=msgs)
    assert time.monotonic() - started < 30
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1
    with Client(up.url, api_key=up.key) as tg:
        last = next(tg.list(type="chat_completion", limit=1))
        assert last.cancel_requested or last.status == "cancelled"
        # A worker holding it stops at its next check; one whose call was admitted just as
        # the wait ran out finishes it (the call was made, so its answer is kept).
        deadline = time.monotonic() + 15
        while last.status not in ("cancelled", "succeeded") and time.monotonic() < deadline:
            time.sleep(0.2)
            last = tg.get(last.job_id)
    assert last.status == "cancelled" or (last.status == "succeeded" and last.cancel_requested)


def test_async_sdk_concurrent_calls(up: Up) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{up.url}/v1", api_key=up.key)
        async with client:
            answers = await asyncio.gather(*(client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(8)))
        return [a.choices[0].message.content or "" for a in answers]

    assert all(asyncio.run(main()))
