"""The sweep: finds jobs whose promise is at risk and sends them again.

- running with an expired lease (worker killed, machine gone): back to the queue, or ``failed``
  with ``worker_lost`` once the attempt cap is spent (core.decision decides);
- waiting but unable to wait: a cancel request it still carries ends it ``cancelled``, a passed
  deadline ``failed``/``expired``;
- waiting but never handed to the broker (publish failed), or handed over and overdue (the
  broker lost the message, a connection lost it in flight, an undecodable message was
  dropped): sent again. A duplicate message is harmless: only one delivery can claim the row.

Overdue is read from the delivery frontier: each queue is first in, first out, and every
worker records the send time of each message whose job it claims. Once messages sent well
after a waiting job's (``behind_s``) have been claimed from its queue, its own message is not
coming. So a lost message is sent again within about ``behind_s`` while its queue moves, and a
backlog that simply waits its turn, however old, is never sent twice. Only on a queue whose
frontier has not moved for ``redispatch_after_s`` (no claims: no workers, every message lost,
or no frontier) is a job sent again for having waited that long.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .decision import EXPIRED, Again, Facts, decide
from .models import Job, utcnow
from .ports import DeliveryFrontier
from .service import JobService
from .statuses import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepConfig:
    dispatch_grace_s: float = 10.0
    redispatch_after_s: float = 600.0
    # Claims of messages sent this long after a waiting job's make its message overdue:
    # well above how far claims can run out of send order (several workers, clock skew).
    behind_s: float = 30.0
    retention_days: float = 7.0
    failed_retention_days: float = 30.0


@dataclass(slots=True)
class SweepReport:
    requeued: int = 0
    worker_lost: int = 0
    cancelled: int = 0
    expired: int = 0
    redispatched: int = 0
    dispatch_failed: int = 0

    def count(self, status: Status, code: str | None) -> None:
        if status is Status.CANCELLED:
            self.cancelled += 1
        elif status is Status.FAILED and code == EXPIRED[0]:
            self.expired += 1
        elif status is Status.FAILED:
            self.worker_lost += 1


class Sweeper:
    def __init__(self, service: JobService, config: SweepConfig | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 frontier: DeliveryFrontier | None = None) -> None:
        self.service = service
        self.store = service.store
        self.config = config or SweepConfig()
        # Retention (days), and the senders' clock the frontier is stamped with; leases and
        # schedules use the database's.
        self.clock = clock
        self.frontier = frontier

    def sweep(self) -> SweepReport:
        report = SweepReport()
        # The database's clock: every time the sweep compares was stamped by it.
        now = self.store.now()
        for job in self.store.expired_leases():
            self._lease_expired(job, now, report)
        for _, status in self.store.close_waiting():  # cancel-requested, or past the deadline
            report.count(status, EXPIRED[0] if status is Status.FAILED else None)
        for job in self.store.undispatched(grace_s=self.config.dispatch_grace_s,
                                           redispatch_after_s=self.config.redispatch_after_s,
                                           overdue_before=self._overdue_before(now)):
            delay = max(0.0, (job.not_before - now).total_seconds()) if job.not_before else 0.0
            if self.service.dispatch(job, countdown_s=delay):
                report.redispatched += 1
            else:
                report.dispatch_failed += 1
                break  # the broker is down; try again next sweep
        self.store.fold_counts()
        if any((report.requeued, report.worker_lost, report.redispatched, report.cancelled,
                report.expired)):
            log.info("sweep: %s", report)
        return report

    def _overdue_before(self, now: datetime) -> dict[str, datetime]:
        """Per moving queue, the time (database clock) a waiting job's message must have been
        sent after not to be overdue."""
        if self.frontier is None:
            return {}
        try:
            queues = self.frontier.read()
        except Exception as exc:  # the shared Redis is away: the long wait still applies
            log.warning("delivery frontier unavailable (%s)", type(exc).__name__)
            return {}
        # Send times are the senders' clocks; the rows are stamped with the database's.
        skew = now - self.clock()
        return {queue: datetime.fromtimestamp(sent_at, UTC) + skew
                - timedelta(seconds=self.config.behind_s)
                for queue, (sent_at, moved_s_ago) in queues.items()
                if moved_s_ago < self.config.redispatch_after_s}

    def _lease_expired(self, job: Job, now: datetime, report: SweepReport) -> None:
        attempt = job.attempts
        decision = decide(Facts.of(job), Again(
            0.0, "worker_lost", f"the worker running attempt {attempt} stopped renewing its "
            f"lease ({job.lease_owner})", reason="lease expired", requeue=True,
            detail={"worker": job.lease_owner}), now=now, max_quota_wait_s=math.inf)
        # Every write below holds only while the lease is still expired: a worker that
        # renewed since the read above keeps its job.
        if decision.status is Status.QUEUED:
            row = self.store.requeue(job.id, from_status=Status.RUNNING, attempt=attempt,
                                     lease_expired=True, note=decision.note)
            if row is None:
                return
            if row.status is not Status.QUEUED:  # a cancel or the deadline came first
                report.count(row.status, row.error_code)
                return
            report.requeued += 1
            if not self.service.dispatch(row):
                report.dispatch_failed += 1
            return
        args = decision.finish_args()
        written = self.store.finish(job.id, attempt=attempt, lease_expired=True, **args)
        if written is not None:
            report.count(written, decision.error_code)

    def purge(self) -> int:
        now = self.clock()
        n = self.store.purge(
            finished_before=now - timedelta(days=self.config.retention_days),
            failed_before=now - timedelta(days=self.config.failed_retention_days))
        if n:
            log.info("purged %d finished jobs", n)
        return n

    def recover_dead_workers(self, owners: Iterable[str]) -> int:
        """Take over at once the running jobs of workers known to be dead (their liveness
        stamps stopped), instead of waiting for their leases to run out: their leases end now
        and a sweep handles them like any expired lease. Returns how many jobs that was."""
        expired = 0
        for owner in owners:
            n = self.store.expire_leases_of(owner)
            if n:
                log.warning("worker %s is gone: taking over its %d running job(s)", owner, n)
            expired += n
        if expired:
            self.sweep()
        return expired
