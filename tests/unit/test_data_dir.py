"""The data directory holds every tenant's inputs, results and key hashes: private to its owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlalchemy as sa

from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.config import Settings
from tidegate.up import ensure_first_key, prepare_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_private_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        data = tmp_path / "fresh" / "data"
        engine = make_engine(f"sqlite:///{data / 'tidegate.db'}")
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            files = sorted(p.name for p in data.iterdir())
            modes = {p.name: _mode(p) for p in data.iterdir()}
        engine.dispose()
    finally:
        os.umask(old)
    assert {"tidegate.db", "tidegate.db-wal", "tidegate.db-shm"} <= set(files), files
    assert _mode(data) == 0o700
    assert all(m == 0o600 for m in modes.values()), modes


def test_up_makes_an_existing_lax_data_dir_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "redis" / "appendonlydir").mkdir(parents=True, mode=0o755)
    for f in (data / "tidegate.db", data / "api_key", data / "redis" / "dump.rdb",
              data / "redis" / "appendonlydir" / "appendonly.aof.1.base.rdb"):
        f.write_text("x")
        f.chmod(0o644)
    data.chmod(0o755)
    prepare_data_dir(data)
    for path in [data, *data.rglob("*")]:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    settings = Settings(_env_file=None, data_dir=data, database_url=None)  # type: ignore[call-arg]
    (data / "tidegate.db").unlink()
    (data / "api_key").unlink()
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    ensure_first_key(settings)
    assert _mode(data / "api_key") == 0o600 and _mode(data / "tidegate.db") == 0o600
