"""Event streams from `tidegate api` as operators run it (Gunicorn, two Uvicorn workers, each
with its own event hub): a stream cut because its API process died resumes on another with
`Last-Event-ID`, losing and repeating nothing, and so does one reconnected again and again
(each connection served by whichever process accepts it); a revoked key ends the streams of
every process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.services import REDIS_URL, need
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.core.keys import create_key, revoke

from .helpers import running_worker, settings_for, wait_until
from .served_api import api_env, gunicorn_api, worker_pids

pytestmark = pytest.mark.slow


def _read(url: str, key: str, path: str, *, last_event_id: int | None = None,
          stop_after: int | None = None, got: list[dict[str, Any]] | None = None,
          timeout_s: float = 60) -> tuple[list[dict[str, Any]], str]:
    """One connection's events; returns them and how it ended: `end` (the server closed it),
    `enough` (``stop_after``), `error` (an `error` event) or `dropped` (cut off)."""
    got = [] if got is None else got
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(timeout_s, connect=5)) as client, \
                connect_sse(client, "GET", path, headers=headers) as source:
            assert source.response.status_code == 200, source.response.read()
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                event = json.loads(sse.data)
                if sse.event == "error":
                    got.append({"error": event})
                    return got, "error"
                assert sse.id == str(event["id"]) and sse.event == event["kind"], sse
                got.append(event)
                if stop_after is not None and len(got) >= stop_after:
                    return got, "enough"
    except httpx.TransportError:
        return got, "dropped"
    return got, "end"


def test_streams_resume_across_api_processes_and_end_on_revocation(tmp_path: Path) -> None:
    need(REDIS_URL, 6379, "Redis")
    database_url = f"sqlite:///{tmp_path / 'tg.db'}"
    settings = settings_for(tmp_path, database_url=database_url, redis_url=REDIS_URL)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    key, _ = create_key(store, tenant="acme", secret=settings.secret_key)
    env = api_env(tmp_path, database_url=database_url, redis_url=REDIS_URL,
                  TIDEGATE_SECRET_KEY=settings.secret_key, TIDEGATE_STREAM_RECHECK_S="0.5")
    auth = {"Authorization": f"Bearer {key}"}
    with gunicorn_api(env, workers=2) as (url, master), running_worker(settings):
        wait_until(lambda: len(worker_pids(master.pid)) == 2, timeout_s=30)

        def submit(**input: object) -> str:
            r = httpx.post(f"{url}/v1/jobs", json={"type": "echo", "input": input},
                           headers=auth, timeout=10)
            assert r.status_code == 202, r.text
            return str(r.json()["job_id"])

        def history(job_id: str) -> list[tuple[int, str, dict]]:
            return [(e["id"], e["kind"], e["detail"]) for e in httpx.get(
                f"{url}/v1/jobs/{job_id}/history", headers=auth, timeout=10).json()]

        def short(events: list[dict[str, Any]]) -> list[tuple[int, str, dict]]:
            return [(e["id"], e["kind"], e["detail"]) for e in events]

        # 1. Every API process is killed while the stream is open: the resumed stream (on a
        # process started since, whose hub began at a later position) goes on from the id.
        job_id = submit(text="kill", sleep_s=4, steps=16)
        first, how = _read(url, key, f"/v1/jobs/{job_id}/events", stop_after=4)
        assert how == "enough" and [e["kind"] for e in first[:2]] == ["submitted", "claimed"]
        dropped: list[dict[str, Any]] = []
        reader = threading.Thread(target=_read, args=(url, key, f"/v1/jobs/{job_id}/events"),
                                  kwargs={"last_event_id": first[-1]["id"], "got": dropped})
        reader.start()
        wait_until(lambda: len(dropped) >= 2, timeout_s=20)
        old = worker_pids(master.pid)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        reader.join(timeout=20)
        assert not reader.is_alive()
        wait_until(lambda: len(pids := worker_pids(master.pid)) == 2 and pids.isdisjoint(old),
                   timeout_s=60, every_s=0.2)
        seen = first + dropped
        rest, how = _read(url, key, f"/v1/jobs/{job_id}/events", last_event_id=seen[-1]["id"])
        assert how == "end" and rest[-1]["kind"] == "succeeded"
        ids = [e["id"] for e in seen + rest]
        assert ids == sorted(set(ids)), "an event came twice or out of order"
        assert short(seen + rest) == history(job_id), "an event was lost or differs"

        # 2. Reconnected after every two events, each time on a new connection (either
        # process): the pieces add up to the history exactly.
        job_id = submit(text="hop", sleep_s=3, steps=12)
        pieces: list[dict[str, Any]] = []
        last = None
        for _ in range(60):
            got, how = _read(url, key, f"/v1/jobs/{job_id}/events", last_event_id=last,
                             stop_after=2)
            pieces += got
            if how == "end" or (pieces and pieces[-1]["kind"] == "succeeded"):
                break
            last = pieces[-1]["id"]
        assert pieces[-1]["kind"] == "succeeded"
        assert short(pieces) == history(job_id)

        # 3. The tenant stream, open on both processes; the key is revoked: both end.
        job_id = submit(text="revoked", sleep_s=20, steps=20)
        tenant_streams: list[tuple[list[dict[str, Any]], str]] = []

        def follow() -> None:
            tenant_streams.append(_read(url, key, "/v1/events", timeout_s=30))

        readers = [threading.Thread(target=follow) for _ in range(6)]
        for t in readers:
            t.start()
        time.sleep(1.0)
        for api_key in store.list_keys(tenant="acme"):
            revoke(store, api_key.id)
        for t in readers:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in readers)
        for got, how in tenant_streams:
            assert how == "error" and got[-1] == {"error": {
                "code": "unauthorized", "message": "the API key was revoked"}}
        r = httpx.get(f"{url}/v1/jobs/{job_id}/events", headers=auth, timeout=10)
        assert r.status_code == 401
    engine.dispose()
