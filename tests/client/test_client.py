"""tidegate.Client and AsyncClient against a real running Tidegate (`tidegate up`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

import tidegate
from tests.e2e.harness import Up
from tidegate.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidInput,
    JobPublic,
    NotFound,
    TimeoutExpired,
    Unauthorized,
)

from .proxy import BreakingProxy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tidegate-up")]

HEAVY = ("celery", "kombu", "openai", "anthropic", "google", "sqlalchemy", "redis", "fastapi",
         "uvicorn", "alembic", "typer")


def test_importing_the_client_imports_nothing_heavy() -> None:
    code = textwrap.dedent(f"""
        import sys
        import tidegate
        tidegate.Client, tidegate.AsyncClient
        import tidegate.client, tidegate.webhooks
        heavy = [m for m in sys.modules if m.split(".")[0] in {HEAVY!r}]
        print(",".join(sorted(heavy)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"the client pulled in: {out.stdout}"


def test_submit_wait_get_list(up: Up) -> None:
    with tidegate.Client(up.url, api_key=up.key) as tg:
        accepted = tg.submit("echo", {"text": "hello", "sleep_s": 0.5, "steps": 3},
                             priority="high", metadata={"order": 7})
        assert accepted.status == "queued" and accepted.priority == "high"
        job = tg.wait(accepted.job_id, timeout=60)
        assert isinstance(job, JobPublic)
        assert job.status == "succeeded" and job.result["text"] == "hello"
        assert job.metadata == {"order": 7} and job.progress == 100
        assert tg.get(accepted.job_id).finished_at is not None
        kinds = [e.kind for e in tg.history(accepted.job_id)]
        assert kinds[0] == "submitted" and kinds[-1] == "succeeded"

        ids = {tg.submit("echo", {"text": str(i)}).job_id for i in range(5)}
        for job_id in ids:
            tg.wait(job_id, timeout=60)
        listed = [j.job_id for j in tg.list(type="echo", page_size=2)]  # several pages
        assert ids <= set(listed) and len(listed) == len(set(listed))
        assert len(list(tg.list(page_size=2, limit=3))) == 3


def test_errors_carry_the_api_code(up: Up) -> None:
    with Client(up.url, api_key=up.key) as tg:
        with pytest.raises(NotFound) as nf:
            tg.get("no-such-job")
        assert nf.value.code == "not_found" and nf.value.status == 404
        with pytest.raises(InvalidInput) as bad:
            tg.submit("no_such_type")
        assert bad.value.code == "unknown_job_type"
        with pytest.raises(InvalidInput):
            tg.submit("echo", {"steps": 0})
        done = tg.submit("echo", {})
        tg.wait(done.job_id, timeout=60)
        with pytest.raises(Conflict):
            tg.cancel(done.job_id)
        with pytest.raises(Conflict):
            tg.retry(done.job_id)
    with Client(up.url, api_key="tg_wrong") as anon, pytest.raises(Unauthorized):
        anon.get("x")


def test_cancel_and_events(up: Up) -> None:
    with Client(up.url, api_key=up.key) as tg:
        job = tg.submit("echo", {"sleep_s": 30, "steps": 30})
        seen = []
        for event in tg.events(job.job_id, timeout=60):
            seen.append(event)
            if event.kind == "progress":
                tg.cancel(job.job_id)
        assert seen[0].kind == "submitted" and seen[-1].kind == "cancelled"
        assert [e.id for e in seen] == sorted({e.id for e in seen})
        assert tg.get(job.job_id).status == "cancelled"
        with pytest.raises(TimeoutExpired):
            tg.wait(tg.submit("echo", {"sleep_s": 20}).job_id, timeout=1)


def test_limits_queues_usage(up: Up) -> None:
    with Client(up.url, api_key=up.key) as tg:
        assert {q.name for q in tg.queues().queues} >= {"high", "medium", "low"}
        assert isinstance(tg.limits().lanes, list)
        assert tg.usage(group_by="type").group_by == ["type"]


def test_a_lost_answer_is_retried_without_a_second_job(up: Up, proxy: BreakingProxy) -> None:
    """The connection breaks after Tidegate accepted the job: the client sends the same
    request again, with the same idempotency key, and gets the same job back."""
    proxy.plan = ["lose_answer"]
    marker = f"once-{id(proxy)}"
    with Client(proxy.url, api_key=up.key, backoff=0.05) as tg:
        accepted = tg.submit("echo", {"text": marker})
        posts = [r for r in proxy.requests if r.startswith(b"POST /v1/jobs")]
        assert len(posts) == 2  # the lost one and the retry
        keys = {line for r in posts for line in r.split(b"\r\n")
                if line.lower().startswith(b"idempotency-key")}
        assert len(keys) == 1
        tg.wait(accepted.job_id, timeout=60)
        same = [j for j in tg.list(type="echo", limit=50)
                if isinstance(j.result, dict) and j.result.get("text") == marker]
        assert [j.job_id for j in same] == [accepted.job_id]


def test_events_resume_after_a_dropped_connection(up: Up, proxy: BreakingProxy) -> None:
    """A live stream cut twice mid-event: the client reconnects with Last-Event-ID and the
    events it yields are exactly the job's history, none lost or repeated."""
    proxy.stream_plan = [("cut_after", 3), ("cut_after", 2)]
    with Client(proxy.url, api_key=up.key, backoff=0.05) as tg:
        job = tg.submit("echo", {"sleep_s": 2, "steps": 8})
        got = [e.id for e in tg.events(job.job_id, timeout=60)]
    with Client(up.url, api_key=up.key) as direct:
        everything = [e.id for e in direct.events(job.job_id, timeout=60)]
    assert got == everything and len(got) >= 10
    resumed = [r for r in proxy.requests if b"/events" in r and b"last-event-id" in r.lower()]
    assert len(resumed) >= 2


def test_wait_falls_back_to_polling(up: Up, proxy: BreakingProxy) -> None:
    proxy.refuse_streams = True
    with Client(proxy.url, api_key=up.key, max_retries=1, backoff=0.05) as tg:
        job = tg.submit("echo", {"sleep_s": 1, "steps": 2})
        assert tg.wait(job.job_id, timeout=60, poll_interval=0.2).status == "succeeded"
    assert any(b"/events" in r for r in proxy.requests)


def test_async_client(up: Up) -> None:
    async def main() -> None:
        async with AsyncClient(up.url, api_key=up.key) as tg:
            jobs = await asyncio.gather(*(tg.submit("echo", {"text": str(i)}) for i in range(3)))
            done = await asyncio.gather(*(tg.wait(j.job_id, timeout=60) for j in jobs))
            assert [d.result["text"] for d in done] == ["0", "1", "2"]
            kinds = [e.kind async for e in tg.events(jobs[0].job_id)]
            assert kinds[-1] == "succeeded"
            listed = [j.job_id async for j in tg.list(type="echo", page_size=2, limit=4)]
            assert len(listed) == 4
            with pytest.raises(NotFound):
                await tg.get("nope")
            assert (await tg.queues()).queues

    asyncio.run(main())
