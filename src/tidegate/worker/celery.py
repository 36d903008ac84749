"""The worker's Celery app at module level, for Celery's own command line against a Tidegate
deployment: ``celery -A tidegate.worker.celery inspect ping|active|stats``, ``celery -A
tidegate.worker.celery events``, ``celery -A tidegate.worker.celery control ...``.

Built from the TIDEGATE_* settings (the same broker, queues and control exchange as the
workers) on first access of ``app``, not at import: importing this module connects to
nothing and reads no settings. Run workers with ``tidegate worker``, which checks the
configuration first and takes the same flags.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

_lock = threading.Lock()
_app: Celery | None = None


def get_app() -> Celery:
    global _app
    with _lock:
        if _app is None:
            from ..config import load_settings
            from .app import create_worker_app

            _app = create_worker_app(load_settings())
        return _app


def __getattr__(name: str) -> object:
    # PEP 562: `celery -A` looks up `app` (then `celery`) on the module.
    if name in ("app", "celery"):
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
