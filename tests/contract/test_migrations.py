"""The migrations build exactly the schema tables.py describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import metadata


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return list(compare_metadata(ctx, metadata))


def test_sqlite_migrations_match_tables(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_postgresql_migrations_match_tables(pg_database: str) -> None:
    engine = make_engine(pg_database)
    assert _diff(engine) == []
    engine.dispose()


def _insert_float_cost_job(engine: sa.Engine, job_id: str, cost: float) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO tg_jobs (id, tenant, type, status, priority, input, metadata, "
            "max_attempts, checkpoint, created_at, updated_at, cost_usd) VALUES "
            "(:id, 't', 'echo', 'succeeded', 'medium', '{}', '{}', 3, '{}', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :cost)"), {"id": job_id, "cost": cost})


def _money_migrates(engine: sa.Engine) -> None:
    upgrade(engine, "0002")
    _insert_float_cost_job(engine, "j1", 0.000123456789)
    _insert_float_cost_job(engine, "j2", 12.5)
    upgrade(engine)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, cost_nano_usd FROM tg_jobs")).all())
    assert rows == {"j1": 123_457, "j2": 12_500_000_000}
    # The jobs that were there before the counts existed are counted (0006).
    from tidegate.adapters.sql import SqlJobStore

    assert SqlJobStore(engine).count_by_status(tenant="t")["succeeded"] == 2


def test_sqlite_money_becomes_exact_nano_dollars(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    _money_migrates(engine)
    engine.dispose()


def test_postgresql_money_becomes_exact_nano_dollars() -> None:
    from tests.services import fresh_pg_database

    with fresh_pg_database() as url:
        engine = make_engine(url)
        _money_migrates(engine)
        engine.dispose()


def _keys_keep_working(engine: sa.Engine) -> None:
    """Keys made before scopes: the install's first (oldest) key is admin, the rest submit;
    every one still authenticates."""
    from tidegate.adapters.sql import SqlJobStore
    from tidegate.core.keys import authenticate, hash_key

    upgrade(engine, "0003")
    with engine.begin() as conn:
        for i, (tenant, created) in enumerate((("default", "2026-01-01 00:00:00"),
                                               ("acme", "2026-02-01 00:00:00"))):
            conn.execute(sa.text(
                "INSERT INTO tg_api_keys (id, tenant, prefix, key_hash, created_at) VALUES "
                "(:id, :tenant, :prefix, :hash, :created)"),
                {"id": f"k{i}", "tenant": tenant, "prefix": f"tg_old{i}",
                 "hash": hash_key(f"tg_old{i}secret", "s"), "created": created})
    upgrade(engine)
    store = SqlJobStore(engine)
    first = authenticate(store, "tg_old0secret", "s")
    second = authenticate(store, "tg_old1secret", "s")
    assert first is not None and (first.tenant, first.scope) == ("default", "admin")
    assert second is not None and (second.tenant, second.scope) == ("acme", "submit")


def test_sqlite_existing_keys_keep_working(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    _keys_keep_working(engine)
    engine.dispose()


def test_postgresql_existing_keys_keep_working() -> None:
    from tests.services import fresh_pg_database

    with fresh_pg_database() as url:
        engine = make_engine(url)
        _keys_keep_working(engine)
        engine.dispose()


def _deadlines_carry_over(engine: sa.Engine) -> None:
    """A job's expiry is its caller's deadline: a row written before 0009 reads back with its
    deadline, one without keeps none; and 0009 indexes a type's recent runs."""
    from datetime import UTC, datetime

    from tidegate.adapters.sql import SqlJobStore

    upgrade(engine, "0008")
    with engine.begin() as conn:
        for job_id, expires in (("with", "2030-01-02 03:04:05"), ("without", None)):
            conn.execute(sa.text(
                "INSERT INTO tg_jobs (id, tenant, type, status, priority, input, metadata, "
                "max_attempts, checkpoint, created_at, updated_at, expires_at) VALUES "
                "(:id, 't', 'echo', 'queued', 'medium', '{}', '{}', 3, '{}', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :expires)"),
                {"id": job_id, "expires": expires})
    upgrade(engine)
    store = SqlJobStore(engine)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with_deadline, without = store.get("with"), store.get("without")
    assert with_deadline is not None and without is not None
    assert (with_deadline.deadline_at, with_deadline.expires_at) == (at, at)
    assert (without.deadline_at, without.expires_at) == (None, None)
    index = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("tg_jobs")}
    assert index["ix_tg_jobs_type_status_finished"] == ["type", "status", "finished_at"]


def test_sqlite_deadlines_carry_over(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    _deadlines_carry_over(engine)
    engine.dispose()


def test_postgresql_deadlines_carry_over() -> None:
    from tests.services import fresh_pg_database

    with fresh_pg_database() as url:
        engine = make_engine(url)
        _deadlines_carry_over(engine)
        engine.dispose()
