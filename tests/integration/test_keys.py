"""Key scopes, revocation, rotation, expiry and last use, over the real API and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tidegate.adapters.sql import SqlJobStore, make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.api.app import create_app
from tidegate.core.keys import create_key
from tidegate.core.models import utcnow

from .helpers import settings_for


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def setup(tmp_path: Path, redis_url: str) -> Iterator[tuple]:
    settings = settings_for(tmp_path, redis_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    store = SqlJobStore(engine)
    keys = {scope: create_key(store, tenant="acme", secret=settings.secret_key, scope=scope)[0]
            for scope in ("admin", "submit", "read")}
    keys["other"] = create_key(store, tenant="zeta", secret=settings.secret_key)[0]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {k: _bearer(v) for k, v in keys.items()}, store, settings
    engine.dispose()


def _until(check, timeout_s: float = 1.0) -> float:
    """Seconds until ``check()`` held (fails past ``timeout_s``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "not within the time allowed"
        time.sleep(0.02)
    return time.monotonic() - start


def test_each_scope_can_do_what_it_says_and_no_more(setup) -> None:
    client, h, _, _ = setup
    # read: reads its tenant's jobs, cannot submit, cancel, retry or manage keys
    job = client.post("/v1/jobs", json={"type": "echo"}, headers=h["submit"]).json()["job_id"]
    assert client.get(f"/v1/jobs/{job}", headers=h["read"]).status_code == 200
    assert client.get("/v1/jobs", headers=h["read"]).json()["jobs"][0]["job_id"] == job
    for method, path in (("POST", "/v1/jobs"), ("DELETE", f"/v1/jobs/{job}"),
                         ("POST", f"/v1/jobs/{job}/retry"), ("GET", "/v1/keys"),
                         ("PUT", "/v1/tenants/acme"), ("POST", "/generate")):
        body = {"type": "echo"} if method == "POST" and path == "/v1/jobs" else (
            {"startup": "x"} if path == "/generate" else {})
        r = client.request(method, path, headers=h["read"], json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden_scope"
    # submit: its own jobs, but no admin routes; another tenant's job stays 404
    assert client.get("/v1/keys", headers=h["submit"]).status_code == 403
    assert client.get(f"/v1/jobs/{job}", headers=h["other"]).status_code == 404
    assert client.delete(f"/v1/jobs/{job}", headers=h["other"]).status_code == 404
    assert client.delete(f"/v1/jobs/{job}", headers=h["submit"]).status_code == 200
    # admin: every tenant's jobs
    theirs = client.post("/v1/jobs", json={"type": "echo"}, headers=h["other"]).json()["job_id"]
    assert client.get(f"/v1/jobs/{theirs}", headers=h["admin"]).status_code == 200
    listed = {j["job_id"] for j in client.get("/v1/jobs", headers=h["admin"]).json()["jobs"]}
    assert {job, theirs} <= listed


def test_admin_api_creates_lists_rotates_and_revokes(setup) -> None:
    client, h, _, _ = setup
    r = client.post("/v1/keys", json={"tenant": "beta", "scope": "read", "name": "ci",
                                      "expires_in": "30d"}, headers=h["admin"])
    assert r.status_code == 201, r.text
    new, record = r.json()["key"], r.json()["record"]
    assert record["scope"] == "read" and record["state"] == "active"
    assert timedelta(days=29) < (
        __import__("datetime").datetime.fromisoformat(record["expires_at"]) - utcnow()
    ) <= timedelta(days=30)
    assert client.get("/v1/jobs", headers=_bearer(new)).status_code == 200
    # last use is recorded, with the address it came from
    listed = {k["prefix"]: k for k in client.get("/v1/keys", headers=h["admin"]).json()}
    assert listed[record["prefix"]]["last_used_at"] is not None
    assert listed[record["prefix"]]["last_used_ip"] == "testclient"
    # rotate: the new key works at once, the old one through its grace period only
    r = client.post(f"/v1/keys/{record['prefix']}/rotate", json={"grace": "1s"},
                    headers=h["admin"])
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["record"]["scope"] == "read" and rotated["record"]["tenant"] == "beta"
    assert rotated["record"]["rotated_from"] == record["id"]
    assert client.get("/v1/jobs", headers=_bearer(rotated["key"])).status_code == 200
    assert client.get("/v1/jobs", headers=_bearer(new)).status_code == 200  # in its grace
    _until(lambda: client.get("/v1/jobs", headers=_bearer(new)).status_code == 401, 3)
    # revoke by prefix: refused at once
    r = client.post(f"/v1/keys/{rotated['record']['prefix']}/revoke", headers=h["admin"])
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = client.get("/v1/jobs", headers=_bearer(rotated["key"]))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/keys/tg_nothere/revoke", headers=h["admin"]).status_code == 404
    bad = client.post("/v1/keys", json={"tenant": "Bad Name"}, headers=h["admin"])
    assert bad.status_code == 422


def test_an_expired_key_is_refused(setup) -> None:
    client, _, store, settings = setup
    plain, _ = create_key(store, tenant="acme", secret=settings.secret_key,
                          expires_at=utcnow() + timedelta(seconds=1))
    assert client.get("/v1/jobs", headers=_bearer(plain)).status_code == 200  # now cached
    _until(lambda: client.get("/v1/jobs", headers=_bearer(plain)).status_code == 401, 2)


def test_a_key_revoked_elsewhere_is_refused_by_every_api_process_within_a_second(
        setup, tmp_path: Path) -> None:
    """Two API processes' caches (the test client's app and a second app with its own
    container), and a revocation by the CLI in a third process."""
    client, h, store, settings = setup
    plain, record = create_key(store, tenant="acme", secret=settings.secret_key)
    with TestClient(create_app(settings), raise_server_exceptions=False) as second:
        for c in (client, second):  # both have it cached now
            assert c.get("/v1/jobs", headers=_bearer(plain)).status_code == 200
        env = {**os.environ, "TIDEGATE_DATA_DIR": str(tmp_path),
               "TIDEGATE_DATABASE_URL": settings.database}
        subprocess.run([sys.executable, "-m", "tidegate", "keys", "revoke", record.prefix],
                       env=env, check=True, capture_output=True, timeout=60)
        took = max(_until(lambda c=c: c.get("/v1/jobs", headers=_bearer(plain)).status_code
                          == 401) for c in (client, second))
        print(f"\nrevoked by the CLI: refused by both API processes after {took:.3f}s")
        assert took < 1.0
        # revoked through one process's admin API: the other refuses it within a second too
        plain2, record2 = create_key(store, tenant="acme", secret=settings.secret_key)
        assert second.get("/v1/jobs", headers=_bearer(plain2)).status_code == 200
        assert client.post(f"/v1/keys/{record2.prefix}/revoke",
                           headers=h["admin"]).status_code == 200
        _until(lambda: second.get("/v1/jobs", headers=_bearer(plain2)).status_code == 401)


def test_cli_keys_create_list_rotate(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, redis_url=redis_url)
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(tmp_path),
           "TIDEGATE_DATABASE_URL": settings.database, "COLUMNS": "200"}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tidegate", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("keys", "create", "--tenant", "acme", "--scope", "read", "--expires", "30d",
              "--name", "dash")
    plain = out.strip().splitlines()[-1]
    assert plain.startswith("tg_")
    out = cli("keys", "rotate", plain[:10], "--grace", "1h")
    assert out.strip().splitlines()[-1].startswith("tg_")
    listing = cli("keys", "list")
    assert listing.count("acme") == 2 and "read" in listing and "dash" in listing
    bad = subprocess.run([sys.executable, "-m", "tidegate", "keys", "create", "--tenant", "a",
                          "--scope", "root"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "invalid scope" in bad.stderr
