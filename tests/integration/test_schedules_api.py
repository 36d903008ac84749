"""/v1/schedules over the real API and SQLite: create, list, delete, who may, and invalid
input answered 422 with nothing changed; the runner then creates each due slot's job once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.schedules import SqlScheduleStore
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.schedules import ScheduleRunner
from tidegate.wiring import build_container

from .helpers import settings_for


@pytest.fixture
def api(tmp_path: Path, redis_url: str) -> Iterator[tuple]:
    settings = settings_for(tmp_path, redis_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    keys = [create_key(store, tenant=t, secret=settings.secret_key, scope=s)[0]
            for t, s in (("ops", "admin"), ("acme", "submit"), ("acme", "read"),
                         ("zeta", "submit"))]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield (client, settings, store,
               *({"Authorization": f"Bearer {k}"} for k in keys))
    engine.dispose()


NIGHTLY = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", "type": "echo",
           "input": {"text": "cleanup"}, "priority": "low", "missed": "once"}


def test_create_list_get_delete(api) -> None:
    client, _, _, admin, acme, acme_read, zeta = api
    r = client.post("/v1/schedules", json=NIGHTLY, headers=acme)
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["tenant"], got["source"], got["last_run_at"], got["last_job_id"]) == (
        "acme", "api", None, None)
    assert got["next_run_at"] is not None and got["input"]["text"] == "cleanup"
    again = client.post("/v1/schedules", json=NIGHTLY, headers=acme)
    assert again.status_code == 409 and again.json()["error"]["code"] == "schedule_exists"
    # the same name in another tenant is another schedule
    assert client.post("/v1/schedules", json=NIGHTLY, headers=zeta).status_code == 201
    assert [s["name"] for s in client.get("/v1/schedules", headers=acme_read).json()] == [
        "nightly"]
    assert {s["tenant"] for s in client.get("/v1/schedules", headers=admin).json()} == {
        "acme", "zeta"}
    # scopes: read may not create or delete; submit may not touch another tenant's
    assert client.post("/v1/schedules", json={**NIGHTLY, "name": "x"},
                       headers=acme_read).json()["error"]["code"] == "forbidden_scope"
    r = client.post("/v1/schedules", json={**NIGHTLY, "name": "x", "tenant": "zeta"},
                    headers=acme)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_scope"
    assert client.delete("/v1/schedules/nightly?tenant=zeta", headers=acme).status_code == 403
    # an admin may manage any tenant's
    r = client.post("/v1/schedules", json={**NIGHTLY, "name": "hourly", "cron": "0 * * * *",
                                           "tenant": "zeta"}, headers=admin)
    assert r.status_code == 201 and r.json()["tenant"] == "zeta"
    assert client.delete("/v1/schedules/nightly", headers=acme).status_code == 204
    assert client.delete("/v1/schedules/nightly", headers=acme).status_code == 404
    assert client.get("/v1/schedules/nightly?tenant=zeta", headers=admin).status_code == 200


@pytest.mark.parametrize(("change", "message"), [
    ({"cron": "0 25 * * *"}, "cron: invalid expression"),
    ({"cron": None, "every_s": None}, "exactly one of cron"),
    ({"timezone": "Europe/Atlantis"}, "unknown time zone"),
    ({"type": "no_such_type"}, "unknown job type"),
    ({"input": {"text": ["not", "a", "string"]}}, "invalid input for job type 'echo'"),
    ({"missed": "always"}, "missed"),
])
def test_invalid_schedules_are_422_and_change_nothing(api, change: dict[str, object],
                                                      message: str) -> None:
    client, _, _, admin, acme, *_ = api
    r = client.post("/v1/schedules", json={**NIGHTLY, **change}, headers=acme)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]["message"], r.text
    assert client.get("/v1/schedules", headers=admin).json() == []


def test_due_slots_become_jobs_of_the_schedules_tenant_once(api) -> None:
    client, settings, store, admin, acme, *_ = api
    r = client.post("/v1/schedules", json={**NIGHTLY, "cron": None, "every_s": 60},
                    headers=acme)
    assert r.status_code == 201, r.text
    container = build_container(settings)
    try:
        schedules = SqlScheduleStore(container.store)
        [s] = schedules.list_schedules()
        later = s.created_at + timedelta(seconds=185)

        class Clock(SqlScheduleStore):
            def now(self):  # noqa: ANN202 - three minutes on
                return later

        runner = ScheduleRunner(Clock(container.store), container.service, grace_s=300)
        assert runner.run_due() == 3
        assert runner.run_due() == 0  # the same slots again: nothing new
        # a second scheduler that never saw the cursor: the run rows refuse every slot
        stale = ScheduleRunner(Clock(container.store), container.service, grace_s=300)
        [fresh] = schedules.list_schedules()
        for k in (1, 2, 3):
            assert not schedules.fire(s, s.created_at + timedelta(seconds=60 * k), None)
        assert stale.run_due() == 0 and fresh.last_job_id is not None
        page = store.list(tenant="acme", limit=50)
        assert len(page.jobs) == 3
        assert {j.schedule for j in page.jobs} == {"nightly"}
        assert all(j.priority.value == "low" for j in page.jobs)
        got = client.get(f"/v1/jobs/{fresh.last_job_id}", headers=acme).json()
        assert got["schedule"] == "nightly"
        shown = client.get("/v1/schedules/nightly", headers=acme).json()
        assert shown["last_job_id"] == fresh.last_job_id
        assert shown["last_slot"] is not None
    finally:
        container.close()
