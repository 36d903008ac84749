"""Event streams against a real API server, worker, SQLite and Redis: resume with
Last-Event-ID loses and repeats nothing, the tenant stream filters, a revoked key ends it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import metadata
from tidegate.core.keys import create_key, revoke

from .helpers import running_worker, settings_for
from .live_api import live_api, read_events

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path,
        redis_url: str) -> Iterator[tuple[httpx.Client, httpx.Client, object]]:
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("pg_database")
    settings = settings_for(tmp_path, redis_url=redis_url, database_url=database_url,
                            stream_recheck_s=0.5)
    engine = make_engine(settings.database)
    upgrade(engine)
    with engine.begin() as conn:  # the PostgreSQL database is shared by the session
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    store = SqlJobStore(engine)
    a, _ = create_key(store, tenant="acme", secret=settings.secret_key)
    b, _ = create_key(store, tenant="zeta", secret=settings.secret_key)
    with live_api(settings) as url, running_worker(settings), \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {a}"}) as ca, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {b}"}) as cb:
        yield ca, cb, engine
    engine.dispose()


def _submit(client: httpx.Client, **input: object) -> str:
    r = client.post("/v1/jobs", json={"type": "echo", "input": input})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def _history_ids(client: httpx.Client, job_id: str) -> list[int]:
    return [e["id"] for e in client.get(f"/v1/jobs/{job_id}/history").json()]


def test_a_dropped_job_stream_resumes_with_no_event_lost_or_repeated(env) -> None:
    client, _, _ = env
    job_id = _submit(client, text="hi", sleep_s=3, steps=12)
    first = read_events(client, f"/v1/jobs/{job_id}/events", stop_after=4)
    assert [e["kind"] for e in first[:2]] == ["submitted", "claimed"]
    # Dropped mid-job; the job goes on meanwhile.
    rest = read_events(client, f"/v1/jobs/{job_id}/events", last_event_id=first[-1]["id"])
    seen = [e["id"] for e in first + rest]
    assert rest and rest[-1]["kind"] == "succeeded" and rest[-1]["status"] == "succeeded"
    assert seen == sorted(set(seen)), "an event came twice or out of order"
    assert seen == _history_ids(client, job_id), "an event was lost"
    progress = [e["detail"] for e in first + rest if e["kind"] == "progress"]
    assert progress[-1] == {"percent": 100, "message": "step 12/12"}
    event = rest[-1]
    assert event["job_id"] == job_id and event["type"] == "echo" and event["tenant"] == "acme"
    assert event["attempt"] == 1 and event["at"].endswith("Z")
    # A finished job's stream replays its history and ends; resumed past the end, it ends.
    assert [e["id"] for e in read_events(client, f"/v1/jobs/{job_id}/events")] == seen
    assert read_events(client, f"/v1/jobs/{job_id}/events", last_event_id=seen[-1]) == []
    assert read_events(client, f"/v1/jobs/{job_id}/events",
                       last_event_id=seen[2]) == (first + rest)[3:]


def test_the_tenant_stream_follows_all_jobs_filters_and_resumes(env) -> None:
    client, other, _ = env
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(read_events(
        client, "/v1/events", stop_after=6, status="succeeded")))
    reader.start()
    time.sleep(0.5)  # the stream is open: it shows what happens from now on
    _submit(other, text="not yours")
    jobs = [_submit(client, text=str(i), sleep_s=0.2, steps=2) for i in range(6)]
    reader.join(timeout=60)
    assert {e["job_id"] for e in got} == set(jobs)
    assert all(e["kind"] == "succeeded" and e["tenant"] == "acme" for e in got)
    # Resumed after the second one, it replays the rest of them, then goes on live.
    resumed = read_events(client, "/v1/events", last_event_id=got[1]["id"], stop_after=4,
                          status="succeeded")
    assert resumed == got[2:]
    # Filtered by type: another type's events (a chat job, whatever becomes of it) are not
    # sent; the echo job's all are, in order, from its submission on.
    typed: list[dict] = []
    reader = threading.Thread(target=lambda: typed.extend(read_events(
        client, "/v1/events", until_kind=TERMINAL, type="echo")))
    reader.start()
    time.sleep(0.5)
    r = client.post("/v1/jobs", json={"type": "chat", "input": {"message": "hi"}})
    assert r.status_code == 202, r.text
    echo = _submit(client, text="typed", sleep_s=0.2, steps=2)
    reader.join(timeout=60)
    assert typed and all(e["type"] == "echo" and e["job_id"] == echo for e in typed)
    assert [e["id"] for e in typed] == _history_ids(client, echo)


def test_a_revoked_key_ends_the_stream(env) -> None:
    client, _, engine = env
    job_id = _submit(client, text="long", sleep_s=8, steps=8)  # ends before the worker stops
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(read_events(
        client, f"/v1/jobs/{job_id}/events", timeout_s=20)))
    reader.start()
    time.sleep(1.0)
    store = SqlJobStore(engine)
    for key in store.list_keys(tenant="acme"):
        revoke(store, key.id)  # as `tidegate keys revoke` does
    reader.join(timeout=20)
    assert not reader.is_alive()
    assert got[-1] == {"error": {"code": "unauthorized", "message": "the API key was revoked"}}
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401


def test_last_event_id_must_be_an_id(env) -> None:
    client, _, _ = env
    job_id = _submit(client)
    r = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert client.get("/v1/events", params={"status": "nope"}).status_code == 422
