"""Walk every route of the API with another tenant's ids and every scope's keys: nothing of
one tenant is shown to, or changed by, another; a key outside its scope gets 403
forbidden_scope; errors never carry host names, paths or traces."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.models import Usage

from .helpers import settings_for

BODIES = {("POST", "/v1/jobs"): {"type": "echo"}, ("POST", "/generate"): {"startup": "x"},
          ("POST", "/v1/keys"): {"tenant": "zeta"}, ("PUT", "/v1/tenants/{name}"): {},
          ("POST", "/v1/keys/{ref}/rotate"): {"grace": "1h"}}
# Routes a tenant may call and that answer about the caller only (or nothing tenant-owned).
OPEN = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc",
        "/docs/oauth2-redirect"}


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[tuple]:
    settings = settings_for(tmp_path, redis_url=redis_url, broker_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    plain = {}
    for tenant in ("acme", "zeta"):
        for scope in ("submit", "read"):
            plain[f"{tenant}-{scope}"], rec = create_key(store, tenant=tenant,
                                                         secret=settings.secret_key,
                                                         scope=scope)
    plain["admin"], _ = create_key(store, tenant="ops", secret=settings.secret_key,
                                   scope="admin")
    acme_key = store.list_keys(tenant="acme")[0]
    store.add_usage(tenant="acme", day=__import__("datetime").date.today(), type="secret-type",
                    lane="openai:gpt-4o-mini", usage=Usage(11, 22, 33))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        h = {k: {"Authorization": f"Bearer {v}"} for k, v in plain.items()}
        job = client.post("/v1/jobs", json={"type": "echo", "metadata": {"m": "acme-secret"}},
                          headers=h["acme-submit"]).json()["job_id"]
        yield client, h, job, acme_key
    engine.dispose()


def _routes(client: TestClient) -> list[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in spec["paths"].items()
            for method, op in ops.items()]


def _fill(path: str, job: str, key_prefix: str) -> str:
    return (path.replace("{job_id}", job).replace("{ref}", key_prefix)
            .replace("{name}", "acme"))


def _streams(op: dict) -> bool:
    return any("text/event-stream" in (r.get("content") or {})
               for r in op.get("responses", {}).values())


def test_no_route_shows_or_changes_another_tenants_things(world) -> None:
    client, h, job, acme_key = world
    walked = 0
    for method, path, op in _routes(client):
        if path in OPEN:
            continue
        url = _fill(path, job, acme_key.prefix)
        body = BODIES.get((method, path))
        admin_only = "admin" in op.get("tags", [])
        for who in ("zeta-submit", "zeta-read"):
            if _streams(op) and "{job_id}" not in path:
                continue  # a tenant-wide stream never ends; the events tests cover it
            r = client.request(method, url, headers=h[who],
                               json=body if method in ("POST", "PUT") else None)
            walked += 1
            where = (who, method, path, r.status_code, r.text[:300])
            assert r.status_code < 500, where
            if admin_only:
                assert r.status_code == 403, where
                assert r.json()["error"]["code"] == "forbidden_scope", where
            elif "{job_id}" in path:
                assert r.status_code in (403, 404), where
                code = r.json()["error"]["code"]
                assert code == ("forbidden_scope" if r.status_code == 403 else "not_found"), where
                if r.status_code == 403:  # only a scope refusal, the same for any id
                    other = client.request(method, _fill(path, "0" * 32, ""), headers=h[who],
                                           json=body)
                    assert other.status_code == 403, where
            # whatever it answered, nothing of acme's is in it (a 404 may echo the id asked)
            secrets = ["acme", "acme-secret", "secret-type", acme_key.prefix]
            for secret in secrets + ([] if r.status_code == 404 else [job]):
                assert secret not in r.text, (where, secret)
    assert walked > 20
    # ...and acme's job is exactly as acme left it
    got = client.get(f"/v1/jobs/{job}", headers=h["acme-read"]).json()
    assert got["status"] == "queued" and got["cancel_requested"] is False


def test_every_scope_reaches_what_it_may(world) -> None:
    """The same walk with the owner's keys: each route answers its scope's way (so the ids
    above were real ones)."""
    client, h, job, acme_key = world
    for method, path, op in _routes(client):
        if path in OPEN or _streams(op):
            continue
        url = _fill(path, job, acme_key.prefix)
        body = BODIES.get((method, path))
        admin_only = "admin" in op.get("tags", [])
        writes = method in ("POST", "PUT", "DELETE")
        for who in ("acme-read", "acme-submit", "admin"):
            if who == "admin" and method == "POST" and path.endswith("/revoke"):
                continue  # revoking acme's key would change the next iterations
            r = client.request(method, url, headers=h[who],
                               json=body if method in ("POST", "PUT") else None)
            where = (who, method, path, r.status_code, r.text[:300])
            allowed = (who == "admin" or (not admin_only and (who == "acme-submit"
                                                               or not writes)))
            if allowed:
                assert r.status_code != 403 and r.status_code < 500, where
            else:
                assert r.status_code == 403, where
                assert r.json()["error"]["code"] == "forbidden_scope", where


_LEAKS = re.compile(r"Traceback|File \"|/home/|/srv/|/usr/|/tmp/|site-packages")


def test_errors_never_carry_hosts_paths_or_traces(world, tmp_path: Path) -> None:
    """A handler exception and a broken dependency, as the tenant sees them."""
    from pydantic import BaseModel

    from tidegate.core.errors import public_summary
    from tidegate.core.memory import InMemoryDispatcher, InMemoryJobStore
    from tidegate.core.registry import Registry
    from tidegate.core.runner import Runner
    from tidegate.core.service import JobService

    host = socket.gethostname()
    registry = Registry()

    class In(BaseModel):
        pass

    @registry.job_type("explode", input_model=In, priority="low", max_attempts=1)
    def explode(ctx: object) -> None:
        raise ConnectionError(f"cannot reach {host}:5432 via postgresql://u:pw@db.internal/x "
                              f"reading {tmp_path / 'conf.toml'}\nTraceback (most recent "
                              "call last):\n  File \"/srv/app.py\", line 1")

    store = InMemoryJobStore()
    service = JobService(store, InMemoryDispatcher(), registry)
    job, _ = service.submit(tenant="t", type="explode", input={})
    Runner(store, registry, worker_id="w").run(job.id)
    failed = store.get(job.id)
    assert failed is not None and failed.error_code == "handler_error"
    for leak in (host, "db.internal", "5432", str(tmp_path), "Traceback", "/srv/"):
        assert leak not in (failed.error_message or ""), (leak, failed.error_message)
    assert failed.error_message.startswith("ConnectionError: cannot reach <host>")
    assert public_summary(OSError("x")) == "OSError: x"
    # the API's own errors: a 404 and a 401 name nothing of the server
    client, h, _, _ = world
    for r in (client.get("/v1/jobs/nope", headers=h["zeta-read"]),
              client.get("/v1/jobs", headers={"Authorization": "Bearer tg_bad"}),
              client.post("/v1/jobs", content=b"{bad", headers={
                  **h["zeta-submit"], "Content-Type": "application/json"})):
        assert not _LEAKS.search(r.text) and host not in r.text, r.text
