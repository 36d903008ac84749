"""Engine construction: SQLite in WAL mode by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..dead_peer import IDLE_IN_TRANSACTION_S, dead_client_settings


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 (in a 0700 directory if we create that) before SQLite
    opens it: it holds every tenant's inputs, results and key hashes. SQLite gives the -wal
    and -shm files it creates the database file's permissions, so they stay private too."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        # (FileExistsError: another process made it first, and made it private too.)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str, *, pool_size: int = 5,
                idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S) -> sa.Engine:
    """``pool_size`` connections are kept, as many again may be opened in a burst; a caller
    that needs more at once waits up to 30 s, then gets sqlalchemy's TimeoutError (which the
    store reports as Unavailable). On PostgreSQL, a session left inside a transaction for
    ``idle_in_transaction_s`` is ended by the server (0: the server's setting)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_file(Path(parsed.database))
            pool = {"pool_size": pool_size, "max_overflow": pool_size}
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  **pool)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes; the busy timeout turns the rare
            # writer collision into a short wait instead of "database is locked".
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # Fail fast when the server is gone, so the API can answer 503 quickly; notice within
    # seconds when it vanishes while connected (keepalives, a user timeout).
    connect_args = ({"connect_timeout": 3, **dead_client_settings(
        idle_in_transaction_s=idle_in_transaction_s, options=parsed.query.get("options"))}
        if parsed.get_backend_name() == "postgresql" else {})
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                              pool_recycle=1800, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused this long is pinged before it is handed out.
IDLE_PING_S = 1.0


def _ping_when_idle(engine: sa.Engine) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle: a connection
    that was in use within the last second is as fresh as a ping would prove, and pinging it
    anyway (SQLAlchemy's pool_pre_ping) costs a round trip on every checkout: three per
    submit. A dead idle connection is replaced before use (the pool retries the checkout on
    DisconnectionError); one that died in its last second fails its statement once, and
    SQLAlchemy then invalidates the whole pool, as it would after any disconnect."""

    @sa.event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return  # fresh from connect, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"idle connection is gone: {exc}") from exc
