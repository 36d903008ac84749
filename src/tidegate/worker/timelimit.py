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

import logging
import threading

from ..core.decision import Again, Facts, decide
from ..core.errors import Unavailable
from ..core.models import Job
from ..core.statuses import Status
from .runtime import Runtime

log = logging.getLogger(__name__)


class TimeLimit:
    """Started when a delivery begins, cancelled when it returns. It acts only on the attempt
    this delivery claimed (:meth:`pin`): every thread of a process shares its lease owner, so
    the owner alone could end a newer attempt of the same job run by a sibling thread."""

    def __init__(self, rt: Runtime, job_id: str, limit_s: float) -> None:
        self.rt = rt
        self.job_id = job_id
        self.limit_s = limit_s
        self.attempt: int | None = None
        self._timer = threading.Timer(limit_s, self._expire)
        self._timer.daemon = True
        self._timer.name = f"time-limit-{job_id[:8]}"

    def __enter__(self) -> TimeLimit:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def pin(self, job: Job) -> None:
        """The runner's ``on_claim``: the attempt this delivery runs."""
        self.attempt = job.attempts

    def _expire(self) -> None:
        try:
            self.expire()
        except Unavailable as exc:  # the lease still runs out; the sweep takes over then
            log.warning("job %s: time limit reached, but %s", self.job_id, exc.message)
        except Exception:
            log.exception("job %s: time limit handling failed", self.job_id)

    def expire(self) -> bool:
        attempt = self.attempt
        if attempt is None:  # this delivery claimed nothing
            return False
        store, runner = self.rt.container.store, self.rt.runner
        job = store.get(self.job_id)
        if job is None or job.status is not Status.RUNNING or job.attempts != attempt:
            return False
        message = f"attempt {attempt} ran past the job time limit ({self.limit_s:g}s)"
        decision = decide(Facts.of(job), Again(runner.backoff(attempt), "time_limit", message,
                                               reason="time limit"),
                          now=store.now(), max_quota_wait_s=runner.max_quota_wait_s(job.type))
        written = store.finish(self.job_id, attempt=attempt, **decision.finish_args())
        if written is None:
            return False
        log.warning("job %s: %s; %s", self.job_id, message, written.value)
        if written is Status.RETRYING:
            row = store.get(self.job_id)
            if row is not None:  # if this send fails, the sweep sends it
                self.rt.container.service.dispatch(row, countdown_s=decision.delay_s)
        return True
