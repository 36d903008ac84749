"""The SQL job store (SQLAlchemy 2 Core) and its Alembic migrations."""

from .engine import make_engine
from .store import SqlJobStore

__all__ = ["SqlJobStore", "make_engine"]
