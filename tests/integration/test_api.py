"""The HTTP contract over a real SQLite store and a real Redis broker, in process and served
by `tidegate api` (Gunicorn with Uvicorn workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.services import REDIS_URL, need
from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import metadata
from tidegate.api.app import create_app
from tidegate.config import Settings
from tidegate.core.keys import create_key

from .helpers import settings_for
from .served_api import api_env, gunicorn_api

# On one test process, so that one Gunicorn server serves the module.
pytestmark = pytest.mark.xdist_group("api-contract")


def _keys(settings, *, reset: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    engine = make_engine(settings.database)
    upgrade(engine)
    if reset:  # a fresh start for each test on a server that outlives it
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                if table.name != "alembic_version":
                    conn.execute(table.delete())
    store = SqlJobStore(engine)
    a, _ = create_key(store, tenant="acme", secret=settings.secret_key)
    b, _ = create_key(store, tenant="zeta", secret=settings.secret_key)
    engine.dispose()
    return {"Authorization": f"Bearer {a}"}, {"Authorization": f"Bearer {b}"}


def _client(settings) -> tuple[TestClient, dict[str, str], dict[str, str]]:
    a, b = _keys(settings)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    return client, a, b


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """One `tidegate api` (Gunicorn, two Uvicorn workers) for the module's contract tests."""
    need(REDIS_URL, 6379, "Redis")
    data_dir = tmp_path_factory.mktemp("gunicorn-api")
    settings = settings_for(data_dir, redis_url=REDIS_URL)
    _keys(settings)  # migrated before the workers start
    env = api_env(data_dir, database_url=settings.database, redis_url=REDIS_URL)
    with gunicorn_api(env, workers=2) as (url, _):
        yield url, settings


# The same contract in process (ASGI) and served by `tidegate api` (Gunicorn, real sockets).
@pytest.fixture(params=["asgi", "gunicorn"])
def api(request: pytest.FixtureRequest, tmp_path: Path,
        redis_url: str) -> Iterator[tuple[httpx.Client, dict, dict]]:
    if request.param == "gunicorn":
        url, settings = request.getfixturevalue("gunicorn_server")
        a, b = _keys(settings, reset=True)
        with httpx.Client(base_url=url, timeout=20) as client:
            yield client, a, b
        return
    settings = settings_for(tmp_path, redis_url=redis_url)
    client, a, b = _client(settings)
    with client:
        yield client, a, b


def test_submit_get_list_cancel(api) -> None:
    client, a, b = api
    r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"}}, headers=a)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["priority"] == "medium"
    job_id = body["job_id"]
    job = client.get(f"/v1/jobs/{job_id}", headers=a).json()
    assert job["type"] == "echo" and job["progress"] == 0 and job["error"] is None
    assert job["usage"] == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                            "unpriced": False, "late": {"input_tokens": 0, "output_tokens": 0,
                                                        "cost_usd": 0.0}}
    listed = client.get("/v1/jobs", params={"status": "queued"}, headers=a).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["next_cursor"] is None
    assert client.get("/status/" + job_id, headers=a).json()["state"] == "PENDING"
    cancelled = client.delete(f"/v1/jobs/{job_id}", headers=a)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.delete(f"/v1/jobs/{job_id}", headers=a)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    assert client.get("/status/" + job_id, headers=a).json()["state"] == "REVOKED"
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/history", headers=a).json()]
    assert kinds[0] == "submitted" and "cancel_requested" in kinds


def test_other_tenants_job_is_404_everywhere(api) -> None:
    client, a, b = api
    job_id = client.post("/v1/jobs", json={"type": "echo"}, headers=a).json()["job_id"]
    for method, path in (("GET", f"/v1/jobs/{job_id}"), ("DELETE", f"/v1/jobs/{job_id}"),
                         ("POST", f"/v1/jobs/{job_id}/retry"), ("GET", f"/status/{job_id}"),
                         ("GET", f"/v1/jobs/{job_id}/history"),
                         ("GET", f"/v1/jobs/{job_id}/events")):
        r = client.request(method, path, headers=b)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs", headers=b).json()["jobs"] == []


