"""The worker's Celery app: the shared configuration plus the one task, ``tidegate.run_job``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from billiard.process import active_children
from celery import Celery, Task, signals

from ..adapters.celery_app import RUN_JOB, create_celery
from ..adapters.metrics import job_outcomes, job_seconds
from ..config import Settings
from ..core.errors import Unavailable
from . import runtime
from .timelimit import TimeLimit

log = logging.getLogger(__name__)

# Sent by a stopping prefork worker to its pool children when the shutdown grace is over
# (SIGTERM and SIGUSR1 already mean something to a pool child; SIGUSR2 does not).
STOP_SIGNAL = signal.SIGUSR2


def create_worker_app(settings: Settings) -> Celery:
    runtime.configure(settings)
    app = create_celery(settings)
    if settings.broker().startswith("redis://"):  # (rediss:// keeps kombu's TLS defaults)
        app.conf.broker_transport = "tidegate.worker.transport:RedisTransport"
    # Celery enforces its time limits in prefork children only.
    enforce_time_limit = settings.worker_pool != "prefork"

    @app.task(name=RUN_JOB, bind=True, shared=False, ignore_result=True, acks_late=True,
              reject_on_worker_lost=True, Strategy="tidegate.worker.strategy:guarded")
    def run_job(self: Task, job_id: str) -> str:
        """Run one delivery of a job. The row records every outcome; when the database cannot
        be reached the delivery is sent again later instead of being dropped."""
        if not isinstance(job_id, str) or len(job_id) > 64:
            log.error("dropping malformed run_job message: %r", job_id)
            return "malformed"
        try:
            return _deliver(job_id)
        except Unavailable as exc:
            # Acknowledging this message now would leave a job that was never claimed
            # `queued` until the scheduler's late re-send (REDISPATCH_AFTER_S). A job claimed
            # before the outage comes back through its lease; the extra delivery is harmless.
            retries = self.request.retries or 0
            delay = min(30.0, 2.0 ** min(retries, 5))
            log.warning("job %s: %s; delivering it again in %.0fs", job_id, exc.message, delay)
            raise self.retry(countdown=delay, max_retries=None) from None

    def _deliver(job_id: str) -> str:
        rt = runtime.get_runtime()
        started = time.monotonic()
        if enforce_time_limit:
            with TimeLimit(rt, job_id, settings.job_time_limit_s) as limit:
                outcome = rt.runner.run(job_id, on_claim=limit.pin)
        else:
            outcome = rt.runner.run(job_id)
        job_outcomes.labels(type=outcome.job_type or "unknown", outcome=outcome.kind).inc()
        job_seconds.labels(type=outcome.job_type or "unknown").observe(time.monotonic() - started)
        if outcome.kind == "retry":
            service = rt.container.service
            job = rt.container.store.get(job_id)
            if job is not None:
                # If this send fails, the sweep sends it (dispatched_at stays empty).
                service.dispatch(job, countdown_s=outcome.delay_s)
        return outcome.kind

    @signals.worker_shutting_down.connect(weak=False)
    def _grace_then_hand_back(**_: object) -> None:
        # Celery's warm shutdown waits for running jobs forever; LLM jobs can run for minutes.
        # After the grace period every handler stops at its next checkpoint and its job goes
        # back to the queue (attempt not spent), so nothing stays `running` without a lease.
        def expire() -> None:
            log.warning("shutdown grace (%.0fs) over: handing running jobs back",
                        settings.shutdown_grace_s)
            rt = runtime.current()
            if rt is not None:
                rt.runner.stopping.set()
            # Prefork: the jobs run in the pool's children, which have runtimes of their own.
            for child in active_children():
                with contextlib.suppress(OSError):
                    os.kill(child.pid, STOP_SIGNAL)

        timer = threading.Timer(settings.shutdown_grace_s, expire)
        timer.daemon = True
        timer.start()

    @signals.worker_process_init.connect(weak=False)
    def _hand_back_on_signal(**_: object) -> None:
        # In a prefork child: the parent's grace is over, stop this child's job.
        def stop(*_: object) -> None:
            rt = runtime.current()
            if rt is not None:
                rt.runner.stopping.set()

        signal.signal(STOP_SIGNAL, stop)

    return app
