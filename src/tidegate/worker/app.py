"""The worker's Celery app: the shared configuration plus the one task, ``tidegate.run_job``."""

from __future__ import annotations

import logging
import threading

from celery import Celery, signals

from ..adapters.celery_app import RUN_JOB, create_celery
from ..config import Settings
from . import runtime

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings) -> Celery:
    runtime.configure(settings)
    app = create_celery(settings)

    @app.task(name=RUN_JOB, shared=False, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(job_id: str) -> str:
        """Run one delivery of a job. Never raises: the row records every outcome."""
        if not isinstance(job_id, str) or len(job_id) > 64:
            log.error("dropping malformed run_job message: %r", job_id)
            return "malformed"
        rt = runtime.get_runtime()
        outcome = rt.runner.run(job_id)
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
            rt = runtime.current()
            if rt is not None:
                log.warning("shutdown grace (%.0fs) over: handing running jobs back",
                            settings.shutdown_grace_s)
                rt.runner.stopping.set()

        timer = threading.Timer(settings.shutdown_grace_s, expire)
        timer.daemon = True
        timer.start()

    return app