def test_auth_is_required(api) -> None:
    client, _, _ = api
    assert client.get("/v1/jobs").status_code == 401
    r = client.get("/v1/jobs", headers={"Authorization": "Bearer tg_wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("body,code", [
    ({"type": "nope"}, "unknown_job_type"),
    ({"type": "echo", "input": {"sleep_s": -1}}, "invalid_input"),
    ({"type": "echo", "priority": "urgent"}, "invalid_request"),
    ({"input": {}}, "invalid_request"),
    ([1, 2], "invalid_request"),
])
def test_bad_input_is_422_and_changes_nothing(api, body, code) -> None:
    client, a, _ = api
    r = client.post("/v1/jobs", json=body, headers=a)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == []


def test_malformed_json_and_unknown_ids(api) -> None:
    client, a, _ = api
    r = client.post("/v1/jobs", content=b"{nope", headers={**a, "content-type":
                                                              "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    for path in ("/v1/jobs/does-not-exist", "/status/x" * 1, "/v1/jobs/" + "z" * 300):
        r = client.get(path, headers=a)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs", params={"cursor": "garbage!!"}, headers=a).status_code == 422
    assert client.get("/v1/jobs", params={"status": "weird"}, headers=a).status_code == 422
    assert client.get("/v1/jobs", params={"limit": 0}, headers=a).status_code == 422
    assert client.get("/no/such/route").status_code == 404


def test_oversized_body_is_413(api) -> None:
    client, a, _ = api
    big = b'{"type": "echo", "input": {"text": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    r = client.post("/v1/jobs", content=big, headers={**a, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"type": "echo", "input": {"text": "'
        for _ in range(40):
            yield b"y" * 32768
        yield b'"}}'

    r = client.post("/v1/jobs", content=chunks(), headers={**a, "content-type":
                                                               "application/json"})
    assert r.status_code == 413
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == []


def test_idempotency_key(api) -> None:
    client, a, b = api
    headers = {**a, "Idempotency-Key": "order-17"}
    first = client.post("/v1/jobs", json={"type": "echo"}, headers=headers).json()["job_id"]
    second = client.post("/v1/jobs", json={"type": "echo"}, headers=headers).json()["job_id"]
    other = client.post("/v1/jobs", json={"type": "echo"},
                        headers={**b, "Idempotency-Key": "order-17"}).json()["job_id"]
    assert first == second != other


def test_generate_alias_submits_a_startup_report(api) -> None:
    client, a, b = api
    r = client.post("/generate", json={"startup": "TeslaAI", "focus": "batteries"}, headers=a)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    assert job["type"] == "startup_report" and job["priority"] == "medium"
    state = client.get(f"/status/{job['job_id']}", headers=a).json()
    assert state == {"job_id": job["job_id"], "state": "PENDING", "progress": 0, "result": None}
    assert client.get(f"/status/{job['job_id']}", headers=b).status_code == 404
    bad = client.post("/generate", json={"startup": ""}, headers=a)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_health_ready_queues_and_docs(api) -> None:
    client, a, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok",
                                                                  "broker": "ok"}
    q = client.get("/v1/queues", headers=a)
    assert q.status_code == 200
    assert [x["name"] for x in q.json()["queues"]] == ["high", "medium", "low"]
    assert client.get("/docs").status_code == 200
    assert "/v1/jobs" in client.get("/openapi.json").json()["paths"]


def test_database_down_is_503_fast(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, redis_url=redis_url,
                            database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    r = client.post("/v1/jobs", json={"type": "echo"},
                    headers={"Authorization": "Bearer tg_anything"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert client.get("/readyz").status_code == 503


def test_broker_down_still_accepts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, redis_url="redis://127.0.0.1:1")
    client, a, _ = _client(settings)
    r = client.post("/v1/jobs", json={"type": "echo"}, headers=a)
    assert r.status_code == 202  # committed; the sweep dispatches it when the broker is back
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    assert job["status"] == "queued"
    assert client.get("/readyz").status_code == 503
    assert client.get("/v1/queues", headers=a).status_code == 503


def test_auth_off(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, redis_url=redis_url, auth="off")
    engine = make_engine(settings.database)
    upgrade(engine)
    client = TestClient(create_app(settings))
    assert client.post("/v1/jobs", json={"type": "echo"}).status_code == 202


def test_prometheus_metrics(api) -> None:
    client, a, _ = api
    client.post("/v1/jobs", json={"type": "echo"}, headers=a)
    text = client.get("/metrics").text  # aggregates only: no key needed
    assert 'tidegate_jobs{status="queued"} 1.0' in text
    assert 'tidegate_source_up{source="database"} 1.0' in text
    assert 'tidegate_queue_ready{queue="medium"}' in text


def test_a_deadline_is_accepted_shown_and_validated(api) -> None:
    from datetime import UTC, datetime, timedelta

    client, a, _ = api
    r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                      "deadline_s": 120}, headers=a)
    assert r.status_code == 202, r.text
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    left = datetime.fromisoformat(job["expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=110) < left <= timedelta(seconds=120)
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                      "expires_at": at.isoformat()}, headers=a)
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    assert datetime.fromisoformat(job["expires_at"]) == at
    # deadline_at: the same deadline under its own name, kept on the row and shown.
    r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                      "deadline_at": at.isoformat(),
                                      "on_deadline_unmeetable": "warn"}, headers=a)
    assert r.status_code == 202, r.text
    assert datetime.fromisoformat(r.json()["deadline_at"]) == at
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    assert datetime.fromisoformat(job["deadline_at"]) == at
    assert datetime.fromisoformat(job["expires_at"]) == at
    before = client.get("/v1/jobs", headers=a).json()["jobs"]
    for bad in ({"deadline_s": 0}, {"deadline_s": 5, "expires_at": at.isoformat()},
                {"deadline_s": 5, "deadline_at": at.isoformat()},
                {"deadline_at": at.isoformat(), "expires_at": at.isoformat()},
                {"deadline_at": "2030-01-01T00:00:00"}, {"deadline_at": "tomorrow"},
                {"deadline_s": 1e12}, {"deadline_s": "soon"},
                {"on_deadline_unmeetable": "ignore"},
                {"deadline_at": "2001-01-01T00:00:00Z"},
                {"expires_at": "2001-01-01T00:00:00Z"}):
        r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"}, **bad},
                        headers=a)
        assert r.status_code == 422, (bad, r.text)
        assert set(r.json()["error"]) >= {"code", "message"}, r.text
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == before  # nothing stored


