"""The job time limit for pools where Celery cannot enforce one.

Celery's soft and hard time limits are signals sent to prefork children; the threads and solo
pools ignore them, so a handler waiting on a provider that never answers would keep its slot
and its lease (the heartbeat renews it) forever. This watchdog ends such an attempt from the
outside instead: one conditional UPDATE moves the row from this attempt to `retrying` (with
backoff) or, at the attempt cap, to `failed`, both with the code `time_limit`. The attempt's
heartbeat then finds the row no longer its own, so the handler stops at its next checkpoint
(an abandonable LLM call stops within a moment) and writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta

from ..core.backoff import full_jitter
from ..core.errors import Unavailable
from ..core.models import JobEvent, utcnow
from ..core.statuses import Status
from .runtime import Runtime

log = logging.getLogger(__name__)


class TimeLimit:
    """Started when a delivery begins, cancelled when it returns."""

    def __init__(self, rt: Runtime, job_id: str, limit_s: float) -> None:
        self.rt = rt
        self.job_id = job_id
        self.limit_s = limit_s
        self._timer = threading.Timer(limit_s, self._expire)
        self._timer.daemon = True
        self._timer.name = f"time-limit-{job_id[:8]}"

    def __enter__(self) -> TimeLimit:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        try:
            self.expire()
        except Unavailable as exc:  # the lease still runs out; the sweep takes over then
            log.warning("job %s: time limit reached, but %s", self.job_id, exc.message)
        except Exception:
            log.exception("job %s: time limit handling failed", self.job_id)

    def expire(self) -> bool:
        store = self.rt.container.store
        job = store.get(self.job_id)
        # Only an attempt this process is running (the delivery that claimed it is still in
        # its handler, or this timer would have been cancelled).
        if (job is None or job.status is not Status.RUNNING
                or job.lease_owner != self.rt.runner.worker_id):
            return False
        attempt, now = job.attempts, utcnow()
        message = f"attempt {attempt} ran past the job time limit ({self.limit_s:g}s)"
        if attempt >= job.max_attempts:
            if not store.finish(self.job_id, attempt=attempt, status=Status.FAILED, now=now,
                                error_code="time_limit",
                                error_message=f"{message}; no attempts left"):
                return False
            log.warning("job %s: %s; failed", self.job_id, message)
            self._event("failed", attempt, code="time_limit")
            return True
        cfg = self.rt.runner.config
        delay = full_jitter(attempt, base_s=cfg.backoff_base_s, cap_s=cfg.backoff_cap_s)
        if not store.finish(self.job_id, attempt=attempt, status=Status.RETRYING, now=now,
                            error_code="time_limit", error_message=message,
                            not_before=now + timedelta(seconds=delay)):
            return False
        log.warning("job %s: %s; retrying in %.1fs", self.job_id, message, delay)
        self._event("retrying", attempt, reason="time limit", delay_s=round(delay, 3),
                    code="time_limit", counts_as_attempt=True)
        # If this send fails, the sweep sends it (dispatched_at stays empty).
        self.rt.container.service.dispatch(job, countdown_s=delay)
        return True

    def _event(self, kind: str, attempt: int, **detail: object) -> None:
        with contextlib.suppress(Exception):
            self.rt.container.store.add_event(
                JobEvent(self.job_id, kind, utcnow(), attempt, dict(detail)))
