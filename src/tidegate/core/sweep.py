"""The sweep: finds jobs whose promise is at risk and sends them again.

- running with an expired lease (worker killed, machine gone): back to the queue, or ``failed``
  with ``worker_lost`` once the attempt cap is spent;
- waiting but never handed to the broker (publish failed), or handed over long ago and due
  (broker lost the message, an undecodable message was dropped): sent again. A duplicate
  message is harmless: only one delivery can claim the row.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import Unavailable
from .models import JobEvent, utcnow
from .service import JobService
from .statuses import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepConfig:
    dispatch_grace_s: float = 10.0
    redispatch_after_s: float = 600.0
    retention_days: float = 7.0
    failed_retention_days: float = 30.0


@dataclass(slots=True)
class SweepReport:
    requeued: int = 0
    worker_lost: int = 0
    cancelled: int = 0
    redispatched: int = 0
    dispatch_failed: int = 0


class Sweeper:
    def __init__(self, service: JobService, config: SweepConfig | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.service = service
        self.store = service.store
        self.config = config or SweepConfig()
        self.clock = clock

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.clock()
        for job in self.store.expired_leases(now):
            attempt = job.attempts
            if job.cancel_requested:
                if self.store.finish(job.id, attempt=attempt, status=Status.CANCELLED, now=now,
                                     error_code="cancelled", error_message="cancelled on request"):
                    report.cancelled += 1
                    self._event(job.id, "cancelled", attempt, reason="lease expired")
            elif attempt >= job.max_attempts:
                if self.store.finish(job.id, attempt=attempt, status=Status.FAILED, now=now,
                                     error_code="worker_lost",
                                     error_message=f"the worker running attempt {attempt} "
                                     f"stopped renewing its lease ({job.lease_owner}); "
                                     f"no attempts left"):
                    report.worker_lost += 1
                    self._event(job.id, "failed", attempt, code="worker_lost",
                                worker=job.lease_owner)
            elif self.store.requeue(job.id, from_status=Status.RUNNING, attempt=attempt, now=now):
                report.requeued += 1
                self._event(job.id, "requeued", attempt, reason="lease expired",
                            worker=job.lease_owner)
                job.status = Status.QUEUED
                if not self.service.dispatch(job):
                    report.dispatch_failed += 1
        grace = timedelta(seconds=self.config.dispatch_grace_s)
        stale = timedelta(seconds=self.config.redispatch_after_s)
        for job in self.store.undispatched(older_than=now - grace, redispatch_before=now - stale,
                                           now=now):
            delay = max(0.0, (job.not_before - now).total_seconds()) if job.not_before else 0.0
            if self.service.dispatch(job, countdown_s=delay):
                report.redispatched += 1
            else:
                report.dispatch_failed += 1
                break  # the broker is down; try again next sweep
        if any((report.requeued, report.worker_lost, report.redispatched, report.cancelled)):
            log.info("sweep: %s", report)
        return report

    def purge(self) -> int:
        now = self.clock()
        n = self.store.purge(
            finished_before=now - timedelta(days=self.config.retention_days),
            failed_before=now - timedelta(days=self.config.failed_retention_days))
        if n:
            log.info("purged %d finished jobs", n)
        return n

    def _event(self, job_id: str, kind: str, attempt: int, **detail: object) -> None:
        with contextlib.suppress(Unavailable):
            self.store.add_event(JobEvent(job_id, kind, self.clock(), attempt, dict(detail)))

    def recover_dead_workers(self, owners: Iterable[str]) -> int:
        """Take over at once the running jobs of workers known to be dead (their liveness
        stamps stopped), instead of waiting for their leases to run out: their leases end now
        and a sweep handles them like any expired lease. Returns how many jobs that was."""
        now = self.clock()
        expired = 0
        for owner in owners:
            n = self.store.expire_leases_of(owner, now=now)
            if n:
                log.warning("worker %s is gone: taking over its %d running job(s)", owner, n)
            expired += n
        if expired:
            self.sweep()
        return expired