def test_openapi_documents_every_error_a_route_can_answer(api) -> None:
    """Found by fuzzing against the schema: 401, 400 and 413 were answered but undocumented."""
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path.startswith(("/v1/", "/generate", "/status/")):
                assert {"401", "503"} <= codes, (method, path, codes)
            if method == "post" and "requestBody" in op:
                assert {"400", "413", "422"} <= codes, (method, path, codes)
    body = spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["404"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_a_waiting_job_has_an_eta_and_a_deadline_it_misses_is_refused_or_warned(api) -> None:
    """No worker runs here: each job ahead holds the queue for its type's typical run, so the
    estimate of a job behind three others is after a one-second deadline."""
    from datetime import UTC, datetime

    client, a, _ = api
    ids = []
    for _ in range(3):
        r = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"}}, headers=a)
        assert r.status_code == 202, r.text
        eta = r.json()["eta"]
        assert eta is not None and 0 < eta["confidence"] <= 1
        assert eta["start_at"] <= eta["finish_at"]
        ids.append(r.json()["job_id"])
    job = client.get(f"/v1/jobs/{ids[-1]}", headers=a).json()
    assert datetime.fromisoformat(job["eta"]["finish_at"]) > datetime.now(UTC)
    before = client.get("/v1/jobs", headers=a).json()["jobs"]
    refused = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                            "deadline_s": 1,
                                            "on_deadline_unmeetable": "refuse"}, headers=a)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "deadline_unmeetable" and error["eta"]["finish_at"]
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == before  # nothing stored
    warned = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                           "deadline_s": 1}, headers=a)
    assert warned.status_code == 202, warned.text
    assert [w["code"] for w in warned.json()["warnings"]] == ["deadline_unmeetable"]
    roomy = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "hi"},
                                          "deadline_s": 3600,
                                          "on_deadline_unmeetable": "refuse"}, headers=a)
    assert roomy.status_code == 202 and roomy.json()["warnings"] == []
    # Once the job ended, it has no estimate.
    client.delete(f"/v1/jobs/{ids[0]}", headers=a)
    assert client.get(f"/v1/jobs/{ids[0]}", headers=a).json()["eta"] is None
