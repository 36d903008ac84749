"""Hostile input at the HTTP boundary: text that cannot be stored, crafted cursors, huge
echoes, reused idempotency keys. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.tables import job_events, jobs, metadata
from tidegate.core.models import new_job_id, utcnow

from .helpers import settings_for
from .test_api import _client


@pytest.fixture(params=["sqlite", "postgresql"])
def api_db(request: pytest.FixtureRequest, tmp_path: Path,
           redis_url: str) -> Iterator[tuple[TestClient, dict, dict, sa.Engine]]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        engine = make_engine(url)
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
    settings = settings_for(tmp_path, redis_url=redis_url, database_url=url)
    client, a, b = _client(settings)
    engine = make_engine(settings.database)
    with client:
        yield client, a, b, engine
    engine.dispose()


def _post(client: TestClient, headers: dict, raw: str, **extra: str):
    return client.post("/v1/jobs", content=raw.encode(),
                       headers={**headers, "content-type": "application/json", **extra})


# -- 1. text that is not valid Unicode, or that PostgreSQL cannot store -----------------------

@pytest.mark.parametrize("raw,path", [
    ('{"type": "echo", "metadata": {"x": "\\ud800"}}', "metadata.x"),
    ('{"type": "echo", "input": {"text": "a\\udfffb"}}', "input.text"),
    ('{"type": "echo", "input": {"text": "nul\\u0000"}}', "input.text"),
    ('{"type": "echo", "metadata": {"k\\u0000": 1}}', "metadata"),
    ('{"type": "echo", "metadata": {"deep": [1, {"y": ["ok", "\\udc00"]}]}}',
     "metadata.deep[1].y[1]"),
    ('{"type": "echo", "metadata": {"x": NaN}}', "metadata.x"),
    ('{"type": "echo", "metadata": {"x": Infinity}}', "metadata.x"),
    ('{"type": "ec\\u0000ho"}', "type"),
])
def test_unstorable_text_is_refused_with_its_path(api_db, raw: str, path: str) -> None:
    client, a, _, _ = api_db
    r = _post(client, a, raw)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["message"].startswith(path + ":"), err
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == []


@pytest.mark.parametrize("depth,status", [(65, 422), (5000, 400), (300_000, 400)])
def test_deep_nesting_is_refused_cleanly(api_db, depth: int, status: int) -> None:
    client, a, _, _ = api_db
    r = _post(client, a, '{"type": "echo", "metadata": {"x": ' + "[" * depth + "]" * depth
              + "}}")
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"]["code"] == "invalid_request" and len(r.content) < 1500
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == []


def test_valid_unicode_is_kept(api_db) -> None:
    client, a, _, _ = api_db
    text = "naïve 𝄞 \u2028 日本"  # astral (a surrogate *pair* in JSON), separators, CJK
    r = _post(client, a, json.dumps({"type": "echo", "input": {"text": text},
                                     "metadata": {"note": text}}))
    assert r.status_code == 202, r.text
    job = client.get(f"/v1/jobs/{r.json()['job_id']}", headers=a).json()
    assert job["metadata"] == {"note": text}


def test_nul_in_path_and_query_is_not_a_500(api_db) -> None:
    client, a, _, _ = api_db
    assert client.get("/v1/jobs/a%00b", headers=a).status_code == 404
    r = client.get("/v1/jobs", params={"type": "ec\x00ho"}, headers=a)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def _insert_bad_row(engine: sa.Engine, **raw: object) -> str:
    """A row written by an older version or by hand: the columns given are raw SQL text."""
    job_id = new_job_id()
    now = utcnow()
    values = {"id": job_id, "tenant": "acme", "type": "echo", "status": "queued",
              "priority": "medium", "input": {}, "metadata": {}, "max_attempts": 3,
              "checkpoint": {}, "created_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(jobs.insert().values(**values))
        conn.execute(job_events.insert().values(job_id=job_id, kind="submitted", attempt=0,
                                                at=now, detail={}))
        for column, sql in raw.items():
            conn.execute(sa.text(f"UPDATE tg_jobs SET {column} = {sql} WHERE id = :id"),
                         {"id": job_id})
    return job_id


def _bad_rows(engine: sa.Engine) -> list[dict[str, str]]:
    if engine.dialect.name == "sqlite":
        return [{"metadata": """'{"x": "\\ud800"}'"""},  # decodes to a lone surrogate
                {"input": "'{not json'"},  # cannot be decoded at all
                {"result": "'NaN'"},  # not serialisable as JSON
                {"metadata": "'[1, 2]'"},  # the wrong shape
                {"progress": "'abc'", "cost_nano_usd": "'x'"},  # text in number columns
                {"status": "'weird'"}]
    return [{"metadata": """'[1, 2]'::jsonb"""},
            {"input": """'"a string"'::jsonb"""},
            {"status": "'weird'", "priority": "'urgent'"},
            {"error_code": "'oops'", "result": """'{"deep": {"ok": 1e308}}'::jsonb"""}]


def test_a_bad_row_never_breaks_a_read(api_db) -> None:
    client, a, _, engine = api_db
    good_before = client.post("/v1/jobs", json={"type": "echo"}, headers=a).json()["job_id"]
    bad_ids = [_insert_bad_row(engine, **raw) for raw in _bad_rows(engine)]
    good_after = client.post("/v1/jobs", json={"type": "echo"}, headers=a).json()["job_id"]
    for job_id in bad_ids[:-1]:  # the last one may be readable on PostgreSQL
        r = client.get(f"/v1/jobs/{job_id}", headers=a)
        assert r.status_code == 200, r.text
        assert r.json()["error"]["code"] == "unreadable", r.json()
        assert client.get(f"/status/{job_id}", headers=a).status_code == 200
        assert client.get(f"/v1/jobs/{job_id}/history", headers=a).status_code == 200
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=a) as stream:
            assert stream.status_code == 200
            first = next(stream.iter_lines())
        assert first.startswith(": "), first  # the stream opens (its retry hint follows)
    listed = client.get("/v1/jobs", params={"limit": 500}, headers=a)
    assert listed.status_code == 200, listed.text
    ids = [j["job_id"] for j in listed.json()["jobs"]]
    assert set(ids) == {good_before, good_after, *bad_ids}
    seen: list[str] = []
    cursor = None
    while True:  # every page of two holds a bad row somewhere
        page = client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor
                                                             else {})}, headers=a)
        assert page.status_code == 200, page.text
        seen += [j["job_id"] for j in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    good = client.get(f"/v1/jobs/{good_after}", headers=a).json()
    assert good["error"] is None and good["type"] == "echo"
    cancelled = client.delete(f"/v1/jobs/{bad_ids[0]}", headers=a)  # still manageable
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


# -- 2. cursors are opaque and tamper-evident ---------------------------------------------------

def _cursor_parts(cursor: str) -> tuple[bytes, bytes]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    return raw[:-32], raw[-32:]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_cursors_page_correctly_and_refuse_tampering(api_db) -> None:
    client, a, b, _ = api_db
    made = [client.post("/v1/jobs", json={"type": "echo"}, headers=a).json()["job_id"]
            for _ in range(5)]
    first = client.get("/v1/jobs", params={"limit": 2}, headers=a).json()
    cursor = first["next_cursor"]
    rest = client.get("/v1/jobs", params={"limit": 10, "cursor": cursor}, headers=a).json()
    assert [j["job_id"] for j in first["jobs"] + rest["jobs"]] == made[::-1]
    payload, _sig = _cursor_parts(cursor)
    wrong_key = hmac.new(b"not the key", payload, hashlib.sha256).digest()
    naive = b'["2024-01-01T00:00:00", "x"]'
    out_of_range = b'["9999-12-31T23:59:59-23:59", "x"]'
    legacy = _b64(b"2024-01-01T00:00:00|abc")  # the old unsigned format, naive inside
    forged = [
        _b64(payload + wrong_key),  # re-signed with the wrong key
        cursor[:-5],  # truncated
        cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:],  # one char changed
        _b64(naive + wrong_key), _b64(out_of_range + wrong_key), legacy, "garbage!!", "",
        "A" * 5000,
    ]
    for bad in forged:
        r = client.get("/v1/jobs", params={"cursor": bad}, headers=a)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_cursor"
        assert len(r.content) < 1000


def test_a_validly_signed_but_impossible_position_is_refused(api_db) -> None:
    """Even with the key (a bug elsewhere, a rotated format), a naive or out-of-range datetime
    never reaches the database."""
    from tidegate.core.cursors import cursor_key, sign

    client, a, _, _ = api_db
    key = cursor_key(client.app.state.container.settings.secret_key)
    for payload in (b'["2024-01-01T00:00:00", "x"]', b'["9999-12-31T23:59:59-23:59", "x"]',
                    b'["0001-01-01T00:00:00+01:00", "x"]', b'["2024-01-01T00:00:00+00:00"]',
                    b'{"a": 1}', b'["2024-01-01T00:00:00+00:00", "x\\u0000"]'):
        r = client.get("/v1/jobs", params={"cursor": sign(payload, key)}, headers=a)
        assert r.status_code == 422, (payload, r.text)
        assert r.json()["error"]["code"] == "invalid_cursor"


# -- 4. what an error echoes is bounded ----------------------------------------------------------

def test_a_900kb_value_is_not_echoed_back(api_db) -> None:
    client, a, _, _ = api_db
    huge = "t" * 900_000
    for r in (
        client.post("/v1/jobs", json={"type": huge}, headers=a),
        client.post("/v1/jobs", json={"type": "chat", "input": {"message": "hi", huge: 1}},
                    headers=a),
        client.post("/v1/jobs", json={"type": "echo", "priority": huge}, headers=a),
        client.post("/v1/jobs", json={"type": "echo", "input": {"text": 5}, huge: 1},
                    headers=a),
        client.get("/v1/jobs", params={"status": "s" * 6000}, headers=a),
        client.get("/v1/jobs/" + "z" * 6000, headers=a),
    ):
        assert 400 <= r.status_code < 500, r.text[:200]
        assert len(r.content) < 1000, (r.status_code, r.text[:300])
        assert "…" in r.json()["error"]["message"] or r.status_code == 422


# -- 5. one idempotency key, one request --------------------------------------------------------

def test_idempotency_key_with_a_different_body_is_refused(api_db) -> None:
    client, a, b, engine = api_db
    key = {"Idempotency-Key": "order-18"}
    body = {"type": "echo", "input": {"text": "hi"}, "metadata": {"n": 1}}
    first = client.post("/v1/jobs", json=body, headers={**a, **key})
    assert first.status_code == 202
    same = client.post("/v1/jobs", json=body, headers={**a, **key})
    assert same.status_code == 202 and same.json()["job_id"] == first.json()["job_id"]
    for changed in ({**body, "input": {"text": "ho"}}, {**body, "metadata": {"n": 2}},
                    {**body, "priority": "high"}, {**body, "type": "chat",
                                                   "input": {"message": "hi"}}):
        r = client.post("/v1/jobs", json=changed, headers={**a, **key})
        assert r.status_code == 422, (changed, r.text)
        assert r.json()["error"]["code"] == "idempotency_mismatch"
    other_tenant = client.post("/v1/jobs", json={"type": "echo"}, headers={**b, **key})
    assert other_tenant.status_code == 202
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.idempotency_key == "order-18")).scalar()
        fp = conn.execute(sa.select(jobs.c.request_fingerprint).where(
            jobs.c.id == first.json()["job_id"])).scalar()
    assert n == 2 and fp is not None and len(fp) == 64


def test_a_row_from_before_fingerprints_still_answers_the_same_key(api_db) -> None:
    client, a, _, engine = api_db
    key = {"Idempotency-Key": "legacy-1"}
    first = client.post("/v1/jobs", json={"type": "echo"}, headers={**a, **key}).json()
    with engine.begin() as conn:
        conn.execute(jobs.update().values(request_fingerprint=None))
    again = client.post("/v1/jobs", json={"type": "echo", "input": {"text": "other"}},
                        headers={**a, **key})
    assert again.status_code == 202 and again.json()["job_id"] == first["job_id"]
