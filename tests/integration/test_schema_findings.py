"""What schemathesis found (tests/integration/test_api_schema.py), each held by a quick test:
the schema states the rules the API checks, and the API keeps to its schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key

from .helpers import settings_for


@pytest.fixture
def api(tmp_path: Path, redis_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url, auth="on")
    engine = make_engine(settings.database)
    upgrade(engine)
    key, _ = create_key(SqlJobStore(engine), tenant="ops", secret=settings.secret_key,
                        scope="admin")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {key}"}
    engine.dispose()


def test_a_405_names_every_method_the_path_serves(api) -> None:
    client, h = api
    for path, methods in (("/v1/jobs/abc", "DELETE, GET"), ("/v1/keys", "GET, POST"),
                          ("/v1/tenants/acme", "GET, PUT"), ("/v1/schedules", "GET, POST")):
        r = client.request("PATCH", path, headers=h)
        assert (r.status_code, r.headers["allow"]) == (405, methods), path
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_the_schema_states_the_rules_the_api_checks(api) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()
    types = spec["components"]["schemas"]["JobCreate"]["properties"]["type"]["enum"]
    assert {"echo", "chat", "startup_report"} <= set(types)
    assert spec["components"]["schemas"]["ScheduleCreate"]["properties"]["type"]["enum"] == types

    def param(path: str, name: str, method: str = "get") -> dict:
        return next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == name)

    assert param("/v1/jobs", "type")["schema"]["anyOf"][0]["enum"] == types
    statuses = spec["components"]["schemas"]["Status"]["enum"]
    assert set(statuses) == {"queued", "running", "retrying", "succeeded", "failed", "cancelled"}
    for path in ("/v1/jobs", "/v1/events"):
        assert param(path, "status")["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/Status"}
    assert param("/v1/events", "last-event-id")["schema"]["pattern"] == r"^[0-9]{1,18}$"
    assert param("/v1/tenants/{name}", "name", "put")["schema"]["pattern"].startswith("^[a-z0-9]")
    assert "pattern" in param("/v1/keys/{ref}/revoke", "ref", "post")["schema"]
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        assert spec["paths"][path]["post"]["requestBody"]["required"] is True


# Keywords pydantic uses in Python that JSON Schema does not know: one of them in the schema
# means a bound the API checks is invisible to every client and generator (a constraint on an
# optional field, given outside the type, is emitted as `ge`/`le` instead of minimum/maximum).
NOT_JSON_SCHEMA = {"ge", "le", "gt", "lt", "min_length", "max_length", "multiple_of", "strict"}


def test_every_bound_is_stated_in_json_schema_terms(api) -> None:
    client, _ = api
    spec = client.get("/openapi.json").json()
    found = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            in_properties = path.endswith("/properties")
            for key, value in node.items():
                if key in NOT_JSON_SCHEMA and not in_properties:
                    found.append(f"{path}/{key}")
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(spec, "")
    assert not found, found
    update = spec["components"]["schemas"]["TenantUpdate"]["properties"]
    assert update["max_streams"]["anyOf"][0] == {"type": "integer", "minimum": 0,
                                                 "maximum": 10**9}


def test_tenant_limits_below_zero_are_refused(api) -> None:
    client, h = api
    r = client.put("/v1/tenants/acme", json={"max_streams": -1}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")


def test_filters_and_names_outside_the_schema_are_refused(api) -> None:
    client, h = api
    r = client.get("/v1/jobs", params={"type": "no-such-type"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_job_type")
    r = client.get("/v1/jobs", params={"status": "lost"}, headers=h)
    assert r.status_code == 422
    r = client.get("/v1/events", params={"type": "no-such-type"}, headers=h)
    assert r.status_code == 422
    r = client.get("/v1/events", headers=h | {"Last-Event-ID": "null"})
    assert r.status_code == 422
    assert client.put("/v1/tenants/Not%20A%20Tenant", json={}, headers=h).status_code == 422


def test_tenant_settings_out_of_range_are_refused_not_a_server_error(api) -> None:
    client, h = api
    for bad in ({"monthly_usd": False}, {"monthly_usd": 1.7976931348623157e308},
                {"max_running": 2**40}, {"max_running": 2.5}, {"max_running": True},
                {"priorities": []},
                {"weight": 5000}, {"colour": "blue"}):
        r = client.put("/v1/tenants/acme", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    assert client.get("/v1/tenants/acme", headers=h).status_code == 404  # nothing was stored
    r = client.put("/v1/tenants/acme", json={"monthly_usd": 12, "max_running": 3.0}, headers=h)
    assert r.status_code == 200 and r.json()["monthly_usd"] == 12.0  # 3.0 is a whole number
    assert r.json()["max_running"] == 3
