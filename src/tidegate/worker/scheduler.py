"""`tidegate beat`: runs the sweep and the retention purge on a schedule, as the only leader.

The maintenance runs in this process rather than as Celery tasks, so that it still works
when every worker is busy, crashed or stopped: that is exactly when the sweep is needed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time

import redis

from ..adapters.leader import LeaderLock
from ..adapters.redis_keys import BEAT_LEADER
from ..config import Settings
from ..core.errors import Unavailable
from ..core.sweep import SweepConfig, Sweeper
from ..wiring import build_container

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0


def run_scheduler(settings: Settings, *, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (tests)
            break
    container = build_container(settings)
    sweeper = Sweeper(container.service, SweepConfig(
        dispatch_grace_s=settings.dispatch_grace_s,
        redispatch_after_s=settings.redispatch_after_s,
        retention_days=settings.retention_days,
        failed_retention_days=settings.failed_retention_days))
    client = redis.Redis.from_url(settings.state_redis(), socket_timeout=5,
                                  socket_connect_timeout=3)
    lock = LeaderLock(client, BEAT_LEADER, ttl_s=max(15.0, settings.sweep_interval_s * 3))
    leading = False
    last_purge = 0.0
    log.info("scheduler started: sweep every %.0fs", settings.sweep_interval_s)
    try:
        while not stop.is_set():
            try:
                now_leading = lock.acquire_or_renew()
            except redis.RedisError as exc:
                log.warning("leader lock unavailable (%s); standing by", type(exc).__name__)
                now_leading = False
            if now_leading != leading:
                log.info("scheduler %s", "is the leader" if now_leading else "is standing by")
                leading = now_leading
            if leading:
                try:
                    sweeper.sweep()
                    if time.monotonic() - last_purge > PURGE_EVERY_S:
                        sweeper.purge()
                        last_purge = time.monotonic()
                except Unavailable as exc:
                    log.warning("sweep skipped: %s", exc.message)
                except Exception:
                    log.exception("sweep failed")
            stop.wait(settings.sweep_interval_s)
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()
        container.close()
        log.info("scheduler stopped")
